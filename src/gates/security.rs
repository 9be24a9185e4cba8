//! The security gate: reachable findings per severity against the
//! environment's limits.
//!
//! A finding counts as reachable unless a VEX statement attached to the same
//! digest, matching its id (or an alias) and its package, says
//! `not_affected` with a reachability justification — then it is
//! *suppressed*, and the verdict names the statement. `*_not_present`,
//! `fixed` and `false_positive` make it not applicable. Anything else —
//! `under_investigation`, `affected`, other justifications, no VEX at all —
//! counts (fail closed). Where several statements match, the last attached
//! wins, so a newer VEX document overrides an older one.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use super::{EvidenceKind, ScanEvidence, Subject};
use crate::config::model::{SecurityGateConfig, SeverityLimits};
use crate::domain::{GateKind, Outcome, Verdict};
use crate::scan::{Finding, ReportMark, Severity, VexStatement, purl_matches};

/// Who said a finding is unreachable or not applicable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `OpenVEX`, `CycloneDX JSON`, or the report that marked it.
    pub what: String,
    /// The evidence blob holding the statement.
    pub evidence: Option<crate::domain::Digest>,
    /// Where in it: `statements[2]`.
    pub locator: String,
    pub justification: Option<String>,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.what)?;
        if let Some(d) = &self.evidence {
            write!(f, " sha256:{}…", d.short())?;
        }
        if !self.locator.is_empty() {
            write!(f, " {}", self.locator)?;
        }
        if let Some(j) = &self.justification {
            write!(f, " ({j})")?;
        }
        Ok(())
    }
}

/// How a finding was judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Reachable { note: Option<String> },
    Suppressed { by: Source },
    NotApplicable { by: Source },
}

/// A finding after deduplication, with its judgement.
#[derive(Debug, Clone)]
pub struct Judged<'a> {
    /// Borrowed from its report unless duplicates were merged into it.
    pub finding: Cow<'a, Finding>,
    pub status: Status,
}

fn limit(l: &SeverityLimits, s: Severity) -> Option<u32> {
    match s {
        Severity::Critical => l.critical,
        Severity::High => l.high,
        Severity::Medium => l.medium,
        Severity::Low => l.low,
        Severity::Unknown => l.unknown,
    }
}

/// The same vulnerability in the same package, however many reports say it.
/// One string per finding (`CVE-…` NUL package), built without temporaries:
/// this runs for every finding of every report.
fn identity(f: &Finding) -> String {
    let id = f.key_id();
    let mut key = String::with_capacity(id.len() + 48);
    key.extend(id.chars().map(|c| c.to_ascii_uppercase()));
    key.push('\0');
    match &f.purl {
        Some(p) => key.extend(
            p.split(['?', '#'])
                .next()
                .unwrap_or(p)
                .chars()
                .map(|c| c.to_ascii_lowercase()),
        ),
        None => {
            key.push_str(&f.package);
            key.push('@');
            key.push_str(f.version.as_deref().unwrap_or(""));
        }
    }
    key
}

fn product_is_release(id: &str, subject: &Subject) -> bool {
    if id.contains(subject.digest.hex()) || id == subject.app {
        return true;
    }
    // pkg:oci/NAME@sha256%3A… — the digest check above covers pinned ones.
    id.strip_prefix("pkg:oci/")
        .map(|rest| rest.split(['@', '?']).next().unwrap_or(rest))
        .is_some_and(|name| name == subject.app)
}

fn applies(st: &VexStatement, f: &Finding, subject: &Subject) -> bool {
    let vuln = f.known_as(&st.vulnerability) || st.aliases.iter().any(|a| f.known_as(a));
    if !vuln {
        return false;
    }
    let package =
        |id: &String| f.purl.as_deref().is_some_and(|p| purl_matches(id, p)) || *id == f.package;
    let products_ok = st.products.is_empty()
        || st
            .products
            .iter()
            .any(|p| product_is_release(p, subject) || package(p));
    if st.subcomponents.is_empty() {
        products_ok
    } else {
        products_ok && st.subcomponents.iter().any(package)
    }
}

/// Finds a name in the uppercase index, allocating only for names that are
/// not uppercase already.
fn lookup<'m>(by_name: &'m HashMap<String, Vec<usize>>, name: &str) -> Option<&'m Vec<usize>> {
    if name.bytes().any(|b| b.is_ascii_lowercase()) {
        by_name.get(&name.to_ascii_uppercase())
    } else {
        by_name.get(name)
    }
}

/// Deduplicates findings across reports and judges each against the VEX.
pub fn judge<'a>(scans: &'a [ScanEvidence], subject: &Subject) -> Vec<Judged<'a>> {
    let mut unique: BTreeMap<String, Cow<'a, Finding>> = BTreeMap::new();
    for f in scans
        .iter()
        .filter(|s| s.kind == EvidenceKind::Scan)
        .flat_map(|s| &s.report.findings)
    {
        unique
            .entry(identity(f))
            .and_modify(|seen| {
                let seen = seen.to_mut();
                seen.severity = seen.severity.min(f.severity);
                for a in &f.aliases {
                    if !seen.aliases.contains(a) && *a != seen.id {
                        seen.aliases.push(a.clone());
                    }
                }
                if seen.purl.is_none() {
                    seen.purl.clone_from(&f.purl);
                }
                if seen.fixed_version.is_none() {
                    seen.fixed_version.clone_from(&f.fixed_version);
                }
                if seen.mark == ReportMark::None {
                    seen.mark = f.mark.clone();
                }
            })
            .or_insert(Cow::Borrowed(f));
    }
    let statements: Vec<(&ScanEvidence, &VexStatement)> = scans
        .iter()
        .flat_map(|s| s.report.statements.iter().map(move |st| (s, st)))
        .collect();
    // Statements by every name they go by, so each finding looks only at
    // the statements about it (a 2,000-finding report against a large VEX
    // is otherwise quadratic).
    let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, (_, st)) in statements.iter().enumerate() {
        for n in std::iter::once(&st.vulnerability).chain(&st.aliases) {
            by_name.entry(n.to_ascii_uppercase()).or_default().push(i);
        }
    }
    unique
        .into_values()
        .map(|finding| {
            let mut candidates: Vec<usize> = std::iter::once(&finding.id)
                .chain(&finding.aliases)
                .filter_map(|n| lookup(&by_name, n))
                .flatten()
                .copied()
                .collect();
            candidates.sort_unstable();
            candidates.dedup();
            let last = candidates
                .iter()
                .rev()
                .map(|&i| statements[i])
                .find(|(_, st)| applies(st, &finding, subject));
            let status = match last {
                Some((ev, st)) => {
                    let by = Source {
                        what: ev.format.name().to_owned(),
                        evidence: Some(ev.digest.clone()),
                        locator: st.locator.clone(),
                        justification: st.justification.clone(),
                    };
                    if st.says_unreachable() {
                        Status::Suppressed { by }
                    } else if st.says_not_applicable() {
                        Status::NotApplicable { by }
                    } else {
                        Status::Reachable {
                            note: Some(format!("VEX {by} does not show it unreachable")),
                        }
                    }
                }
                None => match &finding.mark {
                    ReportMark::Unreachable { why } => Status::Suppressed {
                        by: Source {
                            what: why.clone(),
                            evidence: None,
                            locator: String::new(),
                            justification: None,
                        },
                    },
                    ReportMark::Ignored { why } => Status::Reachable {
                        note: Some(why.clone()),
                    },
                    ReportMark::None => Status::Reachable { note: None },
                },
            };
            Judged { finding, status }
        })
        .collect()
}

fn cves(n: u32) -> &'static str {
    if n == 1 { "CVE" } else { "CVEs" }
}

fn describe(f: &Finding) -> String {
    let mut s = format!("{} in {}", f.id, f.package);
    if let Some(v) = &f.version {
        s.push_str(&format!(" {v}"));
    }
    if let Some(fix) = &f.fixed_version {
        s.push_str(&format!(" (fixed in {fix})"));
    }
    s
}

/// The verdict. `measured` holds `reachable` per severity, `suppressed`,
/// `not_applicable`, `findings` (unique) and `suppressed_by`.
pub fn evaluate(cfg: &SecurityGateConfig, scans: &[ScanEvidence], subject: &Subject) -> Verdict {
    let reports = scans
        .iter()
        .filter(|s| s.kind == EvidenceKind::Scan)
        .count();
    if reports == 0 {
        let mut v = if cfg.require_scan {
            let mut v = Verdict::new(
                GateKind::Security,
                Outcome::Fail,
                format!("no scan evidence for {}", subject.digest),
            );
            v.unblock.push(format!(
                "attach a scan report: `stella evidence add {}@{} REPORT.json`",
                subject.app, subject.digest
            ));
            v
        } else {
            Verdict::new(
                GateKind::Security,
                Outcome::Skipped,
                format!("no scan evidence; not required in {}", subject.environment),
            )
        };
        v.measured = json!({
            "reachable": {"critical": 0, "high": 0, "medium": 0, "low": 0, "unknown": 0},
            "suppressed": 0, "not_applicable": 0, "findings": 0, "reports": 0, "suppressed_by": [],
        });
        return v;
    }

    let judged = judge(scans, subject);
    let mut counts: BTreeMap<Severity, u32> = Severity::ALL.iter().map(|s| (*s, 0)).collect();
    let mut reachable: Vec<&Judged> = Vec::new();
    let mut suppressed_by = Vec::new();
    let mut not_applicable = 0;
    let mut reasons = Vec::new();
    for j in &judged {
        match &j.status {
            Status::Reachable { note } => {
                *counts.entry(j.finding.severity).or_default() += 1;
                reachable.push(j);
                if let Some(n) = note {
                    reasons.push(format!("{} counted: {n}", describe(&j.finding)));
                }
            }
            Status::Suppressed { by } => {
                suppressed_by.push(json!({
                    "id": j.finding.id,
                    "package": j.finding.package,
                    "by": by.what,
                    "evidence": by.evidence.as_ref().map(ToString::to_string),
                    "statement": by.locator,
                    "justification": by.justification,
                }));
                reasons.push(format!(
                    "{} suppressed: unreachable per {by}",
                    describe(&j.finding)
                ));
            }
            Status::NotApplicable { by } => {
                not_applicable += 1;
                reasons.push(format!("{} not applicable per {by}", describe(&j.finding)));
            }
        }
    }
    reachable.sort_by(|a, b| {
        (a.finding.severity, &a.finding.id, &a.finding.package).cmp(&(
            b.finding.severity,
            &b.finding.id,
            &b.finding.package,
        ))
    });
    let total: u32 = counts.values().sum();

    let mut over = Vec::new();
    let mut near = Vec::new();
    let mut unblock = Vec::new();
    for s in Severity::ALL {
        let Some(max) = limit(&cfg.max_reachable, s) else {
            continue;
        };
        let n = counts[&s];
        if n > max {
            over.push(format!(
                "{n} reachable {s} {} over the limit of {max}",
                cves(n)
            ));
            let worst: Vec<String> = reachable
                .iter()
                .filter(|j| j.finding.severity == s)
                .map(|j| describe(&j.finding))
                .collect();
            let shown = worst
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            let more = worst.len().saturating_sub(10);
            unblock.push(format!(
                "bring reachable {s} CVEs from {n} to at most {max} — fix them or attach VEX showing them unreachable: {shown}{}",
                if more > 0 { format!(", and {more} more") } else { String::new() }
            ));
        } else if max > 0 && n * 5 >= max * 4 {
            near.push(format!(
                "{n} reachable {s} {}, near the limit of {max}",
                cves(n)
            ));
        }
    }

    let (outcome, summary) = if !over.is_empty() {
        (Outcome::Fail, over.join("; "))
    } else if !near.is_empty() {
        (Outcome::Warn, near.join("; "))
    } else {
        (
            Outcome::Pass,
            format!("{total} reachable {} below threshold", cves(total)),
        )
    };
    let mut v = Verdict::new(GateKind::Security, outcome, summary);
    v.reasons = reasons;
    v.unblock = unblock;
    v.measured = json!({
        "reachable": {
            "critical": counts[&Severity::Critical],
            "high": counts[&Severity::High],
            "medium": counts[&Severity::Medium],
            "low": counts[&Severity::Low],
            "unknown": counts[&Severity::Unknown],
        },
        "suppressed": suppressed_by.len(),
        "not_applicable": not_applicable,
        "findings": judged.len(),
        "reports": reports,
        "suppressed_by": suppressed_by,
    });
    v
}
