//! `stella workflow check|show FILE`: validate a template before anything
//! runs, and draw its DAG as text.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{Context, Failure, exit, print_json};
use crate::workflow::validate::Action;
use crate::workflow::{Workflow, WorkflowError};

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Validate a template: cycles, unknown needs and builtins, parameters, substitutions
    Check(FileArgs),
    /// Show a template's DAG: layers of steps that may run in parallel, and the critical path
    Show(FileArgs),
}

#[derive(Debug, Args)]
pub struct FileArgs {
    pub file: PathBuf,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

fn load(ctx: &Context, file: &PathBuf) -> Result<Workflow, Failure> {
    let path = if file.is_absolute() {
        file.clone()
    } else {
        ctx.cwd.join(file)
    };
    Workflow::load(&path).map_err(|e| match e {
        WorkflowError::Invalid(mut problems) => {
            for (p, _) in &mut problems {
                if let Ok(rel) = p.strip_prefix(&ctx.cwd) {
                    *p = rel.to_path_buf();
                }
            }
            Failure::error(WorkflowError::Invalid(problems))
        }
        other => Failure::error(other),
    })
}

pub fn run(ctx: &Context, cmd: WorkflowCommand) -> Result<u8, Failure> {
    match cmd {
        WorkflowCommand::Check(a) => {
            let w = load(ctx, &a.file)?;
            if a.json {
                print_json(
                    &json!({"valid": true, "steps": w.steps.len(), "layers": w.layers, "critical_path": w.critical_path}),
                )?;
            } else {
                println!(
                    "{} is valid: {} steps in {} layers; critical path {}",
                    a.file.display(),
                    w.steps.len(),
                    w.layers.len(),
                    w.critical_path.join(" → ")
                );
            }
            Ok(exit::OK)
        }
        WorkflowCommand::Show(a) => {
            let w = load(ctx, &a.file)?;
            if a.json {
                print_json(&json!({"layers": w.layers, "critical_path": w.critical_path}))?;
                return Ok(exit::OK);
            }
            for (i, layer) in w.layers.iter().enumerate() {
                println!("layer {}", i + 1);
                for id in layer {
                    let s = w
                        .steps
                        .iter()
                        .find(|s| &s.id == id)
                        .expect("layers list steps");
                    let what = match &s.action {
                        Action::Builtin { name, .. } => format!("uses {name}"),
                        Action::Run { script, .. } => {
                            format!("run: {}", script.lines().next().unwrap_or(""))
                        }
                    };
                    let mark = if w.critical_path.contains(id) {
                        "*"
                    } else {
                        " "
                    };
                    let needs = if s.needs.is_empty() {
                        String::new()
                    } else {
                        format!("  ← {}", s.needs.join(", "))
                    };
                    println!("  {mark} {id:<20} {what}{needs}");
                }
            }
            println!("* critical path: {}", w.critical_path.join(" → "));
            Ok(exit::OK)
        }
    }
}
