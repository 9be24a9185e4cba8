//! The shape of `stella.toml`. Unknown keys are errors everywhere; fields
//! that later checks must point at are `Spanned`.
//!
//! The same types give the file's JSON Schema (`stella config schema`,
//! [`json_schema`]): doc comments become descriptions, and
//! `deny_unknown_fields` becomes `additionalProperties: false`. A
//! `Spanned` field is described as the value it wraps (`schemars(with)`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use schemars::generate::SchemaSettings;
use schemars::transform::{Transform, transform_subschemas};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "stella.toml",
    description = "A stella workspace: its apps, the lanes (environments) releases are promoted through, their gates and targets, and freeze windows. See docs/config.md."
)]
pub struct File {
    pub workspace: WorkspaceSection,
    /// Apps, each bound to an OCI repository: `[apps.NAME]`.
    #[serde(default)]
    #[schemars(with = "Named<AppConfig>")]
    pub apps: BTreeMap<Spanned<String>, AppConfig>,
    /// Lanes releases are promoted through, ordered by `from`: `[environments.NAME]`.
    #[serde(default)]
    #[schemars(with = "Named<EnvironmentConfig>")]
    pub environments: BTreeMap<Spanned<String>, EnvironmentConfig>,
    /// Where releases are deployed: `[targets.NAME]`.
    #[serde(default)]
    #[schemars(with = "Named<TargetConfig>")]
    pub targets: BTreeMap<Spanned<String>, TargetConfig>,
    /// Freeze windows, recurring or one-off: `[freeze.NAME]`.
    #[serde(default)]
    #[schemars(with = "Named<FreezeWindowConfig>")]
    pub freeze: BTreeMap<Spanned<String>, FreezeWindowConfig>,
}

/// `[workspace]`: the workspace itself.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSection {
    /// The workspace's name (not empty).
    #[schemars(with = "String")]
    pub name: Spanned<String>,
}

/// `[apps.NAME]`: an app, bound to an OCI repository.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// `oci-layout:PATH` or `HOST[:PORT]/REPO`.
    #[schemars(with = "String")]
    pub image: Spanned<String>,
    /// Plain HTTP to the registry (loopback registries use it anyway).
    #[serde(default)]
    pub insecure: bool,
    /// Attach each decision's capsule and verification summary to the
    /// image as OCI referrers. Default: on for a registry, off for an
    /// image layout.
    pub attach: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Switch the targets at once (the default).
    #[default]
    Direct,
    /// Router and nginx targets: health-check the release in the idle slot, then swap.
    Bluegreen,
    /// Router and nginx targets: walk the rollout's `steps`, analysed at each.
    Canary,
    /// Router and nginx targets: an A/B test giving the new release `split` percent of clients.
    Ab,
}

/// `[environments.NAME]`: a lane.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// The environment this one promotes from; lanes are ordered by it.
    #[schemars(with = "Option<String>")]
    pub from: Option<Spanned<String>>,
    /// Names under `[targets]`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub targets: Vec<Spanned<String>>,
    /// How a release reaches the targets (default `direct`).
    #[schemars(with = "Option<Strategy>")]
    pub strategy: Option<Spanned<Strategy>>,
    /// Path of a workflow template (`workflows/*.toml`); without one a promotion runs a single `deploy` step.
    #[schemars(with = "Option<String>")]
    pub workflow: Option<Spanned<String>>,
    /// What a release must pass to come in.
    #[serde(default)]
    pub gates: GatesConfig,
    /// How a canary moves: `strategy = "canary"` needs it.
    #[schemars(with = "Option<RolloutConfig>")]
    pub rollout: Option<Spanned<RolloutConfig>>,
}

/// `[environments.ENV.rollout]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// Canary: candidate weights in percent, rising, ending at 100.
    #[serde(default)]
    #[schemars(inner(range(min = 1, max = 100)))]
    pub steps: Vec<u8>,
    /// A/B: the percent of clients given variant b (the new release),
    /// each kept on its variant by a cookie (default 50).
    #[schemars(with = "Option<u8>", range(min = 1, max = 99))]
    pub split: Option<Spanned<u8>>,
    /// How long the previous release stays warm in the idle slot after a
    /// switch (default: until a newer release takes the slot).
    #[schemars(with = "Option<String>")]
    pub scale_down_delay: Option<Spanned<String>>,
    /// How long each step holds (and is analysed) before the next, or
    /// `manual`: until an operator resumes it.
    #[schemars(with = "Option<String>")]
    pub pause: Option<Spanned<String>>,
    /// When a canary step fails.
    pub analysis: Option<AnalysisConfig>,
}

/// When a canary step fails: sampled every `interval` from the router's
/// per-slot counters.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    /// How often a sample is taken (default: the pause).
    #[schemars(with = "Option<String>")]
    pub interval: Option<Spanned<String>>,
    /// A sample fails above this share of 5xx answers (0.01 is 1 %).
    pub max_error_rate: Option<f64>,
    /// A sample fails above this 95th-percentile latency, in milliseconds.
    pub max_p95_ms: Option<f64>,
    /// Fewer requests than this in an interval: inconclusive, not failed.
    pub min_requests: Option<u64>,
    /// Failed samples tolerated; one more rolls the canary back.
    pub failure_limit: Option<u32>,
    /// An HTTP GET sent to the candidate with each sample; a wrong
    /// answer fails the sample whatever the traffic says.
    #[schemars(with = "Option<ProbeConfig>")]
    pub probe: Option<Spanned<ProbeConfig>>,
}

/// A canary analysis's HTTP probe: a GET of `path` through the target,
/// forced to the candidate (`X-Stella-Variant: candidate`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Default `/`.
    pub path: Option<String>,
    /// The status expected; default 200.
    #[schemars(range(min = 100, max = 599))]
    pub status: Option<u16>,
    /// Text the body must contain.
    pub body: Option<String>,
    /// Default `2s`.
    pub timeout: Option<String>,
}

/// `[environments.ENV.gates]`: each gate is on when its table is present.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatesConfig {
    /// Reachable findings of the release's scan evidence, per severity.
    pub security: Option<SecurityGateConfig>,
    /// Signed approvals from named approvers.
    #[schemars(with = "Option<ApprovalGateConfig>")]
    pub approval: Option<Spanned<ApprovalGateConfig>>,
    /// No promotion while one of these freeze windows is active.
    pub freeze: Option<FreezeGateConfig>,
    /// Custom Rego policies.
    pub policy: Option<PolicyGateConfig>,
    /// The release must be live in the `from` environment (for `soak`).
    #[schemars(with = "Option<UpstreamGateConfig>")]
    pub upstream: Option<Spanned<UpstreamGateConfig>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityGateConfig {
    /// Reachable findings allowed per severity.
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeverityLimits {
    pub critical: Option<u32>,
    pub high: Option<u32>,
    pub medium: Option<u32>,
    pub low: Option<u32>,
    pub unknown: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalGateConfig {
    /// How many approvals are needed: at least 1, at most the number of approvers.
    #[schemars(range(min = 1))]
    pub required: u32,
    /// Email addresses of who may approve.
    #[schemars(with = "Vec<String>")]
    pub approvers: Vec<Spanned<String>>,
    /// The requester's own approval does not count.
    #[serde(default)]
    pub four_eyes: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeGateConfig {
    /// Names under `[freeze]`.
    #[schemars(with = "Vec<String>")]
    pub windows: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyGateConfig {
    /// Paths of Rego files; each must exist.
    #[schemars(with = "Vec<String>")]
    pub modules: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamGateConfig {
    /// How long the release must have been live upstream: `30m`, `1h`, `1h30m`, `2d`.
    #[schemars(with = "Option<String>")]
    pub soak: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// Releases unpacked into `path`, switched by a `current` link.
    Dir,
    /// Your own `deploy`, `health` and `rollback` commands.
    Script,
    /// An nginx stella runs (or drives, with `nginx`) in front of two slots.
    Nginx,
    /// stella's built-in router in front of two slots.
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

/// `[targets.NAME]`: where releases are deployed.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// What deploys here; each kind takes only its own keys.
    pub kind: TargetKind,
    /// Where releases are unpacked (`dir`, `router`, `nginx`: required); `{app}` is the app's name.
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    /// `router`, `nginx` (required): `IP:PORT`.
    #[schemars(with = "Option<String>")]
    pub listen: Option<Spanned<String>>,
    /// `router`, `nginx`: a process to run from the release folder instead of serving its files; `{port}` is its port.
    #[schemars(with = "Option<String>")]
    pub command: Option<Spanned<String>>,
    /// `script` (required): the deploy command.
    #[schemars(with = "Option<String>")]
    pub deploy: Option<Spanned<String>>,
    /// `script`: the health command.
    #[schemars(with = "Option<String>")]
    pub health: Option<Spanned<String>>,
    /// `script`: the rollback command.
    #[schemars(with = "Option<String>")]
    pub rollback: Option<Spanned<String>>,
    /// How long a script target's hook may run (default 10m); past it the
    /// hook's whole process group is killed and the deploy fails.
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
    /// How many unpacked releases to keep.
    #[schemars(with = "Option<u32>")]
    pub keep: Option<Spanned<u32>>,
    /// An `nginx` target served by an nginx stella does not run.
    #[schemars(with = "Option<ExistingNginx>")]
    pub nginx: Option<Spanned<ExistingNginx>>,
    /// How far an image may expand when unpacked here.
    #[schemars(with = "Option<UnpackLimitsConfig>")]
    pub unpack: Option<Spanned<UnpackLimitsConfig>>,
}

/// `[targets.NAME.unpack]`: limits on unpacking an image (defaults in
/// `deploy::unpack::Limits`); each at least 1.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnpackLimitsConfig {
    /// A layer may expand to this many times its compressed size.
    #[schemars(range(min = 1))]
    pub max_ratio: Option<u64>,
    /// MiB of a whole release, all layers together.
    #[schemars(range(min = 1))]
    pub max_release_mib: Option<u64>,
    /// Entries of a whole release.
    #[schemars(range(min = 1))]
    pub max_entries: Option<u64>,
    /// Components of an entry's path.
    #[schemars(range(min = 1))]
    pub max_depth: Option<u32>,
}

/// An nginx that is already running, which stella drives instead of
/// running its own: it writes the target's config into `conf_dir` (a
/// directory that nginx's `http` block includes), then runs `test` and
/// `reload`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExistingNginx {
    /// A directory nginx's `http` block includes; stella writes `stella-TARGET.conf` into it.
    #[schemars(with = "String")]
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
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeWindowConfig {
    /// Recurring: a 5-field cron expression, e.g. `0 18 * * FRI`.
    #[schemars(with = "Option<String>")]
    pub start: Option<Spanned<String>>,
    /// Recurring: a 5-field cron expression, e.g. `0 8 * * MON`.
    #[schemars(with = "Option<String>")]
    pub end: Option<Spanned<String>>,
    /// Recurring: an IANA zone name, e.g. `Europe/Madrid`.
    #[schemars(with = "Option<String>")]
    pub timezone: Option<Spanned<String>>,
    /// One-off: an RFC 3339 time.
    #[schemars(with = "Option<String>")]
    pub from: Option<Spanned<String>>,
    /// One-off: an RFC 3339 time after `from`.
    #[schemars(with = "Option<String>")]
    pub until: Option<Spanned<String>>,
    /// Emails who may sign a break-glass approval for this window.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub exceptions: Vec<Spanned<String>>,
    /// How many break-glass approvals from `exceptions` a promotion needs
    /// to go through while this window is active (default 1).
    #[schemars(with = "Option<u32>")]
    pub break_glass_approvals: Option<Spanned<u32>>,
}

/// The pattern of a name of an app, environment, target or freeze
/// window, as `domain::release::valid_app_name` checks it.
const NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";

/// In the schema only: a table whose keys are names and whose values are
/// `V` (the config's maps have `Spanned` keys, which have no schema).
struct Named<V>(PhantomData<V>);

impl<V: JsonSchema> JsonSchema for Named<V> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        format!("Named_{}", V::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "propertyNames": { "pattern": NAME_PATTERN },
            "additionalProperties": generator.subschema_for::<V>(),
        })
    }
}

/// The JSON Schema (draft 2020-12) of `stella.toml`, generated from the
/// types above.
pub fn json_schema() -> serde_json::Value {
    let schema = SchemaSettings::draft2020_12()
        .with(|s| s.transforms.push(Box::new(NoNulls)))
        .into_generator()
        .into_root_schema_for::<File>();
    schema.to_value()
}

/// TOML has no null: an optional key is one left out. Takes `null` out of
/// the types schemars gives an `Option`, and out of defaults (a default
/// table's `None` members are keys left out).
#[derive(Clone)]
struct NoNulls;

impl Transform for NoNulls {
    fn transform(&mut self, schema: &mut Schema) {
        transform_subschemas(self, schema);
        let Some(obj) = schema.as_object_mut() else {
            return;
        };
        if let Some(Value::Array(types)) = obj.get_mut("type") {
            types.retain(|t| t != "null");
            if types.len() == 1 {
                let only = types.remove(0);
                obj.insert("type".into(), only);
            }
        }
        if let Some(Value::Array(any)) = obj.get_mut("anyOf") {
            any.retain(|s| {
                s.as_object()
                    .is_none_or(|o| o.get("type") != Some(&"null".into()))
            });
            if any.len() == 1
                && let Value::Object(only) = any.remove(0)
            {
                obj.remove("anyOf");
                for (k, v) in only {
                    obj.entry(k).or_insert(v);
                }
            }
        }
        if let Some(default) = obj.get_mut("default") {
            drop_nulls(default);
        }
    }
}

fn drop_nulls(v: &mut Value) {
    if let Value::Object(members) = v {
        members.retain(|_, x| !x.is_null());
        members.values_mut().for_each(drop_nulls);
    }
}
