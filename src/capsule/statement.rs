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
    /// A release set: the other apps decided with this one, as one
    /// decision. The top-level `app`, `release`, `inputs` and `gates` are
    /// the set's first member; `decision` and `outcome` are the set's
    /// (allowed only when every member is). Absent for one app, so
    /// capsules sealed before sets existed verify unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Member>,
}

/// One more app of a release set: its release, the inputs its gates read
/// and their verdicts, and its own decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub app: String,
    pub release: ReleaseRef,
    pub inputs: Inputs,
    pub gates: Vec<Verdict>,
    pub decision: Decision,
    /// For a set's rollback: the release restored and the capsule it was
    /// promoted under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restores: Option<Restores>,
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
            subject: predicate
                .apps()
                .map(|(app, release)| subject_of(app, &release.digest))
                .collect(),
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
        let mut out: Vec<&Digest> = Vec::new();
        let all = std::iter::once(&self.predicate.inputs)
            .chain(self.predicate.members.iter().map(|m| &m.inputs));
        for i in all {
            out.extend(i.evidence.iter().map(|e| &e.digest));
            out.extend(i.policies.iter().map(|p| &p.digest));
            out.push(&i.environment.digest);
            out.extend(i.keys.iter().map(|k| &k.digest));
        }
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
        let expected: Vec<Subject> = self
            .predicate
            .apps()
            .map(|(app, release)| subject_of(app, &release.digest))
            .collect();
        if self.subject.len() != expected.len() {
            p.push(format!(
                "statement has {} subjects, expected {} (one per app it decides)",
                self.subject.len(),
                expected.len()
            ));
        } else {
            for (s, e) in self.subject.iter().zip(&expected) {
                if s.name != e.name {
                    p.push(format!(
                        "subject name `{}` is not the predicate's app `{}`",
                        s.name, e.name
                    ));
                } else if s.digest != e.digest {
                    p.push(format!(
                        "subject digest of `{}` does not match the predicate's release",
                        s.name
                    ));
                }
            }
        }
        let mut names: Vec<&str> = self.predicate.apps().map(|(a, _)| a).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            p.push("a release set names the same app twice".into());
        }
        p
    }
}

fn subject_of(app: &str, digest: &Digest) -> Subject {
    Subject {
        name: app.to_owned(),
        digest: BTreeMap::from([("sha256".to_owned(), digest.hex().to_owned())]),
    }
}

impl Predicate {
    /// Every app the decision is about with its release: the first, then
    /// a set's other members.
    pub fn apps(&self) -> impl Iterator<Item = (&str, &ReleaseRef)> {
        std::iter::once((self.app.as_str(), &self.release))
            .chain(self.members.iter().map(|m| (m.app.as_str(), &m.release)))
    }

    /// Whether it decides a release set (several apps as one).
    pub fn is_set(&self) -> bool {
        !self.members.is_empty()
    }

    /// Each app's own decision as a predicate of its own: the first
    /// member's, then the others' (same action, clock, environment and
    /// requester), so gates replay one app at a time.
    pub fn each(&self) -> Vec<Predicate> {
        let mut first = self.clone();
        first.members = Vec::new();
        let mut out = Vec::with_capacity(1 + self.members.len());
        for m in &self.members {
            let mut p = first.clone();
            p.app = m.app.clone();
            p.release = m.release.clone();
            p.inputs = m.inputs.clone();
            p.gates = m.gates.clone();
            p.decision = m.decision;
            p.restores = m.restores.clone();
            out.push(p);
        }
        if self.is_set() {
            // The first member's own decision is what its gates say; the
            // top level holds the set's.
            first.decision = Decision::of(&first.gates);
        }
        out.insert(0, first);
        out
    }

    /// `allowed` or `denied`.
    pub fn decision_word(&self) -> &'static str {
        match self.decision {
            Decision::Allow => "allowed",
            Decision::Deny => "denied",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            evidence: vec![],
            policies: vec![],
            environment: EvidenceRef {
                digest: Digest::of(b"env"),
                media_type: "application/toml".into(),
                kind: "config".into(),
            },
            keys: vec![],
            upstream: None,
            break_glass: None,
        }
    }

    fn release(body: &[u8]) -> ReleaseRef {
        ReleaseRef {
            digest: Digest::of(body),
            tag: None,
            resolved_at: None,
        }
    }

    fn set() -> Statement {
        Statement::new(Predicate {
            action: Action::Promote,
            app: "api".into(),
            release: release(b"api"),
            from: None,
            to: "dev".into(),
            requested_by: "a@example.com".into(),
            requester: None,
            clock: "2026-12-04T12:00:00Z".into(),
            promotion_id: Some(1),
            inputs: inputs(),
            gates: vec![],
            decision: Decision::Allow,
            outcome: crate::domain::PromotionOutcome::Live,
            engine: Engine::current(),
            previous: None,
            restores: None,
            reason: None,
            members: vec![Member {
                app: "web".into(),
                release: release(b"web"),
                inputs: inputs(),
                gates: vec![],
                decision: Decision::Allow,
                restores: None,
            }],
        })
    }

    #[test]
    fn a_set_has_a_subject_per_app_and_each_is_checked() {
        let st = set();
        let names: Vec<&str> = st.subject.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["api", "web"]);
        assert!(st.shape_problems().is_empty(), "{:?}", st.shape_problems());

        let mut dropped = st.clone();
        dropped.subject.pop();
        assert!(
            dropped.shape_problems()[0].contains("expected 2"),
            "{:?}",
            dropped.shape_problems()
        );

        let mut swapped = st.clone();
        swapped.subject[1].digest = swapped.subject[0].digest.clone();
        assert!(
            swapped.shape_problems()[0].contains("subject digest of `web`"),
            "{:?}",
            swapped.shape_problems()
        );

        let mut twice = st.clone();
        twice.predicate.members[0].app = "api".into();
        twice.subject[1].name = "api".into();
        assert!(
            twice
                .shape_problems()
                .iter()
                .any(|p| p.contains("same app twice"))
        );
    }

    #[test]
    fn each_member_is_its_own_predicate_and_one_app_serializes_as_before() {
        let st = set();
        let each = st.predicate.each();
        assert_eq!(each.len(), 2);
        assert_eq!(each[1].app, "web");
        assert_eq!(each[1].release.digest, Digest::of(b"web"));
        assert!(each.iter().all(|p| p.members.is_empty()));
        let mut one = st.predicate.clone();
        one.members.clear();
        let json = serde_json::to_value(&one).unwrap();
        assert!(json.get("members").is_none(), "absent for one app");
    }
}
