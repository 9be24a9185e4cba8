//! Normalised findings and VEX statements.

use std::fmt;

use serde::Serialize;

/// Severity, most severe first (so sorting puts the worst on top).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Unknown,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Unknown,
    ];

    /// Reads the words scanners use (`CRITICAL`, `High`, `moderate`, `negligible`…).
    pub fn from_word(s: &str) -> Severity {
        match s.trim().to_ascii_lowercase().as_str() {
            "critical" => Severity::Critical,
            "high" | "important" => Severity::High,
            "medium" | "moderate" => Severity::Medium,
            "low" | "negligible" | "info" | "informational" | "minor" => Severity::Low,
            _ => Severity::Unknown,
        }
    }

    /// CVSS base score bands (as SARIF's `security-severity` uses them).
    pub fn from_cvss(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score > 0.0 {
            Severity::Low
        } else {
            Severity::Unknown
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a report itself says about a finding, besides reporting it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mark", rename_all = "snake_case")]
pub enum ReportMark {
    /// Nothing: the finding stands.
    None,
    /// The report marks it unreachable (e.g. a Grype ignore rule with a VEX
    /// reachability justification).
    Unreachable { why: String },
    /// The report suppresses it for a reason that is not reachability
    /// (a SARIF suppression, a plain Grype ignore rule): still counted.
    Ignored { why: String },
}

/// Whether a result is a vulnerability at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A known vulnerability (CVE, GHSA, OSV…) or a result its tool tags
    /// as security.
    Vulnerability,
    /// Anything else a report lists, e.g. a CodeQL code-quality result:
    /// reported apart, never counted as a CVE.
    Other,
}

/// One vulnerability in one package, as a report states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub id: String,
    pub aliases: Vec<String>,
    pub package: String,
    pub purl: Option<String>,
    pub version: Option<String>,
    pub severity: Severity,
    pub fixed_version: Option<String>,
    pub mark: ReportMark,
    pub kind: FindingKind,
    /// Where in the scanned artifact: a Trivy result's `Target`, a SARIF
    /// result's artifact URI.
    pub location: Option<String>,
    /// A SARIF result's region start line.
    pub line: Option<u64>,
    /// How gate semantics 1 read this result, where it read it otherwise
    /// (SARIF: the rule id as written, the URI as the package, nothing
    /// else), so capsules decided then replay the same.
    #[serde(skip)]
    pub legacy: Option<Box<Finding>>,
}

impl Finding {
    /// The identifier used to recognise the same vulnerability across
    /// reports: a CVE among the id and aliases if there is one.
    pub fn key_id(&self) -> &str {
        std::iter::once(&self.id)
            .chain(&self.aliases)
            .filter(|i| i.starts_with("CVE-"))
            .min()
            .unwrap_or(&self.id)
    }

    /// A finding of `id` in `package` with nothing else known.
    pub fn new(id: impl Into<String>, package: impl Into<String>) -> Finding {
        Finding {
            id: id.into(),
            aliases: Vec::new(),
            package: package.into(),
            purl: None,
            version: None,
            severity: Severity::Unknown,
            fixed_version: None,
            mark: ReportMark::None,
            kind: FindingKind::Vulnerability,
            location: None,
            line: None,
            legacy: None,
        }
    }

    /// Whether `name` is this finding's id or one of its aliases.
    pub fn known_as(&self, name: &str) -> bool {
        self.id.eq_ignore_ascii_case(name)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VexStatus {
    NotAffected,
    Affected,
    Fixed,
    UnderInvestigation,
    FalsePositive,
}

/// A VEX statement: about one vulnerability, for some products (and
/// optionally some of their subcomponents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VexStatement {
    pub vulnerability: String,
    pub aliases: Vec<String>,
    /// Product identifiers (PURLs, image references or digests); empty
    /// means "whatever this is attached to".
    pub products: Vec<String>,
    pub subcomponents: Vec<String>,
    /// Subcomponents given as CycloneDX BOM-Links
    /// (`urn:cdx:SERIAL/VERSION#BOM-REF`), as the BOM-ref they link to
    /// (resolved to its PURL where the document lists it). Gate semantics 1
    /// did not read them.
    pub linked: Vec<String>,
    pub status: VexStatus,
    /// The justification, in the document's own vocabulary.
    pub justification: Option<String>,
    /// Where it is in its document, for people: `statements[3]`.
    pub locator: String,
}

impl VexStatement {
    /// `not_affected` because the vulnerable code cannot be reached.
    pub fn says_unreachable(&self) -> bool {
        self.status == VexStatus::NotAffected
            && matches!(
                self.justification.as_deref(),
                Some("code_not_reachable" | "vulnerable_code_not_in_execute_path")
            )
    }

    /// The finding does not apply at all: the component or code is not
    /// there, it is fixed, or it was a false positive.
    pub fn says_not_applicable(&self) -> bool {
        match self.status {
            VexStatus::Fixed | VexStatus::FalsePositive => true,
            VexStatus::NotAffected => self
                .justification
                .as_deref()
                .is_some_and(|j| j.ends_with("_not_present")),
            _ => false,
        }
    }
}
