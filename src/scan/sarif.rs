//! SARIF 2.1.0: `runs[].results[]`. Severity from the rule's
//! `properties["security-severity"]` (a CVSS score) when present, else from
//! the result's (or rule's default) `level`. The package is the first
//! location's artifact URI.

use std::collections::HashMap;

use serde::Deserialize;

use super::{Finding, Report, ReportMark, Severity};

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
    results: Option<Vec<SarifResult>>,
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
}

#[derive(Deserialize)]
struct Artifact {
    #[serde(default)]
    uri: Option<String>,
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
            let package = r
                .locations
                .as_ref()
                .and_then(|l| l.first()?.physical.as_ref()?.artifact.as_ref()?.uri.clone())
                .unwrap_or_default();
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
            findings.push(Finding {
                id,
                aliases: Vec::new(),
                package,
                purl: None,
                version: None,
                severity,
                fixed_version: None,
                mark,
            });
        }
    }
    Ok(Report {
        findings,
        ..Report::default()
    })
}
