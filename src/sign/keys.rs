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

/// The y-coordinates (little-endian, sign bit clear) of the eight points of
/// small order: the identity (y = 1), the point of order 2 (y = -1), the
/// two of order 4 (y = 0) and the four of order 8 (y = ±y8). An R whose y
/// is one of these decodes, with either sign bit, to a point of small
/// order (or to a non-canonical encoding of one).
const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    hex32("0100000000000000000000000000000000000000000000000000000000000000"),
    hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex32("0000000000000000000000000000000000000000000000000000000000000000"),
    hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
];

const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a hex digit"),
        }
    }
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(b[2 * i]) << 4 | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// What `verify_strict` checks of a signature's R before the equation, and
/// batch verification does not: that R is the canonical encoding of a
/// point that is not of small order. `verify_strict` decompresses R and
/// compares the recomputed R byte for byte; the same verdict comes from
/// the bytes alone — y below the field prime, and y not that of a point of
/// small order — without the two field exponentiations per signature that
/// decompressing and compressing again would cost the chain audit. (An R
/// that is no point at all fails the batch equation itself.)
fn strict_r(sig: &[u8; 64]) -> bool {
    let mut y = [0u8; 32];
    y.copy_from_slice(&sig[..32]);
    y[31] &= 0x7f;
    // y >= p = 2^255 - 19: the only such values are 0x7fff…ffed ..= 0x7fff…ffff.
    let non_canonical = y[31] == 0x7f && y[1..31].iter().all(|&b| b == 0xff) && y[0] >= 0xed;
    !non_canonical && !SMALL_ORDER_Y.contains(&y)
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

    /// The byte-level check of R agrees with decompressing it as
    /// `verify_strict` does, on the encodings that matter (every small-order
    /// y with either sign bit, the non-canonical y ≥ p) and on random ones.
    #[test]
    fn strict_r_agrees_with_decompression() {
        fn oracle(r: [u8; 32]) -> bool {
            let compressed = curve25519_dalek::edwards::CompressedEdwardsY(r);
            match compressed.decompress() {
                Some(point) => !point.is_small_order() && point.compress() == compressed,
                // Not a point: the batch equation refuses it either way.
                None => true,
            }
        }
        let mut cases: Vec<[u8; 32]> = Vec::new();
        for y in SMALL_ORDER_Y {
            let mut signed = y;
            signed[31] |= 0x80;
            cases.push(y);
            cases.push(signed);
        }
        for low in 0xedu8..=0xff {
            let mut y = [0xffu8; 32];
            y[0] = low;
            y[31] = 0x7f;
            cases.push(y);
            y[31] = 0xff;
            cases.push(y);
        }
        use sha2::Digest as _;
        let mut seed = [0u8; 32];
        for i in 0..2000u32 {
            seed[..4].copy_from_slice(&i.to_le_bytes());
            let r: [u8; 32] = sha2::Sha256::digest(seed).into();
            cases.push(r);
        }
        let mut decodable = 0;
        for r in cases {
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&r);
            let is_point = curve25519_dalek::edwards::CompressedEdwardsY(r)
                .decompress()
                .is_some();
            decodable += usize::from(is_point);
            if is_point {
                assert_eq!(strict_r(&sig), oracle(r), "R = {}", hex::encode(r));
            }
        }
        // Both the refusals and the ordinary points were exercised.
        assert!(decodable > 500, "{decodable}");
        for y in SMALL_ORDER_Y {
            let point = curve25519_dalek::edwards::CompressedEdwardsY(y).decompress();
            assert!(
                point.is_some_and(|p| p.is_small_order()),
                "{}",
                hex::encode(y)
            );
        }
    }
}
