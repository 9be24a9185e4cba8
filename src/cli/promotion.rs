//! `stella promotion list|show`: decisions, their runs, steps and logs —
//! read through a read-only store, changing nothing; `stella promotion
//! pause|resume|abort ID`: an operator's hand on a run from any process;
//! `stella recover`: what dead processes left, put back under their locks.

use std::io::Write as _;

use chrono::SecondsFormat;
use clap::{Args, Subcommand};

use super::{Context, Failure, exit, print_json};
use crate::domain::{Digest, OperatorRequest};
use crate::engine::keys::Asker;
use crate::engine::{EventKind, SteerRequest};

#[derive(Debug, Subcommand)]
pub enum PromotionCommand {
    /// List promotions and rollbacks, oldest first
    List(ListArgs),
    /// Show one promotion: its run, each step's state, duration and log
    Show(ShowArgs),
    /// Hold a running promotion's next steps (running ones finish), from any process
    Pause(SteerArgs),
    /// Release a paused promotion's steps, from any process
    Resume(SteerArgs),
    /// Stop a running promotion: steps killed, the previous release put back, the abort sealed; takes over a run whose process died
    Abort(SteerArgs),
}

/// The subcommands that only read.
enum Read {
    List(ListArgs),
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct SteerArgs {
    /// The promotion (`stella promotion list`)
    pub id: i64,
    /// Your key: it signs the request (without it: your operating-system account, unverified)
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    /// Print the answer as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// Print what was done as JSON
    #[arg(long)]
    pub json: bool,
}

/// `stella recover`: every promotion whose process died is taken over
/// under its environment's lock, its targets put back to what is live,
/// and marked `interrupted`. Commands that act do this before they act.
pub fn recover(ctx: &Context, a: RecoverArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = super::load_config(ctx, ws)?;
    let lines = super::decide::drive(ws, &config, |h| h.recover(), |_| {})?;
    if a.json {
        print_json(&lines)?;
    } else if lines.is_empty() {
        println!("Nothing to recover: no promotion's process has died");
    } else {
        for l in &lines {
            println!("{l}");
        }
    }
    Ok(exit::OK)
}

fn steer(ctx: &Context, a: SteerArgs, request: OperatorRequest) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = super::load_config(ctx, ws)?;
    let req = SteerRequest {
        promotion_id: a.id,
        request,
        asker: Asker::from_key(a.key),
    };
    let got = super::decide::drive(
        ws,
        &config,
        |h| h.steer(req),
        |ev| {
            if let EventKind::Note(n) = &ev.kind {
                eprintln!("note: {n}");
            }
        },
    )?;
    if a.json {
        print_json(&serde_json::json!({
            "promotion_id": a.id,
            "request": request,
            "request_id": got.request_id,
            "capsule_id": got.capsule_id,
            "taken_over": got.taken_over,
            "lines": got.lines,
        }))?;
        return Ok(exit::OK);
    }
    let done = match request {
        OperatorRequest::Pause => "Paused",
        OperatorRequest::Resume => "Resumed",
        _ => "Aborted",
    };
    let by = if got.taken_over {
        " (taken over: its process had died)"
    } else {
        ""
    };
    let capsule = got
        .capsule_id
        .map(|c| format!("; capsule #{c}"))
        .unwrap_or_default();
    println!("{done} promotion #{}{by}{capsule}", a.id);
    for l in &got.lines {
        println!("  {l}");
    }
    Ok(exit::OK)
}

/// Promotions whose process is gone, said once: reading changes nothing.
fn note_dead(store: &crate::store::Store) -> Result<(), Failure> {
    for l in store.dead_locks()? {
        eprintln!(
            "note: promotion #{} in {} was interrupted: its process (pid {}) is gone; `stella recover` puts the previous release back",
            l.promotion_id, l.environment, l.pid
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this environment
    #[arg(long)]
    pub env: Option<String>,
    /// Only promotions created at or after this date (YYYY-MM-DD) or time
    /// (RFC 3339)
    #[arg(long)]
    pub since: Option<String>,
    /// Only promotions after this id: the next page after the last one shown
    #[arg(long, value_name = "ID")]
    pub after: Option<i64>,
    /// At most this many, oldest first; page on with --after
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    pub id: i64,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, cmd: PromotionCommand) -> Result<u8, Failure> {
    let cmd = match cmd {
        PromotionCommand::Pause(a) => return steer(ctx, a, OperatorRequest::Pause),
        PromotionCommand::Resume(a) => return steer(ctx, a, OperatorRequest::Resume),
        PromotionCommand::Abort(a) => return steer(ctx, a, OperatorRequest::Abort),
        PromotionCommand::List(a) => Read::List(a),
        PromotionCommand::Show(a) => Read::Show(a),
    };
    let ws = ctx.workspace()?;
    // Reading runs changes nothing: a run whose process died is named,
    // and `stella recover` (or the next command that acts) recovers it.
    let store = ws.read_store()?;
    note_dead(&store)?;
    match cmd {
        Read::List(a) => {
            let filter = crate::store::PromotionFilter {
                environment: a.env,
                since: a
                    .since
                    .as_deref()
                    .map(|s| super::audit::date(s, "--since"))
                    .transpose()?,
                after: a.after,
                limit: a.limit,
            };
            // Streamed: one row at a time, whatever the store's size.
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut count = 0usize;
            store.for_each_promotion(&filter, |r| -> Result<(), Failure> {
                if a.json {
                    let v = serde_json::to_string(&r).map_err(Failure::error)?;
                    writeln!(out, "{}{v}", if count == 0 { "[" } else { "," })?;
                } else {
                    if count == 0 {
                        writeln!(
                            out,
                            "{:>5}  {:<12} {:<14} {:<19} {:<12} {:<16} CREATED",
                            "ID", "ENV", "APP", "DIGEST", "STATE", "OUTCOME"
                        )?;
                    }
                    writeln!(
                        out,
                        "{:>5}  {:<12} {:<14} {:<19} {:<12} {:<16} {}",
                        r.id,
                        r.environment,
                        r.app,
                        &r.digest[..r.digest.len().min(19)],
                        r.state.as_str(),
                        r.outcome.map_or("-", |o| o.as_str()),
                        r.created_at.to_rfc3339_opts(SecondsFormat::Secs, true)
                    )?;
                }
                count += 1;
                Ok(())
            })?;
            if a.json {
                writeln!(out, "{}", if count == 0 { "[]" } else { "]" })?;
            } else if count == 0 {
                eprintln!("no promotions match");
            }
            out.flush()?;
            Ok(exit::OK)
        }
        Read::Show(a) => {
            let Some(p) = store.promotion(a.id)? else {
                return Err(Failure::error(format!("no promotion #{}", a.id))
                    .hint("`stella promotion list` shows them"));
            };
            let steps = match p.run_id {
                Some(r) => store.steps(r)?,
                None => Vec::new(),
            };
            let cas = ws.evidence();
            let log = |d: &Option<String>| -> String {
                d.as_deref()
                    .and_then(|d| d.parse::<Digest>().ok())
                    .and_then(|d| cas.get(&d).ok())
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            };
            if a.json {
                let steps: Vec<_> = steps
                    .iter()
                    .map(|s| serde_json::json!({"step": s.step, "state": s.state, "attempt": s.attempt, "started_at": s.started_at, "finished_at": s.finished_at, "log": log(&s.log_digest)}))
                    .collect();
                print_json(&serde_json::json!({"promotion": p, "steps": steps}))?;
                return Ok(exit::OK);
            }
            println!(
                "Promotion #{} — {} {} into {}: {}{}",
                p.id,
                p.app,
                p.digest,
                p.environment,
                p.state,
                p.outcome
                    .as_ref()
                    .map(|o| format!(" ({o})"))
                    .unwrap_or_default()
            );
            println!(
                "  requested by {}, {}",
                p.requested_by,
                p.created_at.to_rfc3339_opts(SecondsFormat::Secs, true)
            );
            match p.run_id {
                None => println!("  no workflow run (nothing to deploy, or blocked by a gate)"),
                Some(r) => println!("  run #{r}: {}", p.run_state.map_or("?", |s| s.as_str())),
            }
            for s in &steps {
                let took = match (s.started_at, s.finished_at) {
                    (Some(a), Some(b)) => {
                        format!(" {:.1}s", (b - a).num_milliseconds() as f64 / 1000.0)
                    }
                    _ => String::new(),
                };
                let attempt = if s.attempt > 1 {
                    format!(" (attempt {})", s.attempt)
                } else {
                    String::new()
                };
                println!("  {:<11} {}{attempt}{took}", s.state.as_str(), s.step);
                for line in log(&s.log_digest).lines() {
                    println!("      │ {line}");
                }
            }
            Ok(exit::OK)
        }
    }
}
