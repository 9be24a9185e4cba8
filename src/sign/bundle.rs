//! A DSSE envelope as a Sigstore bundle (v0.3): the envelope itself and,
//! as verification material, a hint naming the public key (its key id).
//! No certificate and no transparency-log entry: the key is one the
//! verifier already holds, as with `cosign verify-blob-attestation --key`.

use serde::{Deserialize, Serialize};

use super::Envelope;

pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub media_type: String,
    pub verification_material: VerificationMaterial,
    pub dsse_envelope: Envelope,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    pub public_key: PublicKeyHint,
    /// Always empty: nothing here is logged to a transparency log.
    #[serde(default)]
    pub tlog_entries: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyHint {
    pub hint: String,
}

impl Bundle {
    /// The bundle of `envelope`, hinting at the key of its first
    /// signature.
    pub fn of(envelope: &Envelope) -> Bundle {
        Bundle {
            media_type: BUNDLE_MEDIA_TYPE.into(),
            verification_material: VerificationMaterial {
                public_key: PublicKeyHint {
                    hint: envelope.keyids().next().unwrap_or_default().to_owned(),
                },
                tlog_entries: Vec::new(),
            },
            dsse_envelope: envelope.clone(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a bundle serializes");
        v.push(b'\n');
        v
    }

    /// Reads a bundle, refusing other media types.
    pub fn parse(bytes: &[u8]) -> Result<Bundle, String> {
        let b: Bundle =
            serde_json::from_slice(bytes).map_err(|e| format!("not a Sigstore bundle ({e})"))?;
        if b.media_type != BUNDLE_MEDIA_TYPE {
            return Err(format!(
                "bundle mediaType is `{}`, expected {BUNDLE_MEDIA_TYPE}",
                b.media_type
            ));
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::PrivateKey;

    #[test]
    fn round_trips_and_hints_the_signing_key() {
        let key = PrivateKey::from_seed(&[7; 32]);
        let env = Envelope::sign("application/vnd.in-toto+json", b"{}", &key);
        let b = Bundle::of(&env);
        assert_eq!(
            b.verification_material.public_key.hint,
            key.public().keyid()
        );
        let back = Bundle::parse(&b.to_json()).unwrap();
        assert_eq!(back.dsse_envelope.verify(&key.public()).unwrap(), b"{}");
        let other = String::from_utf8(b.to_json())
            .unwrap()
            .replace("v0.3", "v0.1");
        assert!(Bundle::parse(other.as_bytes()).is_err());
    }
}
