//! `Digest`: the identity of an artifact. Only sha256 is accepted, because
//! every digest stella records must be comparable byte for byte.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A `sha256:` digest with 64 lowercase hex characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("`{0}` is not a digest: expected `sha256:` followed by 64 lowercase hex characters")]
    Malformed(String),
    #[error("`{0}` uses an unsupported algorithm: stella only accepts sha256 digests")]
    Algorithm(String),
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest {
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// Builds a digest from 64 lowercase hex characters (no prefix).
    pub fn from_hex(hex: &str) -> Result<Self, DigestError> {
        if hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Digest {
                hex: hex.to_owned(),
            })
        } else {
            Err(DigestError::Malformed(hex.to_owned()))
        }
    }

    /// The 64 hex characters, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters, for people.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// Whether `bytes` hash to this digest.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        Digest::of(bytes) == *self
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("sha256", hex)) => {
                Digest::from_hex(hex).map_err(|_| DigestError::Malformed(s.to_owned()))
            }
            Some((alg, _)) if !alg.is_empty() && alg.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                Err(DigestError::Algorithm(s.to_owned()))
            }
            _ => Err(DigestError::Malformed(s.to_owned())),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest(sha256:{})", self.hex)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_and_round_trips() {
        let d = Digest::of(b"");
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(EMPTY.parse::<Digest>().unwrap(), d);
        assert_eq!(d.short(), "e3b0c44298fc");
        assert!(d.matches(b""));
        assert!(!d.matches(b"x"));
    }

    #[test]
    fn rejects_what_is_not_a_sha256_digest() {
        for bad in [
            "",
            "sha256:",
            "sha256:abc",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
        ] {
            assert!(
                matches!(bad.parse::<Digest>(), Err(DigestError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "sha512:abcd".parse::<Digest>(),
            Err(DigestError::Algorithm(_))
        ));
    }
}
