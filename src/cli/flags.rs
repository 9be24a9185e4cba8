//! `stella flags set|list ENV`: an environment's feature flags, delivered
//! to its `router` and `nginx` targets and sealed on every change.

use clap::{Args, Subcommand};

use super::{Context, Failure, exit, load_config, print_json};

#[derive(Debug, Subcommand)]
pub enum FlagsCommand {
    /// Set flags: NAME=on, NAME=off or NAME=PCT% (a share of clients, each keeping its answer)
    Set(SetArgs),
    /// The environment's flags
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct SetArgs {
    pub env: String,
    /// NAME=on|off|PCT%, one or more
    #[arg(required = true, value_name = "NAME=VALUE")]
    pub flags: Vec<String>,
    /// Your key: it signs the change (without it: your operating-system account, unverified)
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    pub env: String,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, cmd: FlagsCommand) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    match cmd {
        FlagsCommand::Set(a) => {
            let changes = a
                .flags
                .iter()
                .map(|f| crate::engine::flags::parse_flag(f))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    Failure::usage(e)
                        .hint("e.g. `stella flags set prod new-checkout=on dark-mode=25%`")
                })?;
            let req = crate::engine::FlagsRequest {
                env: a.env.clone(),
                changes,
                asker: crate::engine::keys::Asker::from_key(a.key.clone()),
            };
            // The outcome's lines say what each target took.
            let done = super::decide::drive(ws, &config, |h| h.set_flags(req), |_| {})?;
            if a.json {
                print_json(&serde_json::json!({
                    "env": a.env,
                    "flags": done.flags,
                    "targets": done.lines,
                    "capsule_id": done.capsule_id,
                    "through_canary": done.through_canary,
                }))?;
            } else {
                for l in &done.lines {
                    println!("{l}");
                }
                if let Some(p) = done.through_canary {
                    println!(
                        "the canary of promotion #{p} holds {}: the flags were written through to the routes it serves",
                        a.env
                    );
                }
            }
            Ok(exit::OK)
        }
        FlagsCommand::List(a) => {
            if config.environment(&a.env).is_none() {
                return Err(super::unknown_environment(&a.env, &config));
            }
            let flags = crate::engine::flags::read_flags(ws.root(), &a.env);
            if a.json {
                print_json(&flags)?;
            } else if flags.is_empty() {
                println!(
                    "{} has no flags; `stella flags set {} NAME=on` sets one",
                    a.env, a.env
                );
            } else {
                for (n, v) in flags {
                    println!("{n} = {v}");
                }
            }
            Ok(exit::OK)
        }
    }
}
