//! The decision capsule's payload: an in-toto Statement v1 whose predicate
//! records one decision — what, by whom, at which clock, on which inputs,
//! each gate's verdict, and the previous capsule of the environment.
//!
//! Numbers are integers only, so the canonical JSON (RFC 8785) of a
//! statement is the same on every machine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{Decision, Digest, Verdict};

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://stella-ops.org/decision-capsule/v1";
/// The DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The gate semantics this build evaluates. A capsule records the version
/// it was decided with; replay refuses versions it does not know.
pub const GATE_SEMANTICS: u32 = crate::gates::SEMANTICS;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Predicate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Promote,
    Rollback,
    CanaryStep,
    Abort,
    Pause,
    Resume,
    BreakGlass,
    /// An A/B test ended: everything to the winning variant.
    Consolidate,
    /// An environment's feature flags changed.
    Flags,
    /// The pin a deliberate rollback put on an app was lifted.
    Unpin,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Rollback => "rollback",
            Action::CanaryStep => "canary-step",
            Action::Abort => "abort",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::BreakGlass => "break-glass",
            Action::Consolidate => "consolidate",
            Action::Flags => "flags",
            Action::Unpin => "unpin",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Predicate {
    pub action: Action,
    pub app: String,
    pub release: ReleaseRef,
    /// The environment it promotes from, if any.
    pub from: Option<String>,
    /// The environment the decision is about.
    pub to: String,
    pub requested_by: String,
    /// Who asked, proven by their signature over the request, or the
    /// operating-system account, unverified. Absent from capsules sealed
    /// before requesters were proven; they replay as they were decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<crate::domain::requester::Requester>,
    /// The decision clock, RFC 3339 UTC.
    pub clock: String,
    pub promotion_id: Option<i64>,
    pub inputs: Inputs,
    pub gates: Vec<Verdict>,
    pub decision: Decision,
    /// What happened: `live`, `blocked`, `rolled-back`, … (the same
    /// words as before the type, so earlier capsules verify unchanged).
    pub outcome: crate::domain::PromotionOutcome,
    pub engine: Engine,
    /// The payload digest of the environment's previous capsule.
    pub previous: Option<Digest>,
    /// For a rollback: the release restored and the capsule it was
    /// originally promoted under.
    pub restores: Option<Restores>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRef {
    pub digest: Digest,
    pub tag: Option<String>,
    pub resolved_at: Option<String>,
}

/// A blob of evidence the decision used, by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRef {
    pub digest: Digest,
    pub media_type: String,
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRef {
    pub path: String,
    pub digest: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    pub name: String,
    pub email: String,
    pub keyid: String,
    /// The SPKI PEM blob.
    pub digest: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamRef {
    pub environment: String,
    pub digest: Digest,
    pub since: String,
}

/// Every input of the decision: enough to evaluate it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    /// Scan reports, VEX, SBOMs and approvals attached to the digest.
    pub evidence: Vec<EvidenceRef>,
    pub policies: Vec<PolicyRef>,
    /// The effective environment config (gates, freeze windows), as TOML.
    pub environment: EvidenceRef,
    /// The keys trusted to sign approvals.
    pub keys: Vec<KeyRef>,
    pub upstream: Option<UpstreamRef>,
    pub break_glass: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Engine {
    pub name: String,
    pub version: String,
    pub gate_semantics: u32,
}

impl Engine {
    pub fn current() -> Engine {
        Engine {
            name: "stella".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            gate_semantics: GATE_SEMANTICS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restores {
    pub digest: Digest,
    /// The capsule (payload digest) under which it was promoted.
    pub capsule: Option<Digest>,
}

impl Statement {
    pub fn new(predicate: Predicate) -> Statement {
        Statement {
            type_: STATEMENT_TYPE.into(),
            subject: vec![Subject {
                name: predicate.app.clone(),
                digest: BTreeMap::from([(
                    "sha256".to_owned(),
                    predicate.release.digest.hex().to_owned(),
                )]),
            }],
            predicate_type: PREDICATE_TYPE.into(),
            predicate,
        }
    }

    /// RFC 8785 canonical JSON: the exact bytes that are signed.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json_canonicalizer::to_vec(self).expect("a statement always serializes")
    }

    /// Every blob the statement references.
    pub fn referenced(&self) -> Vec<&Digest> {
        let i = &self.predicate.inputs;
        let mut out: Vec<&Digest> = i.evidence.iter().map(|e| &e.digest).collect();
        out.extend(i.policies.iter().map(|p| &p.digest));
        out.push(&i.environment.digest);
        out.extend(i.keys.iter().map(|k| &k.digest));
        out.sort();
        out.dedup();
        out
    }

    /// What is wrong with its shape, if anything.
    pub fn shape_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.type_ != STATEMENT_TYPE {
            p.push(format!(
                "statement _type is `{}`, expected {STATEMENT_TYPE}",
                self.type_
            ));
        }
        if self.predicate_type != PREDICATE_TYPE {
            p.push(format!(
                "predicateType is `{}`, expected {PREDICATE_TYPE}",
                self.predicate_type
            ));
        }
        match self.subject.as_slice() {
            [s] => {
                if s.name != self.predicate.app {
                    p.push(format!(
                        "subject name `{}` is not the predicate's app `{}`",
                        s.name, self.predicate.app
                    ));
                }
                if s.digest.get("sha256").map(String::as_str)
                    != Some(self.predicate.release.digest.hex())
                {
                    p.push(format!(
                        "subject digest does not match the predicate's release {}",
                        self.predicate.release.digest
                    ));
                }
            }
            _ => p.push(format!(
                "statement has {} subjects, expected 1",
                self.subject.len()
            )),
        }
        p
    }
}

impl Predicate {
    /// `allowed` or `denied`.
    pub fn decision_word(&self) -> &'static str {
        match self.decision {
            Decision::Allow => "allowed",
            Decision::Deny => "denied",
        }
    }
}
