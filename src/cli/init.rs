//! `stella init [DIR]`: a commented starter workspace.

use std::fs;
use std::path::{Path, PathBuf};

use clap::Args;

use super::{Context, Failure, exit};
use crate::config::{CONFIG_FILE, Config};
use crate::workspace::Workspace;

const STARTER_CONFIG: &str = include_str!("../../assets/init/stella.toml");
const STARTER_POLICY: &str = include_str!("../../assets/init/policies/staging.rego");
const STARTER_WORKFLOW: &str = include_str!("../../assets/init/workflows/standard.toml");

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to create the workspace (default: the current folder)
    pub dir: Option<PathBuf>,
    /// The workspace name (default: the folder's name)
    #[arg(long)]
    pub name: Option<String>,
    /// Overwrite an existing stella.toml, starter policy and example workflow (the store is kept)
    #[arg(long)]
    pub force: bool,
}

pub fn run(ctx: &Context, args: InitArgs) -> Result<u8, Failure> {
    let dir = match &args.dir {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => ctx.cwd.join(d),
        None => ctx.cwd.clone(),
    };
    let config_path = dir.join(CONFIG_FILE);
    if config_path.exists() && !args.force {
        return Err(Failure::error(format!(
            "{} already exists; not overwriting it",
            config_path.display()
        ))
        .hint("pass --force to overwrite stella.toml, the starter policy and the example workflow (the store is kept)"));
    }
    let name = args.name.clone().unwrap_or_else(|| default_name(&dir));
    if name.trim().is_empty() || name.contains(['"', '\\', '\n']) {
        return Err(
            Failure::usage(format!("`{name}` cannot be a workspace name"))
                .hint("use letters, digits and dashes, e.g. --name acme"),
        );
    }

    let write = |rel: &str, body: &str| -> Result<(), Failure> {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, body)
            .map_err(|e| Failure::error(format!("cannot write {}: {e}", path.display())))
    };
    write(CONFIG_FILE, &STARTER_CONFIG.replace("{{name}}", &name))?;
    // A policy or workflow of the same name that is already there is the
    // user's: kept, unless --force.
    let mut kept = Vec::new();
    for (rel, body) in [
        ("policies/staging.rego", STARTER_POLICY),
        ("workflows/standard.toml", STARTER_WORKFLOW),
    ] {
        if dir.join(rel).exists() && !args.force {
            kept.push(rel);
        } else {
            write(rel, body)?;
        }
    }
    if !dir.join(".gitignore").exists() {
        write(
            ".gitignore",
            "# stella's local state: the store, evidence, private keys, logs\n.stella/\n",
        )?;
    }

    let ws = Workspace::at(dir.clone());
    ws.ensure_state_dirs()?;
    // What `init` writes must pass `config check`.
    let config = Config::load(&config_path)?;
    // The sealing key, made through the engine like every other change.
    super::decide::drive(&ws, &config, |h| h.sealing_key(), |_| {})?;

    println!("Created workspace `{name}` in {}", dir.display());
    for line in [
        "  stella.toml              apps, lanes dev → staging → prod, gates, freeze windows, targets",
        "  policies/staging.rego    a custom policy gate",
        "  workflows/standard.toml  an example workflow (resolve, a gate and a smoke test, deploy);",
        "                           no lane runs it until you set `workflow = \"workflows/standard.toml\"`",
        "  .stella/                 the store, evidence, keys and logs (git-ignored);",
        "                           keys/workspace.key seals decision capsules",
    ] {
        println!("{line}");
    }
    if !kept.is_empty() {
        println!(
            "Kept the {} already there (--force overwrites)",
            kept.join(" and ")
        );
    }
    println!("Next: edit stella.toml, then `stella config check`");
    Ok(exit::OK)
}

fn default_name(dir: &Path) -> String {
    let base = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if cleaned.trim_matches('-').is_empty() {
        "workspace".into()
    } else {
        cleaned
    }
}
