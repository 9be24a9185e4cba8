//! The shape of `stella.toml`. Unknown keys are errors everywhere; fields
//! that later checks must point at are `Spanned`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::Spanned;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub workspace: WorkspaceSection,
    #[serde(default)]
    pub apps: BTreeMap<Spanned<String>, AppConfig>,
    #[serde(default)]
    pub environments: BTreeMap<Spanned<String>, EnvironmentConfig>,
    #[serde(default)]
    pub targets: BTreeMap<Spanned<String>, TargetConfig>,
    #[serde(default)]
    pub freeze: BTreeMap<Spanned<String>, FreezeWindowConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSection {
    pub name: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// `oci-layout:PATH` or `HOST[:PORT]/REPO`.
    pub image: Spanned<String>,
    /// Plain HTTP to the registry (loopback registries use it anyway).
    #[serde(default)]
    pub insecure: bool,
    /// Attach each decision's capsule and verification summary to the
    /// image as OCI referrers. Default: on for a registry, off for an
    /// image layout.
    pub attach: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    #[default]
    Direct,
    Bluegreen,
    Canary,
    Ab,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    pub from: Option<Spanned<String>>,
    #[serde(default)]
    pub targets: Vec<Spanned<String>>,
    pub strategy: Option<Spanned<Strategy>>,
    pub workflow: Option<Spanned<String>>,
    #[serde(default)]
    pub gates: GatesConfig,
    /// How a canary moves: `strategy = "canary"` needs it.
    pub rollout: Option<Spanned<RolloutConfig>>,
}

/// `[environments.ENV.rollout]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// Canary: candidate weights in percent, rising, ending at 100.
    #[serde(default)]
    pub steps: Vec<u8>,
    /// A/B: the percent of clients given variant b (the new release),
    /// each kept on its variant by a cookie (default 50).
    pub split: Option<Spanned<u8>>,
    /// How long the previous release stays warm in the idle slot after a
    /// switch (default: until a newer release takes the slot).
    pub scale_down_delay: Option<Spanned<String>>,
    /// How long each step holds (and is analysed) before the next, or
    /// `manual`: until an operator resumes it.
    pub pause: Option<Spanned<String>>,
    pub analysis: Option<AnalysisConfig>,
}

/// When a canary step fails: sampled every `interval` from the router's
/// per-slot counters.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    pub interval: Option<Spanned<String>>,
    pub max_error_rate: Option<f64>,
    pub max_p95_ms: Option<f64>,
    /// Fewer requests than this in an interval: inconclusive, not failed.
    pub min_requests: Option<u64>,
    /// Failed samples tolerated; one more rolls the canary back.
    pub failure_limit: Option<u32>,
    /// An HTTP GET sent to the candidate with each sample; a wrong
    /// answer fails the sample whatever the traffic says.
    pub probe: Option<Spanned<ProbeConfig>>,
}

/// A canary analysis's HTTP probe: a GET of `path` through the target,
/// forced to the candidate (`X-Stella-Variant: candidate`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Default `/`.
    pub path: Option<String>,
    /// The status expected; default 200.
    pub status: Option<u16>,
    /// Text the body must contain.
    pub body: Option<String>,
    /// Default `2s`.
    pub timeout: Option<String>,
}
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatesConfig {
    pub security: Option<SecurityGateConfig>,
    pub approval: Option<Spanned<ApprovalGateConfig>>,
    pub freeze: Option<FreezeGateConfig>,
    pub policy: Option<PolicyGateConfig>,
    pub upstream: Option<Spanned<UpstreamGateConfig>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGateConfig {
    #[serde(default)]
    pub max_reachable: SeverityLimits,
    /// Without scan evidence the gate fails, unless this is `false`.
    #[serde(default = "yes")]
    pub require_scan: bool,
}

fn yes() -> bool {
    true
}

/// Per-severity limits; a severity left out is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityLimits {
    pub critical: Option<u32>,
    pub high: Option<u32>,
    pub medium: Option<u32>,
    pub low: Option<u32>,
    pub unknown: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalGateConfig {
    pub required: u32,
    pub approvers: Vec<Spanned<String>>,
    #[serde(default)]
    pub four_eyes: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeGateConfig {
    pub windows: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyGateConfig {
    pub modules: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamGateConfig {
    pub soak: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Dir,
    Script,
    Nginx,
    Router,
}

impl TargetKind {
    /// Targets whose traffic stella routes between two slots: the
    /// built-in router and nginx.
    pub fn is_routed(self) -> bool {
        matches!(self, TargetKind::Router | TargetKind::Nginx)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Dir => "dir",
            TargetKind::Script => "script",
            TargetKind::Nginx => "nginx",
            TargetKind::Router => "router",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub kind: TargetKind,
    pub path: Option<Spanned<String>>,
    pub listen: Option<Spanned<String>>,
    pub command: Option<Spanned<String>>,
    pub deploy: Option<Spanned<String>>,
    pub health: Option<Spanned<String>>,
    pub rollback: Option<Spanned<String>>,
    /// How long a script target's hook may run (default 10m); past it the
    /// hook's whole process group is killed and the deploy fails.
    pub timeout: Option<Spanned<String>>,
    /// How many unpacked releases to keep.
    pub keep: Option<Spanned<u32>>,
    /// An `nginx` target served by an nginx stella does not run.
    pub nginx: Option<Spanned<ExistingNginx>>,
    /// How far an image may expand when unpacked here.
    pub unpack: Option<Spanned<UnpackLimitsConfig>>,
}

/// `[targets.NAME.unpack]`: limits on unpacking an image (defaults in
/// `deploy::unpack::Limits`); each at least 1.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UnpackLimitsConfig {
    /// A layer may expand to this many times its compressed size.
    pub max_ratio: Option<u64>,
    /// MiB of a whole release, all layers together.
    pub max_release_mib: Option<u64>,
    /// Entries of a whole release.
    pub max_entries: Option<u64>,
    /// Components of an entry's path.
    pub max_depth: Option<u32>,
}

/// An nginx that is already running, which stella drives instead of
/// running its own: it writes the target's config into `conf_dir` (a
/// directory that nginx's `http` block includes), then runs `test` and
/// `reload`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExistingNginx {
    pub conf_dir: Spanned<String>,
    /// Checks the whole config (default `nginx -t`).
    pub test: Option<String>,
    /// Reloads it gracefully (default `nginx -s reload`).
    pub reload: Option<String>,
    /// nginx's error log, read for why a reload did not take.
    pub error_log: Option<String>,
}

/// A freeze window: recurring (`start`, `end`, `timezone`) or one-off
/// (`from`, `until`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeWindowConfig {
    pub start: Option<Spanned<String>>,
    pub end: Option<Spanned<String>>,
    pub timezone: Option<Spanned<String>>,
    pub from: Option<Spanned<String>>,
    pub until: Option<Spanned<String>>,
    /// Emails who may sign a break-glass approval for this window.
    #[serde(default)]
    pub exceptions: Vec<Spanned<String>>,
    /// How many break-glass approvals from `exceptions` a promotion needs
    /// to go through while this window is active (default 1).
    pub break_glass_approvals: Option<Spanned<u32>>,
}
