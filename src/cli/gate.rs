//! `stella gate check REF --env ENV [--at T]`: every configured gate, one
//! line each, then one explanation of what would unblock the release.
//! Seals nothing. Exit 0 allowed, 3 blocked.

use chrono::{DateTime, Local, SecondsFormat, Utc};
use clap::{Args, Subcommand};
use serde_json::json;

use super::release::{app_release, app_release_unrecorded};
use super::{Context, Failure, exit, load_config, parse_at, print_json, unknown_environment};
use crate::domain::{Decision, Outcome, Verdict};
pub use crate::engine::evaluate::{evaluate_release, what_if_requester};
use crate::gates;

#[derive(Debug, Subcommand)]
pub enum GateCommand {
    /// Evaluate every gate of an environment for a release, without
    /// deciding; or, with --all, every release waiting to come into each
    /// lane from upstream, what blocks it and when each blocker clears
    Check(CheckCommand),
}

#[derive(Debug, Args, Clone)]
pub struct CheckCommand {
    /// APP:TAG or APP@sha256:HEX (`APP` alone: what is live upstream of ENV)
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub reference: Option<String>,
    /// The environment to check against (with --all: only this lane)
    #[arg(long, required_unless_present = "all")]
    pub env: Option<String>,
    /// Every lane: each release live upstream and not here, with its
    /// blockers and when each clears (freeze end, soak end, missing
    /// approvers by name) and the next freeze start
    #[arg(long, conflicts_with = "break_glass")]
    pub all: bool,
    /// Evaluate at this clock (RFC 3339) instead of now: what-if, and replay
    #[arg(long)]
    pub at: Option<String>,
    /// Ask as this identity, for the what-if (four-eyes discards their own
    /// approval; with --all the default is a proven requester who is not an
    /// approver)
    #[arg(long = "as", value_name = "EMAIL", conflicts_with = "key")]
    pub requester: Option<String>,
    /// Ask as this key's owner (default: your operating-system account, unverified)
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    /// Break a freeze, with this reason (needs break-glass approvals)
    #[arg(long, value_name = "REASON")]
    pub break_glass: Option<String>,
    /// Print the decision as JSON (same inputs and --at → same bytes)
    #[arg(long)]
    pub json: bool,
}

/// One release's check, as `gate check REF --env ENV` and a promotion's
/// `--dry-run` ask it.
#[derive(Debug, Clone)]
pub struct CheckArgs {
    pub reference: String,
    pub env: String,
    pub at: Option<String>,
    pub requester: Option<String>,
    pub key: Option<String>,
    pub break_glass: Option<String>,
    pub json: bool,
}

pub fn run(ctx: &Context, cmd: GateCommand) -> Result<u8, Failure> {
    let GateCommand::Check(c) = cmd;
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    let now = parse_at(c.at.as_deref())?;
    if c.all {
        return super::waiting::print(ctx, &config, &c, now);
    }
    let (Some(reference), Some(env)) = (c.reference, c.env) else {
        return Err(Failure::usage("name a release and --env, or ask --all")
            .hint("`stella gate check APP:TAG --env ENV`, or `stella gate check --all`"));
    };
    let a = CheckArgs {
        reference,
        env,
        at: c.at,
        requester: c.requester,
        key: c.key,
        break_glass: c.break_glass,
        json: c.json,
    };
    check(ctx, &config, &a, now, None)
}

/// Evaluates every gate for `a` at `now` and prints it; `header`, for a
/// promotion's `--dry-run`, says what it is and that nothing is done.
/// Changes nothing: no decision, no capsule, no target touched.
pub fn check(
    ctx: &Context,
    config: &crate::config::Config,
    a: &CheckArgs,
    now: DateTime<Utc>,
    header: Option<&str>,
) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    if config.environment(&a.env).is_none() {
        return Err(unknown_environment(&a.env, config));
    }
    // A promotion's dry run writes nothing, not even the tag's resolution.
    let release = match header {
        Some(_) => app_release_unrecorded(ws, config, &a.reference, Some(&a.env), &now)?,
        None => app_release(ws, config, &a.reference, Some(&a.env), &now, a.json)?,
    };
    let requester = what_if_requester(ws, a.requester.clone(), a.key.clone())?;
    let (inputs, decision, verdicts) = evaluate_release(
        ws,
        config,
        &release,
        &a.env,
        requester.clone(),
        a.break_glass.clone(),
        now,
    )?;

    // A rollback's pin holds the release whatever the gates say; the check
    // says so, as the promotion would.
    let pin = ws.read_store()?.pin(&a.env, &release.app)?;
    let held = crate::engine::rules::held(decision, pin.as_ref());
    if a.json {
        let mut v = decision_json(held, &inputs.subject, &now, &verdicts);
        if let Some(p) = &pin {
            v["pin"] = serde_json::to_value(p).map_err(Failure::error)?;
        }
        if header.is_some() {
            v["dry_run"] = true.into();
            v["requested_by"] = requester.clone().into();
        }
        print_json(&v)?;
    } else {
        if let Some(h) = header {
            println!("{h}");
        }
        println!(
            "Checking {} ({}) for {} at {}",
            release.app,
            release.digest,
            a.env,
            now.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        print_verdicts(&verdicts);
        match &pin {
            Some(p) if decision == Decision::Allow => {
                println!();
                println!("The gates allow it, but a pin holds it:");
                print_pin(p);
            }
            Some(p) => {
                print_explanation(decision, &verdicts);
                print_pin(p);
            }
            None => print_explanation(decision, &verdicts),
        }
        if header.is_some() {
            println!(
                "Dry run as {requester}: {}; nothing was sealed, deployed or changed",
                if held == Decision::Allow {
                    "it would be promoted"
                } else {
                    "it would be blocked"
                }
            );
        }
    }
    Ok(match held {
        Decision::Allow => exit::OK,
        Decision::Deny => exit::BLOCKED,
    })
}

fn print_pin(p: &crate::store::Pin) {
    let e = crate::engine::pin::pinned_error(p);
    println!("  {:<9} {}", "pin", e.message);
    if let Some(h) = e.hint {
        println!("  {:<9} {h}", "");
    }
}

/// The `--json` contract: `{"decision", "app", "digest", "environment",
/// "evaluated_at", "gates": [...]}`.
pub fn decision_json(
    decision: Decision,
    subject: &gates::Subject,
    now: &DateTime<Utc>,
    verdicts: &[Verdict],
) -> serde_json::Value {
    json!({
        "decision": decision,
        "app": subject.app,
        "digest": subject.digest,
        "environment": subject.environment,
        "evaluated_at": now.to_rfc3339_opts(SecondsFormat::Secs, true),
        "gates": verdicts,
    })
}

const MAX_REASONS: usize = 6;

pub fn print_verdicts(verdicts: &[Verdict]) {
    for v in verdicts {
        println!("{}: {}", v.gate.title(), v.summary);
        if v.gate == crate::domain::GateKind::Approval {
            // Who signed, and every approval that did not count and why,
            // whether the gate passed or not.
            let signed: Vec<&str> = v.measured["approvers"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            if v.verdict != Outcome::Pass && !signed.is_empty() {
                println!("    signed by {}", signed.join(", "));
            }
            for r in &v.reasons {
                println!("    not counted: {r}");
            }
            continue;
        }
        if v.verdict == Outcome::Pass {
            continue;
        }
        for r in v.reasons.iter().take(MAX_REASONS) {
            println!("    {r}");
        }
        if v.reasons.len() > MAX_REASONS {
            println!("    … {} more (see --json)", v.reasons.len() - MAX_REASONS);
        }
    }
}

pub fn print_explanation(decision: Decision, verdicts: &[Verdict]) {
    if decision == Decision::Allow {
        println!("Allowed");
        return;
    }
    println!();
    println!("Blocked. What would unblock it:");
    for v in verdicts.iter().filter(|v| v.blocks()) {
        let mut lines = v.unblock.clone();
        if lines.is_empty() {
            lines.push("see the reasons above".into());
        }
        for (i, line) in lines.iter().enumerate() {
            let label = if i == 0 { v.gate.as_str() } else { "" };
            println!("  {label:<9} {line}");
        }
        if v.gate == crate::domain::GateKind::Freeze
            && let Some(windows) = v.measured["windows"].as_array()
        {
            for w in windows {
                if let Some(end) = w["ends"]
                    .as_str()
                    .and_then(|e| DateTime::parse_from_rfc3339(e).ok())
                {
                    println!(
                        "  {:<9} {} ends {} your time",
                        "",
                        w["name"].as_str().unwrap_or("?"),
                        end.with_timezone(&Local).format("%a %Y-%m-%d %H:%M %:z")
                    );
                }
            }
        }
    }
}
