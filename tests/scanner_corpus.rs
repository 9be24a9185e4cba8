//! Real reports published by Trivy, Grype and CodeQL
//! (`tests/fixtures/scanners/`, origins in its MANIFEST.md), counted by the
//! security gate and held against the scanners' own numbers, the MANIFEST
//! and an independent count (`count.py`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use stella::config::Config;
use stella::domain::{Digest, Verdict};
use stella::gates::{EvidenceKind, ScanEvidence, Subject, security};
use stella::scan::{self, Format};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scanners")
}

fn evidence(name: &str) -> ScanEvidence {
    let bytes = std::fs::read(dir().join(name)).unwrap();
    let (format, report) = scan::read(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    ScanEvidence {
        digest: Digest::of(&bytes),
        kind: if format == Format::OpenVex
            || (format == Format::CycloneDx
                && report.components == 0
                && !report.statements.is_empty())
        {
            EvidenceKind::Vex
        } else {
            EvidenceKind::Scan
        },
        format,
        report,
    }
}

fn subject() -> Subject {
    Subject {
        app: "gomod".into(),
        digest: Digest::of(b"the release"),
        tag: None,
        environment: "staging".into(),
        from: None,
        requested_by: "ci@example.com".into(),
        promotion_id: None,
    }
}

fn gate() -> stella::config::model::SecurityGateConfig {
    let src = "[workspace]\nname = \"t\"\n[environments.e.gates.security]\n";
    let c = Config::parse(Path::new("/nowhere/stella.toml"), src).unwrap();
    c.environment("e").unwrap().gates.security.clone().unwrap()
}

fn verdict(files: &[&str], semantics: u32) -> Verdict {
    let scans: Vec<ScanEvidence> = files.iter().map(|f| evidence(f)).collect();
    security::evaluate_with(&gate(), &scans, &subject(), semantics)
}

fn reachable(v: &Verdict) -> [u64; 5] {
    let r = &v.measured["reachable"];
    ["critical", "high", "medium", "low", "unknown"].map(|s| r[s].as_u64().unwrap())
}

fn total(v: &Verdict) -> u64 {
    reachable(v).iter().sum()
}

/// (file, findings, other, statements, per severity) — as in MANIFEST.md.
const EXPECTED: &[(&str, u64, u64, u64, [u64; 5])] = &[
    ("trivy-alpine-310.json.golden", 4, 0, 0, [0, 0, 4, 0, 0]),
    ("trivy-alpine-310.sarif.golden", 4, 0, 0, [0, 0, 4, 0, 0]),
    ("trivy-gomod.json.golden", 5, 0, 0, [0, 0, 1, 0, 4]),
    ("trivy-gomod.openvex.json", 0, 0, 1, [0; 5]),
    ("trivy-gomod-vex.json.golden", 4, 0, 0, [0, 0, 0, 0, 4]),
    ("trivy-vex-cyclonedx.json", 0, 0, 2, [0; 5]),
    (
        "grype-TestJsonImgsPresenter.golden",
        2,
        0,
        0,
        [1, 0, 0, 1, 0],
    ),
    (
        "grype-TestSarifPresenter_image.golden",
        2,
        0,
        0,
        [0, 2, 0, 0, 0],
    ),
    ("codeql-fingerprinting.input.sarif", 0, 2, 0, [0; 5]),
    ("codeql-fingerprinting2.input.sarif", 0, 1, 0, [0; 5]),
];

#[test]
fn the_manifest_lists_every_file_with_the_expected_counts() {
    let manifest = std::fs::read_to_string(dir().join("MANIFEST.md")).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "MANIFEST.md" && n != "count.py")
        .collect();
    files.sort();
    let mut listed: Vec<String> = EXPECTED.iter().map(|e| e.0.to_owned()).collect();
    listed.sort();
    assert_eq!(files, listed, "every corpus file has expected counts");
    for (file, findings, other, statements, sev) in EXPECTED {
        let sev = sev.map(|n| n.to_string()).join("/");
        let row = manifest
            .lines()
            .find(|l| l.starts_with(&format!("| `{file}` |")))
            .unwrap_or_else(|| panic!("{file} is not in MANIFEST.md"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(
            &cells[3..7],
            &[
                findings.to_string().as_str(),
                other.to_string().as_str(),
                statements.to_string().as_str(),
                sev.as_str()
            ],
            "{file}: MANIFEST.md row {row}"
        );
        assert!(
            ["`integration/", "`pkg/", "`grype/", "`src/"]
                .iter()
                .any(|p| row.contains(p))
        );
    }
}

#[test]
fn every_file_counts_as_the_independent_count_says() {
    for (file, findings, other, statements, sev) in EXPECTED {
        // The independent count, by a different route (Python, each format
        // read as its scanner reports it).
        let out = Command::new("python3")
            .arg(dir().join("count.py"))
            .arg(dir().join(file))
            .output()
            .expect("python3 runs the independent count (tests/fixtures/scanners/count.py)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let py: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(py["findings"], *findings, "{file}: count.py");
        assert_eq!(py["other"], *other, "{file}: count.py");
        assert_eq!(py["statements"], *statements, "{file}: count.py");
        let py_sev = ["critical", "high", "medium", "low", "unknown"]
            .map(|s| py["severity"][s].as_u64().unwrap());
        assert_eq!(py_sev, *sev, "{file}: count.py");

        // stella's count.
        let ev = evidence(file);
        assert_eq!(ev.report.statements.len() as u64, *statements, "{file}");
        if *statements > 0 {
            continue;
        }
        let v = verdict(&[file], 2);
        assert_eq!(
            v.measured["findings"], *findings,
            "{file}: {:#}",
            v.measured
        );
        assert_eq!(reachable(&v), *sev, "{file}: {:#}", v.measured);
        assert_eq!(v.measured["not_vulnerabilities"], *other, "{file}");
    }
}

#[test]
fn json_and_sarif_of_one_trivy_scan_give_trivys_number() {
    let both = [
        "trivy-alpine-310.json.golden",
        "trivy-alpine-310.sarif.golden",
    ];
    let v = verdict(&both, 2);
    assert_eq!(v.measured["findings"], 4, "{:#}", v.measured);
    assert_eq!(reachable(&v), [0, 0, 4, 0, 0]);
    // Each package is its own finding in the SARIF too (2 CVEs × 2 packages).
    let v = verdict(&both[1..], 2);
    assert_eq!(total(&v), 4);
    // Gate semantics 1, kept for replaying older capsules, counted the
    // SARIF by location (2) and the pair as 6.
    assert_eq!(total(&verdict(&both[1..], 1)), 2);
    assert_eq!(total(&verdict(&both, 1)), 6);
}

#[test]
fn json_and_sarif_of_one_grype_scan_give_grypes_number() {
    let both = [
        "grype-TestJsonImgsPresenter.golden",
        "grype-TestSarifPresenter_image.golden",
    ];
    let v = verdict(&both, 2);
    assert_eq!(v.measured["findings"], 2, "{:#}", v.measured);
    assert_eq!(total(&verdict(&both, 1)), 4);
}

#[test]
fn trivys_openvex_on_its_gomod_scan_gives_its_gomod_vex_result() {
    let v = verdict(&["trivy-gomod.json.golden", "trivy-gomod.openvex.json"], 2);
    assert_eq!(v.measured["suppressed"], 1, "{:#}", v.measured);
    let by = &v.measured["suppressed_by"][0];
    assert_eq!(by["id"], "CVE-2022-23628");
    assert_eq!(by["package"], "github.com/open-policy-agent/opa");
    assert_eq!(by["statement"], "statements[0]");
    assert_eq!(by["justification"], "vulnerable_code_not_in_execute_path");

    // Trivy's own result of the same inputs: what is left is what its
    // golden output lists, finding for finding.
    let golden = verdict(&["trivy-gomod-vex.json.golden"], 2);
    assert_eq!(reachable(&v), reachable(&golden));
    assert_eq!(total(&v), 4);

    // Semantics 1 matched only a product that is the image or the package.
    let old = verdict(&["trivy-gomod.json.golden", "trivy-gomod.openvex.json"], 1);
    assert_eq!(old.measured["suppressed"], 0);
}

#[test]
fn a_vex_statement_that_does_not_apply_says_why() {
    let mut vex = evidence("trivy-gomod.openvex.json");
    // The same statement about another version of opa.
    vex.report.statements[0].subcomponents =
        vec!["pkg:golang/github.com/open-policy-agent/opa@v0.36.0".into()];
    let scans = [evidence("trivy-gomod.json.golden"), vex];
    let v = security::evaluate_with(&gate(), &scans, &subject(), 2);
    assert_eq!(v.measured["suppressed"], 0);
    let na = &v.measured["vex_not_applied"][0];
    assert_eq!(na["id"], "CVE-2022-23628");
    assert_eq!(na["statement"], "statements[0]");
    assert_eq!(na["by"], "OpenVEX");
    let why = na["why"].as_str().unwrap();
    assert!(
        why.contains("opa@v0.36.0")
            && why.contains("pkg:golang/github.com/open-policy-agent/opa@v0.35.0"),
        "{why}"
    );
    assert!(
        v.reasons.iter().any(|r| r.contains("CVE-2022-23628")
            && r.contains("does not apply")
            && r.contains("opa@v0.36.0")),
        "{:#?}",
        v.reasons
    );

    // A product that is another image does not apply either, and says so.
    let mut vex = evidence("trivy-gomod.openvex.json");
    vex.report.statements[0].products = vec!["pkg:oci/some-other-app".into()];
    let scans = [evidence("trivy-gomod.json.golden"), vex];
    let v = security::evaluate_with(&gate(), &scans, &subject(), 2);
    assert_eq!(v.measured["suppressed"], 0);
    let why = v.measured["vex_not_applied"][0]["why"].as_str().unwrap();
    assert!(
        why.contains("pkg:oci/some-other-app is neither this release"),
        "{why}"
    );
}

#[test]
fn a_product_that_is_not_the_scanned_project_does_not_apply() {
    // A report that names its root module: a statement about another
    // module with opa inside is not about this one.
    let mut scan = evidence("trivy-gomod.json.golden");
    scan.report
        .roots
        .push("pkg:golang/github.com/someone/else".into());
    let v = security::evaluate_with(
        &gate(),
        &[scan, evidence("trivy-gomod.openvex.json")],
        &subject(),
        2,
    );
    assert_eq!(v.measured["suppressed"], 0);
    let why = v.measured["vex_not_applied"][0]["why"].as_str().unwrap();
    assert!(why.contains("not the scanned project"), "{why}");
}

#[test]
fn codeql_results_that_are_not_vulnerabilities_are_reported_apart() {
    let v = verdict(
        &[
            "codeql-fingerprinting.input.sarif",
            "codeql-fingerprinting2.input.sarif",
        ],
        2,
    );
    assert_eq!(total(&v), 0, "{:#}", v.measured);
    assert_eq!(v.measured["findings"], 0);
    assert_eq!(v.measured["not_vulnerabilities"], 3);
    let rules: Vec<&str> = v.measured["other_results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"js/unused-local-variable"), "{rules:?}");
    assert!(rules.contains(&"cpp/missing-header-guard"), "{rules:?}");
    // The result whose location is given by index is placed in its file.
    assert!(
        v.measured["other_results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["location"] == "testFile2.js" && r["line"] == 2),
        "{:#}",
        v.measured["other_results"]
    );
    assert!(
        v.reasons
            .iter()
            .any(|r| r.contains("3 results are not a vulnerability")),
        "{:#?}",
        v.reasons
    );
    assert!(v.summary.contains("0 reachable CVEs"), "{}", v.summary);
    // Semantics 1 counted them as CVEs.
    assert_eq!(
        total(&verdict(&["codeql-fingerprinting.input.sarif"], 1)),
        2
    );
}

/// Through the real binary: the evidence attached with `evidence add`,
/// `gate check --json` and its text both say which statement did not apply
/// and why, and what is not a vulnerability.
#[test]
fn gate_check_says_why_a_statement_does_not_apply() {
    use common::{add_image, stderr, stdout, stella};
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    std::fs::write(
        ws.join("stella.toml"),
        "[workspace]\nname = \"corpus\"\n[apps.gomod]\nimage = \"oci-layout:images/gomod\"\n\
         [environments.staging]\n[environments.staging.gates.security]\nmax_reachable = { medium = 0 }\n",
    )
    .unwrap();
    add_image(&ws.join("images/gomod"), "1.0", "gomod 1.0");
    let vex = std::fs::read_to_string(dir_file("trivy-gomod.openvex.json"))
        .unwrap()
        .replace("opa@v0.35.0", "opa@v0.36.0");
    std::fs::write(ws.join("vex.json"), vex).unwrap();
    for f in [
        dir_file("trivy-gomod.json.golden"),
        ws.join("vex.json"),
        dir_file("codeql-fingerprinting2.input.sarif"),
    ] {
        stella(ws)
            .args(["evidence", "add", "gomod:1.0"])
            .arg(&f)
            .assert()
            .success();
    }
    let out = stella(ws)
        .args(["gate", "check", "gomod:1.0", "--env", "staging", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    let sec = v["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == "security")
        .unwrap_or_else(|| panic!("{v:#}"));
    let m = &sec["measured"];
    assert_eq!(m["reachable"]["medium"], 1, "{m:#}");
    assert_eq!(m["suppressed"], 0);
    assert_eq!(m["not_vulnerabilities"], 1);
    assert_eq!(m["vex_not_applied"][0]["id"], "CVE-2022-23628");
    assert!(
        m["vex_not_applied"][0]["why"].as_str().unwrap().contains(
            "none of its subcomponents (pkg:golang/github.com/open-policy-agent/opa@v0.36.0)"
        ),
        "{m:#}"
    );

    let out = stella(ws)
        .args(["gate", "check", "gomod:1.0", "--env", "staging"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("CVE-2022-23628 in github.com/open-policy-agent/opa")
            && text.contains("does not apply")
            && text.contains("opa@v0.36.0"),
        "{text}"
    );
    assert!(text.contains("1 result is not a vulnerability"), "{text}");
}

fn dir_file(name: &str) -> PathBuf {
    dir().join(name)
}

/// Trivy's CycloneDX VEX names the affected package by BOM-Link
/// (`urn:cdx:SERIAL/1#pkg:maven/…/spring-boot@2.6.0`): it suppresses
/// CVE-2021-44228 in spring-boot (as Trivy's own test has it) and not the
/// same CVE in another package, saying why.
#[test]
fn cyclonedx_vex_bom_links_name_the_affected_package() {
    let finding = |name: &str, purl: &str, version: &str| {
        let mut f = stella::scan::Finding::new("CVE-2021-44228", name);
        f.purl = Some(purl.into());
        f.version = Some(version.into());
        f.severity = stella::scan::Severity::Critical;
        f
    };
    let report = stella::scan::Report {
        findings: vec![
            finding(
                "org.springframework.boot:spring-boot",
                "pkg:maven/org.springframework.boot/spring-boot@2.6.0",
                "2.6.0",
            ),
            finding(
                "org.apache.logging.log4j:log4j-core",
                "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
                "2.14.1",
            ),
        ],
        ..Default::default()
    };
    let vex = evidence("trivy-vex-cyclonedx.json");
    assert_eq!(vex.kind, EvidenceKind::Vex);
    let scans = [
        ScanEvidence {
            digest: Digest::of(b"a scan"),
            kind: EvidenceKind::Scan,
            format: Format::Trivy,
            report,
        },
        vex,
    ];
    let v = security::evaluate_with(&gate(), &scans, &subject(), 2);
    assert_eq!(v.measured["suppressed"], 1, "{:#}", v.measured);
    assert_eq!(
        v.measured["suppressed_by"][0]["package"],
        "org.springframework.boot:spring-boot"
    );
    assert_eq!(
        v.measured["suppressed_by"][0]["justification"],
        "code_not_reachable"
    );
    assert_eq!(reachable(&v), [1, 0, 0, 0, 0]);
    let why = v.measured["vex_not_applied"][0]["why"].as_str().unwrap();
    assert!(
        why.contains("spring-boot@2.6.0") && why.contains("log4j-core@2.14.1"),
        "{why}"
    );
    // Semantics 1 did not read BOM-Links: the statement, left without
    // subcomponents, suppressed the CVE in every package.
    let old = security::evaluate_with(&gate(), &scans, &subject(), 1);
    assert_eq!(old.measured["suppressed"], 2);
}

/// Trivy and Grype spell a Java package differently
/// (`org.springframework.boot:spring-boot` against `spring-boot`, the same
/// PURL): one finding; Trivy's SARIF of it, without a PURL, is the same one.
#[test]
fn the_same_package_spelled_by_two_scanners_counts_once() {
    let scan = |format: Format, name: &str, purl: Option<&str>| {
        let mut f = stella::scan::Finding::new("CVE-2022-22965", name);
        f.purl = purl.map(str::to_owned);
        f.version = Some("2.6.0".into());
        f.severity = stella::scan::Severity::Critical;
        ScanEvidence {
            digest: Digest::of(format!("{format:?}{name}").as_bytes()),
            kind: EvidenceKind::Scan,
            format,
            report: stella::scan::Report {
                findings: vec![f],
                ..Default::default()
            },
        }
    };
    let purl = "pkg:maven/org.springframework.boot/spring-boot@2.6.0";
    let scans = [
        scan(
            Format::Trivy,
            "org.springframework.boot:spring-boot",
            Some(purl),
        ),
        scan(Format::Grype, "spring-boot", Some(purl)),
        scan(Format::Sarif, "org.springframework.boot:spring-boot", None),
    ];
    let v = security::evaluate_with(&gate(), &scans, &subject(), 2);
    assert_eq!(v.measured["findings"], 1, "{:#}", v.measured);
    // Another package with its own CVE entry stays apart.
    let other = scan(
        Format::Grype,
        "spring-core",
        Some("pkg:maven/org.springframework/spring-core@2.6.0"),
    );
    let v = security::evaluate_with(&gate(), &[scans[0].clone(), other], &subject(), 2);
    assert_eq!(v.measured["findings"], 2);
}
