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
    /// Small-order, or with a torsion component: such a key verifies
    /// nothing, alone or in a batch. Decided once, when the key is read.
    weak: bool,
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
            weak: key.is_weak() || !key.to_edwards().is_torsion_free(),
            key,
        }
    }

    /// A key from its raw 32-byte encoding (for tests of hostile keys).
    pub fn from_raw(bytes: &[u8; 32]) -> Result<PublicKey, KeyError> {
        VerifyingKey::from_bytes(bytes)
            .map(PublicKey::new)
            .map_err(|e| KeyError::BadPublic(e.to_string()))
    }

    /// Whether the key is small-order or has a torsion component: no
    /// signature verifies with such a key.
    pub fn is_weak(&self) -> bool {
        self.weak
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

    /// Strict verification (no malleable or small-order signatures, no
    /// weak key): `verify_strict`, and the key refused if it has a torsion
    /// component.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&bytes);
        !self.weak && self.key.verify_strict(message, &sig).is_ok()
    }
}

/// What `verify_strict` checks of a signature's R before the equation, and
/// batch verification does not: that R is the canonical encoding of a
/// point that is not of small order.
fn strict_r(sig: &[u8; 64]) -> bool {
    let mut r = [0u8; 32];
    r.copy_from_slice(&sig[..32]);
    let compressed = curve25519_dalek::edwards::CompressedEdwardsY(r);
    match compressed.decompress() {
        Some(point) => !point.is_small_order() && point.compress() == compressed,
        None => false,
    }
}

/// Verifies many signatures at once (strictly faster per signature than
/// one by one), to the same standard as `PublicKey::verify`: every key
/// and every R is first checked as `verify_strict` would (weak keys were
/// marked once, when read), then the equations are checked in one batch.
/// True only if every one verifies; on false, check them one by one to
/// find which.
pub fn verify_batch(items: &[(&PublicKey, &[u8], &[u8])]) -> bool {
    let mut messages = Vec::with_capacity(items.len());
    let mut signatures = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    for (key, message, sig) in items {
        let Ok(bytes) = <[u8; 64]>::try_from(*sig) else {
            return false;
        };
        if key.weak || !strict_r(&bytes) {
            return false;
        }
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

    /// The identity as a key, and a "signature" with R the identity and
    /// s = 0: the batch equation holds for every message, `verify_strict`
    /// refuses it. Both must refuse it.
    #[test]
    fn a_small_order_key_verifies_nothing_alone_or_in_a_batch() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = PublicKey::from_raw(&identity).unwrap();
        assert!(weak.is_weak());
        let mut forged = [0u8; 64];
        forged[0] = 1;
        let raw = ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap();
        assert!(
            ed25519_dalek::verify_batch(
                &[b"anything".as_slice()],
                &[ed25519_dalek::Signature::from_bytes(&forged)],
                &[raw]
            )
            .is_ok(),
            "the library's batch alone accepts it"
        );
        assert!(!weak.verify(b"anything", &forged));
        assert!(!verify_batch(&[(&weak, b"anything", &forged)]));

        // A good key with a small-order R: refused before the batch.
        let k = PrivateKey::from_seed(&[7; 32]);
        let mut sig = k.sign(b"hello");
        sig[..32].copy_from_slice(&identity);
        let pk = k.public();
        assert!(!pk.is_weak());
        assert!(!verify_batch(&[(&pk, b"hello", &sig)]));
        assert!(!pk.verify(b"hello", &sig));
    }
}
