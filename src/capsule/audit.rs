//! Chains and audit bundles.
//!
//! Each environment's capsules form a hash chain: every statement names the
//! payload digest of the capsule before it. `verify_chain` walks the store's
//! chains; `Bundle` is the offline package for a compliance reviewer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use super::file::{CapsuleFile, Format};
use super::limits;
use super::seal::ChainHead;
use super::statement::Statement;
use super::verify::{self, Trusted};
use crate::domain::Digest;
use crate::sign::{Envelope, PublicKey};
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
    clock: String,
    #[serde(default)]
    outcome: Option<String>,
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
            out.push(format!(
                "{name} is `{indexed}` in the index, `{signed}` signed"
            ));
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
    if let Some(indexed) = row.outcome {
        col(
            "outcome",
            indexed.as_str(),
            view.outcome.as_deref().unwrap_or("none"),
        );
    }
    // `sealed_at` is when the capsule joined its chain, the signed clock
    // when its decision was taken: never sealed before it was decided.
    // (Stores from before the two were kept apart have them equal.)
    let signed_at =
        chrono::DateTime::parse_from_rfc3339(&view.clock).map(|t| t.with_timezone(&chrono::Utc));
    // The index may keep the fraction of a second the signed clock drops.
    let indexed_at = chrono::SubsecRound::trunc_subsecs(row.sealed_at, 0);
    if signed_at.as_ref().map_or(true, |s| indexed_at < *s) {
        out.push(format!(
            "sealed_at is `{}` in the index, before the signed decision clock `{}`",
            crate::gates::rfc3339(row.sealed_at),
            view.clock
        ));
    }
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
    /// What is odd but breaks nothing signed: a chain whose index times
    /// (`sealed_at`) step backwards.
    pub warnings: Vec<String>,
}

/// Checks capsules in store order: each one's signature, that its payload
/// is the one indexed, and that it links to the capsule before it in its
/// environment. Names the first break of each kind it meets.
pub struct ChainWalker<'a> {
    trusted: HashMap<&'a str, &'a PublicKey>,
    last: HashMap<String, (i64, Digest)>,
    /// Each environment's last capsule walked and when it was sealed.
    last_sealed: HashMap<String, (i64, chrono::DateTime<chrono::Utc>)>,
    seen: HashSet<Digest>,
    pub report: ChainReport,
}

impl<'a> ChainWalker<'a> {
    pub fn new(trusted: &'a [Trusted]) -> ChainWalker<'a> {
        ChainWalker {
            trusted: trusted.iter().map(|t| (t.key.keyid(), &t.key)).collect(),
            last: HashMap::new(),
            last_sealed: HashMap::new(),
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
        // The chain's order is proven by its signed links; `sealed_at` is
        // the index's unsigned record of when each joined it. Going
        // backwards it contradicts the order without breaking a link (a
        // store sealed before sealing times were kept monotonic, or an
        // edited index): a warning, not a broken chain.
        if let Some((before, at)) = self
            .last_sealed
            .insert(row.environment.clone(), (id, row.sealed_at))
            && row.sealed_at < at
        {
            self.report.warnings.push(format!(
                "capsule #{id} ({}): sealed_at {} is earlier than {} of #{before}, the capsule before it in the chain",
                row.environment,
                crate::gates::rfc3339(row.sealed_at),
                crate::gates::rfc3339(at)
            ));
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

/// Version 2: the manifest is signed (`manifest.sig.json`) and the chain
/// heads travel with it; version 1 bundles had an unsigned manifest.
pub const BUNDLE_VERSION: u32 = 2;

/// The payload type of the manifest's signature: a DSSE envelope whose
/// payload is the exact bytes of `manifest.json`.
pub const MANIFEST_PAYLOAD_TYPE: &str = "application/vnd.stella.audit-manifest+json";
pub const MANIFEST: &str = "manifest.json";
pub const MANIFEST_SIG: &str = "manifest.sig.json";

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
    /// Each environment's signed chain head (`heads/ENV.json`), when the
    /// bundle reaches the end of that chain.
    pub heads: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestKey {
    pub name: String,
    pub email: String,
    pub keyid: String,
    /// `sealing` (seals capsules) or `approver`. Informative: what a key
    /// may sign is decided by who verifies, never by the bundle.
    pub role: String,
    pub file: String,
}

/// One capsule in a chain. Every field but `id` and `file` is what the
/// capsule's signed statement says, and is checked against it.
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

/// Writes a bundle: README, manifest and its signature, public keys,
/// chain heads, and one self-contained capsule file per decision.
pub fn write_bundle(
    out: impl Write,
    manifest: &Manifest,
    signer: &crate::sign::PrivateKey,
    keys: &[(String, String)],
    heads: &[(String, Vec<u8>)],
    capsules: impl IntoIterator<Item = Result<(String, CapsuleFile), String>>,
) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut add = |path: &str, bytes: &[u8]| -> Result<(), String> {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, bytes).map_err(io)
    };
    add("README.txt", README.as_bytes())?;
    let mut m = serde_json::to_vec_pretty(manifest).map_err(|e| e.to_string())?;
    m.push(b'\n');
    let sig = Envelope::sign(MANIFEST_PAYLOAD_TYPE, &m, signer);
    add(MANIFEST, &m)?;
    add(
        MANIFEST_SIG,
        &serde_json::to_vec_pretty(&sig).map_err(|e| e.to_string())?,
    )?;
    for (path, pem) in keys {
        add(path, pem.as_bytes())?;
    }
    for (path, head) in heads {
        add(path, head)?;
    }
    for c in capsules {
        let (path, file) = c?;
        add(&path, &file.to_bytes(Format::Json))?;
    }
    tar.into_inner()
        .map_err(io)?
        .finish()
        .map_err(io)?
        .flush()
        .map_err(io)
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BundleReport {
    pub valid: bool,
    pub capsules: usize,
    /// The keys that signed the manifest and the capsules, with their
    /// trust here.
    pub signed_by: Vec<String>,
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

/// What is kept of one capsule member once read and checked: its bytes
/// are dropped, so memory stays bounded by the largest member.
struct Seen {
    payload_digest: Option<Digest>,
    statement: Option<Stated>,
    problems: Vec<String>,
}

/// The few fields of a signed statement a manifest entry is checked
/// against (the whole statement is not kept: a bundle may hold 100,000).
struct Stated {
    to: String,
    action: String,
    decision: String,
    app: String,
    digest: Digest,
    clock: String,
    previous: Option<Digest>,
}

impl Stated {
    fn of(st: &Statement) -> Stated {
        let p = &st.predicate;
        Stated {
            to: p.to.clone(),
            action: p.action.as_str().into(),
            decision: p.decision.as_str().into(),
            app: p.app.clone(),
            digest: p.release.digest.clone(),
            clock: p.clock.clone(),
            previous: p.previous.clone(),
        }
    }
}

/// The kinds of member a bundle holds, each with its size limit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Member {
    Readme,
    Manifest,
    ManifestSig,
    Key,
    Head,
    Capsule,
    Extra,
}

impl Member {
    fn of(name: &str) -> Member {
        let parts: Vec<&str> = name.split('/').collect();
        match parts.as_slice() {
            ["README.txt"] => Member::Readme,
            [MANIFEST] => Member::Manifest,
            [MANIFEST_SIG] => Member::ManifestSig,
            ["keys", k] if k.ends_with(".pub") => Member::Key,
            ["heads", h] if h.ends_with(".json") => Member::Head,
            ["capsules", _, c] if c.ends_with(".json") => Member::Capsule,
            _ => Member::Extra,
        }
    }

    fn limit(self) -> u64 {
        match self {
            Member::Capsule => limits::MAX_CAPSULE_BYTES,
            Member::Manifest => limits::MAX_MANIFEST_BYTES,
            _ => limits::MAX_SMALL_MEMBER_BYTES,
        }
    }
}

/// A member name that stays inside the bundle: relative, UTF-8, no `.`,
/// `..`, empty or absolute components.
fn safe_name(raw: &[u8]) -> Result<&str, String> {
    let shown = String::from_utf8_lossy(raw);
    let name = std::str::from_utf8(raw)
        .map_err(|_| format!("member `{shown}` has a name that is not UTF-8"))?;
    if name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "member `{shown}` has an unsafe name (absolute, `.`/`..`, or empty parts)"
        ));
    }
    Ok(name)
}

/// Reads and checks a bundle, offline and streaming: each member is read
/// once, bounded by its limit, checked and dropped. Every capsule must be
/// signed by a key in `trusted` (a sealing key of the verifying workspace,
/// or one given with `--trust`); so must the manifest, and each chain
/// head. Every manifest entry is checked against its signed statement.
/// Refused outright (an error): unsafe, duplicate or non-regular members,
/// a member over its limit, too many members, no manifest.
pub fn verify_bundle(reader: impl Read, trusted: &[Trusted]) -> Result<BundleReport, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let mut names: HashSet<String> = HashSet::new();
    let mut capsules: HashMap<String, Seen> = HashMap::new();
    let mut small: HashMap<String, Vec<u8>> = HashMap::new();
    let mut manifest_bytes: Option<Vec<u8>> = None;
    let mut r = BundleReport::default();
    for entry in archive
        .entries()
        .map_err(|e| format!("not a tar.gz bundle: {e}"))?
    {
        let mut entry = entry.map_err(|e| format!("not a tar.gz bundle: {e}"))?;
        if names.len() >= limits::MAX_BUNDLE_MEMBERS {
            return Err(format!(
                "more than {} members, the limit of a bundle; refused",
                limits::MAX_BUNDLE_MEMBERS
            ));
        }
        let raw = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        // A bundle unpacked and packed again (`tar czf b.tgz -C dir .`)
        // names its members `./…` and lists its folders: the same
        // members, so the prefix is dropped and folders are skipped.
        let mut rel: &[u8] = &raw;
        while let Some(rest) = rel.strip_prefix(b"./") {
            rel = rest;
        }
        if kind == tar::EntryType::Directory {
            safe_name(rel.strip_suffix(b"/").unwrap_or(rel)).or_else(|e| {
                if rel.is_empty() || rel == b"." {
                    Ok("")
                } else {
                    Err(e)
                }
            })?;
            continue;
        }
        let name = safe_name(rel)?.to_owned();
        if kind != tar::EntryType::Regular {
            return Err(format!(
                "member `{name}` is not a regular file ({kind:?}); a bundle holds only files, never links or devices"
            ));
        }
        if !names.insert(name.clone()) {
            return Err(format!(
                "member `{name}` appears twice; a bundle names each member once"
            ));
        }
        let member = Member::of(&name);
        // The size the archive will deliver (a pax header may override
        // the ustar field); reading is bounded below whatever it says.
        let size = entry.size();
        if size > member.limit() {
            return Err(format!(
                "member `{name}` is {size} bytes, over the {} limit of such a member; refused unread",
                limits::human(member.limit())
            ));
        }
        if member == Member::Extra {
            // Named and refused below; its content is never needed.
            continue;
        }
        let mut bytes = Vec::with_capacity(size as usize);
        (&mut entry)
            .take(member.limit() + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{name}: {e}"))?;
        if bytes.len() as u64 > member.limit() {
            return Err(format!("member `{name}` is over its limit; refused"));
        }
        match member {
            Member::Manifest => manifest_bytes = Some(bytes),
            Member::Capsule => {
                let seen = match CapsuleFile::parse(&bytes) {
                    Ok(file) => {
                        let v = verify::verify(&file, trusted);
                        if let Some(s) = &v.signed_by
                            && !r.signed_by.contains(s)
                        {
                            r.signed_by.push(s.clone());
                        }
                        Seen {
                            payload_digest: v.payload_digest,
                            statement: v.statement.as_ref().map(Stated::of),
                            problems: v.problems,
                        }
                    }
                    Err(e) => Seen {
                        payload_digest: None,
                        statement: None,
                        problems: vec![e.to_string()],
                    },
                };
                capsules.insert(name, seen);
            }
            _ => {
                small.insert(name, bytes);
            }
        }
    }

    // The manifest, signed by a key trusted here.
    let manifest_bytes = manifest_bytes.ok_or("the bundle has no manifest.json")?;
    let version: serde_json::Value =
        serde_json::from_slice(&manifest_bytes).map_err(|e| format!("manifest.json: {e}"))?;
    match version.get("bundle_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(BUNDLE_VERSION) => {}
        Some(1) => {
            return Err(
                "bundle_version 1: its manifest is not signed, so what it states cannot be checked; export the bundle again with this stella"
                    .into(),
            );
        }
        v => {
            return Err(format!(
                "bundle_version {} is not supported (this stella reads {BUNDLE_VERSION})",
                v.map_or("(none)".into(), |v| v.to_string())
            ));
        }
    }
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| format!("manifest.json: {e}"))?;
    match small.get(MANIFEST_SIG) {
        None => r.problems.push(format!(
            "{MANIFEST_SIG} is missing: the manifest is not signed"
        )),
        Some(sig) => match manifest_signer(sig, &manifest_bytes, trusted) {
            Ok(name) => {
                if !r.signed_by.contains(&name) {
                    r.signed_by.insert(0, name);
                }
            }
            Err(e) => r.problems.push(e),
        },
    }

    // Keys: informative, each checked against its file.
    for k in &manifest.keys {
        match small
            .get(&k.file)
            .map(|b| PublicKey::from_pem(&String::from_utf8_lossy(b)))
        {
            Some(Ok(key)) if key.keyid() == k.keyid => {}
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

    // Every entry against its signed statement, and the chain order.
    let mut named: HashSet<&str> = HashSet::new();
    named.extend(["README.txt", MANIFEST, MANIFEST_SIG]);
    named.extend(manifest.keys.iter().map(|k| k.file.as_str()));
    named.extend(manifest.heads.values().map(String::as_str));
    for (env, entries) in &manifest.chains {
        let mut prev: Option<&Digest> = None;
        for (i, e) in entries.iter().enumerate() {
            r.capsules += 1;
            named.insert(&e.file);
            let Some(seen) = capsules.get(&e.file) else {
                r.problems
                    .push(format!("{} is listed in the manifest but missing", e.file));
                continue;
            };
            r.problems
                .extend(seen.problems.iter().map(|p| format!("{}: {p}", e.file)));
            if seen.payload_digest.as_ref() != Some(&e.payload_digest) {
                r.problems.push(format!(
                    "{}: payload digest differs from the manifest's {}",
                    e.file, e.payload_digest
                ));
            }
            let Some(st) = &seen.statement else {
                continue;
            };
            let p = st;
            let mut differs = Vec::new();
            let mut col = |field: &str, stated: String, signed: String| {
                if stated != signed {
                    differs.push(format!("{field} `{stated}` (signed: `{signed}`)"));
                }
            };
            col("environment", env.clone(), p.to.clone());
            col("action", e.action.clone(), p.action.clone());
            col("decision", e.decision.clone(), p.decision.clone());
            col("app", e.app.clone(), p.app.clone());
            col("digest", e.digest.to_string(), p.digest.to_string());
            col("sealed_at", e.sealed_at.clone(), p.clock.clone());
            let show = |d: &Option<Digest>| d.as_ref().map_or("none".into(), ToString::to_string);
            col("previous", show(&e.previous), show(&p.previous));
            if !differs.is_empty() {
                r.problems.push(format!(
                    "{}: the manifest disagrees with the signed statement: {}",
                    e.file,
                    differs.join(", ")
                ));
            }
            let stated = p.previous.as_ref();
            match (i, prev) {
                (0, _) => {
                    if let Some(p) = stated {
                        r.notes.push(format!(
                            "{env}: the chain starts after {p}, before the bundle's range"
                        ));
                    }
                }
                (_, Some(p)) if stated == Some(p) => {}
                _ => r.problems.push(format!(
                    "{}: does not link to the capsule before it in {env}'s chain: a capsule is missing or out of order",
                    e.file
                )),
            }
            prev = seen.payload_digest.as_ref();
        }
        // The chain's end, against its signed head.
        match manifest.heads.get(env) {
            Some(file) => match small.get(file) {
                None => r
                    .problems
                    .push(format!("{file} is listed in the manifest but missing")),
                Some(bytes) => match ChainHead::verify(bytes, trusted) {
                    Ok((h, _)) if h.environment == *env && Some(&h.newest) == prev => {}
                    Ok((h, _)) => r.problems.push(format!(
                        "{env}: the chain was cut at its end: the signed chain head names {} (sealed {}) as the newest capsule, but the bundle's chain ends at {}",
                        h.newest,
                        h.sealed_at,
                        prev.map_or("nothing".into(), ToString::to_string)
                    )),
                    Err(e) => r.problems.push(format!("{file}: {e}")),
                },
            },
            None => r.notes.push(format!(
                "{env}: the bundle's range ends before the chain's end, so no signed head anchors it"
            )),
        }
    }
    for env in manifest.heads.keys() {
        if !manifest.chains.contains_key(env) {
            r.problems.push(format!(
                "{env}: a signed chain head is in the bundle, but none of its capsules"
            ));
        }
    }
    let mut extra: Vec<&String> = names
        .iter()
        .filter(|n| !named.contains(n.as_str()))
        .collect();
    extra.sort();
    for n in extra {
        r.problems.push(format!(
            "member `{n}` is not named by the manifest; a bundle holds nothing else"
        ));
    }
    r.valid = r.problems.is_empty();
    Ok(r)
}

/// Which trusted key signed the manifest; says why none did.
fn manifest_signer(sig: &[u8], manifest: &[u8], trusted: &[Trusted]) -> Result<String, String> {
    let env: Envelope = serde_json::from_slice(sig)
        .map_err(|e| format!("{MANIFEST_SIG} is not a DSSE envelope ({e})"))?;
    if env.payload_type != MANIFEST_PAYLOAD_TYPE {
        return Err(format!(
            "{MANIFEST_SIG}: payloadType is `{}`, expected {MANIFEST_PAYLOAD_TYPE}",
            env.payload_type
        ));
    }
    if env.payload_bytes().ok().as_deref() != Some(manifest) {
        return Err(format!(
            "{MANIFEST_SIG} signs another manifest: manifest.json was changed after it was signed"
        ));
    }
    let t = super::trust::signer(&env, trusted).map_err(|ids| {
        format!(
            "the bundle is signed only by key(s) {ids}, not trusted here: not a sealing key of this workspace, nor given with --trust KEY.pub"
        )
    })?;
    env.verify_payload(&t.key, manifest)
        .map_err(|e| format!("{MANIFEST_SIG}: {e}"))?;
    Ok(format!(
        "key {} ({})",
        super::trust::short(t.key.keyid()),
        t.name
    ))
}
