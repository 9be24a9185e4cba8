//! `stella router serve|stop|status TARGET`: the controller of a `router`
//! or `nginx` target. Promotions start it when needed; it runs until
//! stopped, serving what the target's routes file says — itself, as the
//! built-in router, or through the nginx it runs and reconfigures.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::{Context, Failure, exit, load_config, print_json};
use crate::config::Target;
use crate::deploy::routed;
use crate::deploy::router::{Router, Slot, SlotStats};

#[derive(Debug, Subcommand)]
pub enum RouterCommand {
    /// Run the router of a `router` or `nginx` target (promotions start it for you)
    Serve(TargetArg),
    /// Stop a target's router
    Stop(TargetArg),
    /// What a target's router serves, and its per-slot counters
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
    let name = match &cmd {
        RouterCommand::Serve(a) | RouterCommand::Stop(a) => a.target.clone(),
        RouterCommand::Status(a) => a.target.clone(),
    };
    let name = name.as_str();
    let target = config.targets.get(name).ok_or_else(|| {
        Failure::usage(format!("no target `{name}` in stella.toml"))
            .hint("`stella config check` lists what is defined")
    })?;
    let Some(listen) = target.listen() else {
        return Err(Failure::usage(format!(
            "target `{name}` is of kind `{}`; only `router` and `nginx` targets have a router",
            target.kind().as_str()
        )));
    };
    let dir = routed::state_dir(ws.root(), name);
    match cmd {
        RouterCommand::Serve(_) => {
            if let Some(pid) = routed::running_pid(&dir) {
                return Err(Failure::error(format!(
                    "the router of `{name}` already runs (pid {pid})"
                )));
            }
            std::fs::create_dir_all(&dir)?;
            let front = match target {
                Target::Nginx(_, existing) => Kind::Nginx(ws.root(), name, existing.as_ref()),
                _ => Kind::Builtin,
            };
            super::runtime()?.block_on(serve(&dir, listen, front))?;
            Ok(exit::OK)
        }
        RouterCommand::Stop(_) => match routed::running_pid(&dir) {
            Some(pid) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
                // It stops its backends (and nginx) on the way out.
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while crate::store::process_alive(pid) && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(25));
                }
                let _ = std::fs::remove_file(dir.join("pid"));
                println!("stopped the router of `{name}` (pid {pid})");
                Ok(exit::OK)
            }
            None => {
                println!("the router of `{name}` is not running");
                Ok(exit::OK)
            }
        },
        RouterCommand::Status(a) => {
            let state = routed::read_state(&dir).map_err(Failure::error)?;
            let stats: serde_json::Value = std::fs::read(dir.join("stats.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(serde_json::Value::Null);
            let pid = routed::running_pid(&dir);
            if a.json {
                print_json(&serde_json::json!({
                    "target": name, "running": pid.is_some(), "pid": pid,
                    "routes": state, "counters": stats,
                }))?;
                return Ok(exit::OK);
            }
            println!(
                "router `{name}` on {}: {}",
                listen,
                pid.map_or("not running".into(), |p| format!("running (pid {p})"))
            );
            for (slot, s) in [("stable", &state.stable), ("candidate", &state.candidate)] {
                let c = &stats[slot];
                println!(
                    "  {slot:<9} {}  {} requests, {} errors, p95 ≤ {} ms",
                    s.as_ref().map_or("-".into(), |s| s.digest.to_string()),
                    c["requests"].as_u64().unwrap_or(0),
                    c["errors"].as_u64().unwrap_or(0),
                    c["p95_ms"].as_f64().unwrap_or(0.0)
                );
            }
            println!(
                "  candidate weight {}%, routes version {}",
                state.weight, state.version
            );
            Ok(exit::OK)
        }
    }
}

/// Which router a controller runs.
enum Kind<'a> {
    Builtin,
    /// An nginx for target `.1` of the workspace at `.0`: stella's own,
    /// or the existing one `.2` names.
    Nginx(
        &'a std::path::Path,
        &'a str,
        Option<&'a crate::config::ExistingNginx>,
    ),
}

/// The router itself, as the controller drives it.
enum Front {
    Builtin(Router),
    Nginx(Box<crate::deploy::nginx::Nginx>),
}

impl Front {
    async fn start(
        kind: Kind<'_>,
        listen: std::net::SocketAddr,
        routes: crate::deploy::router::Routes,
    ) -> Result<Front, Failure> {
        match kind {
            Kind::Builtin => Router::start(listen, routes)
                .await
                .map(Front::Builtin)
                .map_err(|e| Failure::error(format!("cannot listen on {listen}: {e}"))),
            Kind::Nginx(root, target, existing) => {
                let mut nginx = crate::deploy::nginx::Nginx::new(root, target, listen, existing)
                    .map_err(Failure::error)?;
                nginx.apply(&routes, listen).await.map_err(Failure::error)?;
                Ok(Front::Nginx(Box::new(nginx)))
            }
        }
    }

    async fn set(
        &mut self,
        routes: crate::deploy::router::Routes,
        listen: Option<std::net::SocketAddr>,
    ) -> Result<(), String> {
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

    fn stats(&mut self) -> (SlotStats, SlotStats) {
        match self {
            Front::Builtin(r) => (r.stats(Slot::Stable), r.stats(Slot::Candidate)),
            Front::Nginx(nginx) => nginx.stats(),
        }
    }

    fn stop(self) {
        match self {
            Front::Builtin(r) => r.stop(),
            Front::Nginx(nginx) => nginx.stop(Duration::from_secs(5)),
        }
    }
}

/// Serves until stopped (SIGTERM or SIGINT): routes re-read every
/// 100 ms, process backends started before they are routed to and retired
/// after, counters written every half second, how each routes version was
/// taken in `applied.json`.
async fn serve(
    dir: &std::path::Path,
    listen: std::net::SocketAddr,
    kind: Kind<'_>,
) -> Result<(), Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers first: whoever writes the routes wakes us with SIGUSR1
    // once our pid is on file, and it must not kill us.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut wake = signal(SignalKind::user_defined1())?;
    let log = dir.join("router.log");
    let mut processes = crate::deploy::backends::Processes::default();
    let state = routed::read_state(dir)
        .map_err(Failure::error)?
        .effective(chrono::Utc::now().timestamp());
    let (routes, problems) = processes.routes(&state, &log).await;
    for p in problems {
        eprintln!("{p}");
    }
    let listen = state
        .listen
        .filter(|_| matches!(kind, Kind::Nginx(..)))
        .unwrap_or(listen);
    let mut front = Front::start(kind, listen, routes).await?;
    std::fs::write(dir.join("pid"), std::process::id().to_string())?;
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
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = wake.recv() => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        // A workspace deleted under a running controller (a demo or a
        // test folder removed) leaves nothing to serve or report to.
        if !dir.join("pid").is_file() {
            eprintln!("{} is gone; stopping", dir.display());
            break;
        }
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
                // to end before it is asked to stop, and three more after.
                let retired = processes.retire_unused(&s);
                if !retired.is_empty() {
                    tokio::task::spawn_blocking(move || {
                        std::thread::sleep(Duration::from_secs(1));
                        for mut child in retired {
                            crate::deploy::backends::stop_group(&mut child, Duration::from_secs(3));
                        }
                    });
                }
            }
            Ok(_) => {}
            Err(e) => eprintln!("keeping the last routes: {e}"),
        }
        if tokio::time::Instant::now() >= next_stats {
            next_stats += Duration::from_millis(500);
            let (stable, candidate) = front.stats();
            let recent = window.push(std::time::Instant::now(), &stable, &candidate);
            let stats = routed::Stats {
                stable,
                candidate,
                recent: Some(recent),
            };
            let tmp = dir.join("stats.json.tmp");
            let json = serde_json::to_vec(&stats).expect("stats serialize");
            if std::fs::write(&tmp, json).is_ok() {
                let _ = std::fs::rename(&tmp, dir.join("stats.json"));
            }
        }
    }
    front.stop();
    processes.stop_all();
    let _ = std::fs::remove_file(dir.join("pid"));
    eprintln!("router stopped");
    Ok(())
}
