//! Grype JSON (`grype -o json`): `matches[]`, and `ignoredMatches[]` with
//! the ignore rules that applied. An ignore rule carrying a VEX
//! `not_affected` reachability justification marks the finding unreachable;
//! any other ignore rule is recorded but the finding still counts.

use serde::Deserialize;

use super::{Finding, FindingKind, Report, ReportMark, Severity};

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    matches: Vec<Match>,
    #[serde(rename = "ignoredMatches", default)]
    ignored: Vec<Ignored>,
}

#[derive(Deserialize)]
struct Match {
    vulnerability: Vuln,
    #[serde(rename = "relatedVulnerabilities", default)]
    related: Vec<Related>,
    artifact: Artifact,
}

#[derive(Deserialize)]
struct Ignored {
    #[serde(flatten)]
    m: Match,
    #[serde(rename = "appliedIgnoreRules", default)]
    rules: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Vuln {
    id: String,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    fix: Option<Fix>,
}

#[derive(Deserialize)]
struct Fix {
    #[serde(default)]
    versions: Vec<String>,
}

#[derive(Deserialize)]
struct Related {
    id: String,
}

#[derive(Deserialize)]
struct Artifact {
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    purl: Option<String>,
}

fn finding(m: Match, mark: ReportMark) -> Finding {
    let mut aliases: Vec<String> = m
        .related
        .into_iter()
        .map(|r| r.id)
        .filter(|r| *r != m.vulnerability.id)
        .collect();
    aliases.sort();
    aliases.dedup();
    Finding {
        id: m.vulnerability.id,
        aliases,
        package: m.artifact.name,
        purl: m.artifact.purl.filter(|p| !p.is_empty()),
        version: m.artifact.version,
        severity: m
            .vulnerability
            .severity
            .as_deref()
            .map_or(Severity::Unknown, Severity::from_word),
        fixed_version: m
            .vulnerability
            .fix
            .and_then(|f| f.versions.into_iter().next()),
        mark,
        kind: FindingKind::Vulnerability,
        location: None,
        line: None,
        legacy: None,
    }
}

fn mark_of(rules: &[serde_json::Value]) -> ReportMark {
    let field =
        |r: &serde_json::Value, k: &str| r.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    for r in rules {
        let status = field(r, "vex-status");
        let just = field(r, "vex-justification");
        if status.as_deref() == Some("not_affected")
            && matches!(
                just.as_deref(),
                Some("vulnerable_code_not_in_execute_path" | "code_not_reachable")
            )
        {
            return ReportMark::Unreachable {
                why: format!(
                    "grype ignore rule: not_affected, {}",
                    just.unwrap_or_default()
                ),
            };
        }
    }
    let why = rules
        .first()
        .and_then(|r| field(r, "reason").or_else(|| field(r, "vulnerability")))
        .unwrap_or_else(|| "an ignore rule".into());
    ReportMark::Ignored {
        why: format!("grype ignored it ({why}); not a reachability statement"),
    }
}

pub fn parse(bytes: &[u8]) -> Result<Report, serde_json::Error> {
    let doc: Doc = serde_json::from_slice(bytes)?;
    let mut findings: Vec<Finding> = doc
        .matches
        .into_iter()
        .map(|m| finding(m, ReportMark::None))
        .collect();
    findings.extend(doc.ignored.into_iter().map(|i| {
        let mark = mark_of(&i.rules);
        finding(i.m, mark)
    }));
    Ok(Report {
        findings,
        ..Report::default()
    })
}
