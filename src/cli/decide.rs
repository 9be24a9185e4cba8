//! Decisions that are sealed: `stella release promote`, `stella release
//! rollback` and `stella release unpin`. The command starts the engine, hands it the request, and
//! prints the engine's events as they come. Each decides at the real clock
//! as whoever `--key` proves (or the account, unverified); `--dry-run`
//! (with `--at`, `--as`) shows what it would do and changes nothing.

use clap::Args;

use super::exit::ErrorReport;
use super::gate::{CheckArgs, decision_json, print_verdicts, what_if_requester};
use super::{Context, Failure, acting_clock, exit, load_config, print_json};
use crate::config::Config;
use crate::domain::{Decision, Digest, PromotionOutcome};
use crate::engine::keys::Asker;
use crate::engine::run::seconds;
use crate::engine::{
    EngineError, EngineEvent, EngineHandle, EventKind, Pending, PromoteRequest, RollbackRequest,
    UnpinRequest,
};
use crate::workflow::executor::StepState;
use crate::workspace::Workspace;

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// APP:TAG or APP@sha256:HEX (`APP` alone: what is live upstream of ENV)
    pub reference: String,
    /// More apps, each at a reference: a release set, promoted with the
    /// first as one decision — deployed all or none, one capsule
    #[arg(value_name = "REFERENCE")]
    pub also: Vec<String>,
    /// The environment to promote into
    #[arg(long)]
    pub to: String,
    /// Sign an approval with --key first (with four eyes it does not
    /// count: the same key asks)
    #[arg(long, requires = "key")]
    pub approve: bool,
    /// Your key: it signs the request, so the capsule records you as its
    /// owner (without it: your operating-system account, unverified, which
    /// four-eyes refuses)
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    /// What-if: evaluate, print what would happen, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: evaluate at this clock (RFC 3339) instead of now
    #[arg(long)]
    pub at: Option<String>,
    /// With --dry-run: ask as this identity (four-eyes discards their own approval)
    #[arg(
        long = "as",
        value_name = "EMAIL",
        requires = "dry_run",
        conflicts_with = "key"
    )]
    pub requester: Option<String>,
    /// Break a freeze, with this reason (needs break-glass approvals)
    #[arg(long, value_name = "REASON")]
    pub break_glass: Option<String>,
    /// Print the decision as JSON, with promotion_id, outcome and capsule
    #[arg(long)]
    pub json: bool,
    /// Workflow steps run at once (default: the number of cores)
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The app to roll back
    pub app: String,
    /// The environment to roll back
    #[arg(long)]
    pub env: String,
    /// The digest to return to (default: the last known-good one before the current)
    #[arg(long, value_name = "sha256:HEX")]
    pub to: Option<String>,
    /// Only this app, even if it went live with others as one release set
    /// (a set is otherwise rolled back whole)
    #[arg(long)]
    pub alone: bool,
    /// Why, for the record
    #[arg(long)]
    pub reason: Option<String>,
    /// Your key: it signs the request (without it: your operating-system
    /// account, unverified)
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    /// What-if: print what would be rolled back, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: as of this clock (RFC 3339) instead of now
    #[arg(long)]
    pub at: Option<String>,
    /// Print the outcome as JSON, with the capsule's path
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UnpinArgs {
    /// The app a rollback pinned
    pub app: String,
    /// The environment it is pinned in
    #[arg(long)]
    pub env: String,
    /// Why it may move again, for the record
    #[arg(long)]
    pub reason: Option<String>,
    /// Your key: it signs the request (without it: your operating-system
    /// account, unverified)
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    /// What-if: print what would be unpinned, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: as of this clock (RFC 3339); a pin holds until lifted, whatever the clock
    #[arg(long)]
    pub at: Option<String>,
    /// Print the outcome as JSON, with the capsule's path
    #[arg(long)]
    pub json: bool,
}

/// Runs one request through a fresh engine, handing each of its events to
/// `print` as it arrives, and returns the engine's answer.
pub(super) fn drive<T>(
    ws: &Workspace,
    config: &Config,
    start: impl FnOnce(&EngineHandle) -> Pending<T>,
    mut print: impl FnMut(&EngineEvent),
) -> Result<T, Failure> {
    super::runtime()?.block_on(async {
        let (handle, mut events) = crate::engine::spawn(ws.clone(), config.clone());
        let wait = start(&handle).wait();
        tokio::pin!(wait);
        let result = loop {
            tokio::select! {
                biased;
                Some(ev) = events.recv() => print(&ev),
                r = &mut wait => break r,
            }
        };
        // Everything the request sent came before its answer.
        while let Ok(ev) = events.try_recv() {
            print(&ev);
        }
        handle.shutdown().await;
        result.map_err(Failure::from)
    })
}

fn print_step(kind: &EventKind) {
    match kind {
        EventKind::StepStarted {
            step, attempt: 1, ..
        } => println!("  ▶ {step}"),
        EventKind::StepStarted { step, attempt, .. } => {
            println!("  ↻ {step} (attempt {attempt})")
        }
        EventKind::StepFinished {
            step,
            state,
            duration,
            error,
            ..
        } => match state {
            StepState::Succeeded => println!("  ✓ {step} ({})", seconds(*duration)),
            StepState::Skipped => println!("  – {step} skipped"),
            StepState::Failed => println!(
                "  ✗ {step} ({}): {}",
                seconds(*duration),
                error.clone().unwrap_or_default()
            ),
            other => println!("  ✗ {step}: {}", format!("{other:?}").to_lowercase()),
        },
        _ => {}
    }
}

/// Notes go to stderr, so `--json` keeps stdout clean; so do the
/// attachments of sealed decisions to their image.
pub(super) fn print_note(kind: &EventKind) {
    if let EventKind::Note(n) = kind {
        eprintln!("note: {n}");
    } else if let Some(line) = super::attest::attach_line(kind) {
        eprintln!("{line}");
    }
}

/// Names the command a failure happened in, for its `--json` error's
/// `where` (printed once, by `cli::finish`).
pub(super) fn json_error(
    _json: bool,
    place: String,
    r: Result<u8, Failure>,
) -> Result<u8, Failure> {
    r.map_err(|f| f.at(place))
}

/// The error a sealed outcome carries when the world did not end up as
/// asked: `failed` outcomes and `aborted`. `None` for the rest.
fn outcome_error(
    outcome: &PromotionOutcome,
    failure: Option<&str>,
    step: Option<&str>,
    place: String,
) -> Option<ErrorReport> {
    use crate::domain::PromotionOutcome as O;
    let o = Some(*outcome);
    if failure.is_none() && !o.is_some_and(|o| o.failed() || o == O::Aborted) {
        return None;
    }
    let what = failure.map(str::to_owned).unwrap_or_else(|| match o {
        Some(O::Aborted) => "aborted by an operator".to_owned(),
        Some(O::Interrupted) => "the process running it stopped".to_owned(),
        _ => format!("ended {outcome}"),
    });
    let hint = match o {
        Some(O::RollbackFailed) => {
            "the earlier release may not be back: check the targets with `stella status`, then roll back again"
        }
        Some(O::RolledBack) => {
            "the canary's analysis sent all traffic back to the previous release; `stella capsule show latest` has the measurements"
        }
        Some(O::Aborted) => "the previous release keeps serving; promote again when ready",
        Some(O::Interrupted) => {
            "the previous release was put back by recovery; promote again when ready"
        }
        _ => {
            "the previous release keeps serving; fix the cause (`stella capsule show latest` has the sealed reason) and promote again"
        }
    };
    Some(ErrorReport {
        what,
        place: match step {
            Some(step) => format!("step `{step}` of {place}"),
            None => place,
        },
        hint: Some(hint.to_owned()),
    })
}

/// The failed step a run reported, if any.
fn failed_step(kind: &EventKind, seen: &mut Option<String>) {
    if let EventKind::StepFinished {
        step,
        state: StepState::Failed,
        ..
    } = kind
        && seen.is_none()
    {
        *seen = Some(step.clone());
    }
}

pub fn promote(ctx: &Context, a: PromoteArgs) -> Result<u8, Failure> {
    let place = format!("release promote {} --to {}", a.reference, a.to);
    json_error(a.json, place, promote_inner(ctx, a))
}

fn promote_inner(ctx: &Context, a: PromoteArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    let clock = acting_clock(a.at.as_deref(), a.dry_run, "stella release promote")?;
    if config.environment(&a.to).is_none() {
        return Err(super::unknown_environment(&a.to, &config));
    }
    if a.dry_run {
        if a.approve {
            return Err(
                Failure::usage("--approve signs an approval; a dry run signs nothing")
                    .hint("`stella approve REF --env ENV --key NAME` signs one"),
            );
        }
        if !a.also.is_empty() {
            return Err(
                Failure::usage("a dry run checks one app; this names a release set")
                    .hint("`stella gate check REF --env ENV` each app: the set goes in only if every app may"),
            );
        }
        let now = clock.now();
        let header = format!(
            "Dry run: promoting {} to {} at {}",
            a.reference,
            a.to,
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let check = CheckArgs {
            reference: a.reference.clone(),
            env: a.to.clone(),
            at: None,
            requester: a.requester.clone(),
            key: a.key.clone(),
            break_glass: a.break_glass.clone(),
            json: a.json,
        };
        return super::gate::check(ctx, &config, &check, now, Some(&header));
    }
    let req = PromoteRequest {
        reference: a.reference.clone(),
        also: a.also.clone(),
        to: a.to.clone(),
        approve_with: a.approve.then(|| a.key.clone()).flatten(),
        asker: Asker::from_key(a.key.clone()),
        break_glass: a.break_glass.clone(),
        parallel: a
            .parallel
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        expect: None,
    };
    let json = a.json;
    let set = !a.also.is_empty();
    let mut step = None;
    let done = drive(
        ws,
        &config,
        |h| h.promote(req),
        |ev| {
            failed_step(&ev.kind, &mut step);
            if json {
                return print_note(&ev.kind);
            }
            match &ev.kind {
                EventKind::Resolved {
                    app,
                    digest,
                    environment,
                    ..
                } => println!("Promoting {app} ({digest}) to {environment}"),
                EventKind::Approved { signer, .. } => println!("Approved as {signer}"),
                EventKind::GatesEvaluated { verdicts, app, .. } => {
                    if set {
                        println!("{app}:");
                    }
                    print_verdicts(verdicts)
                }
                EventKind::PromotionCreated { targets, app, .. } if targets.is_empty() => {
                    if set {
                        println!("Running the workflow for {app}…")
                    } else {
                        println!("Running the workflow…")
                    }
                }
                EventKind::PromotionCreated { targets, app, .. } => {
                    if set {
                        println!("Deploying {app} to {}…", targets.join(", "))
                    } else {
                        println!("Deploying to {}…", targets.join(", "))
                    }
                }
                EventKind::TargetSwitched { detail, .. } => println!("    {detail}"),
                EventKind::RunFinished { ok: true, .. } => println!("Deployed"),
                EventKind::RunFinished {
                    ok: false, failure, ..
                } => println!(
                    "Deploy FAILED: {}",
                    failure.as_deref().unwrap_or("the workflow failed")
                ),
                EventKind::TargetsRestored { lines, .. } => {
                    for l in lines {
                        println!("  {l}");
                    }
                }
                other => {
                    print_note(other);
                    print_step(other);
                }
            }
        },
    )?;

    let error = outcome_error(
        &done.outcome,
        done.failure.as_deref(),
        step.as_deref(),
        format!(
            "promotion #{} of {} to {}",
            done.promotion_id, a.reference, a.to
        ),
    );
    if a.json {
        let mut v = decision_json(done.decision, &done.subject, &done.at, &done.verdicts);
        v["promotion_id"] = done.promotion_id.into();
        v["outcome"] = done.outcome.as_str().into();
        v["capsule"] = done.capsule.display().to_string().into();
        v["capsule_id"] = done.capsule_id.into();
        v["attachment"] = serde_json::to_value(&done.attachment).map_err(Failure::error)?;
        if !done.members.is_empty() {
            v["members"] = done
                .members
                .iter()
                .map(|m| decision_json(m.decision, &m.subject, &done.at, &m.verdicts))
                .collect::<Vec<_>>()
                .into();
        }
        if let Some(e) = &error {
            v["error"] = serde_json::to_value(e).map_err(Failure::error)?;
        }
        print_json(&v)?;
    } else {
        let id = done.promotion_id;
        match done.decision {
            Decision::Allow if done.outcome == PromotionOutcome::Aborted => {
                println!("Promotion #{id} aborted; the previous release keeps serving")
            }
            Decision::Allow if done.outcome == PromotionOutcome::RolledBack => {
                println!(
                    "Promotion #{id} allowed, but its canary's analysis rolled it back; the previous release keeps serving"
                )
            }
            Decision::Allow if done.failure.is_some() => {
                println!(
                    "Promotion #{id} allowed, but the deploy failed; the previous release keeps serving"
                )
            }
            Decision::Allow => println!("Live in {} (promotion #{id})", a.to),
            Decision::Deny => {
                if done.members.is_empty() {
                    super::gate::print_explanation(done.decision, &done.verdicts);
                } else {
                    // A set: what blocks each app that may not go in.
                    let first = (&done.subject, Decision::of(&done.verdicts), &done.verdicts);
                    let others = done
                        .members
                        .iter()
                        .map(|m| (&m.subject, m.decision, &m.verdicts));
                    for (subject, decision, verdicts) in std::iter::once(first).chain(others) {
                        if decision == Decision::Deny {
                            println!("{} is blocked:", subject.app);
                            super::gate::print_explanation(decision, verdicts);
                        }
                    }
                    println!("The release set goes in only if every app may; none was deployed");
                }
                println!("Not promoted (promotion #{id} blocked)");
            }
        }
        println!("Decision capsule exported: {}", done.capsule.display());
    }
    if let Some(e) = &error {
        e.eprint();
    }
    Ok(match done.decision {
        Decision::Allow if done.failure.is_some() => exit::ERROR,
        Decision::Allow => exit::OK,
        Decision::Deny => exit::BLOCKED,
    })
}

pub fn rollback(ctx: &Context, a: RollbackArgs) -> Result<u8, Failure> {
    let place = format!("release rollback {} --env {}", a.app, a.env);
    json_error(a.json, place, rollback_inner(ctx, a))
}

fn rollback_inner(ctx: &Context, a: RollbackArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    let clock = acting_clock(a.at.as_deref(), a.dry_run, "stella release rollback")?;
    if config.environment(&a.env).is_none() {
        return Err(super::unknown_environment(&a.env, &config));
    }
    let to =
        a.to.as_deref()
            .map(|t| t.parse::<Digest>().map_err(EngineError::usage))
            .transpose()?;
    if a.dry_run {
        if !config.apps.contains_key(&a.app) {
            return Err(crate::engine::resolve::unknown_app(&a.app, &config).into());
        }
        let now = clock.now();
        let store = ws.read_store()?;
        let (from, to) = crate::engine::rollback::plan(&store, &a.app, &a.env, to.as_ref(), now)?;
        let requested_by = what_if_requester(ws, None, a.key.clone())?;
        // A release set goes back whole unless --alone.
        let mut with = Vec::new();
        if !a.alone {
            for app in store.released_with(&a.env, &a.app, &now)? {
                let (f, t) = crate::engine::rollback::plan(&store, &app, &a.env, None, now)
                    .map_err(|e| {
                        e.hint(format!(
                            "{app} is in the release set; `--alone` rolls back only {}",
                            a.app
                        ))
                    })?;
                with.push(serde_json::json!({"app": app, "from": f, "digest": t}));
            }
        }
        if a.json {
            print_json(&serde_json::json!({
                "app": a.app, "environment": a.env, "digest": to, "from": from,
                "evaluated_at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "requested_by": requested_by, "dry_run": true, "members": with,
            }))?;
        } else {
            println!(
                "Dry run as {requested_by}: {} in {} would roll back {from} → {to}, and be pinned there",
                a.app, a.env
            );
            for m in &with {
                println!(
                    "  with {} (one release set): {} → {}",
                    m["app"].as_str().unwrap_or_default(),
                    m["from"].as_str().unwrap_or_default(),
                    m["digest"].as_str().unwrap_or_default()
                );
            }
            println!("Nothing was sealed, deployed or changed");
        }
        return Ok(exit::OK);
    }
    let req = RollbackRequest {
        app: a.app.clone(),
        env: a.env.clone(),
        to,
        reason: a.reason.clone(),
        asker: Asker::from_key(a.key.clone()),
        alone: a.alone,
    };
    let json = a.json;
    let mut step = None;
    let done = drive(
        ws,
        &config,
        |h| h.rollback(req),
        |ev| {
            failed_step(&ev.kind, &mut step);
            if json {
                return print_note(&ev.kind);
            }
            match &ev.kind {
                EventKind::TargetSwitched { detail, .. } => println!("  {detail}"),
                EventKind::RunFinished {
                    ok: false,
                    failure: Some(e),
                    ..
                } => println!("Rollback deploy FAILED: {e}"),
                other => print_note(other),
            }
        },
    )?;
    let error = outcome_error(
        &done.outcome,
        done.failure.as_deref(),
        step.as_deref(),
        format!(
            "rollback #{} of {} in {} to {}",
            done.promotion_id, a.app, a.env, done.to
        ),
    );
    if a.json {
        let mut v = serde_json::json!({
            "app": a.app, "environment": a.env, "digest": done.to, "from": done.from,
            "restores_capsule": done.restores_capsule, "pinned": done.failure.is_none(),
            "promotion_id": done.promotion_id, "outcome": done.outcome, "capsule": done.capsule,
            "capsule_id": done.capsule_id, "attachment": done.attachment,
        });
        if !done.members.is_empty() {
            v["members"] = serde_json::to_value(&done.members).map_err(Failure::error)?;
        }
        if let Some(e) = &error {
            v["error"] = serde_json::to_value(e).map_err(Failure::error)?;
        }
        print_json(&v)?;
    } else if error.is_some() {
        // Nothing was pinned: the lane is where the failure left it.
        println!(
            "Rollback of {} in {} FAILED: {} → {} did not complete ({})",
            a.app, a.env, done.from, done.to, done.outcome
        );
        println!("Decision capsule exported: {}", done.capsule.display());
    } else {
        println!(
            "Rolled back {} in {}: {} → {}",
            a.app, a.env, done.from, done.to
        );
        for m in &done.members {
            println!(
                "Rolled back {} in {} with it (one release set): {} → {}",
                m.app, a.env, m.from, m.to
            );
        }
        match (&done.restores_capsule_id, &done.restores_capsule) {
            (Some(id), Some(d)) => {
                println!("Restores the release promoted under capsule #{id} ({d})")
            }
            _ => println!(
                "note: {} was marked live outside stella; no promotion capsule to reference",
                done.to
            ),
        }
        println!(
            "Pinned: {} stays on {} in {} until `stella release unpin {} --env {}`",
            a.app,
            done.to.short(),
            a.env,
            a.app,
            a.env
        );
        for m in &done.members {
            println!(
                "Pinned: {} stays on {} in {} until `stella release unpin {} --env {}`",
                m.app,
                m.to.short(),
                a.env,
                m.app,
                a.env
            );
        }
        println!("Decision capsule exported: {}", done.capsule.display());
    }
    if let Some(e) = &error {
        e.eprint();
    }
    Ok(if done.failure.is_some() {
        exit::ERROR
    } else {
        exit::OK
    })
}

pub fn unpin(ctx: &Context, a: UnpinArgs) -> Result<u8, Failure> {
    let place = format!("release unpin {} --env {}", a.app, a.env);
    json_error(a.json, place, unpin_inner(ctx, a))
}

fn unpin_inner(ctx: &Context, a: UnpinArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    let clock = acting_clock(a.at.as_deref(), a.dry_run, "stella release unpin")?;
    if config.environment(&a.env).is_none() {
        return Err(super::unknown_environment(&a.env, &config));
    }
    if !config.apps.contains_key(&a.app) {
        return Err(crate::engine::resolve::unknown_app(&a.app, &config).into());
    }
    if a.dry_run {
        let requested_by = what_if_requester(ws, None, a.key.clone())?;
        let pin = ws.read_store()?.pin(&a.env, &a.app)?;
        if a.json {
            print_json(&serde_json::json!({
                "app": a.app, "environment": a.env, "pin": pin,
                "evaluated_at": clock.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "requested_by": requested_by, "dry_run": true,
            }))?;
        } else {
            match &pin {
                Some(p) => println!(
                    "Dry run as {requested_by}: would lift the pin of {} in {} on {} (rollback capsule #{})",
                    a.app, a.env, p.digest, p.capsule_id
                ),
                None => println!(
                    "Dry run: {} is not pinned in {}; nothing to unpin",
                    a.app, a.env
                ),
            }
            println!("Nothing was sealed or changed");
        }
        return Ok(exit::OK);
    }
    // Nothing holds the lane: what was asked is already so, and there is
    // no decision to seal.
    if ws.read_store()?.pin(&a.env, &a.app)?.is_none() {
        if a.json {
            print_json(&serde_json::json!({
                "app": a.app, "environment": a.env, "pin": null, "changed": false,
            }))?;
        } else {
            println!(
                "{} is not pinned in {}: nothing to unpin, nothing sealed",
                a.app, a.env
            );
            println!("Only a rollback pins a lane; `stella release pins` lists the pins");
        }
        return Ok(exit::OK);
    }
    let req = UnpinRequest {
        app: a.app.clone(),
        env: a.env.clone(),
        reason: a.reason.clone(),
        asker: Asker::from_key(a.key.clone()),
    };
    let done = drive(ws, &config, |h| h.unpin(req), |ev| print_note(&ev.kind))?;
    if a.json {
        print_json(&serde_json::json!({
            "app": a.app, "environment": a.env, "digest": done.pin.digest,
            "pinned_by_capsule": done.pin.capsule_id,
            "promotion_id": done.sealed.promotion_id, "capsule_id": done.sealed.capsule_id,
            "outcome": PromotionOutcome::Unpinned, "capsule": done.sealed.path,
        }))?;
    } else {
        println!(
            "Unpinned {} in {} (it stays on {} until the next promotion)",
            a.app, a.env, done.pin.digest
        );
        println!(
            "Lifts the pin of the rollback in capsule #{}",
            done.pin.capsule_id
        );
        println!("Decision capsule exported: {}", done.sealed.path.display());
    }
    Ok(exit::OK)
}
