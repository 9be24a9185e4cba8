//! Deploying a release to an environment's targets.

use std::time::{Duration, Instant};

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
        let dir = dir_target(config, target, app);
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

/// A `dir` target's folder for `app`, relative to the workspace; `{app}`
/// in the path is the app's name, so one target can hold every app.
pub fn dir_target(config: &Config, target: &crate::config::TargetConfig, app: &str) -> DirTarget {
    let path = target.path.as_ref().map_or(".", |p| p.get_ref().as_str());
    DirTarget::new(config.root.join(path.replace("{app}", app)))
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
    let limit = target
        .timeout
        .as_ref()
        .and_then(|t| crate::domain::duration::parse_duration(t.get_ref()).ok())
        .unwrap_or(Duration::from_secs(600));
    let mut log = String::new();
    for (hook, command) in hooks {
        let mut cmd = std::process::Command::new("bash");
        cmd.arg("-c")
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
            .stdin(std::process::Stdio::null());
        let out = run_with_timeout(cmd, limit)
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

struct HookOutput {
    /// `None`: killed at the time limit.
    status: Option<std::process::ExitStatus>,
    output: String,
}

/// Runs `cmd` in its own process group, capturing stdout and stderr; past
/// `limit` the whole group is killed, children included.
fn run_with_timeout(
    mut cmd: std::process::Command,
    limit: Duration,
) -> std::io::Result<HookOutput> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let mut child = cmd
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut b);
            }
            b
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Whatever the hook left running in its group goes with it.
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    if status.is_none() {
        let _ = child.wait();
    }
    let mut output = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    output.push_str(&String::from_utf8_lossy(&err.join().unwrap_or_default()));
    Ok(HookOutput { status, output })
}

/// What each `dir` target of `env` serves now: to put back if a later step
/// of the workflow fails.
pub fn snapshot(
    config: &Config,
    env: &EnvironmentConfig,
    app: &str,
) -> Vec<(String, Option<Digest>)> {
    env.targets
        .iter()
        .filter_map(|t| {
            let target = config.targets.get(t.get_ref())?;
            (target.kind == TargetKind::Dir).then(|| {
                let dir = dir_target(config, target, app);
                (t.get_ref().clone(), dir.current())
            })
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
        if target.kind != TargetKind::Dir {
            continue;
        }
        let dir = dir_target(config, target, app);
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
        lines.extend(restore(config, &p.app, &before));
        for t in &env.targets {
            if let Some(target) = config.targets.get(t.get_ref())
                && target.kind == TargetKind::Dir
            {
                for p in dir_target(config, target, &p.app).clean_stale() {
                    lines.push(format!("{}: removed {}", t.get_ref(), p.display()));
                }
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
