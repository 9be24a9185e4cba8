//! CycloneDX JSON: `components[]` (nested too) and `vulnerabilities[]`,
//! each affecting components by `bom-ref`. A vulnerability with an
//! `analysis` is also a VEX statement about the components it affects.

use std::collections::HashMap;

use serde::Deserialize;

use super::{Finding, FindingKind, Report, ReportMark, Severity, VexStatement, VexStatus};

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    components: Option<Vec<Component>>,
    #[serde(default)]
    vulnerabilities: Option<Vec<Vuln>>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    component: Option<Component>,
}

#[derive(Deserialize)]
struct Component {
    #[serde(rename = "bom-ref", default)]
    bom_ref: Option<String>,
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    purl: Option<String>,
    #[serde(default)]
    components: Option<Vec<Component>>,
}

#[derive(Deserialize)]
struct Vuln {
    id: String,
    #[serde(default)]
    ratings: Option<Vec<Rating>>,
    #[serde(default)]
    references: Option<Vec<Reference>>,
    #[serde(default)]
    affects: Option<Vec<Affect>>,
    #[serde(default)]
    analysis: Option<Analysis>,
}

#[derive(Deserialize)]
struct Rating {
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    score: Option<f64>,
}

#[derive(Deserialize)]
struct Reference {
    id: String,
}

#[derive(Deserialize)]
struct Affect {
    #[serde(rename = "ref")]
    reference: String,
}

#[derive(Deserialize)]
struct Analysis {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    justification: Option<String>,
}

struct Package {
    name: String,
    version: Option<String>,
    purl: Option<String>,
}

fn index(c: &Component, out: &mut HashMap<String, Package>, count: &mut usize) {
    *count += 1;
    let pkg = || Package {
        name: c.name.clone(),
        version: c.version.clone(),
        purl: c.purl.clone(),
    };
    if let Some(r) = &c.bom_ref {
        out.insert(r.clone(), pkg());
    }
    if let Some(p) = &c.purl {
        out.entry(p.clone()).or_insert_with(pkg);
    }
    for child in c.components.iter().flatten() {
        index(child, out, count);
    }
}

fn severity(ratings: &[Rating]) -> Severity {
    ratings
        .iter()
        .map(|r| match (&r.severity, r.score) {
            (Some(s), _) if Severity::from_word(s) != Severity::Unknown => Severity::from_word(s),
            (_, Some(score)) => Severity::from_cvss(score),
            _ => Severity::Unknown,
        })
        .min()
        .unwrap_or(Severity::Unknown)
}

fn status(state: &str) -> Option<VexStatus> {
    Some(match state {
        "not_affected" => VexStatus::NotAffected,
        "exploitable" => VexStatus::Affected,
        "in_triage" => VexStatus::UnderInvestigation,
        "resolved" | "resolved_with_pedigree" => VexStatus::Fixed,
        "false_positive" => VexStatus::FalsePositive,
        _ => return None,
    })
}

pub fn parse(bytes: &[u8]) -> Result<Report, serde_json::Error> {
    let doc: Doc = serde_json::from_slice(bytes)?;
    let mut packages = HashMap::new();
    let mut components = 0;
    let mut roots = Vec::new();
    for c in doc.metadata.iter().filter_map(|m| m.component.as_ref()) {
        roots.extend(c.purl.iter().chain(&c.bom_ref).cloned());
        let mut ignore = 0;
        index(c, &mut packages, &mut ignore);
    }
    for c in doc.components.iter().flatten() {
        index(c, &mut packages, &mut components);
    }
    let mut report = Report {
        components,
        roots,
        ..Report::default()
    };
    for (i, v) in doc
        .vulnerabilities
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let mut aliases: Vec<String> = v
            .references
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.id)
            .collect();
        aliases.retain(|a| *a != v.id);
        let sev = severity(v.ratings.as_deref().unwrap_or_default());
        let affects: Vec<String> = v
            .affects
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.reference)
            .collect();
        let stated = v
            .analysis
            .as_ref()
            .and_then(|a| a.state.as_deref().and_then(status));
        let mut subcomponents = Vec::new();
        let mut linked = Vec::new();
        for r in &affects {
            if let Some((_, bom_ref)) = r
                .strip_prefix("urn:cdx:")
                .and_then(|l| l.split_once('#'))
                .filter(|(_, b)| !b.is_empty())
            {
                linked.push(
                    packages
                        .get(bom_ref)
                        .and_then(|p| p.purl.clone())
                        .unwrap_or_else(|| bom_ref.to_owned()),
                );
            }
            let pkg = packages.get(r);
            let purl = pkg
                .and_then(|p| p.purl.clone())
                .or_else(|| r.starts_with("pkg:").then(|| r.clone()));
            if let Some(p) = &purl {
                subcomponents.push(p.clone());
            } else if let Some(p) = pkg {
                subcomponents.push(p.name.clone());
            }
            report.findings.push(Finding {
                id: v.id.clone(),
                aliases: aliases.clone(),
                package: pkg.map_or_else(|| r.clone(), |p| p.name.clone()),
                purl,
                version: pkg.and_then(|p| p.version.clone()),
                severity: sev,
                fixed_version: None,
                mark: ReportMark::None,
                kind: FindingKind::Vulnerability,
                location: None,
                line: None,
                legacy: None,
            });
        }
        if let Some(status) = stated {
            report.statements.push(VexStatement {
                vulnerability: v.id.clone(),
                aliases,
                products: Vec::new(),
                subcomponents,
                linked,
                status,
                justification: v.analysis.and_then(|a| a.justification),
                locator: format!("vulnerabilities[{i}]"),
            });
        }
    }
    Ok(report)
}
