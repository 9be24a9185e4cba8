//! The verification summary sealed beside a decision: an in-toto
//! Statement v1 whose predicate is a SLSA Verification Summary Attestation
//! (`https://slsa.dev/verification_summary/v1`), signed as its own DSSE
//! envelope with the sealing key. Tools that know nothing of capsules can
//! check it: the subject is the image digest, `verificationResult` says
//! whether the release passed the environment's rules, `policy` names the
//! environment and the digest of its effective rules, `inputAttestations`
//! the capsule and the evidence it used.
//!
//! A summary is derived from the capsule's statement alone (plus where the
//! image lives and the approval gate's size): the same capsule always
//! gives the same summary bytes, and `verify_against` checks that a
//! summary says what its capsule says.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::statement::{Action, PAYLOAD_TYPE, STATEMENT_TYPE, Statement};
use crate::domain::verdict::{GateKind, Outcome};
use crate::domain::{Decision, Digest, PromotionOutcome};
use crate::sign::{Envelope, PrivateKey};

pub const VSA_PREDICATE_TYPE: &str = "https://slsa.dev/verification_summary/v1";
/// Who verified: this program. The signing key says which workspace.
pub const VERIFIER_ID: &str = "https://stella.dev/verifier";
/// Where an environment's rules are named: `POLICY_URI_PREFIX` + name.
pub const POLICY_URI_PREFIX: &str = "https://stella.dev/environments/";
/// The artifact types of what is attached to an image.
pub const SUMMARY_ARTIFACT_TYPE: &str = "application/vnd.stella.verification-summary.v1+json";
pub const CAPSULE_ARTIFACT_TYPE: &str = "application/vnd.stella.decision-capsule.v1+json";
/// The layer media type of a DSSE envelope (as the in-toto and Sigstore
/// tools name it).
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The layer media type of an exported capsule file (JSON).
pub const CAPSULE_FILE_MEDIA_TYPE: &str = "application/vnd.stella.capsule.v1+json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryStatement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<super::statement::Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Vsa,
}

/// SLSA VSA v1. Field names are the specification's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vsa {
    pub verifier: Verifier,
    pub time_verified: String,
    pub resource_uri: String,
    pub policy: ResourceDescriptor,
    pub input_attestations: Vec<ResourceDescriptor>,
    pub verification_result: VerificationResult,
    pub verified_levels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verifier {
    pub id: String,
    #[serde(default)]
    pub version: BTreeMap<String, String>,
}

/// An in-toto ResourceDescriptor (the fields used here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    pub digest: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VerificationResult {
    #[serde(rename = "PASSED")]
    Passed,
    #[serde(rename = "FAILED")]
    Failed,
}

impl VerificationResult {
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationResult::Passed => "PASSED",
            VerificationResult::Failed => "FAILED",
        }
    }
}

/// What a summary needs besides the capsule's statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Where the image lives: `REGISTRY/REPOSITORY` or `oci-layout:PATH`.
    pub image: String,
    /// How many approvers the environment names (for `_OF_N`).
    pub approvers: Option<usize>,
}

/// Does this action decide whether a release may run in the environment?
/// Promotions (break-glass ones too) and rollbacks do; a canary's steps,
/// pauses, flags and unpins are sealed in the chain but verify nothing
/// about an image.
pub fn summarized(action: Action) -> bool {
    matches!(
        action,
        Action::Promote | Action::BreakGlass | Action::Rollback
    )
}

/// PASSED when the rules allowed the release and it went in: a promotion
/// `live` or `deployed`, a rollback that brought the release back
/// (`rolled-back`). A blocked promotion, a canary its analysis sent back,
/// a deploy that failed or was aborted, a rollback that failed: FAILED.
pub fn result_of(
    action: Action,
    decision: Decision,
    outcome: PromotionOutcome,
) -> VerificationResult {
    use PromotionOutcome as O;
    match (action, decision, outcome) {
        (Action::Rollback, Decision::Allow, O::RolledBack)
        | (Action::Promote | Action::BreakGlass, Decision::Allow, O::Live | O::Deployed) => {
            VerificationResult::Passed
        }
        _ => VerificationResult::Failed,
    }
}

/// `STELLA_GATE_SECURITY`, `STELLA_APPROVALS_2_OF_3`, `STELLA_FREEZE_CLEAR`,
/// … for each gate that held (passed or warned). A break-glass decision
/// says so, since its failed gates were overridden.
pub fn verified_levels(st: &Statement, approvers: Option<usize>) -> Vec<String> {
    let mut out = Vec::new();
    for v in &st.predicate.gates {
        if !matches!(v.verdict, Outcome::Pass | Outcome::Warn) {
            continue;
        }
        out.push(match v.gate {
            GateKind::Security => "STELLA_GATE_SECURITY".to_owned(),
            GateKind::Approval => {
                let required = v.measured["required"].as_u64().unwrap_or(0);
                match approvers {
                    Some(n) => format!("STELLA_APPROVALS_{required}_OF_{n}"),
                    None => format!("STELLA_APPROVALS_{required}"),
                }
            }
            GateKind::Freeze => "STELLA_FREEZE_CLEAR".to_owned(),
            GateKind::Policy => "STELLA_POLICY".to_owned(),
            GateKind::Upstream => "STELLA_UPSTREAM_SOAK".to_owned(),
        });
    }
    match st.predicate.action {
        Action::BreakGlass => out.push("STELLA_BREAK_GLASS".to_owned()),
        // Back to a release the environment ran before, under the capsule
        // that promoted it (named in the statement's `restores`).
        Action::Rollback => out.push("STELLA_ROLLBACK".to_owned()),
        _ => {}
    }
    out
}

/// The digest of an environment's effective rules: sha256 of the
/// canonical JSON `{"environment": <config blob digest>, "policies":
/// [{"path", "digest"}…]}` — both are in the capsule, so anyone holding it
/// can recompute this.
pub fn rules_digest(st: &Statement) -> Digest {
    let i = &st.predicate.inputs;
    let doc = serde_json::json!({
        "environment": i.environment.digest.to_string(),
        "policies": i.policies.iter().map(|p| serde_json::json!({
            "path": p.path, "digest": p.digest.to_string()
        })).collect::<Vec<_>>(),
    });
    Digest::of(&serde_json_canonicalizer::to_vec(&doc).expect("JSON canonicalizes"))
}

fn sha256(d: &Digest) -> BTreeMap<String, String> {
    BTreeMap::from([("sha256".to_owned(), d.hex().to_owned())])
}

/// `IMAGE@sha256:…`: the resource a summary is about.
pub fn resource_uri(image: &str, digest: &Digest) -> String {
    format!("{image}@{digest}")
}

/// The summary of the capsule `st` (whose payload digest is `capsule`),
/// or `None` for an action that decides nothing about an image.
pub fn summarize(st: &Statement, capsule: &Digest, ctx: &Context) -> Option<SummaryStatement> {
    let p = &st.predicate;
    // A summary is about one image; a release set's decision is in its
    // capsule, one subject per app.
    if !summarized(p.action) || p.is_set() {
        return None;
    }
    let mut annotations = BTreeMap::from([
        ("action".to_owned(), p.action.as_str().into()),
        ("app".to_owned(), p.app.clone().into()),
        ("environment".to_owned(), p.to.clone().into()),
        ("decision".to_owned(), p.decision_word().into()),
        ("outcome".to_owned(), p.outcome.as_str().into()),
        ("requestedBy".to_owned(), p.requested_by.clone().into()),
    ]);
    if let Some(r) = &p.requester {
        annotations.insert(
            "requester".to_owned(),
            serde_json::to_value(r).expect("a requester serializes"),
        );
    }
    if let Some(id) = p.promotion_id {
        annotations.insert("promotion".to_owned(), id.into());
    }
    let mut inputs = vec![ResourceDescriptor {
        name: Some("decision-capsule".into()),
        uri: None,
        digest: sha256(capsule),
        media_type: Some(PAYLOAD_TYPE.into()),
        annotations: Some(annotations),
    }];
    inputs.extend(p.inputs.evidence.iter().map(|e| ResourceDescriptor {
        name: Some(e.kind.clone()),
        uri: None,
        digest: sha256(&e.digest),
        media_type: Some(e.media_type.clone()),
        annotations: None,
    }));
    Some(SummaryStatement {
        type_: STATEMENT_TYPE.into(),
        subject: st.subject.clone(),
        predicate_type: VSA_PREDICATE_TYPE.into(),
        predicate: Vsa {
            verifier: Verifier {
                id: VERIFIER_ID.into(),
                version: BTreeMap::from([("stella".to_owned(), p.engine.version.clone())]),
            },
            time_verified: p.clock.clone(),
            resource_uri: resource_uri(&ctx.image, &p.release.digest),
            policy: ResourceDescriptor {
                name: Some(p.to.clone()),
                uri: Some(format!("{POLICY_URI_PREFIX}{}", p.to)),
                digest: sha256(&rules_digest(st)),
                media_type: None,
                annotations: None,
            },
            input_attestations: inputs,
            verification_result: result_of(p.action, p.decision, p.outcome),
            verified_levels: verified_levels(st, ctx.approvers),
        },
    })
}

impl SummaryStatement {
    /// RFC 8785 canonical JSON: the bytes that are signed.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json_canonicalizer::to_vec(self).expect("a summary always serializes")
    }

    pub fn sign(&self, key: &PrivateKey) -> Envelope {
        Envelope::sign(PAYLOAD_TYPE, &self.canonical(), key)
    }

    /// The environment it is about (the policy's name).
    pub fn environment(&self) -> Option<&str> {
        self.predicate.policy.name.as_deref()
    }

    /// The subject's sha256, if it has exactly one subject.
    pub fn subject_digest(&self) -> Option<Digest> {
        match self.subject.as_slice() {
            [s] => Digest::from_hex(s.digest.get("sha256")?).ok(),
            _ => None,
        }
    }

    /// The capsule it summarizes (its payload digest).
    pub fn capsule(&self) -> Option<Digest> {
        self.predicate
            .input_attestations
            .iter()
            .find(|d| d.name.as_deref() == Some("decision-capsule"))
            .and_then(|d| Digest::from_hex(d.digest.get("sha256")?).ok())
    }

    /// A string the capsule's annotations carry (`requestedBy`, `app`, …).
    pub fn annotation(&self, key: &str) -> Option<&serde_json::Value> {
        self.predicate
            .input_attestations
            .iter()
            .find(|d| d.name.as_deref() == Some("decision-capsule"))?
            .annotations
            .as_ref()?
            .get(key)
    }
}

/// Why bytes are not a summary this program can use.
pub fn parse(payload: &[u8]) -> Result<SummaryStatement, String> {
    // The statement's type and predicate type first: another kind of
    // attestation is named as such, not as a malformed summary.
    #[derive(Deserialize)]
    struct Kind {
        #[serde(rename = "_type")]
        type_: String,
        #[serde(rename = "predicateType")]
        predicate_type: String,
    }
    let k: Kind =
        serde_json::from_slice(payload).map_err(|e| format!("not an in-toto statement ({e})"))?;
    if k.type_ != STATEMENT_TYPE {
        return Err(format!("_type is `{}`, expected {STATEMENT_TYPE}", k.type_));
    }
    if k.predicate_type != VSA_PREDICATE_TYPE {
        return Err(format!(
            "predicateType is `{}`, expected {VSA_PREDICATE_TYPE}",
            k.predicate_type
        ));
    }
    let s: SummaryStatement = serde_json::from_slice(payload)
        .map_err(|e| format!("not a verification summary statement ({e})"))?;
    if s.subject_digest().is_none() {
        return Err("it does not have exactly one subject with a sha256 digest".into());
    }
    Ok(s)
}

/// Checks that a signed summary says what its capsule says: the same
/// subject, the capsule's payload digest among its inputs, the
/// environment, the rules digest, the decision clock and the result.
pub fn check_against(
    summary: &SummaryStatement,
    capsule: &Statement,
    capsule_digest: &Digest,
) -> Result<(), String> {
    let p = &capsule.predicate;
    let mut problems = Vec::new();
    if summary.subject != capsule.subject {
        problems.push("its subject is not the capsule's".to_owned());
    }
    if summary.capsule().as_ref() != Some(capsule_digest) {
        problems.push(format!("it does not name capsule {capsule_digest}"));
    }
    if summary.environment() != Some(p.to.as_str()) {
        problems.push(format!("its environment is not `{}`", p.to));
    }
    if summary
        .predicate
        .policy
        .digest
        .get("sha256")
        .map(String::as_str)
        != Some(rules_digest(capsule).hex())
    {
        problems.push("its policy digest is not the capsule's rules digest".into());
    }
    if summary.predicate.time_verified != p.clock {
        problems.push(format!(
            "timeVerified {} is not the capsule's clock {}",
            summary.predicate.time_verified, p.clock
        ));
    }
    if summary.predicate.verification_result != result_of(p.action, p.decision, p.outcome) {
        problems.push(format!(
            "it says {} but the capsule's decision was {} ({})",
            summary.predicate.verification_result.as_str(),
            p.decision_word(),
            p.outcome
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_follow_decision_and_outcome() {
        use PromotionOutcome as O;
        use VerificationResult::{Failed, Passed};
        let promote = |d, o| result_of(Action::Promote, d, o);
        assert_eq!(promote(Decision::Allow, O::Live), Passed);
        assert_eq!(promote(Decision::Allow, O::Deployed), Passed);
        for o in [O::RolledBack, O::DeployFailed, O::Aborted, O::Blocked] {
            assert_eq!(promote(Decision::Allow, o), Failed);
        }
        assert_eq!(promote(Decision::Deny, O::Blocked), Failed);
        assert_eq!(
            result_of(Action::BreakGlass, Decision::Allow, O::Deployed),
            Passed
        );
        let rollback = |o| result_of(Action::Rollback, Decision::Allow, o);
        assert_eq!(rollback(O::RolledBack), Passed);
        assert_eq!(rollback(O::RollbackFailed), Failed);
    }

    fn golden() -> (Statement, Digest) {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/staging-58b58f-2026-11-24.yaml"
        );
        let file = super::super::CapsuleFile::parse(&std::fs::read(path).unwrap()).unwrap();
        let payload = file.envelope.payload_bytes().unwrap();
        (
            serde_json::from_slice(&payload).unwrap(),
            Digest::of(&payload),
        )
    }

    #[test]
    fn a_summary_says_what_its_capsule_says_and_is_checked_against_it() {
        let (st, capsule) = golden();
        let ctx = Context {
            image: "127.0.0.1:5000/acme/api-gateway".into(),
            approvers: Some(2),
        };
        let s = summarize(&st, &capsule, &ctx).unwrap();
        assert_eq!(s.subject, st.subject);
        assert_eq!(s.predicate.time_verified, st.predicate.clock);
        assert_eq!(s.environment(), Some(st.predicate.to.as_str()));
        assert_eq!(s.capsule(), Some(capsule.clone()));
        assert_eq!(
            s.predicate.resource_uri,
            format!(
                "127.0.0.1:5000/acme/api-gateway@{}",
                st.predicate.release.digest
            )
        );
        assert_eq!(
            s.predicate.verification_result,
            result_of(
                st.predicate.action,
                st.predicate.decision,
                st.predicate.outcome
            )
        );
        // One level per gate that held, named after it.
        let held = st
            .predicate
            .gates
            .iter()
            .filter(|v| matches!(v.verdict, Outcome::Pass | Outcome::Warn))
            .count();
        assert_eq!(s.predicate.verified_levels.len(), held);
        // Deterministic, and parses back.
        assert_eq!(
            s.canonical(),
            summarize(&st, &capsule, &ctx).unwrap().canonical()
        );
        assert_eq!(parse(&s.canonical()).unwrap(), s);
        check_against(&s, &st, &capsule).unwrap();

        let mut flipped = s.clone();
        flipped.predicate.verification_result = match s.predicate.verification_result {
            VerificationResult::Passed => VerificationResult::Failed,
            VerificationResult::Failed => VerificationResult::Passed,
        };
        assert!(
            check_against(&flipped, &st, &capsule)
                .unwrap_err()
                .contains("it says")
        );
        let e = check_against(&s, &st, &Digest::of(b"another")).unwrap_err();
        assert!(e.contains("does not name capsule"), "{e}");
        let mut other_env = s.clone();
        other_env.predicate.policy.name = Some("prod-eu".into());
        assert!(check_against(&other_env, &st, &capsule).is_err());
    }

    #[test]
    fn only_decisions_about_an_image_are_summarized() {
        let (mut st, capsule) = golden();
        let ctx = Context {
            image: "x".into(),
            approvers: None,
        };
        for a in [
            Action::CanaryStep,
            Action::Pause,
            Action::Flags,
            Action::Unpin,
        ] {
            st.predicate.action = a;
            assert!(summarize(&st, &capsule, &ctx).is_none(), "{a:?}");
        }
        st.predicate.action = Action::BreakGlass;
        let s = summarize(&st, &capsule, &ctx).unwrap();
        assert!(
            s.predicate
                .verified_levels
                .contains(&"STELLA_BREAK_GLASS".to_owned())
        );
    }

    #[test]
    fn parse_refuses_other_statements() {
        assert!(parse(b"{}").is_err());
        let not_vsa = br#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"00"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{}}"#;
        assert!(parse(not_vsa).unwrap_err().contains("predicateType"));
    }
}
