//! Which keys verification relies on, and why: the workspace's sealing
//! keys (its current one and earlier ones after a rotation), and keys the
//! caller names with `--trust KEY.pub`. Approvers' keys are never among
//! them: they sign approvals, never capsules.

use std::path::PathBuf;

use super::verify::Trusted;
use crate::sign::PublicKey;
use crate::store::{Store, StoreError};

/// The sealing keys of the workspace whose store this is, each named with
/// its trust ("workspace, a sealing key of this workspace").
pub fn sealing_keys(store: &Store) -> Result<Vec<Trusted>, TrustError> {
    store
        .sealing_keys()?
        .into_iter()
        .map(|k| {
            let key = PublicKey::from_pem(&k.public_pem)
                .map_err(|e| TrustError::Stored(k.name.clone(), e.to_string()))?;
            let role = if k.retired_at.is_some() {
                "a retired sealing key of this workspace"
            } else {
                "a sealing key of this workspace"
            };
            Ok(Trusted {
                name: format!("{}, {role}", k.name),
                key,
            })
        })
        .collect()
}

/// Keys named by `--trust FILE` (SPKI PEM), each named by its file.
pub fn from_files(paths: &[PathBuf]) -> Result<Vec<Trusted>, TrustError> {
    paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).map_err(|e| TrustError::Read {
                path: p.clone(),
                source: e,
            })?;
            if meta.len() > 64 * 1024 {
                return Err(TrustError::Key {
                    path: p.clone(),
                    detail: "over 64 KiB: not a public key".into(),
                });
            }
            let pem = std::fs::read_to_string(p).map_err(|e| TrustError::Read {
                path: p.clone(),
                source: e,
            })?;
            let key = PublicKey::from_pem(&pem).map_err(|e| TrustError::Key {
                path: p.clone(),
                detail: e.to_string(),
            })?;
            Ok(Trusted {
                name: format!("{}, trusted by --trust", p.display()),
                key,
            })
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sealing key `{0}` in the store: {1}")]
    Stored(String, String),
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {detail}", .path.display())]
    Key { path: PathBuf, detail: String },
}

/// The trusted key among `envelope`'s signers, or, when none is, the
/// signers' short key ids as a report names them (`(none)` for none).
pub fn signer<'a>(
    envelope: &crate::sign::Envelope,
    trusted: &'a [Trusted],
) -> Result<&'a Trusted, String> {
    trusted
        .iter()
        .find(|t| envelope.keyids().any(|id| id == t.key.keyid()))
        .ok_or_else(|| {
            let ids: Vec<&str> = envelope.keyids().map(short).collect();
            if ids.is_empty() {
                "(none)".to_owned()
            } else {
                ids.join(", ")
            }
        })
}

/// The first 16 hex digits of a key id, as reports show it.
pub fn short(keyid: &str) -> &str {
    &keyid[..keyid.len().min(16)]
}
