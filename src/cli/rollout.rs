//! `stella rollout status|pause|resume|abort|promote ENV`: what an
//! environment's `router` and `nginx` targets serve, and an operator's
//! hand on a running canary. Each request goes through the engine as a
//! signed row in the store, whichever process runs the canary; the canary
//! enacts and seals it, and the command prints the capsule — or the
//! reason it was refused. A canary whose process died is taken over: its
//! step is where it stood, `resume` and `promote` walk it on here, `abort`
//! sends all traffic back to stable, `pause` holds it — each sealed.
//! `rollback` goes back to the release before, whatever is under way.

use clap::{Args, Subcommand};

use super::{Context, Failure, exit, load_config, print_json, unknown_environment};
use crate::config::Config;
use crate::domain::CanaryPhase;
use crate::engine::keys::Asker;
use crate::engine::lanes::{Progress, RolloutInfo, rollouts};

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Weights, per-slot requests, error rate and p95, the canary's step
    Status(StatusArgs),
    /// Hold a canary at its current weight until resumed
    Pause(EnvArg),
    /// Let a paused canary go on (with `pause = "manual"`: to its next step)
    Resume(EnvArg),
    /// Stop a canary: all traffic back to stable, the candidate retired
    Abort(EnvArg),
    /// Skip a canary's remaining steps: the candidate to 100 %
    Promote(EnvArg),
    /// End an A/B test: everything to the winner, the comparison sealed
    Consolidate(ConsolidateArgs),
    /// Back to the release before: a canary is aborted, an A/B test ends on
    /// a, otherwise the release kept warm (or the last known-good) returns
    Rollback(RollbackArgs),
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    pub env: String,
    /// Your key: it signs what you ask (without it: your operating-system account, unverified)
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    /// Why, for the record
    #[arg(long)]
    pub reason: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ConsolidateArgs {
    pub env: String,
    /// Your key: it signs what you ask (without it: your operating-system account, unverified)
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    /// `a`: the release that was stable; `b`: the new one
    #[arg(long, value_parser = ["a", "b"])]
    pub winner: String,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EnvArg {
    pub env: String,
    /// Your key: it signs what this command seals itself — an interrupted
    /// canary's abort or pick-up (without it: your operating-system account,
    /// unverified); a running canary seals its steps as its promotion's requester
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    /// Print what was sealed as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub env: String,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
    /// Redraw every second until interrupted (with --json: a line of JSON a second)
    #[arg(long)]
    pub watch: bool,
}

/// The environment's router targets.
fn router_targets(config: &Config, env: &str) -> Result<Vec<String>, Failure> {
    let e = config
        .environment(env)
        .ok_or_else(|| unknown_environment(env, config))?;
    let names: Vec<String> = e
        .targets
        .iter()
        .filter(|t| {
            config
                .targets
                .get(t.get_ref())
                .is_some_and(|t| t.kind().is_routed())
        })
        .map(|t| t.get_ref().clone())
        .collect();
    if names.is_empty() {
        return Err(Failure::usage(format!(
            "environment `{env}` has no `router` or `nginx` target; rollouts split traffic through one"
        )));
    }
    Ok(names)
}

pub fn run(ctx: &Context, cmd: RolloutCommand) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    if let RolloutCommand::Consolidate(a) = &cmd {
        router_targets(&config, &a.env)?;
        let winner = if a.winner == "b" {
            crate::domain::AbWinner::B
        } else {
            crate::domain::AbWinner::A
        };
        let req = crate::engine::ConsolidateRequest {
            env: a.env.clone(),
            winner,
            asker: Asker::from_key(a.key.clone()),
        };
        let lines = super::decide::drive(ws, &config, |h| h.consolidate(req), |_| {})?;
        if a.json {
            print_json(&serde_json::json!({ "env": a.env, "winner": a.winner, "targets": lines }))?;
        } else {
            for l in lines {
                println!("{l}");
            }
        }
        return Ok(exit::OK);
    }
    if let RolloutCommand::Rollback(a) = &cmd {
        return rollback(ctx, ws, &config, a);
    }
    use crate::domain::OperatorRequest;
    let (env, change, key, json) = match &cmd {
        RolloutCommand::Status(a) => (&a.env, None, None, a.json),
        RolloutCommand::Pause(a) => (&a.env, Some(OperatorRequest::Pause), a.key.clone(), a.json),
        RolloutCommand::Resume(a) => (&a.env, Some(OperatorRequest::Resume), a.key.clone(), a.json),
        RolloutCommand::Abort(a) => (&a.env, Some(OperatorRequest::Abort), a.key.clone(), a.json),
        RolloutCommand::Promote(a) => (
            &a.env,
            Some(OperatorRequest::PromoteNow),
            a.key.clone(),
            a.json,
        ),
        RolloutCommand::Consolidate(_) | RolloutCommand::Rollback(_) => {
            unreachable!("handled above")
        }
    };
    let targets = router_targets(&config, env)?;
    if let Some(request) = change {
        let req = crate::engine::RolloutRequest {
            env: env.clone(),
            request,
            asker: Asker::from_key(key),
        };
        let ack = super::decide::drive(ws, &config, |h| h.rollout(req), |_| {})?;
        if json {
            print_json(&serde_json::json!({
                "env": env, "target": ack.target, "request": request.to_string(),
                "request_id": ack.request_id, "capsule_id": ack.capsule_id, "capsule": ack.capsule_path,
                "taken_over": ack.taken_over,
            }))?;
            return Ok(exit::OK);
        }
        println!(
            "{}: {request} sealed{}{} (request #{})",
            ack.target,
            ack.capsule_path
                .as_ref()
                .map(|p| format!(" — capsule {}", p.display()))
                .unwrap_or_default(),
            if ack.taken_over {
                ", taken over from its dead process"
            } else {
                ""
            },
            ack.request_id
        );
        return Ok(exit::OK);
    }
    let RolloutCommand::Status(a) = cmd else {
        unreachable!("changes returned above")
    };
    if !a.watch {
        return status(&config, &targets, &a);
    }
    // Redrawn every second until interrupted; with --json, one line of
    // JSON per second.
    loop {
        if !a.json {
            print!("\x1b[2J\x1b[H");
        }
        status(&config, &targets, &a)?;
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// `rollout rollback ENV`: what "the release before" means depends on
/// what is under way — an abort, a consolidation on a, or a rollback
/// (through the engine) to the release the target keeps warm.
fn rollback(
    ctx: &Context,
    ws: &crate::workspace::Workspace,
    config: &Config,
    a: &RollbackArgs,
) -> Result<u8, Failure> {
    use crate::engine::rules::{self, RolloutRollback};
    let env = a.env.as_str();
    router_targets(config, env)?;
    let seen: Vec<RolloutInfo> = rollouts(config)
        .into_iter()
        .filter(|r| r.env == env)
        .collect();
    let store = ws.read_store()?;
    let now = chrono::Utc::now();
    // The rule the workbench's `r` follows, target by target: the first
    // that says what "the release before" is decides.
    let mut choice = RolloutRollback::Nothing;
    for r in &seen {
        let serving = rules::serving_app(
            r.progress.app.as_deref(),
            r.progress.digest.as_ref(),
            r.stable.as_ref(),
            |stable| {
                config
                    .apps
                    .keys()
                    .find(|app| {
                        store
                            .live_at(env, app, &now)
                            .ok()
                            .flatten()
                            .is_some_and(|l| &l.digest == stable)
                    })
                    .cloned()
            },
        );
        let warm = r.candidate.clone().filter(|_| r.weight == 0);
        choice = rules::rollout_rollback(r.progress.state, serving, warm);
        if choice != RolloutRollback::Nothing {
            break;
        }
    }
    drop(store);
    let (app, to) = match choice {
        RolloutRollback::AbortCanary => {
            return run(
                ctx,
                RolloutCommand::Abort(EnvArg {
                    env: env.to_owned(),
                    key: a.key.clone(),
                    json: a.json,
                }),
            );
        }
        RolloutRollback::EndAbTest => {
            return run(
                ctx,
                RolloutCommand::Consolidate(ConsolidateArgs {
                    env: env.to_owned(),
                    key: a.key.clone(),
                    winner: "a".into(),
                    json: a.json,
                }),
            );
        }
        RolloutRollback::Warm { app, to } => (app, Some(to)),
        RolloutRollback::Pick { app } => (app, None),
        RolloutRollback::Nothing => {
            return Err(Failure::usage(format!(
                "nothing stella deployed is live on {env}'s router targets; nothing to roll back"
            ))
            .hint(format!(
                "`stella rollout status {env}` shows what they serve"
            )));
        }
    };
    super::decide::rollback(
        ctx,
        super::decide::RollbackArgs {
            app,
            env: env.to_owned(),
            to: to.map(|d| d.to_string()),
            alone: false,
            reason: a.reason.clone(),
            key: a.key.clone(),
            dry_run: false,
            at: None,
            json: a.json,
        },
    )
}

/// What each target serves, its counters and its canary, once.
fn status(config: &Config, targets: &[String], a: &StatusArgs) -> Result<u8, Failure> {
    let mut out = Vec::new();
    let mut canaries = Vec::new();
    for r in rollouts(config)
        .into_iter()
        .filter(|r| r.env == a.env && targets.contains(&r.target))
    {
        let (stable, candidate) = &r.stats;
        out.push(serde_json::json!({
            "target": r.target,
            "running": r.running,
            "stable": r.stable,
            "candidate": r.candidate,
            "weight": r.weight,
            "warm_until": r.warm_until,
            "slots": {
                "stable": {"requests": stable.requests, "errors": stable.errors,
                           "error_rate": stable.error_rate(), "p95_ms": stable.p95_ms,
                           "recent": r.recent.0},
                "candidate": {"requests": candidate.requests, "errors": candidate.errors,
                              "error_rate": candidate.error_rate(), "p95_ms": candidate.p95_ms,
                              "recent": r.recent.1},
            },
            "recent_window_s": r.recent_window_s,
            "next": next_step(&r.progress),
            "canary": r.progress,
        }));
        canaries.push(r.progress);
    }
    if a.json && a.watch {
        println!("{}", serde_json::Value::from(out));
        return Ok(exit::OK);
    }
    if a.json {
        print_json(&out)?;
        return Ok(exit::OK);
    }
    for (v, p) in out.iter().zip(&canaries) {
        let running = p.state == Some(CanaryPhase::Running);
        println!(
            "{} — candidate weight {}%{}",
            v["target"].as_str().unwrap_or("?"),
            v["weight"],
            if v["running"] == true {
                ""
            } else {
                " (router not running)"
            }
        );
        for slot in ["stable", "candidate"] {
            let s = &v["slots"][slot];
            let now = match (&s["recent"], v["recent_window_s"].as_f64()) {
                (r, Some(w)) if r.is_object() => format!(
                    "{:.1} req/s, error rate {:.3}, p95 ≤ {} ms (last {w:.0} s); ",
                    r["rps"].as_f64().unwrap_or(0.0),
                    r["error_rate"].as_f64().unwrap_or(0.0),
                    r["p95_ms"]
                ),
                _ => String::new(),
            };
            println!(
                "  {slot:<9} {}  {now}{} requests in all, error rate {:.3}, p95 ≤ {} ms",
                v[slot].as_str().unwrap_or("-"),
                s["requests"],
                s["error_rate"].as_f64().unwrap_or(0.0),
                s["p95_ms"]
            );
        }
        let c = &v["canary"];
        if let Some(steps) = c["steps"].as_array().filter(|s| !s.is_empty()) {
            let marked: Vec<String> = steps
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    if Some(i as u64) == c["step"].as_u64() {
                        format!("[{w}]")
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            println!(
                "  canary {}: steps {}{}",
                c["state"].as_str().unwrap_or("?"),
                marked.join(" → "),
                if c["interrupted"] == true {
                    format!(
                        " — its promotion was interrupted; `stella rollout resume {0}` or `stella rollout abort {0}`",
                        a.env
                    )
                } else {
                    String::new()
                }
            );
            match &v["next"] {
                n if n["at"].is_string() => println!(
                    "  next: {}% at {} (in {})",
                    n["weight"],
                    n["at"].as_str().unwrap_or("?"),
                    n["in"].as_str().unwrap_or("?")
                ),
                n if n["weight"].is_u64() && p.manual && running => {
                    println!(
                        "  next: {}% when an operator resumes (`stella rollout resume {}`)",
                        n["weight"], a.env
                    )
                }
                n if n["weight"].is_u64() && running => {
                    println!("  next: {}% once this step's weight is live", n["weight"])
                }
                n if n["weight"].is_u64() => println!(
                    "  next: {}% once resumed (`stella rollout resume {}`)",
                    n["weight"], a.env
                ),
                _ => {}
            }
            for s in c["samples"].as_array().into_iter().flatten().rev().take(5) {
                println!("    {}", s.as_str().unwrap_or(""));
            }
        }
    }
    Ok(exit::OK)
}

/// The weight a canary under way moves to next, and when: `{"weight",
/// "at", "in"}`, without `at` while it waits for an operator; null when
/// no canary is under way.
fn next_step(p: &Progress) -> serde_json::Value {
    if !p.in_flight() {
        return serde_json::Value::Null;
    }
    let Some(weight) = p.steps.get(p.step + 1) else {
        return serde_json::Value::Null;
    };
    match p.next_at {
        Some(at) if p.state == Some(CanaryPhase::Running) && !p.interrupted => {
            let left = (at - chrono::Utc::now()).num_seconds().max(0);
            serde_json::json!({
                "weight": weight,
                "at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "in": crate::domain::duration::format_duration(std::time::Duration::from_secs(left as u64)),
            })
        }
        _ => serde_json::json!({ "weight": weight }),
    }
}
