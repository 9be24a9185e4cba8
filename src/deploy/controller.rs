//! The controller of a `router` or `nginx` target (`stella router serve
//! TARGET`, started by the first deploy): a process of its own that serves
//! what the target's routes file says — itself, as the built-in router, or
//! through the nginx it runs and reconfigures — starts and retires the
//! release processes, and writes the counters and how each routes version
//! was taken.
//!
//! Nothing it starts outlives it. It stops its nginx and its release
//! processes (each in a process group of its own, stopped as a group) when
//! it is asked to (SIGTERM, SIGINT) and when its workspace is gone: it
//! looks every 100 ms, so a deleted workspace stops within a second. A
//! controller killed outright (`kill -9`) cannot; the next one finds what
//! it left from the pid files and stops it before starting anything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::backends::Processes;
use super::nginx::Nginx;
use super::routed::{self, RouterState};
use super::router::{Router, Routes, SlotStats};
use crate::domain::Digest;

/// Which router a controller runs.
pub enum Kind<'a> {
    /// The built-in router.
    Builtin,
    /// An nginx for `target` of the workspace at `root`: stella's own, or
    /// with `existing`, the one that config names.
    Nginx {
        root: &'a Path,
        target: &'a str,
        existing: Option<&'a crate::config::ExistingNginx>,
    },
}

/// How long the children get to stop gracefully when the controller stops.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The router itself, as the controller drives it.
enum Front {
    Builtin(Router),
    Nginx(Box<Nginx>),
}

impl Front {
    async fn start(kind: Kind<'_>, listen: SocketAddr, routes: Routes) -> Result<Front, String> {
        match kind {
            Kind::Builtin => Router::start(listen, routes)
                .await
                .map(Front::Builtin)
                .map_err(|e| format!("cannot listen on {listen}: {e}")),
            Kind::Nginx {
                root,
                target,
                existing,
            } => {
                let mut nginx = Nginx::new(root, target, listen, existing)?;
                if let Some(pid) = nginx.stop_orphan(STOP_GRACE) {
                    eprintln!("stopped the orphaned nginx (pid {pid}) a killed controller left");
                }
                nginx.apply(&routes, listen).await?;
                Ok(Front::Nginx(Box::new(nginx)))
            }
        }
    }

    async fn set(&mut self, routes: Routes, listen: Option<SocketAddr>) -> Result<(), String> {
        match self {
            Front::Builtin(r) => {
                r.set_routes(routes);
                Ok(())
            }
            Front::Nginx(nginx) => {
                let listen = listen.unwrap_or(nginx.listen());
                nginx.apply(&routes, listen).await
            }
        }
    }

    fn stats(&mut self) -> BTreeMap<Digest, SlotStats> {
        match self {
            Front::Builtin(r) => r.release_stats(),
            Front::Nginx(nginx) => nginx.stats(),
        }
    }

    fn stop(self, grace: Duration) {
        match self {
            Front::Builtin(r) => r.stop(),
            Front::Nginx(nginx) => nginx.stop(grace),
        }
    }
}

/// Why a controller stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM or SIGINT.
    Asked,
    /// Its state dir (its workspace) is gone.
    WorkspaceGone,
}

/// Serves the target whose state dir is `dir` until stopped (SIGTERM or
/// SIGINT) or until `dir` is gone: routes re-read every 100 ms (and on
/// SIGUSR1), process backends started before they are routed to and
/// retired after, counters written every half second, how each routes
/// version was taken in `applied.json`. Stops every child on the way out.
pub async fn serve(dir: &Path, listen: SocketAddr, kind: Kind<'_>) -> Result<Stopped, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let io = |e: std::io::Error| e.to_string();
    // Handlers first: whoever writes the routes wakes us with SIGUSR1
    // once our pid is on file, and it must not kill us.
    let mut term = signal(SignalKind::terminate()).map_err(io)?;
    let mut int = signal(SignalKind::interrupt()).map_err(io)?;
    let mut wake = signal(SignalKind::user_defined1()).map_err(io)?;
    let log = dir.join("router.log");
    // On file first: a `router stop` while it starts finds it.
    std::fs::write(dir.join("pid"), std::process::id().to_string())
        .map_err(|e| format!("{}: {e}", dir.join("pid").display()))?;
    let gave_up = |e: String| {
        let _ = std::fs::remove_file(dir.join("pid"));
        e
    };
    // What a controller killed outright left running.
    for line in super::backends::stop_orphans(&super::backends::pid_dir(dir)) {
        eprintln!("{line}");
    }
    let mut processes = Processes::new(dir);
    let state = routed::read_state(dir)
        .map_err(gave_up)?
        .effective(chrono::Utc::now().timestamp());
    let (routes, problems) = processes.routes(&state, &log).await;
    for p in problems {
        eprintln!("{p}");
    }
    let listen = state
        .listen
        .filter(|_| matches!(kind, Kind::Nginx { .. }))
        .unwrap_or(listen);
    let mut front = match Front::start(kind, listen, routes).await {
        Ok(f) => f,
        Err(e) => {
            processes.stop_all(STOP_GRACE);
            return Err(gave_up(e));
        }
    };
    let _ = routed::write_applied(
        dir,
        &routed::Applied {
            version: state.version,
            error: None,
        },
    );
    eprintln!("router listening on {listen}");
    let mut version = state.version;
    let mut served = state.clone();
    let mut next_stats = tokio::time::Instant::now();
    // What `rollout status` shows as the traffic of now.
    let mut window = routed::Window::new(Duration::from_secs(10));
    let stopped = loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = wake.recv() => {}
            _ = term.recv() => break Stopped::Asked,
            _ = int.recv() => break Stopped::Asked,
        }
        // A workspace deleted under a running controller (a demo or a
        // test folder removed) leaves nothing to serve or report to.
        if workspace_gone(dir) {
            eprintln!("{} is gone; stopping", dir.display());
            break Stopped::WorkspaceGone;
        }
        processes.tick(std::time::Instant::now());
        let now = chrono::Utc::now().timestamp();
        match routed::read_state(dir).map(|s| s.effective(now)) {
            // A new version, or a warm release's `scale_down_delay` ran out.
            Ok(s) if s.version != version || s != served => {
                version = s.version;
                served = s.clone();
                let (routes, problems) = processes.routes(&s, &log).await;
                for p in problems {
                    eprintln!("routes {version}: {p}");
                }
                let applied = front.set(routes, s.listen).await;
                if let Err(e) = &applied {
                    eprintln!("routes {version}: {e}");
                } else {
                    eprintln!("routes {version}: weight {}", s.weight);
                }
                let _ = routed::write_applied(
                    dir,
                    &routed::Applied {
                        version,
                        error: applied.err(),
                    },
                );
                // Requests already sent to a retired process get a second
                // to end before it is asked to stop (`tick`).
                processes.retire_unused(&s);
            }
            Ok(_) => {}
            Err(e) => eprintln!("keeping the last routes: {e}"),
        }
        if tokio::time::Instant::now() >= next_stats {
            next_stats += Duration::from_millis(500);
            write_stats(dir, &served, front.stats(), &mut window);
        }
    };
    // The children go first, so nothing serves a moment longer than needed.
    let grace = match stopped {
        Stopped::Asked => Duration::from_secs(5),
        Stopped::WorkspaceGone => Duration::from_secs(1),
    };
    front.stop(grace);
    processes.stop_all(STOP_GRACE.min(grace));
    let _ = std::fs::remove_file(dir.join("pid"));
    eprintln!("router stopped");
    Ok(stopped)
}

/// Whether the controller's workspace is gone: its pid file (in the state
/// dir) was removed with it.
fn workspace_gone(dir: &Path) -> bool {
    !dir.join("pid").is_file()
}

/// Writes `stats.json`: each release's counters, the slots' releases as
/// served, and the recent window.
fn write_stats(
    dir: &Path,
    served: &RouterState,
    releases: BTreeMap<Digest, SlotStats>,
    window: &mut routed::Window,
) {
    let recent = window.push(std::time::Instant::now(), &releases);
    let stats = routed::Stats {
        releases,
        stable: served.stable.as_ref().map(|s| s.digest.clone()),
        candidate: served.candidate.as_ref().map(|s| s.digest.clone()),
        recent: Some(recent),
    };
    let tmp = dir.join("stats.json.tmp");
    let json = serde_json::to_vec(&stats).expect("stats serialize");
    if std::fs::write(&tmp, json).is_ok() {
        let _ = std::fs::rename(&tmp, dir.join("stats.json"));
    }
}

/// Asks the controller of the target whose state dir is `dir` to stop
/// (SIGTERM; it stops its children on the way out) and waits up to 10 s.
/// Returns its pid, or `None` when none runs.
pub fn stop(dir: &Path) -> Option<i64> {
    let pid = routed::running_pid(dir)?;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while crate::store::process_alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = std::fs::remove_file(dir.join("pid"));
    Some(pid)
}
