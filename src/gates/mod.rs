//! Gates: each a pure function of (inputs, clock) → `Verdict`. No wall
//! clock, no network, no randomness in here — that is what lets a capsule
//! replay a decision years later and get the same answer.
//!
//! `collect` is the one impure part: it reads the workspace to build
//! `GateInputs`; everything else only looks at them.

pub mod approval;
pub mod calendar;
pub mod collect;
pub mod freeze;
pub mod policy;
pub mod security;
pub mod upstream;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::config::model::{FreezeWindowConfig, GatesConfig};
use crate::domain::{Decision, Digest, Verdict};
use crate::scan::{Format, Report};
use crate::sign::PublicKey;

/// What is being decided: which release, into which environment, for whom.
#[derive(Debug, Clone)]
pub struct Subject {
    pub app: String,
    pub digest: Digest,
    pub tag: Option<String>,
    pub environment: String,
    /// The environment it promotes from, if any.
    pub from: Option<String>,
    pub requested_by: String,
    pub promotion_id: Option<i64>,
}

/// What kind of evidence a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceKind {
    Scan,
    Vex,
    Sbom,
    Approval,
    Other,
}

impl EvidenceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::Scan => "scan",
            EvidenceKind::Vex => "vex",
            EvidenceKind::Sbom => "sbom",
            EvidenceKind::Approval => "approval",
            EvidenceKind::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<EvidenceKind> {
        Some(match s {
            "scan" => EvidenceKind::Scan,
            "vex" => EvidenceKind::Vex,
            "sbom" => EvidenceKind::Sbom,
            "approval" => EvidenceKind::Approval,
            "other" => EvidenceKind::Other,
            _ => return None,
        })
    }
}

/// A parsed scan, VEX or SBOM document, and which blob it came from.
#[derive(Debug, Clone)]
pub struct ScanEvidence {
    pub digest: Digest,
    pub kind: EvidenceKind,
    pub format: Format,
    pub report: Report,
}

/// A signed approval, as stored (verified inside the gate).
#[derive(Debug, Clone)]
pub struct ApprovalEvidence {
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

/// A public key the workspace trusts, and whose it is.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub name: String,
    pub email: String,
    pub key: PublicKey,
}

/// A Rego module's path (as configured) and source.
#[derive(Debug, Clone)]
pub struct PolicyModule {
    pub path: String,
    pub source: String,
}

/// What is live in the environment a release promotes from.
#[derive(Debug, Clone)]
pub struct LiveState {
    pub environment: String,
    pub digest: Digest,
    pub since: DateTime<Utc>,
}

/// Everything a decision looks at.
#[derive(Debug, Clone)]
pub struct GateInputs {
    pub subject: Subject,
    pub gates: GatesConfig,
    pub freeze_windows: BTreeMap<String, FreezeWindowConfig>,
    pub scans: Vec<ScanEvidence>,
    pub approvals: Vec<ApprovalEvidence>,
    pub keys: Vec<TrustedKey>,
    pub policies: Vec<PolicyModule>,
    /// The app's live release in the `from` environment, if any.
    pub upstream: Option<LiveState>,
    /// `--break-glass REASON`.
    pub break_glass: Option<String>,
    /// The decision clock.
    pub now: DateTime<Utc>,
}

/// The gate semantics this build evaluates (recorded in every capsule).
/// 2: the security gate counts each finding once across the reports of a
/// scan, reads SARIF packages, reports non-vulnerabilities apart and
/// matches VEX products and subcomponents as OpenVEX and CycloneDX do.
pub const SEMANTICS: u32 = 2;

/// Evaluates every gate the environment configures, and only those, in a
/// fixed order (security, approval, freeze, policy, upstream).
pub fn evaluate(inputs: &GateInputs) -> (Decision, Vec<Verdict>) {
    evaluate_with(inputs, SEMANTICS)
}

/// [`evaluate`] with the gate semantics of an earlier decision (replay).
pub fn evaluate_with(inputs: &GateInputs, semantics: u32) -> (Decision, Vec<Verdict>) {
    let g = &inputs.gates;
    let mut verdicts = Vec::new();
    // The policy evaluator loads the modules while the other gates run.
    let evaluator = g.policy.as_ref().and_then(|_| policy::start_for(inputs));
    let security = g
        .security
        .as_ref()
        .map(|cfg| security::evaluate_with(cfg, &inputs.scans, &inputs.subject, semantics));
    let approvals = approval::check(inputs, crate::domain::approval::Purpose::Promote);
    let approval = g
        .approval
        .as_ref()
        .map(|cfg| approval::evaluate(cfg.get_ref(), &approvals, &inputs.subject));
    let freeze = g.freeze.as_ref().map(|cfg| freeze::evaluate(cfg, inputs));
    verdicts.extend(security.clone());
    verdicts.extend(approval);
    verdicts.extend(freeze.clone());
    if let Some(cfg) = &g.policy {
        let facts = policy::Facts {
            security: security.as_ref(),
            approvals: &approvals,
            frozen: freeze
                .as_ref()
                .is_some_and(|f| f.measured["active"] == true),
        };
        verdicts.push(policy::evaluate_started(cfg, inputs, &facts, evaluator));
    }
    if let Some(cfg) = &g.upstream {
        verdicts.push(upstream::evaluate(cfg.get_ref(), inputs));
    }
    (Decision::of(&verdicts), verdicts)
}

/// `2026-11-30T07:00:00Z`
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `3h20m`, `2d4h`, `45s`: a short human duration.
pub fn human_duration(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    let (days, hours, mins, secs) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}
