//! Builds `GateInputs` from a workspace: the environment's config, the
//! evidence attached to the digest, trusted keys, policy sources and what
//! is live upstream. The only part of the gates that does I/O.

use chrono::{DateTime, Utc};

use super::{
    ApprovalEvidence, EvidenceKind, GateInputs, LiveState, PolicyModule, ScanEvidence, Subject,
    TrustedKey,
};
use crate::config::Config;
use crate::domain::Digest;
use crate::scan::{self, Format};
use crate::sign::PublicKey;
use crate::store::{EvidenceError, EvidenceStore, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("no environment `{name}` in stella.toml (defined: {known})")]
    UnknownEnvironment { name: String, known: String },
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("evidence {digest} no longer parses as {format}: {detail}")]
    BadEvidence {
        digest: Digest,
        format: &'static str,
        detail: String,
    },
    #[error("key `{name}` in the store is unusable: {detail}")]
    BadKey { name: String, detail: String },
    #[error("cannot read policy module {path}: {detail}")]
    Policy { path: String, detail: String },
}

/// What the caller decides about: the rest comes from the workspace.
pub struct Request {
    pub app: String,
    pub digest: Digest,
    pub tag: Option<String>,
    pub environment: String,
    pub requested_by: String,
    pub promotion_id: Option<i64>,
    pub break_glass: Option<String>,
    pub now: DateTime<Utc>,
}

pub fn collect(
    config: &Config,
    store: &Store,
    cas: &EvidenceStore,
    req: Request,
) -> Result<GateInputs, CollectError> {
    let Some(env) = config.environment(&req.environment) else {
        return Err(CollectError::UnknownEnvironment {
            name: req.environment,
            known: config
                .environments
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let from = env.from.as_ref().map(|f| f.get_ref().clone());

    let mut scans = Vec::new();
    let mut approvals = Vec::new();
    for rec in store.evidence_for(&req.digest)? {
        let kind = EvidenceKind::parse(&rec.kind).unwrap_or(EvidenceKind::Other);
        if kind == EvidenceKind::Other {
            continue;
        }
        let bytes = cas.get(&rec.digest)?;
        if kind == EvidenceKind::Approval {
            approvals.push(ApprovalEvidence {
                digest: rec.digest,
                bytes,
            });
            continue;
        }
        let Some(format) = Format::from_media_type(&rec.media_type) else {
            continue;
        };
        let report = scan::parse(format, &bytes).map_err(|e| CollectError::BadEvidence {
            digest: rec.digest.clone(),
            format: format.name(),
            detail: e.to_string(),
        })?;
        scans.push(ScanEvidence {
            digest: rec.digest,
            kind,
            format,
            report,
        });
    }

    let keys = store
        .keys()?
        .into_iter()
        .map(|k| {
            PublicKey::from_pem(&k.public_pem)
                .map(|key| TrustedKey {
                    name: k.name.clone(),
                    email: k.email.clone(),
                    key,
                })
                .map_err(|e| CollectError::BadKey {
                    name: k.name,
                    detail: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut policies = Vec::new();
    if let Some(p) = &env.gates.policy {
        for m in &p.modules {
            let path = m.get_ref();
            let source = std::fs::read_to_string(config.root.join(path)).map_err(|e| {
                CollectError::Policy {
                    path: path.clone(),
                    detail: e.to_string(),
                }
            })?;
            policies.push(PolicyModule {
                path: path.clone(),
                source,
            });
        }
    }

    let upstream = match &from {
        Some(f) => store.live_at(f, &req.app, &req.now)?.map(|l| LiveState {
            environment: l.environment,
            digest: l.digest,
            since: l.since,
        }),
        None => None,
    };

    Ok(GateInputs {
        subject: Subject {
            app: req.app,
            digest: req.digest,
            tag: req.tag,
            environment: req.environment,
            from,
            requested_by: req.requested_by,
            promotion_id: req.promotion_id,
        },
        gates: env.gates.clone(),
        freeze_windows: config.freeze.clone(),
        scans,
        approvals,
        keys,
        policies,
        upstream,
        break_glass: req.break_glass,
        now: req.now,
    })
}
