//! Process backends of a `router` target: a slot whose release runs a
//! `command` (with `{port}` replaced by a free loopback port) from its
//! release folder. The router process owns them: it starts a release's
//! process before routing to it, waits until it accepts connections, and
//! stops a retired one gracefully (SIGTERM to its process group, SIGKILL
//! after a grace period) once requests already sent to it had time to end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::routed::{RouterState, SlotState};
use super::router::{Backend, Routes};
use crate::domain::Digest;

struct Running {
    child: std::process::Child,
    addr: SocketAddr,
}

/// The processes of one router, by release digest.
#[derive(Default)]
pub struct Processes {
    running: HashMap<Digest, Running>,
}

/// A loopback port nothing listens on now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// SIGTERM to the process's group, SIGKILL after `grace`.
pub fn stop_group(child: &mut std::process::Child, grace: Duration) {
    let pg = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
}

impl Processes {
    /// Starts `slot`'s process unless it runs; returns where it listens.
    async fn ensure(
        &mut self,
        slot: &SlotState,
        command: &str,
        log: &Path,
    ) -> Result<SocketAddr, String> {
        if let Some(r) = self.running.get_mut(&slot.digest) {
            if matches!(r.child.try_wait(), Ok(None)) {
                return Ok(r.addr);
            }
            self.running.remove(&slot.digest);
        }
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut child = std::process::Command::new("bash")
            .arg("-c")
            .arg(command.replace("{port}", &port.to_string()))
            .current_dir(&slot.dir)
            .env("PORT", port.to_string())
            .env("STELLA_RELEASE_DIGEST", slot.digest.to_string())
            // The environment's feature flags, rewritten on every change.
            .env("STELLA_FLAGS_FILE", log.with_file_name("flags.json"))
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start `{command}`: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "`{command}` exited ({status}) before listening on {addr}"
                ));
            }
            if Instant::now() >= deadline {
                stop_group(&mut child, Duration::from_secs(1));
                return Err(format!("`{command}` did not listen on {addr} within 15s"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.running
            .insert(slot.digest.clone(), Running { child, addr });
        Ok(addr)
    }

    /// The routes `state` means: static slots as they are, process slots
    /// started (a slot whose process cannot start gets no backend, so a
    /// forced health check of it fails). Also returns what went wrong.
    pub async fn routes(&mut self, state: &RouterState, log: &Path) -> (Routes, Vec<String>) {
        let mut problems = Vec::new();
        let mut backends = [None, None];
        for (i, slot) in [&state.stable, &state.candidate].into_iter().enumerate() {
            let Some(slot) = slot else { continue };
            backends[i] = match &slot.command {
                None => Some(Backend::Static(slot.dir.clone())),
                Some(cmd) => match self.ensure(slot, cmd, log).await {
                    Ok(addr) => Some(Backend::Http(addr)),
                    Err(e) => {
                        problems.push(format!("sha256:{}: {e}", slot.digest.short()));
                        None
                    }
                },
            };
        }
        let [stable, candidate] = backends;
        (
            Routes {
                stable,
                candidate,
                weight: state.weight,
                version: state.version,
                sticky: state.sticky,
                flags: state.flags.clone(),
            },
            problems,
        )
    }

    /// Takes out the processes of releases `state` no longer routes to, for
    /// the caller to stop once their last requests had time to end.
    pub fn retire_unused(&mut self, state: &RouterState) -> Vec<std::process::Child> {
        let keep: Vec<&Digest> = [&state.stable, &state.candidate]
            .into_iter()
            .flatten()
            .map(|s| &s.digest)
            .collect();
        let gone: Vec<Digest> = self
            .running
            .keys()
            .filter(|d| !keep.contains(d))
            .cloned()
            .collect();
        gone.into_iter()
            .filter_map(|d| self.running.remove(&d))
            .map(|r| r.child)
            .collect()
    }

    /// Stops everything (the router is stopping).
    pub fn stop_all(&mut self) {
        for (_, mut r) in self.running.drain() {
            stop_group(&mut r.child, Duration::from_secs(2));
        }
    }
}
