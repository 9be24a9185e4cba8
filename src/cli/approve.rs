//! `stella approve REF --env ENV --key NAME`: sign an approval bound to one
//! app, digest and environment, and attach it to the digest as evidence.

use clap::Args;

use super::release::app_release;
use super::{Context, Failure, exit, load_config, print_json, unknown_environment};
use crate::domain::approval::Purpose;
use crate::engine::approve::{ApproveRequest, Approved};

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
    /// Refused: an approval is signed at the real clock
    #[arg(long, hide = true)]
    pub at: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, a: ApproveArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    if a.at.is_some() {
        return Err(Failure::usage(
            "an approval is signed at the real clock; --at is for what-ifs",
        )
        .hint("`stella gate check REF --env ENV --at T` shows what the gates would say then"));
    }
    let at = crate::domain::Clock::Real.now();
    let Some(env) = config.environment(&a.env) else {
        return Err(unknown_environment(&a.env, &config));
    };
    let release = app_release(ws, &config, &a.reference, Some(&a.env), &at, a.json)?;
    let purpose = if a.break_glass {
        Purpose::BreakGlass
    } else {
        Purpose::Promote
    };
    let req = ApproveRequest {
        app: release.app.clone(),
        digest: release.digest.clone(),
        env: a.env.clone(),
        key: Some(a.key.clone()),
        comment: a.comment.clone(),
        purpose,
    };
    let Approved {
        signer,
        evidence: record,
        statement,
    } = super::decide::drive(ws, &config, |h| h.approve(req), |_| {})?;

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
        signer,
        if a.break_glass { ", break-glass" } else { "" },
        record.digest
    );
    if !a.break_glass
        && let Some(g) = &env.gates.approval
        && !g.get_ref().approvers.iter().any(|s| *s.get_ref() == signer)
    {
        eprintln!(
            "note: {} is not on {}'s approver list; this approval will not count",
            signer, a.env
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
        if !exceptions.contains(&&signer) {
            eprintln!(
                "note: {} is not an exception of {}'s freeze windows; this break-glass approval will not count",
                signer, a.env
            );
        }
    }
    Ok(exit::OK)
}
