//! Deploying a release to an environment's targets.

use crate::config::{Config, Environment, Target};
use crate::deploy::dir::DirTarget;
use crate::domain::{Digest, Repository};

use super::seal::StepSealer;

/// How a deploy runs: which targets, as a rollback or not, from blobs
/// already fetched, and who seals a canary's steps.
#[derive(Default, Clone, Copy)]
pub struct DeployOptions<'a> {
    /// Only this target of the environment.
    pub only: Option<&'a str>,
    /// Run a script target's `rollback` hook instead of `deploy`.
    pub rollback: bool,
    /// The image's blobs, fetched from its registry (`None`: its layout).
    pub fetched: Option<&'a (dyn crate::deploy::unpack::BlobSource + Sync)>,
    /// Seals each canary step and operator action (`None`: not sealed,
    /// e.g. a rollback, which is sealed whole).
    pub steps: Option<&'a StepSealer>,
}

/// Deploys `digest` of `app` to every target of `env` (or only
/// `opts.only`). Returns a line per target.
pub async fn deploy_targets(
    config: &Config,
    env: &Environment,
    app: &str,
    digest: &Digest,
    opts: DeployOptions<'_>,
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
        .filter(|t| opts.only.is_none_or(|o| o == t.get_ref()))
    {
        let name = t.get_ref();
        let target = config
            .targets
            .get(name)
            .ok_or_else(|| format!("no target `{name}`"))?;
        let unpacked = match target {
            Target::Script(script) => {
                done.push(run_hooks(config, name, script, app, digest, opts.rollback)?);
                continue;
            }
            Target::Dir(u) | Target::Router(crate::config::Routed { unpacked: u, .. }) => u,
            Target::Nginx(r, _) => &r.unpacked,
        };
        let layout = match (&image.repository, opts.fetched) {
            (Repository::Layout(path), None) => Some(
                crate::registry::Layout::open(&config.root.join(path))
                    .map_err(|e| e.to_string())?,
            ),
            _ => None,
        };
        let source: &(dyn crate::deploy::unpack::BlobSource + Sync) = match (opts.fetched, &layout)
        {
            (Some(f), _) => f,
            (None, Some(l)) => l,
            (None, None) => {
                return Err(format!(
                    "app `{app}` comes from a registry and its image was not fetched"
                ));
            }
        };
        let dir = dir_target(config, unpacked, app);
        if let Some(target) = target.routed() {
            let routed = super::routed::Routed {
                app,
                config,
                env,
                name,
                target,
                dir: &dir,
                steps: opts.steps,
            };
            done.push(routed.deploy(source, digest).await?);
            let _ = dir.prune(unpacked.keep);
            continue;
        }
        let d = dir
            .deploy(source, digest)
            .map_err(|e| format!("target `{name}`: {e}"))?;
        let _ = dir.prune(unpacked.keep);
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
    if let Some(o) = opts.only
        && done.is_empty()
    {
        return Err(format!("`{o}` is not a target of this environment"));
    }
    Ok(done)
}

/// A `dir` target's folder for `app`, relative to the workspace; `{app}`
/// in the path is the app's name, so one target can hold every app.
pub fn dir_target(config: &Config, target: &crate::config::Unpacked, app: &str) -> DirTarget {
    DirTarget::new(config.root.join(target.path.replace("{app}", app))).with_limits(target.unpack)
}

/// A `script` target: the user's `deploy` hook (or `rollback`, when rolling
/// back and one is set), then `health` if set, each `bash -c` from the
/// workspace root with the release in `STELLA_*` variables.
fn run_hooks(
    config: &Config,
    name: &str,
    target: &crate::config::Script,
    app: &str,
    digest: &Digest,
    rollback: bool,
) -> Result<String, String> {
    let hooks: Vec<(&str, &String)> = [
        Some(match &target.rollback {
            Some(c) if rollback => ("rollback", c),
            _ => ("deploy", &target.deploy),
        }),
        target.health.as_ref().map(|c| ("health", c)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let limit = target.timeout;
    let mut log = String::new();
    for (hook, command) in hooks {
        let mut cmd = std::process::Command::new("bash");
        cmd.arg("-c")
            .arg(command)
            .current_dir(&config.root)
            .env("STELLA_RELEASE_APP", app)
            .env("STELLA_RELEASE_DIGEST", digest.to_string())
            .env("STELLA_TARGET_NAME", name)
            .env("STELLA_TARGET_PATH", target.path.as_deref().unwrap_or(""))
            .env("STELLA_HOOK", hook)
            .stdin(std::process::Stdio::null());
        let out = crate::deploy::hook::run_with_timeout(cmd, limit)
            .map_err(|e| format!("target `{name}`: cannot run its {hook} hook: {e}"))?;
        log.push_str(&out.output);
        match out.status {
            Some(s) if s.success() => {}
            Some(s) => {
                return Err(format!(
                    "target `{name}`: the {hook} hook failed ({}): {}",
                    s.code().map_or("killed".into(), |c| format!("exit {c}")),
                    log.trim_end()
                ));
            }
            None => {
                return Err(format!(
                    "target `{name}`: the {hook} hook timed out after {}; its process group was killed (raise `timeout` on the target): {}",
                    crate::gates::human_duration(
                        chrono::Duration::from_std(limit).unwrap_or_default()
                    ),
                    log.trim_end()
                ));
            }
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
pub fn snapshot(config: &Config, env: &Environment, app: &str) -> Vec<(String, Option<Digest>)> {
    env.targets
        .iter()
        .filter_map(|t| {
            let target = config.targets.get(t.get_ref())?;
            match target {
                Target::Dir(u) => Some((t.get_ref().clone(), dir_target(config, u, app).current())),
                Target::Router(_) | Target::Nginx(..) => Some((
                    t.get_ref().clone(),
                    crate::deploy::routed::read_state(&crate::deploy::routed::state_dir(
                        &config.root,
                        t.get_ref(),
                    ))
                    .ok()
                    .and_then(|s| s.stable.map(|s| s.digest)),
                )),
                _ => None,
            }
        })
        .collect()
}

/// Switches every `dir` target back to what `snapshot` saw; returns a line
/// per target moved back.
pub fn restore(config: &Config, app: &str, before: &[(String, Option<Digest>)]) -> Vec<String> {
    let mut lines = Vec::new();
    for (name, previous) in before {
        let Some(target) = config.targets.get(name) else {
            continue;
        };
        let dir = match target {
            Target::Dir(u) => dir_target(config, u, app),
            Target::Router(r) | Target::Nginx(r, _) => {
                lines.extend(restore_routed(config, name, r, app, previous));
                continue;
            }
            Target::Script(_) => continue,
        };
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

/// Puts a router target's stable slot back to `previous` (an unpacked
/// release), with nothing in the candidate slot. The router takes it up
/// within a tenth of a second.
fn restore_routed(
    config: &Config,
    name: &str,
    target: &crate::config::Routed,
    app: &str,
    previous: &Option<Digest>,
) -> Vec<String> {
    use crate::deploy::routed::{self, SlotState};
    let sdir = routed::state_dir(&config.root, name);
    let Ok(mut st) = routed::read_state(&sdir) else {
        return vec![format!(
            "{name}: its routes cannot be read; check {}",
            sdir.display()
        )];
    };
    if st.stable.as_ref().map(|s| &s.digest) == previous.as_ref() && st.candidate.is_none() {
        return vec![];
    }
    let dir = dir_target(config, &target.unpacked, app);
    st.stable = previous.as_ref().map(|d| SlotState {
        digest: d.clone(),
        dir: dir.release_dir(d),
        command: target.command.clone(),
    });
    st.candidate = None;
    st.weight = 0;
    // Back only once its router serves the old routes: whoever reports
    // the recovery reports what clients see.
    match switch_blocking(&sdir, &mut st) {
        Ok(()) => vec![match previous {
            Some(d) => format!("{name}: back to sha256:{}", d.short()),
            None => format!("{name}: nothing was serving before; no release is routed"),
        }],
        Err(e) => vec![format!("{name}: could not switch back: {e}")],
    }
}

/// `routed::switch` from synchronous code, inside a runtime or not: on a
/// thread of its own with a runtime of its own.
fn switch_blocking(
    sdir: &std::path::Path,
    st: &mut crate::deploy::routed::RouterState,
) -> Result<(), String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot wait for the router: {e}"))?;
            rt.block_on(crate::deploy::routed::switch(sdir, st))
        })
        .join()
        .unwrap_or_else(|_| Err("waiting for the router failed".to_owned()))
    })
}

/// After a crash: each promotion whose process died is taken over under
/// its environment's lock (the dead holder's lock becomes this process's,
/// in one transaction, so two recovering processes never both act), each
/// `dir` target of its environment is switched back to the release the
/// store holds live there (the interrupted decision was never sealed, so
/// its release never became live), half-made release folders are
/// removed, and only then is it marked `interrupted` and the lock
/// released. Returns a line per change. Reading commands never call this:
/// `stella recover` does, and every command that acts, before it acts.
pub fn recover(
    ws: &crate::workspace::Workspace,
    config: &Config,
) -> Result<Vec<String>, crate::store::StoreError> {
    let mut store = ws.open_store()?;
    let mut lines = Vec::new();
    for dead in store.dead_locks()? {
        if !store.take_over(&dead, "recovery")? {
            continue;
        }
        let id = dead.promotion_id;
        if let Some(p) = store.promotion(id)? {
            lines.push(format!(
                "promotion #{id} ({} into {}) was interrupted",
                p.app, p.environment
            ));
            lines.extend(put_back(&store, config, &p, false)?);
            // A release set: every app of it goes back, not only the first.
            for app in store.promotion_members(id)? {
                let member = crate::store::PromotionRow { app, ..p.clone() };
                lines.extend(put_back(&store, config, &member, false)?);
            }
        }
        store.finish_interrupted(id)?;
    }
    Ok(lines)
}

/// Runs `app`'s `script` targets in `env` again with the release the store
/// holds live there (their `rollback` hook, else `deploy`): what a failed
/// release set does for the apps it had deployed, since a script target
/// keeps no state stella can switch back. Returns a line per target.
pub fn restore_scripts(
    ws: &crate::workspace::Workspace,
    config: &Config,
    env_name: &str,
    app: &str,
) -> Vec<String> {
    let Some(env) = config.environment(env_name) else {
        return vec![];
    };
    let scripts: Vec<&String> = env
        .targets
        .iter()
        .map(|t| t.get_ref())
        .filter(|t| matches!(config.targets.get(*t), Some(Target::Script(_))))
        .collect();
    if scripts.is_empty() {
        return vec![];
    }
    let live = ws
        .read_store()
        .ok()
        .and_then(|s| s.live_at(env_name, app, &chrono::Utc::now()).ok().flatten());
    let Some(live) = live else {
        return scripts
            .iter()
            .map(|t| format!("{t}: nothing of {app} was live before; its hooks cannot be undone"))
            .collect();
    };
    let mut lines = Vec::new();
    for t in scripts {
        let opts = DeployOptions {
            only: Some(t),
            rollback: true,
            ..Default::default()
        };
        let done = super::resolve::block_on(deploy_targets(config, env, app, &live.digest, opts));
        match done {
            Ok(Ok(l)) => lines.extend(
                l.into_iter()
                    .map(|l| format!("{l} (back to the release live before)")),
            ),
            Ok(Err(e)) | Err(super::EngineError { message: e, .. }) => {
                lines.push(format!("{t}: could not put {app} back: {e}"))
            }
        }
    }
    lines
}

/// Puts an environment's targets back to the release the store holds
/// live, for promotion `p` whose process died (its lock held by the
/// caller), and removes half-made release folders. A canary it was
/// walking stays held where it was unless `abort`: traffic does not move
/// until an operator resumes or aborts it.
pub(crate) fn put_back(
    store: &crate::store::Store,
    config: &Config,
    p: &crate::store::PromotionRow,
    abort: bool,
) -> Result<Vec<String>, crate::store::StoreError> {
    let id = p.id;
    let mut lines = Vec::new();
    let Some(env) = config.environment(&p.environment) else {
        return Ok(lines);
    };
    let live = store.live_at(&p.environment, &p.app, &chrono::Utc::now())?;
    let held = |t: &str| {
        let progress = super::canary::progress(store, &p.environment, t);
        (!abort && progress.interrupted && progress.promotion == Some(id)).then_some(progress)
    };
    let mut before: Vec<(String, Option<Digest>)> = Vec::new();
    for t in &env.targets {
        match held(t.get_ref()) {
            Some(progress) => lines.push(format!(
                "{}: its canary is held at {}% — `stella rollout resume {}` walks it on, `stella rollout abort {}` sends all traffic back to stable",
                t.get_ref(),
                progress.steps.get(progress.step).copied().unwrap_or(0),
                p.environment,
                p.environment
            )),
            None => before.push((t.get_ref().clone(), live.as_ref().map(|l| l.digest.clone()))),
        }
    }
    lines.extend(restore(config, &p.app, &before));
    for t in &env.targets {
        if let Some(target) = config.targets.get(t.get_ref()).and_then(Target::unpacked) {
            for path in dir_target(config, target, &p.app).clean_stale() {
                lines.push(format!("{}: removed {}", t.get_ref(), path.display()));
            }
        }
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
