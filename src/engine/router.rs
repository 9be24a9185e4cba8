//! A routed target's controller, as the fronts reach it: run it in the
//! foreground (`stella router serve`), start it in the background, stop
//! it, read what it serves. The controller itself is `deploy::controller`.

use std::net::SocketAddr;

use super::EngineError;
use crate::config::{Config, Target};
pub use crate::deploy::controller::Stopped;
use crate::deploy::controller::{self, Kind};
use crate::deploy::routed::{self, RouterState, Stats};
pub use crate::deploy::router::{Slot, SlotStats};

/// The `router` or `nginx` target `name`, or a usage error naming it.
fn routed_target<'a>(config: &'a Config, name: &str) -> Result<&'a Target, EngineError> {
    let target = config.targets.get(name).ok_or_else(|| {
        EngineError::usage(format!("no target `{name}` in stella.toml"))
            .hint("`stella config check` lists what is defined")
    })?;
    if !target.kind().is_routed() {
        return Err(EngineError::usage(format!(
            "target `{name}` is of kind `{}`; only `router` and `nginx` targets have a router",
            target.kind().as_str()
        )));
    }
    Ok(target)
}

/// Where a routed target listens, as its config says.
pub fn listen_of(target: &Target) -> Option<SocketAddr> {
    target.listen()
}

/// Which router serves a routed target, as its config says.
fn kind_of<'a>(config: &'a Config, name: &'a str, target: &'a Target) -> Kind<'a> {
    match target {
        Target::Nginx(_, existing) => Kind::Nginx {
            root: &config.root,
            target: name,
            existing: existing.as_ref(),
        },
        _ => Kind::Builtin,
    }
}

fn no_listen(name: &str) -> EngineError {
    EngineError::usage(format!("target `{name}` has no valid `listen`"))
        .hint("give it `listen = \"127.0.0.1:8080\"` (an address and port) in stella.toml")
}

/// Runs target `name`'s controller in this process until it is stopped
/// (SIGTERM, SIGINT) or its workspace is gone; it stops what it started.
pub fn serve(config: &Config, name: &str) -> Result<controller::Stopped, EngineError> {
    let target = routed_target(config, name)?;
    let listen = listen_of(target).ok_or_else(|| no_listen(name))?;
    let dir = routed::state_dir(&config.root, name);
    if let Some(pid) = routed::running_pid(&dir) {
        return Err(
            EngineError::error(format!("the router of `{name}` already runs (pid {pid})"))
                .hint(format!("`stella router stop {name}` stops it")),
        );
    }
    std::fs::create_dir_all(&dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| EngineError::error(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(controller::serve(
        &dir,
        listen,
        kind_of(config, name, target),
    ))
    .map_err(|e| EngineError::error(format!("the router of `{name}`: {e}")))
}

/// Starts target `name`'s controller in the background unless it runs,
/// and waits until it listens; returns where.
pub fn start(config: &Config, name: &str) -> Result<SocketAddr, EngineError> {
    let target = routed_target(config, name)?;
    let listen = listen_of(target).ok_or_else(|| no_listen(name))?;
    super::resolve::block_on(routed::ensure_running(&config.root, name, listen))?
        .map_err(EngineError::error)?;
    Ok(listen)
}

/// Stops target `name`'s controller (and with it its nginx and release
/// processes); returns its pid, `None` when none ran.
pub fn stop(config: &Config, name: &str) -> Result<Option<i64>, EngineError> {
    routed_target(config, name)?;
    Ok(controller::stop(&routed::state_dir(&config.root, name)))
}

/// What a routed target's controller serves: read only.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouterStatus {
    pub target: String,
    pub listen: Option<SocketAddr>,
    pub pid: Option<i64>,
    pub routes: RouterState,
    pub counters: Stats,
}

impl RouterStatus {
    /// What the release in `slot` served.
    pub fn slot(&self, slot: Slot) -> SlotStats {
        self.counters.held(&self.routes, slot)
    }
}

pub fn status(config: &Config, name: &str) -> Result<RouterStatus, EngineError> {
    let target = routed_target(config, name)?;
    let dir = routed::state_dir(&config.root, name);
    Ok(RouterStatus {
        target: name.to_owned(),
        listen: listen_of(target),
        pid: routed::running_pid(&dir),
        routes: routed::read_state(&dir).map_err(EngineError::error)?,
        counters: routed::read_stats(&dir),
    })
}
