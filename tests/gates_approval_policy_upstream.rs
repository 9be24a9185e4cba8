//! The approval, freeze (break-glass), policy and upstream gates through
//! `gates::evaluate`, with inputs built in memory.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use stella::config::Config;
use stella::domain::approval::{APPROVAL_PAYLOAD_TYPE, APPROVAL_TYPE, ApprovalStatement, Purpose};
use stella::domain::{Decision, Digest, GateKind, Outcome, Verdict};
use stella::gates::{
    self, ApprovalEvidence, GateInputs, LiveState, PolicyModule, Subject, TrustedKey,
};
use stella::sign::{Envelope, PrivateKey};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

const CONFIG: &str = r#"
[workspace]
name = "t"
[environments.dev]
[environments.staging]
from = "dev"
[environments.staging.gates.approval]
required = 2
approvers = ["alice@example.com", "bob@example.com", "carol@example.com"]
four_eyes = true
[environments.staging.gates.freeze]
windows = ["black-friday"]
[environments.staging.gates.upstream]
soak = "1h"
[freeze.black-friday]
from = "2026-11-27T00:00:00Z"
until = "2026-11-30T23:59:59Z"
exceptions = ["carol@example.com"]
"#;

struct Signer {
    key: PrivateKey,
    email: &'static str,
}

fn signer(seed: u8, email: &'static str) -> Signer {
    Signer {
        key: PrivateKey::from_seed(&[seed; 32]),
        email,
    }
}

fn inputs(now: &str) -> GateInputs {
    let config = Config::parse(Path::new("/nowhere/stella.toml"), CONFIG).unwrap();
    let env = config.environment("staging").unwrap();
    GateInputs {
        subject: Subject {
            app: "api".into(),
            digest: Digest::of(b"release 1"),
            tag: Some("1.0".into()),
            environment: "staging".into(),
            from: Some("dev".into()),
            requested_by: "alice@example.com".into(),
            promotion_id: None,
        },
        gates: env.gates.clone(),
        freeze_windows: config.freeze.clone(),
        scans: vec![],
        approvals: vec![],
        keys: [
            "alice@example.com",
            "bob@example.com",
            "carol@example.com",
            "mallory@example.com",
        ]
        .iter()
        .enumerate()
        .map(|(i, e)| TrustedKey {
            name: e.split('@').next().unwrap().into(),
            email: (*e).into(),
            key: PrivateKey::from_seed(&[i as u8 + 1; 32]).public(),
        })
        .collect(),
        policies: vec![],
        upstream: Some(LiveState {
            environment: "dev".into(),
            digest: Digest::of(b"release 1"),
            since: t("2026-11-20T00:00:00Z"),
        }),
        break_glass: None,
        now: t(now),
    }
}

fn statement(
    s: &Signer,
    digest: &Digest,
    env: &str,
    at: &str,
    purpose: Purpose,
) -> ApprovalStatement {
    ApprovalStatement {
        type_: APPROVAL_TYPE.into(),
        app: "api".into(),
        digest: digest.clone(),
        environment: env.into(),
        promotion_id: None,
        signer: s.email.into(),
        signed_at: at.into(),
        purpose,
        comment: None,
    }
}

fn sign(s: &Signer, st: &ApprovalStatement) -> ApprovalEvidence {
    let payload = serde_json_canonicalizer::to_vec(st).unwrap();
    let bytes =
        serde_json::to_vec(&Envelope::sign(APPROVAL_PAYLOAD_TYPE, &payload, &s.key)).unwrap();
    ApprovalEvidence {
        digest: Digest::of(&bytes),
        bytes,
    }
}

fn approve(i: &mut GateInputs, s: &Signer) {
    let st = statement(
        s,
        &i.subject.digest,
        "staging",
        "2026-11-20T10:00:00Z",
        Purpose::Promote,
    );
    i.approvals.push(sign(s, &st));
}

fn verdict(i: &GateInputs, gate: GateKind) -> Verdict {
    gates::evaluate(i)
        .1
        .into_iter()
        .find(|v| v.gate == gate)
        .unwrap()
}

const BEFORE_FREEZE: &str = "2026-11-26T12:00:00Z";

#[test]
fn two_distinct_approvers_pass() {
    let (alice, bob, carol) = (
        signer(1, "alice@example.com"),
        signer(2, "bob@example.com"),
        signer(3, "carol@example.com"),
    );
    let mut i = inputs(BEFORE_FREEZE);
    let v = verdict(&i, GateKind::Approval);
    assert_eq!(v.summary, "FAIL — 0 of 2 required approvals");
    assert!(
        v.unblock[0].starts_with("2 more approvals from: bob@example.com, carol@example.com"),
        "{}",
        v.unblock[0]
    );

    approve(&mut i, &bob);
    approve(&mut i, &bob); // twice: still one approver
    assert_eq!(verdict(&i, GateKind::Approval).verdict, Outcome::Fail);
    approve(&mut i, &carol);
    let v = verdict(&i, GateKind::Approval);
    assert_eq!(
        v.summary,
        "PASS — signed by bob@example.com, carol@example.com"
    );
    assert_eq!(gates::evaluate(&i).0, Decision::Allow);

    // Four eyes: the requester's own approval is discarded.
    let mut i = inputs(BEFORE_FREEZE);
    approve(&mut i, &alice);
    approve(&mut i, &bob);
    let v = verdict(&i, GateKind::Approval);
    assert_eq!(v.verdict, Outcome::Fail);
    assert!(
        v.reasons
            .iter()
            .any(|r| r.contains("alice@example.com requested this promotion")),
        "{:?}",
        v.reasons
    );
}

#[test]
fn approvals_that_do_not_bind_to_this_release_are_refused_and_named() {
    let (bob, carol, mallory) = (
        signer(2, "bob@example.com"),
        signer(3, "carol@example.com"),
        signer(4, "mallory@example.com"),
    );
    let stranger = Signer {
        key: PrivateKey::from_seed(&[9; 32]),
        email: "bob@example.com",
    };
    let mut i = inputs(BEFORE_FREEZE);
    let other = Digest::of(b"release 2");
    i.approvals.push(sign(
        &bob,
        &statement(
            &bob,
            &other,
            "staging",
            "2026-11-20T10:00:00Z",
            Purpose::Promote,
        ),
    ));
    i.approvals.push(sign(
        &carol,
        &statement(
            &carol,
            &i.subject.digest.clone(),
            "prod",
            "2026-11-20T10:00:00Z",
            Purpose::Promote,
        ),
    ));
    approve(&mut i, &mallory);
    approve(&mut i, &stranger);
    // Signed after the decision clock.
    i.approvals.push(sign(
        &bob,
        &statement(
            &bob,
            &i.subject.digest.clone(),
            "staging",
            "2026-12-01T00:00:00Z",
            Purpose::Promote,
        ),
    ));
    // Claims to be carol, signed with bob's key.
    i.approvals.push(sign(
        &bob,
        &statement(
            &carol,
            &i.subject.digest.clone(),
            "staging",
            "2026-11-20T10:00:00Z",
            Purpose::Promote,
        ),
    ));
    // Modified after signing: the comment changed, the signature did not.
    let mut tampered = sign(
        &carol,
        &statement(
            &carol,
            &i.subject.digest.clone(),
            "staging",
            "2026-11-20T10:00:00Z",
            Purpose::Promote,
        ),
    );
    let mut env: Envelope = serde_json::from_slice(&tampered.bytes).unwrap();
    let mut st: serde_json::Value = serde_json::from_slice(&env.payload_bytes().unwrap()).unwrap();
    st["comment"] = "lgtm".into();
    use base64::Engine as _;
    env.payload = base64::engine::general_purpose::STANDARD
        .encode(serde_json_canonicalizer::to_vec(&st).unwrap());
    tampered.bytes = serde_json::to_vec(&env).unwrap();
    i.approvals.push(tampered);
    i.approvals.push(ApprovalEvidence {
        digest: Digest::of(b"junk"),
        bytes: b"junk".to_vec(),
    });

    let v = verdict(&i, GateKind::Approval);
    assert_eq!(v.summary, "FAIL — 0 of 2 required approvals");
    let expect = [
        format!("by bob@example.com is for {other}, not this digest"),
        "by carol@example.com is for environment prod, not staging".to_owned(),
        "mallory@example.com is not an approver for staging".to_owned(),
        "is signed by an unknown key".to_owned(),
        "after the decision clock".to_owned(),
        "claims signer carol@example.com but key bob belongs to bob@example.com".to_owned(),
        "signature does not verify with key".to_owned(),
        "is not a DSSE envelope".to_owned(),
    ];
    for e in expect {
        assert!(
            v.reasons.iter().any(|r| r.contains(&e)),
            "missing `{e}` in {:#?}",
            v.reasons
        );
    }
}

#[test]
fn break_glass_needs_its_own_approvals_from_the_exceptions() {
    let (bob, carol) = (signer(2, "bob@example.com"), signer(3, "carol@example.com"));
    let frozen = "2026-11-28T12:00:00Z";
    let mut i = inputs(frozen);
    approve(&mut i, &bob);
    approve(&mut i, &carol);
    let v = verdict(&i, GateKind::Freeze);
    assert_eq!(
        v.summary,
        "FAIL — frozen: black-friday until Mon 2026-11-30 23:59 UTC"
    );
    assert!(
        v.unblock
            .iter()
            .any(|u| u.contains("1 more break-glass approval from carol@example.com")),
        "{:?}",
        v.unblock
    );

    i.break_glass = Some("payments outage".into());
    // Bob is no exception; a promote approval is no break-glass approval.
    let st = statement(
        &bob,
        &i.subject.digest.clone(),
        "staging",
        "2026-11-28T11:00:00Z",
        Purpose::BreakGlass,
    );
    i.approvals.push(sign(&bob, &st));
    assert_eq!(verdict(&i, GateKind::Freeze).verdict, Outcome::Fail);

    let st = statement(
        &carol,
        &i.subject.digest.clone(),
        "staging",
        "2026-11-28T11:00:00Z",
        Purpose::BreakGlass,
    );
    i.approvals.push(sign(&carol, &st));
    let v = verdict(&i, GateKind::Freeze);
    assert_eq!(
        v.summary,
        "WARN — frozen (black-friday), broken by break-glass: payments outage"
    );
    assert_eq!(v.measured["break_glass"], true);
    // Break-glass approvals never count toward the approval gate.
    let v = verdict(&i, GateKind::Approval);
    assert_eq!(v.measured["valid"], 2);
    assert_eq!(gates::evaluate(&i).0, Decision::Allow);
}

fn with_policy(i: &mut GateInputs, source: &str) {
    let src = format!("{CONFIG}\n[environments.staging.gates.policy]\nmodules = []\n");
    let config = Config::parse(Path::new("/nowhere/stella.toml"), &src).unwrap();
    i.gates.policy = config.environment("staging").unwrap().gates.policy.clone();
    i.policies = vec![PolicyModule {
        path: "policies/test.rego".into(),
        source: source.into(),
    }];
}

#[test]
fn policies_deny_warn_and_see_the_decision_clock() {
    let mut i = inputs(BEFORE_FREEZE);
    with_policy(
        &mut i,
        r#"package stella.gates
deny contains msg if {
    count(input.approvals) < 1
    msg := sprintf("%s needs an approval first", [input.release.app])
}
warn contains "promoted by digest alone" if not input.release.tag
deny contains "clock mismatch" if time.now_ns() != time.parse_rfc3339_ns(input.now)
deny contains "after the cutoff" if time.now_ns() > time.parse_rfc3339_ns("2026-12-31T00:00:00Z")
"#,
    );
    let v = verdict(&i, GateKind::Policy);
    assert_eq!(v.summary, "FAIL — api needs an approval first");
    assert_eq!(v.reasons, ["deny: api needs an approval first"]);

    approve(&mut i, &signer(2, "bob@example.com"));
    i.subject.tag = None;
    let v = verdict(&i, GateKind::Policy);
    assert_eq!(v.summary, "WARN — promoted by digest alone");

    // The clock is the decision clock: move it and the policy sees it.
    i.now = t("2027-01-02T00:00:00Z");
    i.gates.freeze = None;
    i.gates.upstream = None;
    assert_eq!(
        verdict(&i, GateKind::Policy).summary,
        "FAIL — after the cutoff"
    );
}

#[test]
fn broken_and_endless_policies_fail_the_gate_with_a_reason() {
    let mut i = inputs(BEFORE_FREEZE);
    with_policy(
        &mut i,
        "package stella.gates\n\ndeny contains msg if {\n  input.x ==\n  msg := \"x\"\n}\n",
    );
    let v = verdict(&i, GateKind::Policy);
    assert_eq!(v.summary, "FAIL — a policy module does not compile");
    assert!(
        v.reasons[0].starts_with("policies/test.rego:5:"),
        "{:?}",
        v.reasons
    );

    with_policy(
        &mut i,
        "package elsewhere\n\ndeny contains \"x\" if { true }\n",
    );
    assert!(verdict(&i, GateKind::Policy).reasons[0].contains("expected `package stella.gates`"));

    with_policy(
        &mut i,
        "package stella.gates\n\ndeny contains \"too slow\" if {\n  count([x | some x in numbers.range(1, 10000000)]) > 0\n}\n",
    );
    let v = verdict(&i, GateKind::Policy);
    assert_eq!(v.verdict, Outcome::Fail);
    assert!(
        v.summary.contains("did not finish within 2s"),
        "{}",
        v.summary
    );
}

#[test]
fn upstream_requires_the_digest_live_and_soaked() {
    let mut i = inputs(BEFORE_FREEZE);
    assert_eq!(
        verdict(&i, GateKind::Upstream).summary,
        "PASS — live in dev for 6d12h (soak 1h)"
    );

    i.upstream.as_mut().unwrap().since = i.now - Duration::minutes(20);
    let v = verdict(&i, GateKind::Upstream);
    assert_eq!(v.summary, "FAIL — live in dev for 20m, soak needs 1h");
    assert_eq!(
        v.unblock,
        ["wait until 2026-11-26T12:40:00Z for the soak to complete"]
    );

    i.upstream.as_mut().unwrap().digest = Digest::of(b"release 0");
    assert!(
        verdict(&i, GateKind::Upstream)
            .summary
            .starts_with("FAIL — dev runs sha256:")
    );

    i.upstream = None;
    assert_eq!(
        verdict(&i, GateKind::Upstream).summary,
        "FAIL — api is not live in dev"
    );
}

#[test]
fn gates_are_pure_same_inputs_same_verdicts() {
    let mut i = inputs("2026-11-28T12:00:00Z");
    approve(&mut i, &signer(2, "bob@example.com"));
    let a = serde_json::to_vec(&gates::evaluate(&i).1).unwrap();
    let b = serde_json::to_vec(&gates::evaluate(&i.clone()).1).unwrap();
    assert_eq!(a, b);
}

#[test]
fn four_eyes_fails_closed_on_an_unverified_requester() {
    let (bob, carol) = (signer(2, "bob@example.com"), signer(3, "carol@example.com"));
    let mut i = inputs(BEFORE_FREEZE);
    approve(&mut i, &bob);
    approve(&mut i, &carol);
    assert_eq!(verdict(&i, GateKind::Approval).verdict, Outcome::Pass);
    // The same approvals, asked for by an account that proved nothing.
    i.subject.requested_by = "unverified: uid bob".into();
    let v = verdict(&i, GateKind::Approval);
    assert_eq!(v.verdict, Outcome::Fail);
    assert!(
        v.summary.contains("the requester is not proven"),
        "{}",
        v.summary
    );
    assert_eq!(v.unblock.len(), 1);
    assert!(
        v.unblock[0].starts_with("sign the request with --key NAME"),
        "{:?}",
        v.unblock
    );
    assert_eq!(v.measured["requester_proven"], false);
    assert_eq!(gates::evaluate(&i).0, Decision::Deny);
}
