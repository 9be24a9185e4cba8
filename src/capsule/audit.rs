//! Chains and audit bundles.
//!
//! Each environment's capsules form a hash chain: every statement names the
//! payload digest of the capsule before it. `verify_chain` walks the store's
//! chains; `Bundle` is the offline package for a compliance reviewer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use super::file::{CapsuleFile, Format};
use super::verify::{self, Trusted};
use crate::domain::Digest;
use crate::sign::{Envelope, PublicKey};
use super::seal::ChainHead;
use crate::store::{CapsuleRow, ChainHeadRow};

/// Only what the chain check needs from a statement; the rest is skipped
/// unparsed.
#[derive(Deserialize)]
struct ChainView {
    predicate: ChainPredicate,
}

#[derive(Deserialize)]
pub struct ChainPredicate {
    previous: Option<Digest>,
    to: String,
    app: String,
    action: String,
    decision: String,
    release: ChainRelease,
}

#[derive(Deserialize)]
struct ChainRelease {
    digest: Digest,
}

/// What the signed payload says of the columns the store indexes it by;
/// `None` if the payload is no decision statement.
pub fn signed_view(payload: &[u8]) -> Result<ChainPredicate, String> {
    serde_json::from_slice::<ChainView>(payload)
        .map(|v| v.predicate)
        .map_err(|e| format!("payload is not a decision statement ({e})"))
}

/// Where a capsule's index row disagrees with its signed payload: each
/// column named with what the index says and what was signed.
pub fn index_disagreements(row: &CapsuleRow, view: &ChainPredicate) -> Vec<String> {
    let mut out = Vec::new();
    let mut col = |name: &str, indexed: &str, signed: &str| {
        if indexed != signed {
            out.push(format!("{name} is `{indexed}` in the index, `{signed}` signed"));
        }
    };
    col("environment", &row.environment, &view.to);
    col("app", &row.app, &view.app);
    col("action", &row.action, &view.action);
    col("decision", &row.decision, &view.decision);
    col(
        "digest",
        &row.digest.to_string(),
        &view.release.digest.to_string(),
    );
    let show = |d: &Option<Digest>| d.as_ref().map_or("none".to_owned(), ToString::to_string);
    col("previous", &show(&row.previous), &show(&view.previous));
    out
}

/// The checks `capsule list` makes of each row it shows, without the
/// signature (that is `audit verify-chain`'s): the payload is the one
/// indexed, and the index agrees with it.
pub fn row_problems(row: &CapsuleRow, envelope: &[u8]) -> Vec<String> {
    let env: Envelope = match serde_json::from_slice(envelope) {
        Ok(e) => e,
        Err(e) => return vec![format!("envelope is not DSSE JSON ({e})")],
    };
    let payload = match env.payload_bytes() {
        Ok(p) => p,
        Err(e) => return vec![e.to_string()],
    };
    if Digest::of(&payload) != row.payload_digest {
        return vec![format!(
            "payload does not hash to its indexed digest {}",
            row.payload_digest
        )];
    }
    match signed_view(&payload) {
        Ok(v) => {
            let d = index_disagreements(row, &v);
            if d.is_empty() {
                d
            } else {
                vec![format!(
                    "index disagrees with signed payload: {}",
                    d.join("; ")
                )]
            }
        }
        Err(e) => vec![e],
    }
}

/// What can be checked of one capsule on its own.
struct Checked<'k> {
    problems: Vec<String>,
    view: Option<ChainPredicate>,
    /// The signature still to verify: key, message, signature.
    pending: Option<(&'k PublicKey, Vec<u8>, Vec<u8>)>,
}

/// Signatures verified per batch: large enough to amortize, small enough
/// that a failing batch is cheap to re-check one by one.
const BATCH: usize = 64;

/// Verifies the pending signatures of a run of checks, in batches.
fn settle(checked: &mut [Checked<'_>]) {
    for group in checked.chunks_mut(BATCH) {
        let items: Vec<(&PublicKey, &[u8], &[u8])> = group
            .iter()
            .filter_map(|c| {
                c.pending
                    .as_ref()
                    .map(|(k, m, s)| (*k, m.as_slice(), s.as_slice()))
            })
            .collect();
        let all_good = crate::sign::keys::verify_batch(&items);
        for c in group.iter_mut() {
            if let Some((key, message, sig)) = c.pending.take()
                && !all_good
                && !key.verify(&message, &sig)
            {
                c.problems.insert(
                    0,
                    format!("signature does not verify with key {}", &key.keyid()[..16]),
                );
            }
        }
    }
}

fn check<'k>(
    trusted: &HashMap<&str, &'k PublicKey>,
    row: &CapsuleRow,
    envelope: &[u8],
) -> Checked<'k> {
    let mut problems = Vec::new();
    let env: Envelope = match serde_json::from_slice(envelope) {
        Ok(e) => e,
        Err(e) => {
            problems.push(format!("envelope is not DSSE JSON ({e})"));
            return Checked {
                problems,
                view: None,
                pending: None,
            };
        }
    };
    let payload = match env.payload_bytes() {
        Ok(p) => p,
        Err(e) => {
            problems.push(e.to_string());
            return Checked {
                problems,
                view: None,
                pending: None,
            };
        }
    };
    if Digest::of(&payload) != row.payload_digest {
        problems.push(format!(
            "payload does not hash to its indexed digest {}",
            row.payload_digest
        ));
    }
    let mut pending = None;
    match env.keyids().find_map(|k| trusted.get(k)) {
        Some(key) => match env.signed_message(key, &payload) {
            Some((message, sig)) => pending = Some((*key, message, sig)),
            None => problems.push(format!(
                "signature does not verify with key {}",
                &key.keyid()[..16]
            )),
        },
        None => problems.push(format!(
            "signed by key {}, which is not a sealing key of this workspace",
            env.keyids()
                .next()
                .map_or("(none)", |k| &k[..k.len().min(16)])
        )),
    }
    match signed_view(&payload) {
        Ok(v) => Checked {
            problems,
            view: Some(v),
            pending,
        },
        Err(e) => {
            problems.push(e);
            Checked {
                problems,
                view: None,
                pending,
            }
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ChainReport {
    pub valid: bool,
    pub capsules: usize,
    pub environments: BTreeMap<String, usize>,
    pub problems: Vec<String>,
}

/// Checks capsules in store order: each one's signature, that its payload
/// is the one indexed, and that it links to the capsule before it in its
/// environment. Names the first break of each kind it meets.
pub struct ChainWalker<'a> {
    trusted: HashMap<&'a str, &'a PublicKey>,
    last: HashMap<String, (i64, Digest)>,
    seen: HashSet<Digest>,
    pub report: ChainReport,
}

impl<'a> ChainWalker<'a> {
    pub fn new(trusted: &'a [Trusted]) -> ChainWalker<'a> {
        ChainWalker {
            trusted: trusted.iter().map(|t| (t.key.keyid(), &t.key)).collect(),
            last: HashMap::new(),
            seen: HashSet::new(),
            report: ChainReport::default(),
        }
    }

    /// Visits capsules in order, checking their signatures on every core:
    /// the checks are independent, only the links are sequential.
    pub fn visit_all(&mut self, rows: &[(CapsuleRow, Vec<u8>)]) {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(rows.len().max(1));
        let per = rows.len().div_ceil(threads).max(1);
        let trusted = &self.trusted;
        let checked: Vec<Checked> = std::thread::scope(|s| {
            let handles: Vec<_> = rows
                .chunks(per)
                .map(|chunk| {
                    s.spawn(move || {
                        let mut c: Vec<Checked<'_>> =
                            chunk.iter().map(|(r, e)| check(trusted, r, e)).collect();
                        settle(&mut c);
                        c
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("a chain check thread panicked"))
                .collect()
        });
        for ((row, _), c) in rows.iter().zip(checked) {
            self.link(row, c);
        }
    }

    fn link(&mut self, row: &CapsuleRow, checked: Checked<'_>) {
        self.report.capsules += 1;
        *self
            .report
            .environments
            .entry(row.environment.clone())
            .or_default() += 1;
        let id = row.id;
        let problem = |r: &mut ChainReport, p: String| {
            r.problems
                .push(format!("capsule #{id} ({}): {p}", row.environment))
        };
        for p in checked.problems {
            problem(&mut self.report, p);
        }
        let Some(view) = checked.view else {
            return;
        };
        let disagree = index_disagreements(row, &view);
        if !disagree.is_empty() {
            problem(
                &mut self.report,
                format!(
                    "index disagrees with signed payload: {}",
                    disagree.join("; ")
                ),
            );
        }
        let expected = self.last.get(&row.environment);
        match (&view.previous, expected) {
            (None, None) => {}
            (Some(p), Some((_, e))) if p == e => {}
            (Some(p), _) if self.seen.contains(p) => problem(
                &mut self.report,
                format!(
                    "links to {p}, which is not the capsule before it{}: the chain was reordered",
                    expected
                        .map(|(i, _)| format!(" (#{i})"))
                        .unwrap_or_default()
                ),
            ),
            (Some(p), _) => problem(
                &mut self.report,
                format!("links to {p}, which is missing from the store"),
            ),
            (None, Some((i, _))) => problem(
                &mut self.report,
                format!("starts a new chain, but capsule #{i} came before it"),
            ),
        }
        self.seen.insert(row.payload_digest.clone());
        self.last
            .insert(row.environment.clone(), (id, row.payload_digest.clone()));
    }

    /// Checks each environment's end against its signed chain head: the
    /// newest capsule walked must be the one the head names. Call after
    /// the last `visit_all`, with the heads of the environments walked
    /// (all of them, or the one asked for).
    pub fn check_heads(&mut self, heads: &[ChainHeadRow]) {
        let trusted: Vec<Trusted> = self
            .trusted
            .values()
            .map(|k| Trusted {
                name: k.keyid()[..16].to_owned(),
                key: (*k).clone(),
            })
            .collect();
        let mut envs: Vec<&String> = self.last.keys().collect();
        envs.extend(heads.iter().map(|h| &h.environment));
        envs.sort();
        envs.dedup();
        let mut problems = Vec::new();
        for env in envs {
            let last = self.last.get(env);
            let Some(row) = heads.iter().find(|h| &h.environment == env) else {
                problems.push(format!(
                    "{env}: no signed chain head, so the end of its chain is not anchored (the store predates chain heads, or the head was deleted); the next decision sealed in {env} writes one"
                ));
                continue;
            };
            let head = match ChainHead::verify(&row.envelope, &trusted) {
                Ok((h, _)) => h,
                Err(e) => {
                    problems.push(format!("{env}: {e}"));
                    continue;
                }
            };
            if head.environment != *env || head.newest != row.payload_digest {
                problems.push(format!(
                    "{env}: the chain head row disagrees with its signed statement (about {}, newest {})",
                    head.environment, head.newest
                ));
                continue;
            }
            match last {
                Some((_, d)) if *d == head.newest => {}
                Some((id, d)) if self.seen.contains(&head.newest) => problems.push(format!(
                    "{env}: the signed chain head names {} (sealed {}) as the newest capsule, but #{id} ({d}) and maybe others came after it: the head was rolled back or capsules were added outside stella",
                    head.newest, head.sealed_at
                )),
                Some((id, d)) => problems.push(format!(
                    "{env}: the chain was cut at its end: the signed chain head names {} (sealed {}) as the newest capsule, and it is missing from the store (the newest left is #{id}, {d})",
                    head.newest, head.sealed_at
                )),
                None => problems.push(format!(
                    "{env}: the chain was cut at its end: the signed chain head names {} (sealed {}) as the newest capsule, and no capsule of {env} is left",
                    head.newest, head.sealed_at
                )),
            }
        }
        self.report.problems.extend(problems);
    }

    pub fn finish(mut self) -> ChainReport {
        self.report.valid = self.report.problems.is_empty();
        self.report
    }
}

pub const BUNDLE_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub bundle_version: u32,
    pub workspace: String,
    pub created_at: String,
    pub environment: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub keys: Vec<ManifestKey>,
    pub chains: BTreeMap<String, Vec<ManifestEntry>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestKey {
    pub name: String,
    pub email: String,
    pub keyid: String,
    pub file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    pub id: i64,
    pub action: String,
    pub decision: String,
    pub app: String,
    pub digest: Digest,
    pub payload_digest: Digest,
    pub previous: Option<Digest>,
    pub sealed_at: String,
    pub file: String,
}

pub const README: &str = include_str!("../../assets/audit/README.txt");

/// Writes a bundle: README, manifest, public keys, and one self-contained
/// capsule file per decision.
pub fn write_bundle(
    out: impl Write,
    manifest: &Manifest,
    keys: &[(String, String)],
    capsules: &[(String, CapsuleFile)],
) -> std::io::Result<()> {
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut add = |path: &str, bytes: &[u8]| -> std::io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, bytes)
    };
    add("README.txt", README.as_bytes())?;
    let mut m = serde_json::to_vec_pretty(manifest)?;
    m.push(b'\n');
    add("manifest.json", &m)?;
    for (path, pem) in keys {
        add(path, pem.as_bytes())?;
    }
    for (path, file) in capsules {
        add(path, &file.to_bytes(Format::Json))?;
    }
    tar.into_inner()?.finish()?.flush()
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BundleReport {
    pub valid: bool,
    pub capsules: usize,
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

/// Reads and checks a bundle, offline: every capsule against the bundle's
/// keys, every evidence blob, every chain link within the bundle.
pub fn verify_bundle(reader: impl Read) -> Result<BundleReport, String> {
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    for entry in archive
        .entries()
        .map_err(|e| format!("not a tar.gz bundle: {e}"))?
    {
        let mut entry = entry.map_err(|e| format!("not a tar.gz bundle: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{path}: {e}"))?;
        files.insert(path, bytes);
    }
    let manifest: Manifest = serde_json::from_slice(
        files
            .get("manifest.json")
            .ok_or("the bundle has no manifest.json")?,
    )
    .map_err(|e| format!("manifest.json: {e}"))?;
    if manifest.bundle_version != BUNDLE_VERSION {
        return Err(format!(
            "bundle_version {} is not supported (this stella reads {BUNDLE_VERSION})",
            manifest.bundle_version
        ));
    }
    let mut r = BundleReport::default();
    let mut trusted = Vec::new();
    for k in &manifest.keys {
        match files
            .get(&k.file)
            .map(|b| PublicKey::from_pem(&String::from_utf8_lossy(b)))
        {
            Some(Ok(key)) if key.keyid() == k.keyid => trusted.push(Trusted {
                name: k.name.clone(),
                key,
            }),
            Some(Ok(_)) => r.problems.push(format!(
                "{}: key id does not match the manifest's {}",
                k.file, k.keyid
            )),
            Some(Err(e)) => r.problems.push(format!("{}: {e}", k.file)),
            None => r
                .problems
                .push(format!("{} is listed in the manifest but missing", k.file)),
        }
    }
    for (env, entries) in &manifest.chains {
        let mut prev: Option<&Digest> = None;
        for (i, e) in entries.iter().enumerate() {
            r.capsules += 1;
            let Some(bytes) = files.get(&e.file) else {
                r.problems
                    .push(format!("{} is listed in the manifest but missing", e.file));
                continue;
            };
            let file = match CapsuleFile::parse(bytes) {
                Ok(f) => f,
                Err(err) => {
                    r.problems.push(format!("{}: {err}", e.file));
                    continue;
                }
            };
            let v = verify::verify(&file, &trusted);
            r.problems
                .extend(v.problems.iter().map(|p| format!("{}: {p}", e.file)));
            if v.payload_digest.as_ref() != Some(&e.payload_digest) {
                r.problems.push(format!(
                    "{}: payload digest differs from the manifest's {}",
                    e.file, e.payload_digest
                ));
            }
            let stated = v
                .statement
                .as_ref()
                .and_then(|s| s.predicate.previous.clone());
            if stated != e.previous {
                r.problems.push(format!(
                    "{}: the manifest and the signed statement disagree on the previous capsule",
                    e.file
                ));
            }
            match (i, prev) {
                (0, _) => {
                    if let Some(p) = &stated {
                        r.notes.push(format!("{env}: the chain starts after {p}, before the bundle's range"));
                    }
                }
                (_, Some(p)) if stated.as_ref() == Some(p) => {}
                _ => r.problems.push(format!(
                    "{}: does not link to the capsule before it in {env}'s chain: a capsule is missing or out of order",
                    e.file
                )),
            }
            prev = Some(&e.payload_digest);
        }
    }
    r.valid = r.problems.is_empty();
    Ok(r)
}
