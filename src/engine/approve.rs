//! Signing an approval bound to one app, digest and environment, and
//! attaching it to the digest as evidence.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::domain::Clock;

use super::EngineError;
use super::resolve::AppRelease;
use crate::domain::approval::{
    APPROVAL_MEDIA_TYPE, APPROVAL_PAYLOAD_TYPE, APPROVAL_TYPE, ApprovalStatement, Purpose,
};
use crate::gates::EvidenceKind;
use crate::sign::{Envelope, PrivateKey};
use crate::store::EvidenceRecord;
use crate::workspace::Workspace;

/// Signs an approval statement at `at` — the real clock, read by the
/// caller (a promotion's `--approve` signs at its decision clock) — and
/// attaches it to the release's digest.
#[allow(clippy::too_many_arguments)]
pub fn sign_approval(
    ws: &Workspace,
    key: &PrivateKey,
    signer: &str,
    release: &AppRelease,
    env: &str,
    purpose: Purpose,
    comment: Option<String>,
    at: DateTime<Utc>,
) -> Result<(ApprovalStatement, EvidenceRecord), EngineError> {
    let statement = ApprovalStatement {
        type_: APPROVAL_TYPE.into(),
        app: release.app.clone(),
        digest: release.digest.clone(),
        environment: env.to_owned(),
        promotion_id: None,
        signer: signer.to_owned(),
        signed_at: at.to_rfc3339_opts(SecondsFormat::Secs, true),
        purpose,
        comment,
    };
    let payload = serde_json_canonicalizer::to_vec(&statement).map_err(EngineError::error)?;
    let envelope = Envelope::sign(APPROVAL_PAYLOAD_TYPE, &payload, key);
    let bytes = serde_json::to_vec_pretty(&envelope).map_err(EngineError::error)?;
    let digest = ws.evidence().put(&bytes)?;
    let record = EvidenceRecord {
        digest,
        media_type: APPROVAL_MEDIA_TYPE.into(),
        kind: EvidenceKind::Approval.as_str().into(),
        size: bytes.len() as u64,
        added_at: Utc::now(),
    };
    ws.open_store()?.attach_evidence(&release.digest, &record)?;
    Ok((statement, record))
}

/// An approval to sign with one of the workspace's keys.
#[derive(Debug, Clone)]
pub struct ApproveRequest {
    pub app: String,
    pub digest: crate::domain::Digest,
    pub env: String,
    /// The key's name; `None`: the first private key that is not the
    /// workspace's sealing key.
    pub key: Option<String>,
    pub comment: Option<String>,
    /// An ordinary approval, or a break-glass one (for a freeze exception).
    pub purpose: Purpose,
}

/// What was signed: the signer and the approval's evidence record.
#[derive(Debug, Clone)]
pub struct Approved {
    pub signer: String,
    pub evidence: EvidenceRecord,
    /// What was signed.
    pub statement: ApprovalStatement,
}

/// Signs `req` with the named (or first) private key of the workspace, at
/// the real clock.
pub fn approve(ws: &Workspace, req: &ApproveRequest) -> Result<Approved, EngineError> {
    approve_at(ws, req, Clock::Real.now())
}

/// `approve` at a real clock already read: a promotion's decision clock.
pub(crate) fn approve_at(
    ws: &Workspace,
    req: &ApproveRequest,
    at: DateTime<Utc>,
) -> Result<Approved, EngineError> {
    let name = match &req.key {
        Some(k) => k.clone(),
        None => ws
            .open_store()?
            .keys()?
            .into_iter()
            .find(|k| k.private && k.name != super::keys::SEALING_KEY)
            .map(|k| k.name)
            .ok_or_else(|| {
                EngineError::usage("you have no key to approve with")
                    .hint("`stella key gen NAME --email EMAIL` makes one")
            })?,
    };
    let (key, rec) = super::keys::load_private(ws, &name)?;
    let release = AppRelease {
        app: req.app.clone(),
        digest: req.digest.clone(),
        tag: None,
    };
    let (statement, evidence) = sign_approval(
        ws,
        &key,
        &rec.email,
        &release,
        &req.env,
        req.purpose,
        req.comment.clone(),
        at,
    )?;
    Ok(Approved {
        signer: rec.email,
        evidence,
        statement,
    })
}
