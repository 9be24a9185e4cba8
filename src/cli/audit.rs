//! `stella audit verify-chain|export|verify`: the chains in the store, and
//! offline bundles for compliance reviewers.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use clap::{Args, Subcommand};

use super::{Context, Failure, exit, load_config, print_json};
use crate::capsule::audit::{self, ChainWalker, Manifest, ManifestEntry, ManifestKey};
use crate::engine::seal::capsule_file;
use crate::store::CapsuleFilter;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk every environment's chain of capsules in the store
    ///
    /// Checks each signature, that each payload is the one indexed, and that
    /// each capsule links to the one before it; names the first break.
    /// Exit 0 intact, 1 broken.
    VerifyChain(ChainArgs),
    /// Write capsules, evidence, public keys and a manifest to a .tar.gz
    Export(ExportArgs),
    /// Check an audit bundle offline. Exit 0 valid, 1 invalid.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct ChainArgs {
    /// Only this environment
    #[arg(long)]
    pub env: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Only this environment
    #[arg(long)]
    pub env: Option<String>,
    /// Decisions sealed on or after this date (YYYY-MM-DD or RFC 3339)
    #[arg(long)]
    pub since: Option<String>,
    /// Decisions sealed before this date (YYYY-MM-DD or RFC 3339)
    #[arg(long)]
    pub until: Option<String>,
    /// Where to write the bundle (a .tar.gz)
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    pub bundle: PathBuf,
    /// Trust this sealing public key (SPKI PEM), e.g. the exporting
    /// workspace's, obtained from its owners; repeatable. Inside a
    /// workspace its own sealing keys are trusted already; the keys a
    /// bundle carries never are.
    #[arg(long = "trust", value_name = "KEY.pub")]
    pub trust: Vec<PathBuf>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, cmd: AuditCommand) -> Result<u8, Failure> {
    match cmd {
        AuditCommand::VerifyChain(a) => verify_chain(ctx, a),
        AuditCommand::Export(a) => export(ctx, a),
        AuditCommand::Verify(a) => verify(ctx, a),
    }
}

/// Capsules checked at once (in parallel), a few megabytes of envelopes.
const CHUNK: usize = 2048;

fn verify_chain(ctx: &Context, a: ChainArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let store = ws.read_store()?;
    // Only sealing keys seal: an approver's key validates no capsule.
    let keys = crate::capsule::trust::sealing_keys(&store).map_err(Failure::error)?;
    let mut walker = ChainWalker::new(&keys);
    let mut batch = Vec::with_capacity(CHUNK);
    store.for_each_capsule(a.env.as_deref(), |row, env| {
        batch.push((row, env.to_vec()));
        if batch.len() == CHUNK {
            walker.visit_all(&batch);
            batch.clear();
        }
    })?;
    walker.visit_all(&batch);
    let heads: Vec<_> = store
        .chain_heads()?
        .into_iter()
        .filter(|h| a.env.as_ref().is_none_or(|e| *e == h.environment))
        .collect();
    walker.check_heads(&heads);
    let report = walker.finish();
    for w in report.warnings.iter().take(20) {
        eprintln!("warning: {w}");
    }
    if a.json {
        print_json(&report)?;
    } else if report.valid {
        let per: Vec<String> = report
            .environments
            .iter()
            .map(|(e, n)| format!("{e} {n}"))
            .collect();
        println!(
            "Chains intact: {} capsules ({})",
            report.capsules,
            if per.is_empty() {
                "none".into()
            } else {
                per.join(", ")
            }
        );
    } else {
        println!(
            "Chain BROKEN: {} problem(s) in {} capsules; the first:",
            report.problems.len(),
            report.capsules
        );
        for p in report.problems.iter().take(20) {
            println!("  {p}");
        }
        if report.problems.len() > 20 {
            println!("  … {} more (see --json)", report.problems.len() - 20);
        }
    }
    Ok(if report.valid { exit::OK } else { exit::ERROR })
}

pub(super) fn date(s: &str, flag: &str) -> Result<DateTime<Utc>, Failure> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        .map_err(|_| {
            Failure::usage(format!("{flag} `{s}` is not a date"))
                .hint("write YYYY-MM-DD or an RFC 3339 time")
        })
}

/// The statement a stored envelope signs.
fn statement_of(envelope: &[u8]) -> Result<crate::capsule::Statement, String> {
    let env: crate::sign::Envelope =
        serde_json::from_slice(envelope).map_err(|e| format!("not a DSSE envelope: {e}"))?;
    let payload = env.payload_bytes().map_err(|e| e.to_string())?;
    serde_json::from_slice(&payload).map_err(|e| format!("not a decision statement: {e}"))
}

/// Removes what an export killed midway left beside `out`: its
/// `.NAME.PID.tmp` files whose process is gone, and the `NAME.tmp` older
/// versions wrote.
fn remove_leftovers(out: &std::path::Path) {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(name) = out.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let _ = std::fs::remove_file(out.with_extension("tmp"));
    let prefix = format!(".{name}.");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|pid| pid.parse::<i64>().ok())
            && !crate::store::process_alive(pid)
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn export(ctx: &Context, a: ExportArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    let since = a.since.as_deref().map(|s| date(s, "--since")).transpose()?;
    let until = a.until.as_deref().map(|s| date(s, "--until")).transpose()?;
    let store = ws.read_store()?;
    let rows: Vec<_> = store
        .capsules(&CapsuleFilter {
            environment: a.env.clone(),
            ..Default::default()
        })?
        .into_iter()
        .filter(|r| since.is_none_or(|s| r.sealed_at >= s) && until.is_none_or(|u| r.sealed_at < u))
        .collect();
    // The manifest states what the signed statements say, and the bundle
    // signs the manifest; evidence is checked present before anything is
    // written, so a missing blob names its capsule.
    let cas = ws.evidence();
    let mut chains: std::collections::BTreeMap<String, Vec<ManifestEntry>> = Default::default();
    for r in &rows {
        let (_, envelope) = store
            .capsule(r.id)?
            .ok_or_else(|| Failure::error(format!("capsule #{} vanished from the store", r.id)))?;
        let st = statement_of(&envelope)
            .map_err(|e| Failure::error(format!("capsule #{} ({}): {e}", r.id, r.environment)))?;
        if let Some(d) = st.referenced().into_iter().find(|d| !cas.contains(d)) {
            return Err(Failure::error(format!(
                "capsule #{} ({} {} of {} in {}) needs evidence {d}, which is missing from .stella/evidence",
                r.id, st.predicate.decision_word(), st.predicate.action.as_str(), st.predicate.app, r.environment
            ))
            .hint(
                "restore the blob from a backup (`stella evidence add` the same file again), or export a range without that capsule (--since/--until/--env)",
            ));
        }
        let p = &st.predicate;
        chains
            .entry(r.environment.clone())
            .or_default()
            .push(ManifestEntry {
                id: r.id,
                action: p.action.as_str().into(),
                decision: p.decision.as_str().into(),
                app: p.app.clone(),
                digest: p.release.digest.clone(),
                payload_digest: r.payload_digest.clone(),
                previous: p.previous.clone(),
                sealed_at: p.clock.clone(),
                file: format!("capsules/{}/{}.json", r.environment, r.id),
            });
    }
    // Each chain that reaches its end carries its signed head.
    let mut heads = Vec::new();
    let mut head_files = std::collections::BTreeMap::new();
    for h in store.chain_heads()? {
        if chains
            .get(&h.environment)
            .and_then(|c| c.last())
            .is_some_and(|e| e.payload_digest == h.payload_digest)
        {
            let path = format!("heads/{}.json", h.environment);
            head_files.insert(h.environment.clone(), path.clone());
            heads.push((path, h.envelope));
        }
    }
    let sealing: Vec<_> = store.sealing_keys()?;
    let mut keys: Vec<(ManifestKey, String)> = store
        .keys()?
        .into_iter()
        .map(|k| {
            let role = if sealing.iter().any(|s| s.keyid == k.keyid) {
                "sealing"
            } else {
                "approver"
            };
            (
                ManifestKey {
                    file: format!("keys/{}.pub", k.name),
                    name: k.name,
                    email: k.email,
                    keyid: k.keyid,
                    role: role.into(),
                },
                k.public_pem,
            )
        })
        .collect();
    for s in &sealing {
        if !keys.iter().any(|(k, _)| k.keyid == s.keyid) {
            keys.push((
                ManifestKey {
                    file: format!("keys/{}-{}.pub", s.name, &s.keyid[..16]),
                    name: s.name.clone(),
                    email: String::new(),
                    keyid: s.keyid.clone(),
                    role: "sealing".into(),
                },
                s.public_pem.clone(),
            ));
        }
    }
    let manifest = Manifest {
        bundle_version: audit::BUNDLE_VERSION,
        workspace: config.name.clone(),
        created_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        environment: a.env.clone(),
        since: a.since.clone(),
        until: a.until.clone(),
        keys: keys.iter().map(|(k, _)| k.clone()).collect(),
        chains,
        heads: head_files,
    };
    let key_files: Vec<(String, String)> = keys.into_iter().map(|(k, pem)| (k.file, pem)).collect();
    // Made through the engine if an older workspace has none, then read.
    super::decide::drive(ws, &config, |h| h.sealing_key(), |_| {})?;
    let signer = crate::engine::keys::load_sealing_key(ws)?;
    // Written beside the target under a name that says whose it is, and
    // renamed into place; a kill leaves `.NAME.PID.tmp`, which the next
    // export removes.
    remove_leftovers(&a.out);
    let name = a
        .out
        .file_name()
        .ok_or_else(|| Failure::usage(format!("--out {} names no file", a.out.display())))?
        .to_string_lossy()
        .into_owned();
    let tmp = a
        .out
        .with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let out = std::fs::File::create(&tmp)
        .map_err(|e| Failure::error(format!("cannot write {}: {e}", tmp.display())))?;
    let capsules = rows.iter().map(|r| {
        let (_, envelope) = store
            .capsule(r.id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("capsule #{} vanished from the store", r.id))?;
        let file = capsule_file(ws, &envelope)
            .map_err(|e| format!("capsule #{} ({}): {e}", r.id, r.environment))?;
        Ok((format!("capsules/{}/{}.json", r.environment, r.id), file))
    });
    let written = audit::write_bundle(
        std::io::BufWriter::new(out),
        &manifest,
        &signer,
        &key_files,
        &heads,
        capsules,
    )
    .map_err(|e| Failure::error(format!("cannot write {}: {e}", a.out.display())))
    .and_then(|()| std::fs::rename(&tmp, &a.out).map_err(Failure::from));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    println!(
        "Wrote {}: {} capsules in {} chain(s), {} keys; the manifest is signed with the sealing key {}",
        a.out.display(),
        rows.len(),
        manifest.chains.len(),
        manifest.keys.len(),
        crate::capsule::trust::short(signer.public().keyid())
    );
    Ok(exit::OK)
}

fn verify(ctx: &Context, a: VerifyArgs) -> Result<u8, Failure> {
    // Trusted: this workspace's sealing keys (when inside one) and every
    // --trust key; never the keys the bundle carries.
    let mut trusted = crate::capsule::trust::from_files(&a.trust).map_err(Failure::error)?;
    if let Ok(ws) = ctx.workspace() {
        trusted.extend(
            crate::capsule::trust::sealing_keys(&*ws.read_store()?).map_err(Failure::error)?,
        );
    }
    let f = std::fs::File::open(&a.bundle)
        .map_err(|e| Failure::error(format!("cannot read {}: {e}", a.bundle.display())))?;
    let report = audit::verify_bundle(std::io::BufReader::new(f), &trusted)
        .map_err(|e| Failure::error(format!("{}: refused: {e}", a.bundle.display())))?;
    if a.json {
        print_json(&report)?;
    } else if report.valid {
        println!(
            "{}: valid — {} capsules; the manifest, every signature, evidence blob, chain link and chain end checked",
            a.bundle.display(),
            report.capsules
        );
        for s in &report.signed_by {
            println!("  signed by {s}");
        }
        for n in &report.notes {
            println!("  {n}");
        }
    } else {
        println!("{}: INVALID", a.bundle.display());
        for p in &report.problems {
            println!("  {p}");
        }
    }
    Ok(if report.valid { exit::OK } else { exit::ERROR })
}
