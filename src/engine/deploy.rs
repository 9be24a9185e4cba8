//! Deploying a release to an environment's targets.

use crate::config::{Config, EnvironmentConfig, TargetKind};
use crate::deploy::dir::DirTarget;
use crate::domain::{Digest, Repository};

/// Deploys `digest` of `app` to every target of `env` (or only `only`).
/// `dir` targets are built; other kinds are refused by name. Returns a line
/// per target.
pub fn deploy_targets(
    config: &Config,
    env: &EnvironmentConfig,
    app: &str,
    digest: &Digest,
    only: Option<&str>,
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
        if target.kind != TargetKind::Dir {
            return Err(format!(
                "target `{name}` is of kind `{}`, which stella cannot deploy to yet; only `dir` targets deploy today",
                format!("{:?}", target.kind).to_lowercase()
            ));
        }
        let Repository::Layout(path) = &image.repository else {
            return Err(format!(
                "app `{app}` comes from a registry; deploying registry images is not built yet (an `oci-layout:` app deploys)"
            ));
        };
        let layout =
            crate::registry::Layout::open(&config.root.join(path)).map_err(|e| e.to_string())?;
        let dir = DirTarget::new(
            config.root.join(
                target
                    .path
                    .as_ref()
                    .map(|p| p.get_ref().as_str())
                    .unwrap_or("."),
            ),
        );
        let d = dir
            .deploy(&layout, digest)
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

/// What each `dir` target of `env` serves now: to put back if a later step
/// of the workflow fails.
pub fn snapshot(config: &Config, env: &EnvironmentConfig) -> Vec<(String, Option<Digest>)> {
    env.targets
        .iter()
        .filter_map(|t| {
            let target = config.targets.get(t.get_ref())?;
            (target.kind == TargetKind::Dir).then(|| {
                let dir = DirTarget::new(
                    config.root.join(
                        target
                            .path
                            .as_ref()
                            .map(|p| p.get_ref().as_str())
                            .unwrap_or("."),
                    ),
                );
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
        let dir = DirTarget::new(
            config.root.join(
                target
                    .path
                    .as_ref()
                    .map(|p| p.get_ref().as_str())
                    .unwrap_or("."),
            ),
        );
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
