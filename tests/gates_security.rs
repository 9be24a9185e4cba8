//! The security gate against fixtures in each real format: Trivy, Grype,
//! SARIF 2.1.0, CycloneDX (with VEX analysis) and OpenVEX.

use std::path::Path;

use stella::config::Config;
use stella::domain::{Digest, Outcome};
use stella::gates::{EvidenceKind, ScanEvidence, Subject, security};
use stella::scan::{self, Format, ScanError, Severity};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/scan")
            .join(name),
    )
    .unwrap()
}

fn evidence(name: &str) -> ScanEvidence {
    let bytes = fixture(name);
    let (format, report) = scan::read(&bytes).unwrap();
    let kind = if format == Format::OpenVex {
        EvidenceKind::Vex
    } else {
        EvidenceKind::Scan
    };
    ScanEvidence {
        digest: Digest::of(&bytes),
        kind,
        format,
        report,
    }
}

fn subject() -> Subject {
    Subject {
        app: "api-gateway".into(),
        digest: Digest::of(b"the release"),
        tag: Some("1.4.2".into()),
        environment: "staging".into(),
        from: None,
        requested_by: "ci@example.com".into(),
        promotion_id: None,
    }
}

/// The security gate config of an environment written as TOML.
fn gate(toml: &str) -> stella::config::model::SecurityGateConfig {
    let src = format!("[workspace]\nname = \"t\"\n[environments.e.gates.security]\n{toml}\n");
    let c = Config::parse(Path::new("/nowhere/stella.toml"), &src).unwrap();
    c.environment("e").unwrap().gates.security.clone().unwrap()
}

fn reachable(v: &stella::domain::Verdict) -> [u64; 5] {
    let r = &v.measured["reachable"];
    ["critical", "high", "medium", "low", "unknown"].map(|s| r[s].as_u64().unwrap())
}

#[test]
fn formats_are_detected_from_content() {
    let cases = [
        ("trivy.json", Format::Trivy),
        ("grype.json", Format::Grype),
        ("sarif.json", Format::Sarif),
        ("cyclonedx-vex.json", Format::CycloneDx),
        ("openvex.json", Format::OpenVex),
    ];
    for (file, format) in cases {
        assert_eq!(scan::detect(&fixture(file)), Ok(format), "{file}");
    }
    assert_eq!(
        scan::detect(br#"{"hello": "world"}"#),
        Err(ScanError::Unknown)
    );
    assert!(matches!(
        scan::detect(b"not json"),
        Err(ScanError::NotJson(_))
    ));
    let broken = br#"{"SchemaVersion": 2, "Results": [{"Vulnerabilities": [{"PkgName": "x"}]}]}"#;
    let err = scan::read(broken).unwrap_err().to_string();
    assert!(
        err.contains("looks like Trivy JSON but is malformed") && err.contains("VulnerabilityID"),
        "{err}"
    );
    let sarif_v1 = br#"{"version": "1.0.0", "$schema": "sarif", "runs": []}"#;
    assert!(
        scan::read(sarif_v1)
            .unwrap_err()
            .to_string()
            .contains("expected 2.1.0")
    );
}

#[test]
fn table_of_reports_and_vex() {
    struct Case {
        name: &'static str,
        files: &'static [&'static str],
        limits: &'static str,
        outcome: Outcome,
        reachable: [u64; 5],
        suppressed: u64,
        not_applicable: u64,
    }
    let cases = [
        // Trivy: null and missing Vulnerabilities, missing optional fields.
        Case {
            name: "trivy alone",
            files: &["trivy.json"],
            limits: "",
            outcome: Outcome::Pass,
            reachable: [1, 2, 0, 1, 0],
            suppressed: 0,
            not_applicable: 0,
        },
        // OpenVEX matches cross-spawn by alias (CVE-2024-21538 ~ GHSA-…) and
        // by subcomponent PURL; under_investigation keeps openssl counted.
        Case {
            name: "trivy + openvex",
            files: &["trivy.json", "openvex.json"],
            limits: "",
            outcome: Outcome::Pass,
            reachable: [1, 1, 0, 1, 0],
            suppressed: 1,
            not_applicable: 0,
        },
        // The same openssl CVE in Trivy and Grype counts once; Grype's ignore
        // rule with a reachability justification suppresses, a plain one does not.
        Case {
            name: "trivy + grype",
            files: &["trivy.json", "grype.json"],
            limits: "",
            outcome: Outcome::Pass,
            reachable: [1, 3, 1, 1, 0],
            suppressed: 1,
            not_applicable: 0,
        },
        // OpenVEX `vulnerable_code_not_present` makes micromatch not applicable
        // (matched by product PURL without a version).
        Case {
            name: "grype + openvex",
            files: &["grype.json", "openvex.json"],
            limits: "",
            outcome: Outcome::Pass,
            reachable: [1, 1, 0, 0, 0],
            suppressed: 1,
            not_applicable: 1,
        },
        // SARIF: security-severity 9.1 → critical, 5.5 → medium, level note →
        // low, an undeclared rule at warning → medium; suppressions still count.
        Case {
            name: "sarif",
            files: &["sarif.json"],
            limits: "",
            outcome: Outcome::Pass,
            reachable: [1, 0, 2, 1, 0],
            suppressed: 0,
            not_applicable: 0,
        },
        // CycloneDX: its own analysis suppresses zlib (code_not_reachable);
        // in_triage keeps libstdc++ counted.
        Case {
            name: "cyclonedx",
            files: &["cyclonedx-vex.json"],
            limits: "",
            outcome: Outcome::Pass,
            reachable: [0, 0, 0, 1, 0],
            suppressed: 1,
            not_applicable: 0,
        },
        // CycloneDX VEX also suppresses Trivy's zlib finding (matched by PURL).
        Case {
            name: "trivy + cyclonedx",
            files: &["trivy.json", "cyclonedx-vex.json"],
            limits: "",
            outcome: Outcome::Pass,
            reachable: [1, 1, 0, 1, 0],
            suppressed: 1,
            not_applicable: 0,
        },
        Case {
            name: "over a limit",
            files: &["trivy.json"],
            limits: "max_reachable = { critical = 0 }",
            outcome: Outcome::Fail,
            reachable: [1, 2, 0, 1, 0],
            suppressed: 0,
            not_applicable: 0,
        },
        Case {
            name: "at 80 % of a limit",
            files: &["trivy.json"],
            limits: "max_reachable = { high = 2 }",
            outcome: Outcome::Warn,
            reachable: [1, 2, 0, 1, 0],
            suppressed: 0,
            not_applicable: 0,
        },
        Case {
            name: "below 80 %",
            files: &["trivy.json"],
            limits: "max_reachable = { high = 3 }",
            outcome: Outcome::Pass,
            reachable: [1, 2, 0, 1, 0],
            suppressed: 0,
            not_applicable: 0,
        },
        Case {
            name: "VEX brings it under",
            files: &["trivy.json", "openvex.json"],
            limits: "max_reachable = { high = 1 }",
            outcome: Outcome::Warn,
            reachable: [1, 1, 0, 1, 0],
            suppressed: 1,
            not_applicable: 0,
        },
    ];
    for c in cases {
        let scans: Vec<ScanEvidence> = c.files.iter().map(|f| evidence(f)).collect();
        let v = security::evaluate(&gate(c.limits), &scans, &subject());
        assert_eq!(v.verdict, c.outcome, "{}: {}", c.name, v.summary);
        assert_eq!(reachable(&v), c.reachable, "{}: {:#?}", c.name, v.reasons);
        assert_eq!(v.measured["suppressed"], c.suppressed, "{}", c.name);
        assert_eq!(v.measured["not_applicable"], c.not_applicable, "{}", c.name);
    }
}

#[test]
fn the_verdict_names_what_suppressed_a_finding() {
    let scans = [evidence("trivy.json"), evidence("openvex.json")];
    let vex_digest = scans[1].digest.to_string();
    let v = security::evaluate(&gate(""), &scans, &subject());
    assert_eq!(v.summary, "PASS — 3 reachable CVEs below threshold");
    let by = &v.measured["suppressed_by"][0];
    assert_eq!(by["id"], "GHSA-3xgq-45jj-v275");
    assert_eq!(by["by"], "OpenVEX");
    assert_eq!(by["evidence"], vex_digest.as_str());
    assert_eq!(by["statement"], "statements[0]");
    assert_eq!(by["justification"], "vulnerable_code_not_in_execute_path");
}

#[test]
fn vex_for_another_product_does_not_apply() {
    let mut vex = evidence("openvex.json");
    for st in &mut vex.report.statements {
        st.products = vec!["pkg:oci/some-other-app".into()];
        st.subcomponents.clear();
    }
    let v = security::evaluate(&gate(""), &[evidence("trivy.json"), vex], &subject());
    assert_eq!(v.measured["suppressed"], 0);
}

#[test]
fn a_product_naming_the_digest_applies() {
    let mut vex = evidence("openvex.json");
    vex.report.statements[0].products = vec![format!("pkg:oci/api-gateway@{}", subject().digest)];
    let v = security::evaluate(&gate(""), &[evidence("trivy.json"), vex], &subject());
    assert_eq!(v.measured["suppressed"], 1);
}

#[test]
fn no_scan_evidence_fails_unless_not_required() {
    let only_vex = [evidence("openvex.json")];
    let v = security::evaluate(&gate(""), &only_vex, &subject());
    assert_eq!(v.verdict, Outcome::Fail);
    assert_eq!(
        v.summary,
        format!("FAIL — no scan evidence for {}", subject().digest)
    );
    let v = security::evaluate(&gate("require_scan = false"), &[], &subject());
    assert_eq!(v.verdict, Outcome::Skipped);
}

#[test]
fn failing_verdicts_say_what_would_unblock() {
    let v = security::evaluate(
        &gate("max_reachable = { high = 0 }"),
        &[evidence("trivy.json")],
        &subject(),
    );
    assert_eq!(
        v.summary,
        "FAIL — 2 reachable high CVEs over the limit of 0"
    );
    assert_eq!(v.unblock.len(), 1);
    assert!(
        v.unblock[0].contains("CVE-2023-45853 in zlib1g"),
        "{}",
        v.unblock[0]
    );
    assert!(
        v.unblock[0].contains("GHSA-3xgq-45jj-v275 in cross-spawn 7.0.3 (fixed in 7.0.5, 6.0.6)")
    );
}

#[test]
fn severities_read_the_scanners_words() {
    assert_eq!(Severity::from_word("CRITICAL"), Severity::Critical);
    assert_eq!(Severity::from_word("Negligible"), Severity::Low);
    assert_eq!(Severity::from_word("moderate"), Severity::Medium);
    assert_eq!(Severity::from_word(""), Severity::Unknown);
    assert_eq!(Severity::from_cvss(7.0), Severity::High);
    assert_eq!(Severity::from_cvss(0.0), Severity::Unknown);
}
