//! Trivy JSON (`trivy image --format json`): `Results[].Vulnerabilities[]`,
//! where `Vulnerabilities` may be null or absent.

use serde::Deserialize;

use super::{Finding, Report, ReportMark, Severity};

#[derive(Deserialize)]
struct Doc {
    #[serde(rename = "Results", default)]
    results: Option<Vec<Target>>,
}

#[derive(Deserialize)]
struct Target {
    #[serde(rename = "Vulnerabilities", default)]
    vulnerabilities: Option<Vec<Vuln>>,
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
    let findings = doc
        .results
        .unwrap_or_default()
        .into_iter()
        .flat_map(|t| t.vulnerabilities.unwrap_or_default())
        .map(|v| Finding {
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
        })
        .collect();
    Ok(Report {
        findings,
        ..Report::default()
    })
}
