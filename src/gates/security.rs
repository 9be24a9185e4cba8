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
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use super::{EvidenceKind, ScanEvidence, Subject};
use crate::config::model::{SecurityGateConfig, SeverityLimits};
use crate::domain::{GateKind, Outcome, Verdict};
use crate::scan::{Finding, FindingKind, Format, ReportMark, Severity, VexStatement, purl_matches};

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
/// this runs for every finding of every report. Gate semantics 1.
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

/// Gate semantics 2: the vulnerability (a CVE among its id and aliases,
/// uppercase), the package's short name (lowercase) and its installed
/// version. The short name is the PURL's name where there is a PURL, else
/// the last `/` or `:` segment of the package name: scanners spell the same
/// package differently (Trivy `org.springframework.boot:spring-boot`, Grype
/// `spring-boot`), and a SARIF result carries no PURL.
fn identity_v2(f: &Finding) -> String {
    let id = f.key_id();
    let purl = f.purl.as_deref().and_then(|p| {
        let rest = p.strip_prefix("pkg:")?;
        let rest = rest.split(['?', '#']).next().unwrap_or(rest);
        let (path, version) = match rest.rsplit_once('@') {
            Some((path, v)) => (path, Some(v)),
            None => (rest, None),
        };
        Some((path.rsplit('/').next().unwrap_or(path), version))
    });
    let name = match purl {
        Some((name, _)) => name,
        None => f.package.rsplit(['/', ':']).next().unwrap_or(&f.package),
    };
    let version = f
        .version
        .clone()
        .or_else(|| {
            purl.and_then(|(_, v)| v)
                .map(|v| v.replace("%2B", "+").replace("%2b", "+"))
        })
        .unwrap_or_default();
    let mut key = String::with_capacity(id.len() + name.len() + version.len() + 2);
    key.extend(id.chars().map(|c| c.to_ascii_uppercase()));
    key.push('\0');
    key.extend(
        name.replace("%40", "@")
            .chars()
            .map(|c| c.to_ascii_lowercase()),
    );
    key.push('@');
    key.push_str(&version);
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

/// Semantics 1: a product is the release or the package; subcomponents,
/// when given, must name the package.
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

/// An identifier of an image rather than of a package.
fn names_an_image(id: &str) -> bool {
    id.starts_with("pkg:oci/")
        || id.starts_with("pkg:docker/")
        || id.starts_with("sha256:")
        || id.contains("@sha256:")
}

fn purl_type(id: &str) -> Option<&str> {
    id.strip_prefix("pkg:")?.split('/').next()
}

/// Whether `id` names the finding's package: its PURL (version optional on
/// the statement's side), its name, or `name@version`.
fn names_package(id: &str, f: &Finding) -> bool {
    f.purl.as_deref().is_some_and(|p| purl_matches(id, p))
        || id == f.package
        || f.version.as_deref().is_some_and(|v| {
            id.strip_suffix(v).and_then(|r| r.strip_suffix('@')) == Some(&f.package)
        })
        || (f.purl.is_none()
            && id.starts_with("pkg:")
            && f.version.is_some()
            && purl_matches(
                id,
                &format!(
                    "pkg:{}/{}@{}",
                    purl_type(id).unwrap_or_default(),
                    f.package,
                    f.version.as_deref().unwrap_or_default()
                ),
            ))
}

/// Semantics 2: the product and subcomponent matching of OpenVEX and
/// CycloneDX. A statement applies to a finding when one of its products
/// is
/// - the vulnerable package itself (no subcomponents, or one naming it), or
/// - this release (its digest, app name or `pkg:oci/APP`), or
/// - the scanned project (a package PURL that is not the vulnerable
///   package, with a subcomponent naming it; where a report names its
///   root in the same PURL type, the product must be that root),
///
/// and, when it lists subcomponents, one names the package. A statement
/// without products is about whatever it is attached to. `Err` says why
/// it does not apply.
fn applies_v2(
    st: &VexStatement,
    f: &Finding,
    subject: &Subject,
    roots: &[&str],
) -> Result<(), String> {
    let vuln = f.known_as(&st.vulnerability) || st.aliases.iter().any(|a| f.known_as(a));
    if !vuln {
        return Err(format!("it is about {}", st.vulnerability));
    }
    let subcomponents: Vec<&String> = st.subcomponents.iter().chain(&st.linked).collect();
    let subs_named = subcomponents.iter().any(|s| names_package(s, f));
    let subs_ok = subcomponents.is_empty() || subs_named;
    let subs_miss = || {
        format!(
            "none of its subcomponents ({}) is {}",
            subcomponents
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            f.purl.as_deref().unwrap_or(&f.package)
        )
    };
    if st.products.is_empty() {
        return if subs_ok { Ok(()) } else { Err(subs_miss()) };
    }
    let mut why = Vec::new();
    for p in &st.products {
        if names_package(p, f) {
            if subs_ok {
                return Ok(());
            }
            why.push(format!("product {p} is the package but {}", subs_miss()));
        } else if product_is_release(p, subject) {
            if subs_ok {
                return Ok(());
            }
            why.push(format!("product {p} is this release but {}", subs_miss()));
        } else if names_an_image(p) || !p.starts_with("pkg:") {
            why.push(format!(
                "product {p} is neither this release ({}@{}) nor the package",
                subject.app, subject.digest
            ));
        } else if subcomponents.is_empty() {
            why.push(format!(
                "product {p} is another package than {}",
                f.purl.as_deref().unwrap_or(&f.package)
            ));
        } else if !subs_named {
            why.push(format!("product {p}: {}", subs_miss()));
        } else {
            let same_type: Vec<&str> = roots
                .iter()
                .copied()
                .filter(|r| purl_type(r).is_some() && purl_type(r) == purl_type(p))
                .collect();
            if same_type.is_empty() || same_type.iter().any(|r| purl_matches(p, r)) {
                return Ok(());
            }
            why.push(format!(
                "product {p} is not the scanned project ({})",
                same_type.join(", ")
            ));
        }
    }
    Err(why.join("; "))
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

/// A VEX statement about a finding's vulnerability that did not apply to
/// it, and why.
#[derive(Debug, Clone)]
pub struct NotApplied {
    pub finding: String,
    pub id: String,
    pub package: String,
    pub by: Source,
    pub why: String,
}

/// Everything the gate judged.
#[derive(Debug, Clone, Default)]
pub struct Assessment<'a> {
    pub judged: Vec<Judged<'a>>,
    /// Results that are not vulnerabilities (semantics 2), once each.
    pub others: Vec<&'a Finding>,
    /// VEX statements about a finding's vulnerability that did not apply.
    pub not_applied: Vec<NotApplied>,
}

/// A SARIF finding as gate semantics 1 read it: the location was the
/// package, nothing else was known, and every result counted.
fn v1_view(f: &Finding) -> Finding {
    match &f.legacy {
        Some(l) => l.as_ref().clone(),
        None => f.clone(),
    }
}

fn merge_into(seen: &mut Finding, f: &Finding) {
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
}

/// Semantics 1: one finding per identity over every report.
fn unique_v1(scans: &[ScanEvidence]) -> Vec<Cow<'_, Finding>> {
    let mut unique: BTreeMap<String, Cow<'_, Finding>> = BTreeMap::new();
    for s in scans.iter().filter(|s| s.kind == EvidenceKind::Scan) {
        for f in &s.report.findings {
            let f: Cow<'_, Finding> = if s.format == Format::Sarif {
                Cow::Owned(v1_view(f))
            } else {
                Cow::Borrowed(f)
            };
            match unique.entry(identity(&f)) {
                Entry::Occupied(mut e) => merge_into(e.get_mut().to_mut(), &f),
                Entry::Vacant(e) => {
                    e.insert(f);
                }
            }
        }
    }
    unique.into_values().collect()
}

/// Semantics 2: within one report, one finding per identity and location
/// (a package found in two lockfiles is two findings, a result repeated
/// at the same place is one); across reports, the same identity counts as
/// often as the report that lists it at the most locations (the JSON and
/// SARIF of one scan, or two scanners, do not add up), its details merged
/// from all of them.
fn unique_v2(scans: &[ScanEvidence]) -> (Vec<Cow<'_, Finding>>, Vec<&Finding>) {
    type Places<'a> = BTreeMap<(Option<&'a str>, Option<u64>), &'a Finding>;
    /// Rule, location, line and package: the same result twice is one.
    type Other<'a> = (&'a str, Option<&'a str>, Option<u64>, &'a str);
    let mut best: BTreeMap<String, Places<'_>> = BTreeMap::new();
    let mut all: BTreeMap<String, Vec<&Finding>> = BTreeMap::new();
    let mut others: BTreeMap<Other<'_>, &Finding> = BTreeMap::new();
    for s in scans.iter().filter(|s| s.kind == EvidenceKind::Scan) {
        let mut mine: BTreeMap<String, Places<'_>> = BTreeMap::new();
        for f in &s.report.findings {
            if f.kind == FindingKind::Other {
                others
                    .entry((&f.id, f.location.as_deref(), f.line, &f.package))
                    .or_insert(f);
                continue;
            }
            let key = identity_v2(f);
            mine.entry(key.clone())
                .or_default()
                .entry((f.location.as_deref(), f.line))
                .or_insert(f);
            all.entry(key).or_default().push(f);
        }
        for (key, places) in mine {
            match best.entry(key) {
                Entry::Occupied(mut e) if e.get().len() < places.len() => {
                    e.insert(places);
                }
                Entry::Occupied(_) => {}
                Entry::Vacant(e) => {
                    e.insert(places);
                }
            }
        }
    }
    let mut unique = Vec::new();
    for (key, places) in best {
        let same = &all[&key];
        for f in places.into_values() {
            if same.iter().all(|o| std::ptr::eq(*o, f)) {
                unique.push(Cow::Borrowed(f));
            } else {
                let mut merged = f.clone();
                for o in same.iter().filter(|o| !std::ptr::eq(**o, f)) {
                    merge_into(&mut merged, o);
                }
                unique.push(Cow::Owned(merged));
            }
        }
    }
    (unique, others.into_values().collect())
}

/// Deduplicates findings across reports and judges each against the VEX,
/// with the gate semantics this stella evaluates.
pub fn judge<'a>(scans: &'a [ScanEvidence], subject: &Subject) -> Vec<Judged<'a>> {
    assess(scans, subject, super::SEMANTICS).judged
}

/// Deduplicates and judges with gate semantics `semantics` (1 or 2).
pub fn assess<'a>(scans: &'a [ScanEvidence], subject: &Subject, semantics: u32) -> Assessment<'a> {
    let v2 = semantics >= 2;
    let (unique, others) = if v2 {
        unique_v2(scans)
    } else {
        (unique_v1(scans), Vec::new())
    };
    let roots: Vec<&str> = scans
        .iter()
        .flat_map(|s| s.report.roots.iter().map(String::as_str))
        .collect();
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
    let source = |ev: &ScanEvidence, st: &VexStatement| Source {
        what: ev.format.name().to_owned(),
        evidence: Some(ev.digest.clone()),
        locator: st.locator.clone(),
        justification: st.justification.clone(),
    };
    let mut not_applied = Vec::new();
    let judged = unique
        .into_iter()
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
                .find(|(ev, st)| {
                    if !v2 {
                        return applies(st, &finding, subject);
                    }
                    match applies_v2(st, &finding, subject, &roots) {
                        Ok(()) => true,
                        Err(why) => {
                            not_applied.push(NotApplied {
                                finding: describe(&finding),
                                id: finding.id.clone(),
                                package: finding.package.clone(),
                                by: source(ev, st),
                                why,
                            });
                            false
                        }
                    }
                });
            let status = match last {
                Some((ev, st)) => {
                    let by = source(ev, st);
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
        .collect();
    Assessment {
        judged,
        others,
        not_applied,
    }
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
    evaluate_with(cfg, scans, subject, super::SEMANTICS)
}

/// At most this many results that are not vulnerabilities, and VEX
/// statements that did not apply, are listed in `measured` (all are
/// counted).
const LISTED: usize = 50;

/// The verdict with gate semantics `semantics`: 1 for capsules decided
/// before semantics 2, which adds `not_vulnerabilities`, `other_results`
/// and `vex_not_applied` to `measured`.
pub fn evaluate_with(
    cfg: &SecurityGateConfig,
    scans: &[ScanEvidence],
    subject: &Subject,
    semantics: u32,
) -> Verdict {
    let v2 = semantics >= 2;
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
        if v2 {
            v.measured["not_vulnerabilities"] = json!(0);
            v.measured["other_results"] = json!([]);
            v.measured["vex_not_applied"] = json!([]);
        }
        return v;
    }

    let Assessment {
        judged,
        others,
        not_applied,
    } = assess(scans, subject, semantics);
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
    if v2 {
        for n in not_applied.iter().take(LISTED) {
            reasons.push(format!(
                "{} counted as far as VEX {} goes: it does not apply — {}",
                n.finding, n.by, n.why
            ));
        }
        if not_applied.len() > LISTED {
            reasons.push(format!(
                "and {} more VEX statements that do not apply to a finding of their vulnerability",
                not_applied.len() - LISTED
            ));
        }
        if !others.is_empty() {
            let mut rules: Vec<&str> = others.iter().map(|f| f.id.as_str()).collect();
            rules.sort_unstable();
            rules.dedup();
            let more = rules.len().saturating_sub(5);
            reasons.push(format!(
                "{} {} not a vulnerability (no advisory id, not tagged security), reported apart and not counted: {}{}",
                others.len(),
                if others.len() == 1 { "result is" } else { "results are" },
                rules[..rules.len().min(5)].join(", "),
                if more > 0 { format!(" and {more} more rules") } else { String::new() }
            ));
        }
    }
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
    if v2 {
        v.measured["not_vulnerabilities"] = json!(others.len());
        v.measured["other_results"] = others
            .iter()
            .take(LISTED)
            .map(|f| {
                json!({
                    "rule": f.id,
                    "location": f.location,
                    "line": f.line,
                    "severity": f.severity,
                })
            })
            .collect();
        v.measured["vex_not_applied"] = not_applied
            .iter()
            .take(LISTED)
            .map(|n| {
                json!({
                    "id": n.id,
                    "package": n.package,
                    "by": n.by.what,
                    "evidence": n.by.evidence.as_ref().map(ToString::to_string),
                    "statement": n.by.locator,
                    "why": n.why,
                })
            })
            .collect();
    }
    v
}
