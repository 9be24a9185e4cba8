//! One full gate evaluation (security over a 2,000-finding Trivy report
//! with VEX, approvals, freeze windows, a ~20-rule Rego module, upstream)
//! and parsing that report. Figures in docs/benchmarks.md.

use std::hint::black_box;
use std::path::Path;

use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use stella::config::Config;
use stella::domain::Digest;
use stella::domain::approval::{APPROVAL_PAYLOAD_TYPE, APPROVAL_TYPE, ApprovalStatement, Purpose};
use stella::gates::{
    self, ApprovalEvidence, EvidenceKind, GateInputs, LiveState, PolicyModule, ScanEvidence,
    Subject, TrustedKey,
};
use stella::scan;
use stella::sign::{Envelope, PrivateKey};

const SEVERITIES: [&str; 5] = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"];

/// A Trivy report of `n` findings over `n / 4` packages.
fn trivy(n: usize) -> Vec<u8> {
    let vulns: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "VulnerabilityID": format!("CVE-2026-{:05}", i),
                "PkgName": format!("pkg-{}", i / 4),
                "PkgIdentifier": {"PURL": format!("pkg:npm/pkg-{}@1.{}.0", i / 4, i % 7)},
                "InstalledVersion": format!("1.{}.0", i % 7),
                "FixedVersion": if i % 3 == 0 { format!("1.{}.1", i % 7) } else { String::new() },
                // Mostly low and medium, a few high, no critical: realistic
                // for an image that passes.
                "Severity": SEVERITIES[[3, 2, 3, 2, 1, 3, 4, 2][i % 8]],
                "Title": "a vulnerability with a title long enough to be realistic in size",
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "SchemaVersion": 2,
        "ArtifactName": "bench/api:1.0",
        "Results": [{"Target": "image", "Vulnerabilities": vulns}],
    }))
    .unwrap()
}

fn openvex(n: usize) -> Vec<u8> {
    let statements: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "vulnerability": {"name": format!("CVE-2026-{:05}", i * 37 % 2000)},
                "products": [{"@id": "pkg:oci/api"}],
                "status": "not_affected",
                "justification": "vulnerable_code_not_in_execute_path",
            })
        })
        .collect();
    serde_json::to_vec(
        &serde_json::json!({"@context": "https://openvex.dev/ns/v0.2.0", "statements": statements}),
    )
    .unwrap()
}

/// About twenty rules of the kind teams write.
const POLICY: &str = r#"package stella.gates

deny contains "critical findings are never allowed" if input.security.reachable.critical > 0
deny contains msg if {
    input.security.reachable.high > 400
    msg := sprintf("too many high findings: %d", [input.security.reachable.high])
}
deny contains "release has no tag" if not input.release.tag
deny contains "no scan evidence" if not input.security.scanned
deny contains "promotions to prod need two approvals" if {
    input.environment.name == "prod"
    count(input.approvals) < 2
}
deny contains "not during the freeze" if input.freeze.active
deny contains "requester is unknown" if input.requested_by == "unknown"
deny contains "the upstream environment is not dev" if {
    input.upstream
    input.upstream.environment != "dev"
}
deny contains msg if {
    some a in input.approvals
    endswith(a.email, "@contractor.example.com")
    msg := sprintf("contractors cannot approve: %s", [a.email])
}
deny contains "digest must be sha256" if not startswith(input.release.digest, "sha256:")
deny contains "tags must look like versions" if not regex.match(`^[0-9]+\.[0-9]+`, input.release.tag)
deny contains "no promotions at night (UTC)" if {
    hour := time.clock([time.now_ns(), "UTC"])[0]
    hour < 6
}
deny contains "too soon after upstream" if {
    since := time.parse_rfc3339_ns(input.upstream.since)
    time.now_ns() - since < 60 * 1000000000
}
warn contains "many medium findings" if input.security.reachable.medium > 100
warn contains "many low findings" if input.security.reachable.low > 500
warn contains "suppressions in use" if input.security.suppressed > 0
warn contains "single approver" if count(input.approvals) == 1
warn contains "friday promotion" if time.weekday(time.now_ns()) == "Friday"
warn contains "unknown severities present" if input.security.reachable.unknown > 0
warn contains "app name is long" if count(input.release.app) > 30
"#;

const CONFIG: &str = r#"
[workspace]
name = "bench"
[environments.dev]
[environments.staging]
from = "dev"
[environments.staging.gates.security]
max_reachable = { critical = 0, high = 400 }
[environments.staging.gates.approval]
required = 2
approvers = ["a@example.com", "b@example.com", "c@example.com"]
four_eyes = true
[environments.staging.gates.freeze]
windows = ["weekend", "black-friday"]
[environments.staging.gates.policy]
modules = []
[environments.staging.gates.upstream]
soak = "1h"
[freeze.weekend]
start = "0 18 * * FRI"
end = "0 8 * * MON"
timezone = "Europe/Madrid"
[freeze.black-friday]
from = "2026-11-27T00:00:00Z"
until = "2026-11-30T23:59:59Z"
"#;

fn inputs() -> GateInputs {
    let config = Config::parse(Path::new("/nowhere/stella.toml"), CONFIG).unwrap();
    let env = config.environment("staging").unwrap();
    let now: DateTime<Utc> = "2026-12-02T10:00:00Z".parse().unwrap();
    let digest = Digest::of(b"bench release");
    let report = trivy(2000);
    let vex = openvex(50);
    let scans = vec![
        ScanEvidence {
            digest: Digest::of(&report),
            kind: EvidenceKind::Scan,
            format: scan::Format::Trivy,
            report: scan::parse(scan::Format::Trivy, &report).unwrap(),
        },
        ScanEvidence {
            digest: Digest::of(&vex),
            kind: EvidenceKind::Vex,
            format: scan::Format::OpenVex,
            report: scan::parse(scan::Format::OpenVex, &vex).unwrap(),
        },
    ];
    let emails = ["a@example.com", "b@example.com", "c@example.com"];
    let keys: Vec<PrivateKey> = (1..=3).map(|i| PrivateKey::from_seed(&[i; 32])).collect();
    let approvals = keys[1..]
        .iter()
        .zip(&emails[1..])
        .map(|(k, e)| {
            let st = ApprovalStatement {
                type_: APPROVAL_TYPE.into(),
                app: "api".into(),
                digest: digest.clone(),
                environment: "staging".into(),
                promotion_id: None,
                signer: (*e).into(),
                signed_at: "2026-12-02T09:00:00Z".into(),
                purpose: Purpose::Promote,
                comment: None,
            };
            let payload = serde_json_canonicalizer::to_vec(&st).unwrap();
            let bytes =
                serde_json::to_vec(&Envelope::sign(APPROVAL_PAYLOAD_TYPE, &payload, k)).unwrap();
            ApprovalEvidence {
                digest: Digest::of(&bytes),
                bytes,
            }
        })
        .collect();
    GateInputs {
        subject: Subject {
            app: "api".into(),
            digest: digest.clone(),
            tag: Some("1.0".into()),
            environment: "staging".into(),
            from: Some("dev".into()),
            requested_by: "a@example.com".into(),
            promotion_id: None,
        },
        gates: env.gates.clone(),
        freeze_windows: config.freeze.clone(),
        scans,
        approvals,
        keys: keys
            .iter()
            .zip(emails)
            .map(|(k, e)| TrustedKey {
                name: e.into(),
                email: e.into(),
                key: k.public(),
            })
            .collect(),
        policies: vec![PolicyModule {
            path: "policies/bench.rego".into(),
            source: POLICY.into(),
        }],
        upstream: Some(LiveState {
            environment: "dev".into(),
            digest,
            since: "2026-12-01T00:00:00Z".parse().unwrap(),
        }),
        break_glass: None,
        now,
    }
}

fn bench(c: &mut Criterion) {
    // As the binary does: policies are evaluated in a bounded worker
    // process, started once and reused by every iteration (set
    // STELLA_BENCH_IN_PROCESS=1 to measure the in-process way).
    if std::env::var_os("STELLA_BENCH_IN_PROCESS").is_none() {
        gates::policy::isolate_with(env!("CARGO_BIN_EXE_stella"));
    }
    let report = trivy(2000);
    c.bench_function("parse trivy report (2,000 findings)", |b| {
        b.iter(|| scan::read(black_box(&report)).unwrap())
    });
    let inputs = inputs();
    let (decision, verdicts) = gates::evaluate(&inputs);
    assert_eq!(verdicts.len(), 5);
    assert!(
        verdicts.iter().all(|v| !v.blocks()),
        "the bench decision must exercise every gate to the end: {decision:?} {verdicts:#?}"
    );
    c.bench_function(
        "gate check: all five gates, 2,000 findings, 20-rule policy",
        |b| b.iter(|| gates::evaluate(black_box(&inputs))),
    );
    // The parts, to see where the time goes.
    let security = inputs.gates.security.clone().unwrap();
    c.bench_function("part: security gate", |b| {
        b.iter(|| gates::security::evaluate(&security, black_box(&inputs.scans), &inputs.subject))
    });
    let freeze = inputs.gates.freeze.clone().unwrap();
    c.bench_function("part: freeze gate", |b| {
        b.iter(|| gates::freeze::evaluate(&freeze, black_box(&inputs)))
    });
    c.bench_function("part: approvals verified", |b| {
        b.iter(|| gates::approval::check(black_box(&inputs), Purpose::Promote))
    });
    let security_verdict = gates::security::evaluate(&security, &inputs.scans, &inputs.subject);
    let approvals = gates::approval::check(&inputs, Purpose::Promote);
    let policy = inputs.gates.policy.clone().unwrap();
    c.bench_function("part: policy gate (load + evaluate)", |b| {
        b.iter(|| {
            let facts = gates::policy::Facts {
                security: Some(&security_verdict),
                approvals: &approvals,
                frozen: false,
            };
            gates::policy::evaluate(&policy, black_box(&inputs), &facts)
        })
    });
    c.bench_function("part: policy engine load", |b| {
        b.iter(|| gates::policy::engine(black_box(&inputs.policies), 0).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
