//! `stella router serve|stop|status TARGET`: the controller of a `router`
//! or `nginx` target (`deploy::controller`, through `engine::router`).
//! Promotions start it when needed; it runs until stopped or until its
//! workspace is gone, serving what the target's routes file says.

use clap::{Args, Subcommand};

use super::{Context, Failure, exit, load_config, print_json};
use crate::engine::router::{Slot, status};

use super::decide::drive;

#[derive(Debug, Subcommand)]
pub enum RouterCommand {
    /// Run the router of a `router` or `nginx` target (promotions start it for you)
    Serve(TargetArg),
    /// Stop a target's router
    Stop(TargetArg),
    /// What a target's router serves, and each release's counters
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct TargetArg {
    /// A target of kind `router` or `nginx` in stella.toml
    pub target: String,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub target: String,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, cmd: RouterCommand) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    match cmd {
        RouterCommand::Serve(a) => {
            drive(ws, &config, |h| h.router_serve(&a.target), |_| {})?;
            Ok(exit::OK)
        }
        RouterCommand::Stop(a) => {
            let name = &a.target;
            match drive(ws, &config, |h| h.router_stop(name), |_| {})? {
                Some(pid) => println!("stopped the router of `{name}` (pid {pid})"),
                None => println!("the router of `{name}` is not running"),
            }
            Ok(exit::OK)
        }
        RouterCommand::Status(a) => {
            let s = status(&config, &a.target)?;
            if a.json {
                print_json(&serde_json::json!({
                    "target": s.target, "running": s.pid.is_some(), "pid": s.pid,
                    "routes": s.routes, "counters": s.counters,
                }))?;
                return Ok(exit::OK);
            }
            println!(
                "router `{}` on {}: {}",
                s.target,
                s.listen.map_or("?".into(), |l| l.to_string()),
                s.pid
                    .map_or("not running".into(), |p| format!("running (pid {p})"))
            );
            for (name, slot, held) in [
                ("stable", Slot::Stable, &s.routes.stable),
                ("candidate", Slot::Candidate, &s.routes.candidate),
            ] {
                let c = s.slot(slot);
                println!(
                    "  {name:<9} {}  {} requests, {} errors, p95 ≤ {} ms",
                    held.as_ref().map_or("-".into(), |h| h.digest.to_string()),
                    c.requests,
                    c.errors,
                    c.p95_ms
                );
            }
            println!(
                "  candidate weight {}%, routes version {}",
                s.routes.weight, s.routes.version
            );
            Ok(exit::OK)
        }
    }
}
