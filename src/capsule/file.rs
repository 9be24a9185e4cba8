//! The exported capsule: one self-contained file (YAML by default, or
//! JSON) holding the signed envelope, every evidence blob it references, and
//! — as a convenience, never trusted by itself — the signer's public key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::domain::Digest;
use crate::sign::Envelope;

pub const CAPSULE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapsuleFile {
    pub capsule_version: u32,
    pub envelope: Envelope,
    pub evidence: Vec<EmbeddedBlob>,
    pub public_key_pem: String,
    /// The decision's verification summary (a SLSA VSA in its own DSSE
    /// envelope), for decisions sealed with one. Verified, when present,
    /// against the same keys and against the capsule it names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Envelope>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedBlob {
    pub digest: Digest,
    pub media_type: String,
    pub content_base64: String,
}

impl EmbeddedBlob {
    pub fn new(digest: Digest, media_type: &str, content: &[u8]) -> EmbeddedBlob {
        EmbeddedBlob {
            digest,
            media_type: media_type.to_owned(),
            content_base64: STANDARD.encode(content),
        }
    }

    pub fn content(&self) -> Result<Vec<u8>, String> {
        STANDARD
            .decode(&self.content_base64)
            .map_err(|_| format!("evidence {} is not valid base64", self.digest))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("not a capsule file: {0}")]
    Parse(String),
    #[error(
        "capsule_version {0} is not supported (this stella reads version {CAPSULE_VERSION}); upgrade stella"
    )]
    Version(u32),
    #[error(
        "the capsule file is {} bytes, over the limit of {}; refused unread",
        .0,
        super::limits::human(super::limits::MAX_CAPSULE_BYTES)
    )]
    TooLarge(u64),
    #[error("the capsule file is nested too deep to read safely: {0}")]
    TooDeep(String),
}

impl CapsuleFile {
    pub fn to_bytes(&self, format: Format) -> Vec<u8> {
        match format {
            Format::Json => {
                let mut v = serde_json::to_vec_pretty(self).expect("a capsule file serializes");
                v.push(b'\n');
                v
            }
            Format::Yaml => yaml_serde::to_string(self)
                .expect("a capsule file serializes")
                .into_bytes(),
        }
    }

    /// Reads YAML or JSON (JSON is YAML, but its own parser gives better
    /// errors for it).
    /// Bounded: over `MAX_CAPSULE_BYTES`, or nested past the limits, the
    /// file is refused before it is parsed.
    pub fn parse(bytes: &[u8]) -> Result<CapsuleFile, FileError> {
        use super::limits;
        if bytes.len() as u64 > limits::MAX_CAPSULE_BYTES {
            return Err(FileError::TooLarge(bytes.len() as u64));
        }
        let text =
            std::str::from_utf8(bytes).map_err(|_| FileError::Parse("not UTF-8 text".into()))?;
        let file: CapsuleFile = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| {
                if e.to_string().starts_with("recursion limit exceeded") {
                    FileError::TooDeep(format!(
                        "it nests deeper than {} levels ({e})",
                        limits::MAX_JSON_DEPTH
                    ))
                } else {
                    FileError::Parse(quote_short(&e.to_string()))
                }
            })?
        } else {
            limits::check_yaml_nesting(text).map_err(FileError::TooDeep)?;
            yaml_serde::from_str(text).map_err(|e| FileError::Parse(quote_short(&e.to_string())))?
        };
        if file.capsule_version != CAPSULE_VERSION {
            return Err(FileError::Version(file.capsule_version));
        }
        Ok(file)
    }

    pub fn blob(&self, digest: &Digest) -> Option<&EmbeddedBlob> {
        self.evidence.iter().find(|b| b.digest == *digest)
    }
}

/// A parser's message with every quoted value cut to a readable length: a
/// file that is not a capsule at all (a whole document parsed as one
/// string) must not be echoed back whole.
fn quote_short(message: &str) -> String {
    const KEEP: usize = 40;
    let mut out = String::with_capacity(message.len().min(256));
    let mut parts = message.split('"');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for (i, part) in parts.enumerate() {
        out.push('"');
        // Odd pieces (0, 2, … after the first) sit inside quotes.
        if i % 2 == 0 && part.chars().count() > KEEP {
            out.extend(part.chars().take(KEEP));
            out.push('…');
        } else {
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_document_that_is_no_capsule_is_not_echoed_whole() {
        let text = "root:x:0:0:root:/root:/bin/bash\n".repeat(50);
        let e = super::CapsuleFile::parse(text.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("not a capsule file: invalid type: string \"root:x:0"),
            "{e}"
        );
        assert!(e.contains("…\", expected struct CapsuleFile"), "{e}");
        assert!(e.len() < 160, "{e}");
    }
}
