//! DSSE envelopes (Dead Simple Signing Envelope, v1): the signature covers
//! the pre-authentication encoding
//! `DSSEv1 SP len(type) SP type SP len(body) SP body`, never re-serialized
//! JSON, so verification works on the exact payload bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::keys::{PrivateKey, PublicKey};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope {
    pub payload_type: String,
    /// Standard base64 of the payload bytes.
    pub payload: String,
    pub signatures: Vec<Signature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub keyid: String,
    /// Standard base64 of the raw 64-byte ed25519 signature.
    pub sig: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsseError {
    #[error("the envelope's payload is not valid base64")]
    Payload,
    #[error("the envelope has no signature by key {0}")]
    NoSignature(String),
    #[error("signature does not verify with key {0}")]
    BadSignature(String),
}

/// The pre-authentication encoding DSSE signs.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(
        format!(
            "DSSEv1 {} {} {} ",
            payload_type.len(),
            payload_type,
            payload.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// Signs `payload` with `key`.
    pub fn sign(payload_type: &str, payload: &[u8], key: &PrivateKey) -> Envelope {
        let sig = key.sign(&pae(payload_type, payload));
        Envelope {
            payload_type: payload_type.to_owned(),
            payload: STANDARD.encode(payload),
            signatures: vec![Signature {
                keyid: key.public().keyid().to_owned(),
                sig: STANDARD.encode(sig),
            }],
        }
    }

    /// The payload bytes, exactly as signed.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, DsseError> {
        STANDARD
            .decode(&self.payload)
            .map_err(|_| DsseError::Payload)
    }

    /// The key ids of the signatures.
    pub fn keyids(&self) -> impl Iterator<Item = &str> {
        self.signatures.iter().map(|s| s.keyid.as_str())
    }

    /// Verifies the signature made by `key`; returns the payload bytes.
    pub fn verify(&self, key: &PublicKey) -> Result<Vec<u8>, DsseError> {
        let payload = self.payload_bytes()?;
        self.verify_payload(key, &payload)?;
        Ok(payload)
    }

    /// The message and raw signature `key` should have made, for batch
    /// verification; `None` if the envelope has no well-formed signature
    /// with its key id.
    pub fn signed_message(&self, key: &PublicKey, payload: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        let s = self.signatures.iter().find(|s| s.keyid == key.keyid())?;
        let sig = STANDARD.decode(&s.sig).ok()?;
        Some((pae(&self.payload_type, payload), sig))
    }

    /// Verifies the signature made by `key` over `payload`, the envelope's
    /// payload already decoded (so callers that need it decode once).
    pub fn verify_payload(&self, key: &PublicKey, payload: &[u8]) -> Result<(), DsseError> {
        let mut found = false;
        for s in self.signatures.iter().filter(|s| s.keyid == key.keyid()) {
            found = true;
            if let Ok(sig) = STANDARD.decode(&s.sig)
                && key.verify(&pae(&self.payload_type, payload), &sig)
            {
                return Ok(());
            }
        }
        Err(if found {
            DsseError::BadSignature(key.keyid().to_owned())
        } else {
            DsseError::NoSignature(key.keyid().to_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn signs_verifies_and_detects_tampering() {
        let key = PrivateKey::from_seed(&[1; 32]);
        let env = Envelope::sign("application/x", b"{\"a\":1}", &key);
        assert_eq!(env.verify(&key.public()).unwrap(), b"{\"a\":1}");

        let mut bad = env.clone();
        bad.payload = STANDARD.encode(b"{\"a\":2}");
        assert_eq!(
            bad.verify(&key.public()),
            Err(DsseError::BadSignature(key.public().keyid().into()))
        );

        let mut bad = env.clone();
        bad.payload_type = "application/y".into();
        assert!(bad.verify(&key.public()).is_err());

        let other = PrivateKey::from_seed(&[2; 32]);
        assert_eq!(
            env.verify(&other.public()),
            Err(DsseError::NoSignature(other.public().keyid().into()))
        );
    }
}
