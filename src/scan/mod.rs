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

pub use finding::{Finding, FindingKind, ReportMark, Severity, VexStatement, VexStatus};
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
    /// What the report says it scanned, where it says it: Trivy's
    /// `ArtifactName` and root packages, a CycloneDX BOM's
    /// `metadata.component`, Grype's source. A VEX product naming one of
    /// these is the scanned project.
    pub roots: Vec<String>,
}

/// The largest report, VEX or SBOM stella reads (attached, collected for
/// the gates, or replayed): larger ones are refused before parsing.
pub const MAX_REPORT_BYTES: usize = 32 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("{0} bytes, over the 32 MiB limit of a scan report, VEX or SBOM; refused unread")]
    TooLarge(usize),
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
    if bytes.len() > MAX_REPORT_BYTES {
        return Err(ScanError::TooLarge(bytes.len()));
    }
    /// Only the top-level keys that tell formats apart; every value is
    /// skipped without being built, so detection costs one lexing pass.
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "bomFormat")]
        bom_format: Option<serde::de::IgnoredAny>,
        #[serde(rename = "@context")]
        context: Option<String>,
        version: Option<serde_json::Value>,
        #[serde(rename = "$schema")]
        schema: Option<String>,
        runs: Option<serde::de::IgnoredAny>,
        #[serde(rename = "SchemaVersion")]
        trivy_schema: Option<serde::de::IgnoredAny>,
        #[serde(rename = "Results")]
        results: Option<serde::de::IgnoredAny>,
        #[serde(rename = "ArtifactName")]
        artifact: Option<serde::de::IgnoredAny>,
        matches: Option<serde::de::IgnoredAny>,
        descriptor: Option<serde::de::IgnoredAny>,
        source: Option<serde::de::IgnoredAny>,
        distro: Option<serde::de::IgnoredAny>,
    }
    let p: Probe = match serde_json::from_slice(bytes) {
        Ok(p) => p,
        Err(e) if e.is_data() => return Err(ScanError::Unknown),
        Err(e) => return Err(ScanError::NotJson(e.to_string())),
    };
    // `bomFormat` must say CycloneDX; check it without a second parse of
    // everything by looking for the exact key/value pair.
    if p.bom_format.is_some() && bom_is_cyclonedx(bytes) {
        return Ok(Format::CycloneDx);
    }
    if p.context
        .as_deref()
        .is_some_and(|c| c.starts_with("https://openvex.dev/ns"))
    {
        return Ok(Format::OpenVex);
    }
    let version = p.version.as_ref().and_then(|v| v.as_str()).unwrap_or("");
    if p.runs.is_some()
        && (version == "2.1.0" || p.schema.as_deref().is_some_and(|s| s.contains("sarif")))
    {
        return Ok(Format::Sarif);
    }
    if p.trivy_schema.is_some() && (p.results.is_some() || p.artifact.is_some()) {
        return Ok(Format::Trivy);
    }
    if p.matches.is_some() && (p.descriptor.is_some() || p.source.is_some() || p.distro.is_some()) {
        return Ok(Format::Grype);
    }
    Err(ScanError::Unknown)
}

fn bom_is_cyclonedx(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Bom {
        #[serde(rename = "bomFormat")]
        bom_format: String,
    }
    serde_json::from_slice::<Bom>(bytes).is_ok_and(|b| b.bom_format == "CycloneDX")
}

/// Parses a document of a known format.
pub fn parse(format: Format, bytes: &[u8]) -> Result<Report, ScanError> {
    if bytes.len() > MAX_REPORT_BYTES {
        return Err(ScanError::TooLarge(bytes.len()));
    }
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
