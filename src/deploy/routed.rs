//! `router` targets: releases unpacked as for `dir`, served by the
//! built-in router (`stella router serve TARGET`, a process of its own that
//! outlives the command that deployed). The engine changes what it serves
//! by rewriting the target's routes file atomically; the router picks the
//! change up within 100 ms and answers with the routes' version, so the
//! deployer knows when a change is live.
//!
//! A deploy is blue/green: the new release goes to the idle slot (the
//! candidate, at weight 0), is health-checked through a forced request,
//! then becomes stable in one swap — the old release stays warm as the
//! candidate, for an instant rollback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::router::{Backend, Routes, Slot, SlotStats};
use crate::domain::Digest;

/// One slot's release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotState {
    pub digest: Digest,
    /// The unpacked release folder it serves.
    pub dir: PathBuf,
    /// A process to run from `dir` (with `{port}`) instead of serving its
    /// files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// What a router target serves: written by the engine, read by the router.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterState {
    pub version: u64,
    pub stable: Option<SlotState>,
    pub candidate: Option<SlotState>,
    pub weight: u8,
    /// Where the target listens, as its config said at the last deploy:
    /// an nginx target follows a change of it (the built-in router binds
    /// once, when it starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// A/B: clients keep the variant they were given (a cookie).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sticky: bool,
    /// Feature flags of the environment: `on`, `off` or `N%`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub flags: std::collections::BTreeMap<String, String>,
    /// The warm previous release in the candidate slot (weight 0) is
    /// retired at this time (Unix seconds): `scale_down_delay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_until: Option<i64>,
}

impl RouterState {
    /// What the controller serves at `now`: the state, with a warm
    /// release whose `scale_down_delay` ran out taken out of its slot.
    pub fn effective(&self, now: i64) -> RouterState {
        let mut s = self.clone();
        if s.weight == 0 && s.warm_until.is_some_and(|t| now >= t) {
            s.candidate = None;
        }
        s
    }
}

impl RouterState {
    /// The routes of a state whose slots serve files (a process slot needs
    /// `backends::Processes` to become routable).
    pub fn static_routes(&self) -> Routes {
        Routes {
            stable: self.stable.as_ref().map(|s| Backend::Static(s.dir.clone())),
            candidate: self
                .candidate
                .as_ref()
                .map(|s| Backend::Static(s.dir.clone())),
            weight: self.weight,
            version: self.version,
            sticky: self.sticky,
            flags: self.flags.clone(),
            stable_release: self.stable.as_ref().map(|s| s.digest.clone()),
            candidate_release: self.candidate.as_ref().map(|s| s.digest.clone()),
        }
    }
}

/// Where a router target keeps its routes, pid and counters.
pub fn state_dir(root: &Path, target: &str) -> PathBuf {
    root.join(".stella").join("router").join(target)
}

pub fn read_state(dir: &Path) -> Result<RouterState, String> {
    match std::fs::read(dir.join("routes.json")) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| format!("{}: {e}", dir.join("routes.json").display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RouterState::default()),
        Err(e) => Err(format!("{}: {e}", dir.join("routes.json").display())),
    }
}

/// Writes the next routes (version one up) atomically and wakes the
/// target's controller (SIGUSR1; it also looks every 100 ms); returns the
/// version.
pub fn write_state(dir: &Path, state: &mut RouterState) -> Result<u64, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    state.version += 1;
    let tmp = dir.join(format!("routes.json.{}", std::process::id()));
    let bytes = serde_json::to_vec_pretty(state).expect("router state serializes");
    std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join("routes.json"))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    if let Some(pid) = running_pid(dir) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGUSR1,
        );
    }
    Ok(state.version)
}

/// Reads, changes and writes the routes under an exclusive lock on
/// `routes.lock` (held across processes), so two writers — a flags change
/// and a canary's step, say — never lose each other's change; returns the
/// version written. `change` refusing writes nothing.
pub fn update_state(
    dir: &Path,
    change: impl FnOnce(&mut RouterState) -> Result<(), String>,
) -> Result<u64, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("routes.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    lock.lock()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut state = read_state(dir)?;
    change(&mut state)?;
    // Released when `lock` is dropped, after the rename.
    write_state(dir, &mut state)
}

/// Writes the next routes and, when the target's controller runs, waits
/// (up to 10 s) until its listener serves them — so whoever reports the
/// change reports what clients see.
pub async fn switch(dir: &Path, state: &mut RouterState) -> Result<(), String> {
    let version = write_state(dir, state)?;
    match state.listen.filter(|_| running_pid(dir).is_some()) {
        Some(listen) => wait_live(listen, version, Duration::from_secs(10), Some(dir)).await,
        None => Ok(()),
    }
}

/// The counters the target's controller last wrote (zeros before it
/// has): kept per release digest, so that after a swap the new stable
/// release starts at zero and the old one keeps what it served.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Each release's counters since its controller started.
    #[serde(default)]
    pub releases: BTreeMap<Digest, SlotStats>,
    /// The release each slot served when these were written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<Digest>,
    /// The last few seconds, for people watching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent: Option<Recent>,
}

impl Stats {
    /// What `digest` served (zeros if nothing).
    pub fn release(&self, digest: &Digest) -> SlotStats {
        self.releases.get(digest).copied().unwrap_or_default()
    }

    /// The release `slot` served when these were written.
    pub fn digest(&self, slot: Slot) -> Option<&Digest> {
        match slot {
            Slot::Stable => self.stable.as_ref(),
            Slot::Candidate => self.candidate.as_ref(),
        }
    }

    /// What the release in `slot` served (zeros for an empty slot).
    pub fn slot(&self, slot: Slot) -> SlotStats {
        self.digest(slot)
            .map_or_else(SlotStats::default, |d| self.release(d))
    }

    /// What the release `state` has in `slot` served: by the routes'
    /// own digest, which may be newer than these counters.
    pub fn held(&self, state: &RouterState, slot: Slot) -> SlotStats {
        let held = match slot {
            Slot::Stable => state.stable.as_ref(),
            Slot::Candidate => state.candidate.as_ref(),
        };
        held.map_or_else(SlotStats::default, |s| self.release(&s.digest))
    }

    /// The release in `slot` over the recent window.
    pub fn recent_slot(&self, slot: Slot) -> Option<RecentSlot> {
        let d = self.digest(slot)?;
        let r = self.recent.as_ref()?;
        Some(r.releases.get(d).cloned().unwrap_or_default())
    }
}

/// Each release over the last `window_s` seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recent {
    pub window_s: f64,
    #[serde(default)]
    pub releases: BTreeMap<Digest, RecentSlot>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecentSlot {
    /// Requests per second.
    pub rps: f64,
    pub error_rate: f64,
    pub p95_ms: f64,
}

/// The counters of the last few seconds, kept by a target's controller so
/// that `stella rollout status` can say what traffic is doing now, not
/// since the router started.
pub struct Window {
    span: Duration,
    seen: std::collections::VecDeque<(Instant, BTreeMap<Digest, SlotStats>)>,
}

impl Window {
    pub fn new(span: Duration) -> Window {
        Window {
            span,
            seen: Default::default(),
        }
    }

    /// Adds a reading of every release's counters; returns the window from
    /// the oldest reading at most `span` old to this one. A release first
    /// seen inside the window counts from zero.
    pub fn push(&mut self, at: Instant, releases: &BTreeMap<Digest, SlotStats>) -> Recent {
        while self
            .seen
            .front()
            .is_some_and(|(t, ..)| at.duration_since(*t) > self.span)
        {
            self.seen.pop_front();
        }
        self.seen.push_back((at, releases.clone()));
        let (t0, then) = self.seen.front().expect("just pushed");
        let secs = at.duration_since(*t0).as_secs_f64();
        let releases = releases
            .iter()
            .map(|(d, now)| {
                let d0 = now.since(&then.get(d).copied().unwrap_or_default());
                let r = RecentSlot {
                    rps: if secs > 0.0 {
                        d0.requests as f64 / secs
                    } else {
                        0.0
                    },
                    error_rate: d0.error_rate(),
                    p95_ms: d0.p95_ms,
                };
                (d.clone(), r)
            })
            .collect();
        Recent {
            window_s: secs,
            releases,
        }
    }
}

pub fn read_stats(dir: &Path) -> Stats {
    std::fs::read(dir.join("stats.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The router's pid, if one is running for this target.
pub fn running_pid(dir: &Path) -> Option<i64> {
    let pid: i64 = std::fs::read_to_string(dir.join("pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    crate::store::process_alive(pid).then_some(pid)
}

/// A GET through the router; `force` picks the slot. Returns (status,
/// routes version answered).
async fn probe(
    client: &reqwest::Client,
    listen: SocketAddr,
    force: Option<&str>,
) -> Result<(u16, u64), String> {
    let mut req = client.get(format!("http://{listen}/"));
    if let Some(f) = force {
        req = req.header("X-Stella-Variant", f);
    }
    let r = req.send().await.map_err(|e| e.to_string())?;
    let version = r
        .headers()
        .get("x-stella-routes")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((r.status().as_u16(), version))
}

/// How the target's controller took a routes version: written after each
/// change, so whoever made it learns of a failure at once, with the
/// router's own message (nginx refusing a config, say).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub fn read_applied(dir: &Path) -> Applied {
    std::fs::read(dir.join("applied.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn write_applied(dir: &Path, a: &Applied) -> Result<(), String> {
    write_json(dir, "applied.json", a)
}

/// Waits until the router answers with routes at least `version`; with
/// the target's state dir, fails as soon as its controller reports that
/// it could not apply them.
pub async fn wait_live(
    listen: SocketAddr,
    version: u64,
    within: Duration,
    state: Option<&Path>,
) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + within;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        if let Some(dir) = state {
            let a = read_applied(dir);
            if a.version >= version
                && let Some(e) = a.error
            {
                return Err(e);
            }
        }
        match probe(&client, listen, None).await {
            Ok((_, v)) if v >= version => return Ok(()),
            Ok((_, v)) => last = format!("still serving routes {v}"),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(format!(
        "the router on {listen} did not take routes {version} within {}s ({last})",
        within.as_secs()
    ))
}

/// Health-checks the candidate slot of routes `version`: a forced GET
/// must answer 2xx. An answer from older routes (an nginx worker that
/// took the connection just before a reload retired it), or none, is
/// asked again for up to 5 s.
pub async fn check_candidate(listen: SocketAddr, version: u64) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = probe(&client, listen, Some("candidate")).await;
        let stale = match &answer {
            Ok((_, v)) => *v < version,
            // A connection the retiring worker closed under the request.
            Err(_) => true,
        };
        if stale && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        match answer {
            Ok((s, _)) if (200..300).contains(&s) => return Ok(()),
            Ok((s, _)) => return Err(format!("the new release answered {s} on {listen}")),
            Err(e) => return Err(format!("the new release did not answer on {listen}: {e}")),
        }
    }
}

/// Starts `stella router serve TARGET` for the workspace at `root` unless
/// one runs, and waits until it listens.
pub async fn ensure_running(root: &Path, target: &str, listen: SocketAddr) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find stella itself: {e}"))?;
    ensure_running_with(root, target, listen, &exe).await
}

/// `ensure_running` with the stella binary at `exe`.
pub async fn ensure_running_with(
    root: &Path,
    target: &str,
    listen: SocketAddr,
    exe: &Path,
) -> Result<(), String> {
    let dir = state_dir(root, target);
    if running_pid(&dir).is_none() {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // Appending: the router's backends write to the same log.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("router.log"))
            .map_err(|e| format!("{}: {e}", dir.join("router.log").display()))?;
        // Its own process group: the router outlives this command and the
        // terminal it ran in.
        std::process::Command::new(exe)
            .arg("--workspace")
            .arg(root)
            .args(["router", "serve", target])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the router for `{target}`: {e}"))?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(listen).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(dir.join("router.log")).unwrap_or_default();
            return Err(format!(
                "the router for `{target}` is not listening on {listen}: {}",
                log.trim()
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Where a canary is, for readers (`stella rollout status`, the
/// workbench): built from the rollout's row in the store
/// (`engine::rollout::progress`), which is the source of truth.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    pub digest: Option<Digest>,
    pub steps: Vec<u8>,
    /// Index into `steps` of the weight being held.
    pub step: usize,
    /// Where it is; `None` before any rollout.
    pub state: Option<crate::domain::CanaryPhase>,
    pub samples: Vec<String>,
    /// The promotion walking it, and the process it runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<i64>,
    /// Its process died mid-canary: traffic stays at the step's weight,
    /// shown paused, until an operator resumes or aborts it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// When the held step ends and the next weight is set: none while an
    /// operator holds it or, with `pause = "manual"`, until one resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `pause = "manual"`: each step waits for an operator.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual: bool,
}

impl Progress {
    /// A canary under way: walking, held by an operator, or interrupted.
    pub fn in_flight(&self) -> bool {
        use crate::domain::CanaryPhase;
        matches!(self.state, Some(CanaryPhase::Running | CanaryPhase::Paused))
    }
}

fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = dir.join(format!("{name}.{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec_pretty(value).expect("serializes"))
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(name)).map_err(|e| format!("{}: {e}", dir.display()))
}

/// An A/B test under way on a target: variant a (the release that was
/// stable) against b (the new one), and the counters when it began, so
/// the comparison covers the test's window only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AbTest {
    pub a: Digest,
    pub b: Digest,
    /// RFC 3339.
    pub started: String,
    pub baseline: Stats,
}

pub fn read_ab(dir: &Path) -> Option<AbTest> {
    serde_json::from_slice(&std::fs::read(dir.join("ab.json")).ok()?).ok()
}

pub fn write_ab(dir: &Path, t: &AbTest) -> Result<(), String> {
    write_json(dir, "ab.json", t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::router::Counters;

    fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }

    #[test]
    fn the_window_counts_only_its_last_seconds() {
        let (s, c) = (Counters::default(), Counters::default());
        let (a, b) = (d(1), d(2));
        let read = |with_b: bool| {
            let mut m = BTreeMap::new();
            m.insert(a.clone(), s.snapshot());
            if with_b {
                m.insert(b.clone(), c.snapshot());
            }
            m
        };
        let mut w = Window::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..1000 {
            s.record(false, Duration::from_millis(1));
        }
        w.push(t0, &read(false));
        // Then 5 s with 50 requests to a and 10 to b (new in the window),
        // 2 of them failed.
        for _ in 0..50 {
            s.record(false, Duration::from_millis(1));
        }
        for i in 0..10 {
            c.record(i < 2, Duration::from_millis(3));
        }
        let r = w.push(t0 + Duration::from_secs(5), &read(true));
        assert_eq!(r.window_s, 5.0);
        assert_eq!((r.releases[&a].rps, r.releases[&b].rps), (10.0, 2.0));
        assert_eq!(r.releases[&b].error_rate, 0.2);
        assert!(r.releases[&b].p95_ms >= 3.0, "{r:?}");
        // 12 s in, nothing new: the first reading has left the window,
        // the burst with it once it is older than the span.
        let r = w.push(t0 + Duration::from_secs(12), &read(true));
        assert_eq!(r.window_s, 7.0);
        assert_eq!(r.releases[&a].rps, 0.0);
        let r = w.push(t0 + Duration::from_secs(16), &read(true));
        assert_eq!(r.window_s, 4.0);
        assert_eq!((r.releases[&a].rps, r.releases[&b].error_rate), (0.0, 0.0));
    }

    #[test]
    fn a_slot_reads_the_counters_of_the_release_it_holds() {
        let (a, b) = (d(1), d(2));
        let c = Counters::default();
        for _ in 0..7 {
            c.record(true, Duration::from_millis(1));
        }
        let mut stats = Stats {
            stable: Some(b.clone()),
            candidate: Some(a.clone()),
            ..Default::default()
        };
        stats.releases.insert(a.clone(), c.snapshot());
        assert_eq!(stats.slot(Slot::Candidate).requests, 7);
        assert_eq!(stats.slot(Slot::Stable), SlotStats::default());
        assert_eq!(stats.release(&b).errors, 0);
        let back: Stats = serde_json::from_slice(&serde_json::to_vec(&stats).unwrap()).unwrap();
        assert_eq!(back, stats);
    }
}
