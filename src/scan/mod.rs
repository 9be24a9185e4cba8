//! Scanner reports and VEX documents → normalised findings and statements.
//!
//! Formats are detected from the content, never the file name: Trivy JSON,
//! Grype JSON, SARIF 2.1.0, CycloneDX JSON (with VEX `analysis`) and OpenVEX.
//! Everything here is pure: bytes in, data out.

mod cyclonedx;
mod finding;
mod grype;
mod openvex;
mod purl;
mod sarif;
mod trivy;

use serde::Serialize;

pub use finding::{Finding, ReportMark, Severity, VexStatement, VexStatus};
pub use purl::purl_matches;

/// A format stella can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Trivy,
    Grype,
    Sarif,
    CycloneDx,
    OpenVex,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Trivy => "Trivy JSON",
            Format::Grype => "Grype JSON",
            Format::Sarif => "SARIF 2.1.0",
            Format::CycloneDx => "CycloneDX JSON",
            Format::OpenVex => "OpenVEX",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Format::Trivy => "application/vnd.trivy.report+json",
            Format::Grype => "application/vnd.anchore.grype.report+json",
            Format::Sarif => "application/sarif+json",
            Format::CycloneDx => "application/vnd.cyclonedx+json",
            Format::OpenVex => "application/vnd.openvex+json",
        }
    }

    pub fn from_media_type(m: &str) -> Option<Format> {
        [
            Format::Trivy,
            Format::Grype,
            Format::Sarif,
            Format::CycloneDx,
            Format::OpenVex,
        ]
        .into_iter()
        .find(|f| f.media_type() == m)
    }
}

/// What a parsed document holds.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub statements: Vec<VexStatement>,
    /// Components listed (an SBOM's size), where the format has them.
    pub components: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("not JSON ({0}); expected {EXPECTED}")]
    NotJson(String),
    #[error("not a report stella knows; expected {EXPECTED}")]
    Unknown,
    #[error("looks like {format} but is malformed: {detail}", format = .format.name())]
    Malformed { format: Format, detail: String },
}

const EXPECTED: &str = "Trivy JSON, Grype JSON, SARIF 2.1.0, CycloneDX JSON or OpenVEX";

/// Detects the format of a document from its content.
pub fn detect(bytes: &[u8]) -> Result<Format, ScanError> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ScanError::NotJson(e.to_string()))?;
    let obj = v.as_object().ok_or(ScanError::Unknown)?;
    let s = |k: &str| obj.get(k).and_then(|x| x.as_str()).unwrap_or("");
    if s("bomFormat") == "CycloneDX" {
        return Ok(Format::CycloneDx);
    }
    if s("@context").starts_with("https://openvex.dev/ns") {
        return Ok(Format::OpenVex);
    }
    if obj.contains_key("runs") && (s("version") == "2.1.0" || s("$schema").contains("sarif")) {
        return Ok(Format::Sarif);
    }
    if obj.contains_key("SchemaVersion")
        && (obj.contains_key("Results") || obj.contains_key("ArtifactName"))
    {
        return Ok(Format::Trivy);
    }
    if obj.contains_key("matches")
        && (obj.contains_key("descriptor")
            || obj.contains_key("source")
            || obj.contains_key("distro"))
    {
        return Ok(Format::Grype);
    }
    Err(ScanError::Unknown)
}

/// Parses a document of a known format.
pub fn parse(format: Format, bytes: &[u8]) -> Result<Report, ScanError> {
    let malformed = |e: serde_json::Error| ScanError::Malformed {
        format,
        detail: e.to_string(),
    };
    match format {
        Format::Trivy => trivy::parse(bytes).map_err(malformed),
        Format::Grype => grype::parse(bytes).map_err(malformed),
        Format::Sarif => sarif::parse(bytes).map_err(|e| match e {
            sarif::Error::Json(e) => malformed(e),
            sarif::Error::Version(v) => ScanError::Malformed {
                format,
                detail: format!("version `{v}` is not supported (expected 2.1.0)"),
            },
        }),
        Format::CycloneDx => cyclonedx::parse(bytes).map_err(malformed),
        Format::OpenVex => openvex::parse(bytes).map_err(|e| match e {
            openvex::Error::Json(e) => malformed(e),
            openvex::Error::Status(s) => ScanError::Malformed {
                format,
                detail: format!(
                    "status `{s}` is not one of not_affected, affected, fixed, under_investigation"
                ),
            },
        }),
    }
}

/// Detects and parses.
pub fn read(bytes: &[u8]) -> Result<(Format, Report), ScanError> {
    let f = detect(bytes)?;
    Ok((f, parse(f, bytes)?))
}
