//! The demo's scanner reports, written in the real formats: Trivy JSON,
//! Grype JSON, and an OpenVEX document that shows some findings
//! unreachable.

use serde_json::{Value, json};

/// One finding in a demo report.
#[derive(Clone, Copy)]
pub struct Vuln {
    pub id: &'static str,
    pub package: &'static str,
    pub version: &'static str,
    pub ecosystem: &'static str,
    pub severity: &'static str,
}

impl Vuln {
    pub fn purl(&self) -> String {
        format!("pkg:{}/{}@{}", self.ecosystem, self.package, self.version)
    }
}

pub fn trivy(artifact: &str, vulns: &[Vuln]) -> Vec<u8> {
    let list: Vec<Value> = vulns
        .iter()
        .map(|v| {
            json!({
                "VulnerabilityID": v.id,
                "PkgName": v.package,
                "PkgIdentifier": { "PURL": v.purl() },
                "InstalledVersion": v.version,
                "FixedVersion": "",
                "Severity": v.severity.to_ascii_uppercase(),
            })
        })
        .collect();
    let doc = json!({
        "SchemaVersion": 2,
        "ArtifactName": artifact,
        "ArtifactType": "container_image",
        "Results": [{
            "Target": artifact,
            "Class": "lang-pkgs",
            "Type": "npm",
            "Vulnerabilities": list,
        }],
    });
    serde_json::to_vec_pretty(&doc).expect("JSON values serialize")
}

pub fn grype(vulns: &[Vuln]) -> Vec<u8> {
    let matches: Vec<Value> = vulns
        .iter()
        .map(|v| {
            let mut severity = v.severity.to_owned();
            severity[..1].make_ascii_uppercase();
            json!({
                "vulnerability": {
                    "id": v.id,
                    "namespace": "github:language:go",
                    "severity": severity,
                    "fix": { "versions": [], "state": "not-fixed" },
                },
                "relatedVulnerabilities": [],
                "matchDetails": [],
                "artifact": {
                    "name": v.package,
                    "version": v.version,
                    "type": "go-module",
                    "purl": v.purl(),
                },
            })
        })
        .collect();
    let doc = json!({
        "matches": matches,
        "descriptor": { "name": "grype", "version": "0.80.0" },
    });
    serde_json::to_vec_pretty(&doc).expect("JSON values serialize")
}

/// Each of `vulns` declared `not_affected` because its code is never run.
pub fn openvex(id: &str, vulns: &[&Vuln]) -> Vec<u8> {
    let statements: Vec<Value> = vulns
        .iter()
        .map(|v| {
            json!({
                "vulnerability": { "name": v.id },
                "products": [{ "@id": v.purl() }],
                "status": "not_affected",
                "justification": "vulnerable_code_not_in_execute_path",
                "impact_statement": format!("{} is bundled but its vulnerable path is never called", v.package),
            })
        })
        .collect();
    let doc = json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": id,
        "author": "Demo Security <security@demo.example>",
        "timestamp": "2026-11-20T12:00:00Z",
        "version": 1,
        "statements": statements,
    });
    serde_json::to_vec_pretty(&doc).expect("JSON values serialize")
}
