//! `stella approve REF --env ENV --key NAME`: sign an approval bound to one
//! app, digest and environment, and attach it to the digest as evidence.

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;

use super::key::load_private;
use super::release::{AppRelease, app_release};
use super::{Context, Failure, exit, load_config, parse_at, print_json, unknown_environment};
use crate::domain::approval::{
    APPROVAL_MEDIA_TYPE, APPROVAL_PAYLOAD_TYPE, APPROVAL_TYPE, ApprovalStatement, Purpose,
};
use crate::gates::EvidenceKind;
use crate::sign::{Envelope, PrivateKey};
use crate::store::EvidenceRecord;
use crate::workspace::Workspace;

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// APP:TAG or APP@sha256:HEX (`APP` alone: what is live upstream of ENV)
    pub reference: String,
    /// The environment the approval is for
    #[arg(long)]
    pub env: String,
    /// Your key (see `stella key list`)
    #[arg(long)]
    pub key: String,
    /// Why, for the record
    #[arg(long)]
    pub comment: Option<String>,
    /// A break-glass approval: counts only toward breaking a freeze
    #[arg(long)]
    pub break_glass: bool,
    /// Signing time (RFC 3339; default now)
    #[arg(long)]
    pub at: Option<String>,
    #[arg(long)]
    pub json: bool,
}

/// Signs an approval statement and attaches it to the release's digest.
#[allow(clippy::too_many_arguments)]
pub fn sign_approval(
    ws: &Workspace,
    key: &PrivateKey,
    signer: &str,
    release: &AppRelease,
    env: &str,
    purpose: Purpose,
    comment: Option<String>,
    at: &DateTime<Utc>,
) -> Result<(ApprovalStatement, EvidenceRecord), Failure> {
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
    let payload = serde_json_canonicalizer::to_vec(&statement).map_err(Failure::error)?;
    let envelope = Envelope::sign(APPROVAL_PAYLOAD_TYPE, &payload, key);
    let bytes = serde_json::to_vec_pretty(&envelope).map_err(Failure::error)?;
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

pub fn run(ctx: &Context, a: ApproveArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    let at = parse_at(a.at.as_deref())?;
    let Some(env) = config.environment(&a.env) else {
        return Err(unknown_environment(&a.env, &config));
    };
    let (key, rec) = load_private(ws, &a.key)?;
    let release = app_release(ctx, ws, &config, &a.reference, Some(&a.env), &at, a.json)?;
    let purpose = if a.break_glass {
        Purpose::BreakGlass
    } else {
        Purpose::Promote
    };
    let (statement, record) = sign_approval(
        ws,
        &key,
        &rec.email,
        &release,
        &a.env,
        purpose,
        a.comment.clone(),
        &at,
    )?;

    if a.json {
        print_json(&serde_json::json!({
            "approval": record.digest,
            "statement": statement,
        }))?;
        return Ok(exit::OK);
    }
    println!(
        "Approved {}@{} for {} as {}{} (approval {})",
        release.app,
        release.digest,
        a.env,
        rec.email,
        if a.break_glass { ", break-glass" } else { "" },
        record.digest
    );
    if !a.break_glass
        && let Some(g) = &env.gates.approval
        && !g
            .get_ref()
            .approvers
            .iter()
            .any(|s| *s.get_ref() == rec.email)
    {
        eprintln!(
            "note: {} is not on {}'s approver list; this approval will not count",
            rec.email, a.env
        );
    }
    if a.break_glass {
        let exceptions: Vec<&String> = env
            .gates
            .freeze
            .iter()
            .flat_map(|f| &f.windows)
            .filter_map(|w| config.freeze.get(w.get_ref()))
            .flat_map(|w| w.exceptions.iter().map(|e| e.get_ref()))
            .collect();
        if !exceptions.contains(&&rec.email) {
            eprintln!(
                "note: {} is not an exception of {}'s freeze windows; this break-glass approval will not count",
                rec.email, a.env
            );
        }
    }
    Ok(exit::OK)
}
