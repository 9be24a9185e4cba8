//! `stella config check`: load and validate `stella.toml`; `stella config
//! schema`: its JSON Schema, for editors.

use clap::{Args, Subcommand};
use serde_json::json;

use super::{Context, Failure, exit, load_config, print_json};
use crate::config::{Config, ConfigError};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate stella.toml: every problem with FILE:LINE:COL and what was expected
    Check(CheckArgs),
    /// Print the JSON Schema of stella.toml, for editors (see docs/shell.md)
    Schema,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print {"valid", "path", "problems": [{"line", "col", "message"}]}
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, cmd: ConfigCommand) -> Result<u8, Failure> {
    let args = match cmd {
        ConfigCommand::Check(args) => args,
        // Needs no workspace: the schema is the types', not a file's.
        ConfigCommand::Schema => {
            print_json(&crate::config::model::json_schema())?;
            return Ok(exit::OK);
        }
    };
    let ws = ctx.workspace()?;
    let path = ws.config_path();
    match (load_config(ctx, ws), args.json) {
        (Ok(config), json) => {
            let problems = policy_problems(&config);
            if json {
                let list: Vec<_> = problems.iter().map(|m| json!({"message": m})).collect();
                print_json(&json!({"valid": problems.is_empty(), "path": path, "problems": list}))?;
            } else if problems.is_empty() {
                println!("{} is valid: {}", path.display(), summary(&config));
            } else {
                for p in &problems {
                    eprintln!("error: {p}");
                }
            }
            Ok(if problems.is_empty() {
                exit::OK
            } else {
                exit::ERROR
            })
        }
        (Err(ConfigError::Invalid { path, problems }), true) => {
            let problems: Vec<_> = problems
                .iter()
                .map(|p| json!({"line": p.line, "col": p.col, "message": p.message}))
                .collect();
            print_json(&json!({"valid": false, "path": path, "problems": problems}))?;
            Ok(exit::ERROR)
        }
        (Err(e), _) => Err(Failure::from(e)),
    }
}

/// Compiles every policy module and validates every workflow template the
/// environments use: an error is reported here, as `FILE:LINE:COL:
/// message`, not first at a promotion.
fn policy_problems(c: &Config) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    for (_, env) in &c.environments {
        for m in env.gates.policy.iter().flat_map(|p| &p.modules) {
            let path = m.get_ref();
            if !seen.insert(path.clone()) {
                continue;
            }
            let module = match std::fs::read_to_string(c.root.join(path)) {
                Ok(source) => crate::gates::PolicyModule {
                    path: path.clone(),
                    source,
                },
                Err(e) => {
                    problems.push(format!("{path}: {e}"));
                    continue;
                }
            };
            if let Err(e) = crate::gates::policy::engine(&[module], 0) {
                problems.extend(e.lines().map(String::from));
            }
        }
        if let Some(w) = &env.workflow
            && seen.insert(w.get_ref().clone())
            && let Err(e) = crate::workflow::Workflow::load(&c.root.join(w.get_ref()))
        {
            let text = e.to_string();
            let root = format!("{}/", c.root.display());
            problems.extend(text.lines().map(|l| l.replace(&root, "")));
        }
    }
    problems
}

fn summary(c: &Config) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let linear = c
        .environments
        .windows(2)
        .all(|w| w[1].1.from.as_ref().map(|f| f.get_ref()) == Some(&w[0].0));
    let names: Vec<&str> = c.environments.iter().map(|(n, _)| n.as_str()).collect();
    let lanes = if names.is_empty() {
        String::new()
    } else {
        format!(" ({})", names.join(if linear { " → " } else { ", " }))
    };
    format!(
        "workspace `{}`, {}, {}{lanes}, {}, {}",
        c.name,
        plural(c.apps.len(), "app"),
        plural(c.environments.len(), "environment"),
        plural(c.targets.len(), "target"),
        plural(c.freeze.len(), "freeze window"),
    )
}
