//! Process backends of a `router` target: a slot whose release runs a
//! `command` (with `{port}` replaced by a free loopback port) from its
//! release folder. The router process owns them: it starts a release's
//! process before routing to it, waits until it accepts connections, and
//! stops a retired one gracefully (SIGTERM to its process group, SIGKILL
//! after a grace period) once requests already sent to it had time to end.
//!
//! Each process's pid is kept on file (`backends/HEX.pid` in the target's
//! state dir) while it runs, so a controller started after one was killed
//! (`kill -9`, which leaves its children running) finds and stops them
//! before it starts its own.

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

/// A process no longer routed to: asked to stop once requests already
/// sent to it had time to end, killed if it does not.
struct Retiring {
    child: std::process::Child,
    digest: Digest,
    since: Instant,
    asked: bool,
}

/// How long a retired process keeps serving requests already sent to it,
/// and how long it then has to stop before it is killed.
const DRAIN: Duration = Duration::from_secs(1);
const GRACE: Duration = Duration::from_secs(3);

/// The processes of one router, by release digest.
pub struct Processes {
    running: HashMap<Digest, Running>,
    retiring: Vec<Retiring>,
    /// Where their pid files are kept.
    pids: std::path::PathBuf,
}

/// The folder of a target's backend pid files, in its state dir.
pub fn pid_dir(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("backends")
}

fn pid_file(pids: &Path, digest: &Digest) -> std::path::PathBuf {
    pids.join(format!("{}.pid", digest.hex()))
}

/// Whether `pid` leads a process group started for release `digest`
/// (its environment names the release): a pid file whose process died and
/// whose number was reused names someone else's process, never stopped.
fn is_backend(pid: i32, digest: &str) -> bool {
    let leads = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid)))
        .is_ok_and(|g| g.as_raw() == pid);
    let want = format!("STELLA_RELEASE_DIGEST={digest}");
    leads
        && std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == want.as_bytes()))
}

/// SIGTERM to each group, SIGKILL to those still there after `grace`.
fn stop_groups(pgs: &[i32], grace: Duration) {
    use nix::sys::signal::{Signal, killpg};
    let alive = |pg: i32| killpg(nix::unistd::Pid::from_raw(pg), None).is_ok();
    for pg in pgs {
        let _ = killpg(nix::unistd::Pid::from_raw(*pg), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while pgs.iter().any(|pg| alive(*pg)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pg in pgs {
        let _ = killpg(nix::unistd::Pid::from_raw(*pg), Signal::SIGKILL);
    }
}

/// Stops the backends a dead controller left running, from their pid
/// files; returns a line for each stopped.
pub fn stop_orphans(pids: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(pids) else {
        return vec![];
    };
    let mut found = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        let Some(hex) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".pid"))
        else {
            continue;
        };
        let pid = std::fs::read_to_string(&path)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(pid) = pid
            && pid > 0
            && is_backend(pid, &format!("sha256:{hex}"))
        {
            found.push((pid, hex.to_owned()));
        }
        let _ = std::fs::remove_file(&path);
    }
    let pgs: Vec<i32> = found.iter().map(|(p, _)| *p).collect();
    stop_groups(&pgs, Duration::from_secs(2));
    found
        .into_iter()
        .map(|(pid, hex)| format!("stopped the orphaned process {pid} of sha256:{hex}"))
        .collect()
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
    /// The processes of the target whose state dir is `state_dir`, none
    /// running yet.
    pub fn new(state_dir: &Path) -> Processes {
        Processes {
            running: HashMap::new(),
            retiring: Vec::new(),
            pids: pid_dir(state_dir),
        }
    }

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
            let _ = std::fs::remove_file(pid_file(&self.pids, &slot.digest));
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
        let on_file = std::fs::create_dir_all(&self.pids).and_then(|()| {
            std::fs::write(pid_file(&self.pids, &slot.digest), child.id().to_string())
        });
        if let Err(e) = on_file {
            stop_group(&mut child, Duration::from_secs(1));
            return Err(format!(
                "cannot keep the pid of `{command}` in {}: {e}",
                self.pids.display()
            ));
        }
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
                let _ = std::fs::remove_file(pid_file(&self.pids, &slot.digest));
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
                stable_release: state.stable.as_ref().map(|s| s.digest.clone()),
                candidate_release: state.candidate.as_ref().map(|s| s.digest.clone()),
            },
            problems,
        )
    }

    /// Retires the processes of releases `state` no longer routes to:
    /// `tick` stops them once their last requests had time to end.
    pub fn retire_unused(&mut self, state: &RouterState) -> usize {
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
        let now = Instant::now();
        for d in &gone {
            if let Some(r) = self.running.remove(d) {
                self.retiring.push(Retiring {
                    child: r.child,
                    digest: d.clone(),
                    since: now,
                    asked: false,
                });
            }
        }
        gone.len()
    }

    /// Moves retired processes on without blocking: SIGTERM to the
    /// group `DRAIN` after retirement, SIGKILL `GRACE` later; an exited
    /// one is reaped and its pid file removed.
    pub fn tick(&mut self, now: Instant) {
        use nix::sys::signal::{Signal, killpg};
        let pids = self.pids.clone();
        self.retiring.retain_mut(|r| {
            if matches!(r.child.try_wait(), Ok(Some(_))) {
                let _ = std::fs::remove_file(pid_file(&pids, &r.digest));
                return false;
            }
            let pg = nix::unistd::Pid::from_raw(r.child.id() as i32);
            let age = now.saturating_duration_since(r.since);
            if !r.asked && age >= DRAIN {
                let _ = killpg(pg, Signal::SIGTERM);
                r.asked = true;
            } else if age >= DRAIN + GRACE {
                let _ = killpg(pg, Signal::SIGKILL);
            }
            true
        });
    }

    /// Stops everything at once, retiring ones included (the router is
    /// stopping): SIGTERM to every group, SIGKILL after `grace`.
    pub fn stop_all(&mut self, grace: Duration) {
        let mut children: Vec<(Digest, std::process::Child)> = self
            .running
            .drain()
            .map(|(d, r)| (d, r.child))
            .chain(self.retiring.drain(..).map(|r| (r.digest, r.child)))
            .collect();
        use nix::sys::signal::{Signal, killpg};
        let pg = |c: &std::process::Child| nix::unistd::Pid::from_raw(c.id() as i32);
        for (_, c) in &children {
            let _ = killpg(pg(c), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline
            && children
                .iter_mut()
                .any(|(_, c)| matches!(c.try_wait(), Ok(None)))
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        for (d, c) in &mut children {
            // The rest of its group too (what the command started).
            let _ = killpg(pg(c), Signal::SIGKILL);
            let _ = c.wait();
            let _ = std::fs::remove_file(pid_file(&self.pids, d));
        }
    }
}
