//! Trivy JSON (`trivy image --format json`): `Results[].Vulnerabilities[]`,
//! where `Vulnerabilities` may be null or absent.

use serde::Deserialize;

use super::{Finding, FindingKind, Report, ReportMark, Severity};

#[derive(Deserialize)]
struct Doc {
    #[serde(rename = "ArtifactName", default)]
    artifact: Option<String>,
    #[serde(rename = "Results", default)]
    results: Option<Vec<Target>>,
}

#[derive(Deserialize)]
struct Target {
    #[serde(rename = "Target", default)]
    target: Option<String>,
    #[serde(rename = "Vulnerabilities", default)]
    vulnerabilities: Option<Vec<Vuln>>,
    #[serde(rename = "Packages", default)]
    packages: Option<Vec<Package>>,
}

#[derive(Deserialize)]
struct Package {
    #[serde(rename = "Relationship", default)]
    relationship: Option<String>,
    #[serde(rename = "Identifier", default)]
    identifier: Option<PkgIdentifier>,
}

#[derive(Deserialize)]
struct Vuln {
    #[serde(rename = "VulnerabilityID")]
    id: String,
    #[serde(rename = "VendorIDs", default)]
    vendor_ids: Option<Vec<String>>,
    #[serde(rename = "PkgName")]
    pkg_name: String,
    #[serde(rename = "PkgIdentifier", default)]
    pkg_identifier: Option<PkgIdentifier>,
    #[serde(rename = "InstalledVersion", default)]
    installed_version: Option<String>,
    #[serde(rename = "FixedVersion", default)]
    fixed_version: Option<String>,
    #[serde(rename = "Severity", default)]
    severity: Option<String>,
}

#[derive(Deserialize)]
struct PkgIdentifier {
    #[serde(rename = "PURL", default)]
    purl: Option<String>,
}

pub fn parse(bytes: &[u8]) -> Result<Report, serde_json::Error> {
    let doc: Doc = serde_json::from_slice(bytes)?;
    let targets = doc.results.unwrap_or_default();
    let mut roots: Vec<String> = doc.artifact.into_iter().collect();
    roots.extend(
        targets
            .iter()
            .flat_map(|t| t.packages.iter().flatten())
            .filter(|p| p.relationship.as_deref() == Some("root"))
            .filter_map(|p| p.identifier.as_ref()?.purl.clone()),
    );
    let findings = targets
        .into_iter()
        .flat_map(|t| {
            let target = t.target;
            t.vulnerabilities
                .unwrap_or_default()
                .into_iter()
                .map(move |v| (target.clone(), v))
        })
        .map(|(target, v)| Finding {
            id: v.id,
            aliases: v.vendor_ids.unwrap_or_default(),
            package: v.pkg_name,
            purl: v.pkg_identifier.and_then(|p| p.purl),
            version: v.installed_version,
            severity: v
                .severity
                .as_deref()
                .map_or(Severity::Unknown, Severity::from_word),
            fixed_version: v.fixed_version.filter(|f| !f.is_empty()),
            mark: ReportMark::None,
            kind: FindingKind::Vulnerability,
            location: target,
            line: None,
            legacy: None,
        })
        .collect();
    Ok(Report {
        findings,
        roots,
        ..Report::default()
    })
}
