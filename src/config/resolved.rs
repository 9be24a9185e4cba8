//! `stella.toml` resolved: each target one variant per kind carrying
//! exactly its fields, each environment's strategy one variant carrying
//! its parameters — every value parsed and every default applied once,
//! here, when the file is read. Nothing downstream parses config text.

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

pub use super::model::{ExistingNginx, GatesConfig, TargetKind};
use crate::deploy::unpack::Limits;

/// How many unpacked releases a target keeps by default.
pub const DEFAULT_KEEP: usize = 5;
/// How long a script target's hook may run by default.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a canary step holds by default.
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(60);
/// How often a canary with manual steps samples by default.
pub const DEFAULT_MANUAL_INTERVAL: Duration = Duration::from_secs(30);
/// The shortest analysis interval: counters are read no faster.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);
/// An A/B test's default share of clients on the new release.
pub const DEFAULT_SPLIT: u8 = 50;
/// A probe's default answer time.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where releases are put.
#[derive(Debug, Clone)]
pub enum Target {
    /// A folder of unpacked releases with a `current` link.
    Dir(Unpacked),
    /// The user's hooks.
    Script(Script),
    /// The built-in router in front of two slots.
    Router(Routed),
    /// nginx in front of two slots: one stella runs, or an existing one
    /// it drives.
    Nginx(Routed, Option<ExistingNginx>),
}

/// A target that unpacks images: where, how many to keep, how far one may
/// expand.
#[derive(Debug, Clone, PartialEq)]
pub struct Unpacked {
    /// Relative to the workspace; `{app}` is the app's name.
    pub path: String,
    pub keep: usize,
    pub unpack: Limits,
}

/// A `router` or `nginx` target.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub unpacked: Unpacked,
    pub listen: SocketAddr,
    /// A process serving each release instead of its files.
    pub command: Option<String>,
}

/// A `script` target's hooks.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    /// Passed to the hooks as `STELLA_TARGET_PATH`.
    pub path: Option<String>,
    pub deploy: String,
    pub health: Option<String>,
    pub rollback: Option<String>,
    /// Past it, the hook's process group is killed.
    pub timeout: Duration,
}

impl Target {
    pub fn kind(&self) -> TargetKind {
        match self {
            Target::Dir(_) => TargetKind::Dir,
            Target::Script(_) => TargetKind::Script,
            Target::Router(_) => TargetKind::Router,
            Target::Nginx(..) => TargetKind::Nginx,
        }
    }

    /// Where a target that unpacks images keeps them.
    pub fn unpacked(&self) -> Option<&Unpacked> {
        match self {
            Target::Dir(u) => Some(u),
            Target::Router(r) | Target::Nginx(r, _) => Some(&r.unpacked),
            Target::Script(_) => None,
        }
    }

    /// A `router` or `nginx` target's routing.
    pub fn routed(&self) -> Option<&Routed> {
        match self {
            Target::Router(r) | Target::Nginx(r, _) => Some(r),
            _ => None,
        }
    }

    /// Where a routed target listens.
    pub fn listen(&self) -> Option<SocketAddr> {
        self.routed().map(|r| r.listen)
    }
}

/// An environment, resolved.
#[derive(Debug, Clone)]
pub struct Environment {
    pub from: Option<Spanned<String>>,
    pub targets: Vec<Spanned<String>>,
    pub workflow: Option<Spanned<String>>,
    pub gates: GatesConfig,
    pub strategy: Strategy,
    /// How long the previous release stays warm after a switch (any
    /// strategy on a routed target); `None`: until a newer one takes its
    /// slot.
    pub scale_down_delay: Option<Duration>,
}

/// How a routed target moves traffic to a new release.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// `dir` targets switch; routed targets swap blue/green.
    Direct,
    BlueGreen,
    Canary(Canary),
    /// An A/B test: `split` percent of clients on the new release.
    Ab {
        split: u8,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Canary {
    /// Candidate weights in percent, rising, ending at 100.
    pub steps: Vec<u8>,
    pub pause: Pause,
    /// How often the candidate's counters are read (and, with an
    /// analysis, judged).
    pub interval: Duration,
    /// `[….rollout.analysis]`: without it samples are recorded, never
    /// judged.
    pub analysis: Option<Analysis>,
}

/// How long each canary step holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// Until an operator resumes it.
    Manual,
    For(Duration),
}

/// How a canary is judged, every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub max_error_rate: Option<f64>,
    pub max_p95_ms: Option<f64>,
    /// Fewer requests in an interval: inconclusive.
    pub min_requests: u64,
    /// Failed samples tolerated; one more rolls the canary back.
    pub failure_limit: u32,
    pub probe: Option<Probe>,
}

/// A GET of `path` forced to the candidate with each sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub path: String,
    pub status: u16,
    pub body: Option<String>,
    pub timeout: Duration,
}

impl Strategy {
    pub fn canary(&self) -> Option<&Canary> {
        match self {
            Strategy::Canary(c) => Some(c),
            _ => None,
        }
    }
}
