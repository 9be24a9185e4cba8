//! SARIF 2.1.0: `runs[].results[]`. Severity from the rule's
//! `properties["security-severity"]` (a CVSS score) when present, else from
//! the result's (or rule's default) `level`.
//!
//! The package of a result is, in this order: a `purl` (or `packageName` /
//! `packageVersion`) in the result's properties; the `Package:` and
//! `Installed Version:` lines of the message, as Trivy writes them; else the
//! first location's artifact URI (what the result is about, for code
//! scanners). The location is that URI and the region's start line.
//!
//! A result is a vulnerability when its rule id (or the result's) is an
//! advisory id (CVE, GHSA, OSV-style `GO-`, `PYSEC-`, `RUSTSEC-`, `GMS-`…),
//! or its rule is tagged `security` or `vulnerability`, or carries a
//! `security-severity`. Anything else (CodeQL's code-quality queries,
//! linters) is [`FindingKind::Other`].

use std::collections::HashMap;

use serde::Deserialize;

use super::{Finding, FindingKind, Report, ReportMark, Severity};

pub enum Error {
    Json(serde_json::Error),
    Version(String),
}

#[derive(Deserialize)]
struct Doc {
    version: String,
    runs: Vec<Run>,
}

#[derive(Deserialize)]
struct Run {
    tool: Tool,
    #[serde(default)]
    artifacts: Option<Vec<RunArtifact>>,
    #[serde(default)]
    results: Option<Vec<SarifResult>>,
}

#[derive(Deserialize)]
struct RunArtifact {
    #[serde(default)]
    location: Option<Artifact>,
}

#[derive(Deserialize)]
struct Tool {
    driver: Driver,
}

#[derive(Deserialize)]
struct Driver {
    #[serde(default)]
    rules: Option<Vec<Rule>>,
}

#[derive(Deserialize)]
struct Rule {
    id: String,
    #[serde(default)]
    properties: Option<HashMap<String, serde_json::Value>>,
    #[serde(rename = "defaultConfiguration", default)]
    default_configuration: Option<Configuration>,
}

#[derive(Deserialize)]
struct Configuration {
    #[serde(default)]
    level: Option<String>,
}

#[derive(Deserialize)]
struct SarifResult {
    #[serde(rename = "ruleId", default)]
    rule_id: Option<String>,
    #[serde(rename = "ruleIndex", default)]
    rule_index: Option<usize>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    locations: Option<Vec<Location>>,
    #[serde(default)]
    suppressions: Option<Vec<Suppression>>,
    #[serde(default)]
    properties: Option<HashMap<String, serde_json::Value>>,
    #[serde(default)]
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Location {
    #[serde(rename = "physicalLocation", default)]
    physical: Option<Physical>,
}

#[derive(Deserialize)]
struct Physical {
    #[serde(rename = "artifactLocation", default)]
    artifact: Option<Artifact>,
    #[serde(default)]
    region: Option<Region>,
}

#[derive(Deserialize)]
struct Region {
    #[serde(rename = "startLine", default)]
    start_line: Option<u64>,
}

#[derive(Deserialize)]
struct Artifact {
    #[serde(default)]
    uri: Option<String>,
    #[serde(default)]
    index: Option<usize>,
}

#[derive(Deserialize)]
struct Suppression {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    justification: Option<String>,
}

fn cvss(props: Option<&HashMap<String, serde_json::Value>>) -> Option<f64> {
    let v = props?.get("security-severity")?;
    v.as_f64().or_else(|| v.as_str()?.trim().parse().ok())
}

/// Advisory id prefixes: CVE, GitHub, OSV ecosystems, GitLab, distros.
const ADVISORY: [&str; 14] = [
    "CVE-", "GHSA-", "GO-", "PYSEC-", "RUSTSEC-", "GMS-", "OSV-", "DSA-", "DLA-", "RHSA-", "ALAS",
    "USN-", "ELSA-", "SNYK-",
];

fn is_advisory(id: &str) -> bool {
    let up = id.trim().to_ascii_uppercase();
    ADVISORY.iter().any(|p| up.starts_with(p))
}

fn tagged_security(props: Option<&HashMap<String, serde_json::Value>>) -> bool {
    let Some(props) = props else { return false };
    props.contains_key("security-severity")
        || props
            .get("tags")
            .and_then(|t| t.as_array())
            .is_some_and(|tags| {
                tags.iter().filter_map(|t| t.as_str()).any(|t| {
                    t.eq_ignore_ascii_case("security") || t.eq_ignore_ascii_case("vulnerability")
                })
            })
}

fn prop_str(props: Option<&HashMap<String, serde_json::Value>>, key: &str) -> Option<String> {
    props?
        .get(key)?
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A line `Key: value` of a message.
fn message_field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
        .find(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The package a result is about: (name, version, purl).
fn package_of(
    r: &SarifResult,
    rule: Option<&Rule>,
) -> Option<(String, Option<String>, Option<String>)> {
    let props = r.properties.as_ref();
    // Grype lists the package's PURLs on the rule (one rule per
    // vulnerability × package).
    let rule_purl = rule
        .and_then(|x| {
            x.properties
                .as_ref()?
                .get("purls")?
                .as_array()?
                .first()?
                .as_str()
        })
        .map(str::to_owned);
    if let Some(purl) = prop_str(props, "purl").or(rule_purl) {
        let (name, version) = purl_name_version(&purl);
        return Some((name, version, Some(purl)));
    }
    if let Some(name) = prop_str(props, "packageName") {
        return Some((name, prop_str(props, "packageVersion"), None));
    }
    let text = r.message.as_ref()?.text.as_deref()?;
    if let Some(name) = message_field(text, "Package") {
        return Some((name, message_field(text, "Installed Version"), None));
    }
    // Grype: "A low vulnerability in rpm package: NAME, version VER was found…"
    let rest = text.split_once(" package: ")?.1;
    let (name, rest) = rest.split_once(", version ")?;
    let version = rest.split_whitespace().next().map(str::to_owned);
    Some((name.trim().to_owned(), version, None))
}

/// `pkg:type/ns/name@version?q` → (`ns/name`, version).
fn purl_name_version(purl: &str) -> (String, Option<String>) {
    let rest = purl.strip_prefix("pkg:").unwrap_or(purl);
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let (path, version) = match rest.rsplit_once('@') {
        Some((p, v)) => (p, Some(v.to_owned())),
        None => (rest, None),
    };
    let name = path.split_once('/').map_or(path, |(_, n)| n);
    (name.replace("%40", "@"), version)
}

fn level_severity(level: &str) -> Severity {
    match level {
        "error" => Severity::High,
        "warning" => Severity::Medium,
        "note" => Severity::Low,
        _ => Severity::Unknown,
    }
}

pub fn parse(bytes: &[u8]) -> Result<Report, Error> {
    let doc: Doc = serde_json::from_slice(bytes).map_err(Error::Json)?;
    if doc.version != "2.1.0" {
        return Err(Error::Version(doc.version));
    }
    let mut findings = Vec::new();
    for run in doc.runs {
        let rules = run.tool.driver.rules.unwrap_or_default();
        let artifacts = run.artifacts.unwrap_or_default();
        for r in run.results.unwrap_or_default() {
            let rule = r
                .rule_id
                .as_deref()
                .and_then(|id| rules.iter().find(|x| x.id == id))
                .or_else(|| r.rule_index.and_then(|i| rules.get(i)));
            let Some(id) = r.rule_id.clone().or_else(|| rule.map(|x| x.id.clone())) else {
                continue;
            };
            let severity = cvss(r.properties.as_ref())
                .or_else(|| cvss(rule.and_then(|x| x.properties.as_ref())))
                .map(Severity::from_cvss)
                .unwrap_or_else(|| {
                    let level = r
                        .level
                        .clone()
                        .or_else(|| {
                            rule.and_then(|x| x.default_configuration.as_ref()?.level.clone())
                        })
                        .unwrap_or_else(|| "warning".into());
                    level_severity(&level)
                });
            let physical = r
                .locations
                .as_ref()
                .and_then(|l| l.first()?.physical.as_ref());
            let location = physical.and_then(|p| {
                let a = p.artifact.as_ref()?;
                a.uri
                    .clone()
                    .or_else(|| artifacts.get(a.index?)?.location.as_ref()?.uri.clone())
            });
            let line = physical.and_then(|p| p.region.as_ref()?.start_line);
            let (package, version, purl) = package_of(&r, rule)
                .unwrap_or_else(|| (location.clone().unwrap_or_default(), None, None));
            // Grype names its rules VULN-PACKAGE: the vulnerability is the id
            // without the package.
            let legacy = Finding {
                id: id.clone(),
                package: physical
                    .and_then(|p| p.artifact.as_ref()?.uri.clone())
                    .unwrap_or_default(),
                severity,
                ..Finding::new("", "")
            };
            let id = match id.strip_suffix(package.as_str()) {
                Some(v) if !package.is_empty() && v.ends_with('-') && is_advisory(v) => {
                    v.trim_end_matches('-').to_owned()
                }
                _ => id,
            };
            let fixed = r
                .message
                .as_ref()
                .and_then(|m| message_field(m.text.as_deref()?, "Fixed Version"));
            let kind = if is_advisory(&id)
                || tagged_security(rule.and_then(|x| x.properties.as_ref()))
                || tagged_security(r.properties.as_ref())
            {
                FindingKind::Vulnerability
            } else {
                FindingKind::Other
            };
            // SARIF: a suppression without a status is accepted.
            let accepted = r
                .suppressions
                .unwrap_or_default()
                .into_iter()
                .find(|s| s.status.as_deref().is_none_or(|st| st == "accepted"));
            let mark = match accepted {
                Some(s) => ReportMark::Ignored {
                    why: format!(
                        "suppressed in the SARIF report ({}{}); not a reachability statement",
                        s.kind.unwrap_or_else(|| "suppression".into()),
                        s.justification
                            .map(|j| format!(": {j}"))
                            .unwrap_or_default()
                    ),
                },
                None => ReportMark::None,
            };
            let legacy = Some(Box::new(Finding {
                mark: mark.clone(),
                ..legacy
            }));
            findings.push(Finding {
                id,
                aliases: Vec::new(),
                package,
                purl,
                version,
                severity,
                fixed_version: fixed,
                mark,
                kind,
                location,
                line,
                legacy,
            });
        }
    }
    Ok(Report {
        findings,
        ..Report::default()
    })
}
