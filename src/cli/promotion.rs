//! `stella promotion list|show`: decisions, their runs, steps and logs.

use chrono::SecondsFormat;
use clap::{Args, Subcommand};

use super::{Context, Failure, exit, print_json};
use crate::domain::Digest;

#[derive(Debug, Subcommand)]
pub enum PromotionCommand {
    /// List promotions and rollbacks, oldest first
    List(ListArgs),
    /// Show one promotion: its run, each step's state, duration and log
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this environment
    #[arg(long)]
    pub env: Option<String>,
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
    let ws = ctx.workspace()?;
    // Finding a run whose process died is part of looking at runs.
    let config = super::load_config(ctx, ws)?;
    for line in crate::engine::deploy::recover(ws, &config)? {
        eprintln!("note: {line}");
    }
    let store = ws.open_store()?;
    match cmd {
        PromotionCommand::List(a) => {
            let rows = store.promotions(a.env.as_deref())?;
            if a.json {
                print_json(&rows)?;
                return Ok(exit::OK);
            }
            if rows.is_empty() {
                eprintln!("no promotions yet");
                return Ok(exit::OK);
            }
            println!(
                "{:>5}  {:<12} {:<14} {:<19} {:<12} {:<16} CREATED",
                "ID", "ENV", "APP", "DIGEST", "STATE", "OUTCOME"
            );
            for r in rows {
                println!(
                    "{:>5}  {:<12} {:<14} {:<19} {:<12} {:<16} {}",
                    r.id,
                    r.environment,
                    r.app,
                    &r.digest[..r.digest.len().min(19)],
                    r.state.as_str(),
                    r.outcome.map_or("-", |o| o.as_str()),
                    r.created_at.to_rfc3339_opts(SecondsFormat::Secs, true)
                );
            }
            Ok(exit::OK)
        }
        PromotionCommand::Show(a) => {
            let Some(p) = store.promotions(None)?.into_iter().find(|p| p.id == a.id) else {
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
