//! ed25519 keys: private keys as PKCS#8 PEM, public keys as SPKI PEM, and
//! the key id — hex sha256 of the public key's SPKI DER — that envelopes
//! carry to say which key signed.

use ed25519_dalek::ed25519::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::ed25519::pkcs8::spki::{DecodePublicKey, EncodePublicKey};
use ed25519_dalek::ed25519::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::domain::Digest;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an ed25519 private key in PKCS#8 PEM ({0})")]
    BadPrivate(String),
    #[error("not an ed25519 public key in SPKI PEM (`-----BEGIN PUBLIC KEY-----`) ({0})")]
    BadPublic(String),
    #[error("cannot gather randomness for a new key: {0}")]
    Random(String),
}

/// A signing key.
pub struct PrivateKey {
    key: SigningKey,
}

/// A verifying key, with its id.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    keyid: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.keyid)
    }
}

impl PrivateKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Result<PrivateKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(PrivateKey::from_seed(&seed))
    }

    /// A key from a 32-byte seed (deterministic; for tests and fixtures).
    pub fn from_seed(seed: &[u8; 32]) -> PrivateKey {
        PrivateKey {
            key: SigningKey::from_bytes(seed),
        }
    }

    pub fn from_pem(pem: &str) -> Result<PrivateKey, KeyError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(|key| PrivateKey { key })
            .map_err(|e| KeyError::BadPrivate(e.to_string()))
    }

    pub fn to_pem(&self) -> String {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("an ed25519 key always encodes")
            .to_string()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey::new(self.key.verifying_key())
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

impl PublicKey {
    fn new(key: VerifyingKey) -> PublicKey {
        let der = key
            .to_public_key_der()
            .expect("an ed25519 key always encodes");
        PublicKey {
            keyid: Digest::of(der.as_bytes()).hex().to_owned(),
            key,
        }
    }

    pub fn from_pem(pem: &str) -> Result<PublicKey, KeyError> {
        VerifyingKey::from_public_key_pem(pem.trim())
            .map(PublicKey::new)
            .map_err(|e| KeyError::BadPublic(e.to_string()))
    }

    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("an ed25519 key always encodes")
    }

    /// Hex sha256 of the SPKI DER encoding.
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// Strict verification (no malleable or small-order signatures).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&bytes);
        self.key.verify_strict(message, &sig).is_ok()
    }
}

/// Verifies many signatures at once (strictly faster per signature than
/// one by one). True only if every one verifies; on false, check them one
/// by one to find which.
pub fn verify_batch(items: &[(&PublicKey, &[u8], &[u8])]) -> bool {
    let mut messages = Vec::with_capacity(items.len());
    let mut signatures = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    for (key, message, sig) in items {
        let Ok(bytes) = <[u8; 64]>::try_from(*sig) else {
            return false;
        };
        messages.push(*message);
        signatures.push(ed25519_dalek::Signature::from_bytes(&bytes));
        keys.push(key.key);
    }
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_and_signatures_verify() {
        let k = PrivateKey::from_seed(&[7; 32]);
        let again = PrivateKey::from_pem(&k.to_pem()).unwrap();
        assert_eq!(again.public(), k.public());
        let public = PublicKey::from_pem(&k.public().to_pem()).unwrap();
        assert_eq!(public.keyid(), k.public().keyid());
        assert!(
            k.public()
                .to_pem()
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        let sig = k.sign(b"hello");
        assert!(public.verify(b"hello", &sig));
        assert!(!public.verify(b"hellO", &sig));
        assert!(!public.verify(b"hello", &sig[..63]));
        assert_ne!(PrivateKey::generate().unwrap().public(), k.public());
        assert!(PublicKey::from_pem("nope").is_err());

        let other = PrivateKey::from_seed(&[8; 32]);
        let (pk, po) = (k.public(), other.public());
        let sig2 = other.sign(b"world");
        assert!(verify_batch(&[
            (&pk, b"hello", &sig),
            (&po, b"world", &sig2)
        ]));
        assert!(!verify_batch(&[
            (&pk, b"hello", &sig),
            (&po, b"World", &sig2)
        ]));
    }
}
