//! Deploying a release to an environment's targets.

use crate::config::{Config, EnvironmentConfig, TargetKind};
use crate::deploy::dir::DirTarget;
use crate::domain::{Digest, Repository};

/// Deploys `digest` of `app` to every target of `env` (or only `only`).
/// `dir` and `script` targets are built; other kinds are refused by name.
/// `rollback` runs a script target's `rollback` hook instead of `deploy`.
/// Returns a line per target.
pub fn deploy_targets(
    config: &Config,
    env: &EnvironmentConfig,
    app: &str,
    digest: &Digest,
    only: Option<&str>,
    rollback: bool,
    fetched: Option<&dyn crate::deploy::unpack::BlobSource>,
) -> Result<Vec<String>, String> {
    let image = &config
        .apps
        .get(app)
        .ok_or_else(|| format!("no app `{app}`"))?
        .image;
    let mut done = Vec::new();
    for t in env
        .targets
        .iter()
        .filter(|t| only.is_none_or(|o| o == t.get_ref()))
    {
        let name = t.get_ref();
        let target = config
            .targets
            .get(name)
            .ok_or_else(|| format!("no target `{name}`"))?;
        if target.kind == TargetKind::Script {
            done.push(run_hooks(config, name, target, app, digest, rollback)?);
            continue;
        }
        if target.kind != TargetKind::Dir {
            return Err(format!(
                "target `{name}` is of kind `{}`, which stella cannot deploy to yet; `dir` and `script` targets deploy today",
                format!("{:?}", target.kind).to_lowercase()
            ));
        }
        let layout = match (&image.repository, fetched) {
            (Repository::Layout(path), None) => Some(
                crate::registry::Layout::open(&config.root.join(path))
                    .map_err(|e| e.to_string())?,
            ),
            _ => None,
        };
        let source: &dyn crate::deploy::unpack::BlobSource = match (fetched, &layout) {
            (Some(f), _) => f,
            (None, Some(l)) => l,
            (None, None) => {
                return Err(format!(
                    "app `{app}` comes from a registry and its image was not fetched"
                ));
            }
        };
        let dir = dir_target(config, target);
        let d = dir
            .deploy(source, digest)
            .map_err(|e| format!("target `{name}`: {e}"))?;
        let _ = dir.prune(target.keep.unwrap_or(5) as usize);
        done.push(format!(
            "{name}: {} → sha256:{}{}",
            d.previous
                .map_or("nothing".into(), |p| format!("sha256:{}", p.short())),
            d.digest.short(),
            if d.unpacked {
                format!(" ({} entries unpacked)", d.entries)
            } else {
                " (already unpacked)".into()
            }
        ));
    }
    if let Some(o) = only
        && done.is_empty()
    {
        return Err(format!("`{o}` is not a target of this environment"));
    }
    Ok(done)
}

/// A `dir` target's folder, relative to the workspace.
fn dir_target(config: &Config, target: &crate::config::TargetConfig) -> DirTarget {
    DirTarget::new(
        config
            .root
            .join(target.path.as_ref().map_or(".", |p| p.get_ref().as_str())),
    )
}

/// A `script` target: the user's `deploy` hook (or `rollback`, when rolling
/// back and one is set), then `health` if set, each `bash -c` from the
/// workspace root with the release in `STELLA_*` variables.
fn run_hooks(
    config: &Config,
    name: &str,
    target: &crate::config::TargetConfig,
    app: &str,
    digest: &Digest,
    rollback: bool,
) -> Result<String, String> {
    let hooks: Vec<(&str, &String)> = [
        if rollback && target.rollback.is_some() {
            target.rollback.as_ref().map(|c| ("rollback", c))
        } else {
            target.deploy.as_ref().map(|c| ("deploy", c))
        },
        target.health.as_ref().map(|c| ("health", c)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut log = String::new();
    for (hook, command) in hooks {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(command)
            .current_dir(&config.root)
            .env("STELLA_RELEASE_APP", app)
            .env("STELLA_RELEASE_DIGEST", digest.to_string())
            .env("STELLA_TARGET_NAME", name)
            .env(
                "STELLA_TARGET_PATH",
                target
                    .path
                    .as_ref()
                    .map(|p| p.get_ref().as_str())
                    .unwrap_or(""),
            )
            .env("STELLA_HOOK", hook)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("target `{name}`: cannot run its {hook} hook: {e}"))?;
        log.push_str(&String::from_utf8_lossy(&out.stdout));
        log.push_str(&String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            return Err(format!(
                "target `{name}`: the {hook} hook failed ({}): {}",
                out.status
                    .code()
                    .map_or("killed".into(), |c| format!("exit {c}")),
                log.trim_end()
            ));
        }
    }
    Ok(format!(
        "{name}: hooks ran for sha256:{}{}",
        digest.short(),
        if log.is_empty() {
            String::new()
        } else {
            format!("\n{}", log.trim_end())
        }
    ))
}

/// What each `dir` target of `env` serves now: to put back if a later step
/// of the workflow fails.
pub fn snapshot(config: &Config, env: &EnvironmentConfig) -> Vec<(String, Option<Digest>)> {
    env.targets
        .iter()
        .filter_map(|t| {
            let target = config.targets.get(t.get_ref())?;
            (target.kind == TargetKind::Dir).then(|| {
                let dir = dir_target(config, target);
                (t.get_ref().clone(), dir.current())
            })
        })
        .collect()
}

/// Switches every `dir` target back to what `snapshot` saw; returns a line
/// per target moved back.
pub fn restore(config: &Config, before: &[(String, Option<Digest>)]) -> Vec<String> {
    let mut lines = Vec::new();
    for (name, previous) in before {
        let Some(target) = config.targets.get(name) else {
            continue;
        };
        let dir = dir_target(config, target);
        if dir.current() == *previous {
            continue;
        }
        match previous {
            Some(d) => match dir.switch(d) {
                Ok(()) => lines.push(format!("{name}: back to sha256:{}", d.short())),
                Err(e) => lines.push(format!("{name}: could not switch back: {e}")),
            },
            None => {
                let _ = std::fs::remove_file(dir.current_link());
                lines.push(format!(
                    "{name}: nothing was serving before; current removed"
                ));
            }
        }
    }
    lines
}

/// After a crash: promotions whose process died are marked `interrupted`,
/// and each `dir` target of their environment is switched back to the
/// release the store holds live there (the interrupted decision was never
/// sealed, so its release never became live). Returns a line per change.
pub fn recover(
    ws: &crate::workspace::Workspace,
    config: &Config,
) -> Result<Vec<String>, crate::store::StoreError> {
    let mut store = ws.open_store()?;
    let interrupted = store.recover_interrupted()?;
    let mut lines = Vec::new();
    for id in interrupted {
        let Some(p) = store.promotions(None)?.into_iter().find(|p| p.id == id) else {
            continue;
        };
        lines.push(format!(
            "promotion #{id} ({} into {}) was interrupted",
            p.app, p.environment
        ));
        let Some(env) = config.environment(&p.environment) else {
            continue;
        };
        let live = store.live_at(&p.environment, &p.app, &chrono::Utc::now())?;
        let before: Vec<(String, Option<Digest>)> = env
            .targets
            .iter()
            .map(|t| (t.get_ref().clone(), live.as_ref().map(|l| l.digest.clone())))
            .collect();
        lines.extend(restore(config, &before));
    }
    Ok(lines)
}

/// For an app whose image lives in a registry, fetches every blob the
/// release needs (once, before any target changes); `None` for layouts.
pub async fn fetch_if_remote(
    config: &Config,
    app: &str,
    digest: &Digest,
) -> Result<Option<crate::deploy::unpack::MemoryBlobs>, String> {
    let a = config
        .apps
        .get(app)
        .ok_or_else(|| format!("no app `{app}`"))?;
    match &a.image.repository {
        Repository::Layout(_) => Ok(None),
        Repository::Remote {
            registry,
            repository,
        } => crate::registry::remote::fetch_image(registry, repository, digest, a.insecure)
            .await
            .map(|b| Some(crate::deploy::unpack::MemoryBlobs(b)))
            .map_err(|e| e.to_string()),
    }
}
