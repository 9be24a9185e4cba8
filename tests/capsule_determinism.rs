//! Sealing is deterministic and replay is faithful: the same inputs seal to
//! byte-identical payloads, and 100 generated decisions — varied evidence,
//! approvals, clocks, policies, freezes, upstream — all replay identically.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use stella::capsule::file::{CAPSULE_VERSION, CapsuleFile, EmbeddedBlob};
use stella::capsule::replay::replay;
use stella::capsule::seal::{inputs_of, seal};
use stella::capsule::statement::{Action, Engine, Predicate, ReleaseRef, Statement};
use stella::config::Config;
use stella::domain::Digest;
use stella::domain::approval::{
    APPROVAL_MEDIA_TYPE, APPROVAL_PAYLOAD_TYPE, APPROVAL_TYPE, ApprovalStatement, Purpose,
};
use stella::gates::{
    self, ApprovalEvidence, EvidenceKind, GateInputs, LiveState, PolicyModule, ScanEvidence,
    Subject, TrustedKey,
};
use stella::scan;
use stella::sign::{Envelope, PrivateKey};

/// A small deterministic generator (no dependency needed for 100 cases).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const CONFIG: &str = r#"
[workspace]
name = "prop"
[environments.dev]
[environments.staging]
from = "dev"
[environments.staging.gates.security]
max_reachable = { critical = 1, high = 3 }
[environments.staging.gates.approval]
required = 1
approvers = ["a@example.com", "b@example.com"]
four_eyes = true
[environments.staging.gates.freeze]
windows = ["weekend"]
[environments.staging.gates.policy]
modules = []
[environments.staging.gates.upstream]
soak = "2h"
[freeze.weekend]
start = "0 18 * * FRI"
end = "0 8 * * MON"
timezone = "Europe/Madrid"
exceptions = ["b@example.com"]
"#;

const POLICIES: [&str; 3] = [
    "package stella.gates\n",
    "package stella.gates\ndeny contains \"frozen\" if input.freeze.active\nwarn contains \"no upstream\" if not input.upstream\n",
    "package stella.gates\ndeny contains msg if { count(input.approvals) == 0; msg := sprintf(\"%s needs approval at %s\", [input.release.app, input.now]) }\n",
];

const FIXTURES: [&str; 5] = [
    "trivy.json",
    "grype.json",
    "sarif.json",
    "cyclonedx-vex.json",
    "openvex.json",
];

fn generate(rng: &mut Lcg, blobs: &mut HashMap<Digest, (String, Vec<u8>)>) -> GateInputs {
    let config = Config::parse(Path::new("/nowhere/stella.toml"), CONFIG).unwrap();
    let env = config.environment("staging").unwrap();
    let digest = Digest::of(format!("release {}", rng.below(3)).as_bytes());
    let now: DateTime<Utc> = "2026-11-20T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        + Duration::hours(rng.below(24 * 14) as i64);
    let mut gates = env.gates.clone();
    if rng.below(4) == 0 {
        gates.freeze = None;
    }
    let mut scans = Vec::new();
    for f in FIXTURES {
        if rng.below(2) == 0 {
            let bytes = std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/scan")
                    .join(f),
            )
            .unwrap();
            let (format, report) = scan::read(&bytes).unwrap();
            let kind = if format == scan::Format::OpenVex {
                EvidenceKind::Vex
            } else {
                EvidenceKind::Scan
            };
            let d = Digest::of(&bytes);
            blobs.insert(d.clone(), (format.media_type().into(), bytes));
            scans.push(ScanEvidence {
                digest: d,
                kind,
                format,
                report,
            });
        }
    }
    let keys: Vec<(PrivateKey, &str)> = vec![
        (PrivateKey::from_seed(&[1; 32]), "a@example.com"),
        (PrivateKey::from_seed(&[2; 32]), "b@example.com"),
    ];
    let mut approvals = Vec::new();
    for (key, email) in &keys {
        if rng.below(2) == 0 {
            let purpose = if rng.below(3) == 0 {
                Purpose::BreakGlass
            } else {
                Purpose::Promote
            };
            let st = ApprovalStatement {
                type_: APPROVAL_TYPE.into(),
                app: "api".into(),
                digest: digest.clone(),
                environment: "staging".into(),
                promotion_id: None,
                signer: (*email).into(),
                signed_at: (now - Duration::minutes(rng.below(600) as i64 - 60))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                purpose,
                comment: None,
            };
            let payload = serde_json_canonicalizer::to_vec(&st).unwrap();
            let bytes =
                serde_json::to_vec(&Envelope::sign(APPROVAL_PAYLOAD_TYPE, &payload, key)).unwrap();
            let d = Digest::of(&bytes);
            blobs.insert(d.clone(), (APPROVAL_MEDIA_TYPE.into(), bytes.clone()));
            approvals.push(ApprovalEvidence { digest: d, bytes });
        }
    }
    let upstream = (rng.below(3) != 0).then(|| LiveState {
        environment: "dev".into(),
        digest: if rng.below(4) == 0 {
            Digest::of(b"other")
        } else {
            digest.clone()
        },
        since: now - Duration::minutes(rng.below(300) as i64),
    });
    GateInputs {
        subject: Subject {
            app: "api".into(),
            digest,
            tag: (rng.below(2) == 0).then(|| "1.0".to_owned()),
            environment: "staging".into(),
            from: Some("dev".into()),
            requested_by: ["a@example.com", "c@example.com"][rng.below(2) as usize].into(),
            promotion_id: None,
        },
        gates,
        freeze_windows: config.freeze.clone(),
        scans,
        approvals,
        keys: keys
            .iter()
            .map(|(k, e)| TrustedKey {
                name: e.split('@').next().unwrap().into(),
                email: (*e).into(),
                key: k.public(),
            })
            .collect(),
        policies: vec![PolicyModule {
            path: "policies/p.rego".into(),
            source: POLICIES[rng.below(3) as usize].into(),
        }],
        upstream,
        break_glass: (rng.below(3) == 0).then(|| "incident".to_owned()),
        now,
    }
}

fn statement(
    gi: &GateInputs,
    previous: Option<Digest>,
) -> (Statement, Vec<(Digest, String, Vec<u8>)>) {
    let (decision, verdicts) = gates::evaluate(gi);
    let (inputs, new) = inputs_of(gi);
    let predicate = Predicate {
        action: Action::Promote,
        app: gi.subject.app.clone(),
        release: ReleaseRef {
            digest: gi.subject.digest.clone(),
            tag: gi.subject.tag.clone(),
            resolved_at: None,
        },
        from: gi.subject.from.clone(),
        to: gi.subject.environment.clone(),
        requested_by: gi.subject.requested_by.clone(),
        requester: None,
        clock: gates::rfc3339(gi.now),
        promotion_id: Some(1),
        inputs,
        gates: verdicts,
        decision,
        outcome: stella::domain::PromotionOutcome::Live,
        engine: Engine::current(),
        previous,
        restores: None,
        reason: None,
        members: Vec::new(),
    };
    (
        Statement::new(predicate),
        new.into_iter()
            .map(|b| (b.digest, b.media_type.to_owned(), b.bytes))
            .collect(),
    )
}

#[test]
fn sealing_the_same_inputs_twice_is_byte_identical() {
    let key = PrivateKey::from_seed(&[42; 32]);
    let mut rng = Lcg(7);
    for _ in 0..10 {
        let mut blobs = HashMap::new();
        let gi = generate(&mut rng, &mut blobs);
        let (a, _) = statement(&gi, None);
        let (b, _) = statement(&gi.clone(), None);
        let (sa, sb) = (seal(a, &key), seal(b, &key));
        assert_eq!(sa.payload, sb.payload);
        assert_eq!(sa.payload_digest, sb.payload_digest);
        assert_eq!(
            sa.envelope, sb.envelope,
            "ed25519 signatures are deterministic too"
        );
    }
}

#[test]
fn a_hundred_generated_decisions_replay_identically() {
    let key = PrivateKey::from_seed(&[42; 32]);
    let mut rng = Lcg(2026);
    let mut previous = None;
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..100 {
        let mut blobs = HashMap::new();
        let gi = generate(&mut rng, &mut blobs);
        let (st, new) = statement(&gi, previous.clone());
        seen.insert(format!("{:?}", st.predicate.decision));
        for (d, m, b) in new {
            blobs.insert(d, (m, b));
        }
        let sealed = seal(st.clone(), &key);
        let file = CapsuleFile {
            capsule_version: CAPSULE_VERSION,
            envelope: sealed.envelope.clone(),
            evidence: st
                .referenced()
                .into_iter()
                .map(|d| {
                    let (m, b) = &blobs[d];
                    EmbeddedBlob::new(d.clone(), m, b)
                })
                .collect(),
            public_key_pem: key.public().to_pem(),
            summary: None,
        };
        let outcome = replay(&file).unwrap();
        assert!(
            outcome.identical,
            "decision {i}: {:#?}",
            outcome.differences
        );
        previous = Some(sealed.payload_digest);
    }
    assert_eq!(
        seen.len(),
        2,
        "the generator must produce both allowed and denied decisions: {seen:?}"
    );
}
