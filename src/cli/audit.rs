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
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, cmd: AuditCommand) -> Result<u8, Failure> {
    match cmd {
        AuditCommand::VerifyChain(a) => verify_chain(ctx, a),
        AuditCommand::Export(a) => export(ctx, a),
        AuditCommand::Verify(a) => verify(a),
    }
}

/// Capsules checked at once (in parallel), a few megabytes of envelopes.
const CHUNK: usize = 2048;

fn verify_chain(ctx: &Context, a: ChainArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let store = ws.open_store()?;
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

fn date(s: &str, flag: &str) -> Result<DateTime<Utc>, Failure> {
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

fn export(ctx: &Context, a: ExportArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    let since = a.since.as_deref().map(|s| date(s, "--since")).transpose()?;
    let until = a.until.as_deref().map(|s| date(s, "--until")).transpose()?;
    let store = ws.open_store()?;
    let rows: Vec<_> = store
        .capsules(&CapsuleFilter {
            environment: a.env.clone(),
            ..Default::default()
        })?
        .into_iter()
        .filter(|r| since.is_none_or(|s| r.sealed_at >= s) && until.is_none_or(|u| r.sealed_at < u))
        .collect();
    let mut chains: std::collections::BTreeMap<String, Vec<ManifestEntry>> = Default::default();
    let mut files = Vec::new();
    for r in &rows {
        let (_, envelope) = store.capsule(r.id)?.expect("listed capsules exist");
        let file = capsule_file(ws, &envelope)?;
        let path = format!("capsules/{}/{}.json", r.environment, r.id);
        chains
            .entry(r.environment.clone())
            .or_default()
            .push(ManifestEntry {
                id: r.id,
                action: r.action.clone(),
                decision: r.decision.clone(),
                app: r.app.clone(),
                digest: r.digest.clone(),
                payload_digest: r.payload_digest.clone(),
                previous: r.previous.clone(),
                sealed_at: r.sealed_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                file: path.clone(),
            });
        files.push((path, file));
    }
    let keys: Vec<_> = store.keys()?;
    let manifest = Manifest {
        bundle_version: audit::BUNDLE_VERSION,
        workspace: config.name.clone(),
        created_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        environment: a.env.clone(),
        since: a.since.clone(),
        until: a.until.clone(),
        keys: keys
            .iter()
            .map(|k| ManifestKey {
                name: k.name.clone(),
                email: k.email.clone(),
                keyid: k.keyid.clone(),
                file: format!("keys/{}.pub", k.name),
            })
            .collect(),
        chains,
    };
    let key_files: Vec<(String, String)> = keys
        .iter()
        .map(|k| (format!("keys/{}.pub", k.name), k.public_pem.clone()))
        .collect();
    let tmp = a.out.with_extension("tmp");
    let out = std::fs::File::create(&tmp)
        .map_err(|e| Failure::error(format!("cannot write {}: {e}", tmp.display())))?;
    audit::write_bundle(std::io::BufWriter::new(out), &manifest, &key_files, &files)
        .map_err(|e| Failure::error(format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, &a.out)?;
    println!(
        "Wrote {}: {} capsules in {} chain(s), {} keys",
        a.out.display(),
        rows.len(),
        manifest.chains.len(),
        manifest.keys.len()
    );
    Ok(exit::OK)
}

fn verify(a: VerifyArgs) -> Result<u8, Failure> {
    let f = std::fs::File::open(&a.bundle)
        .map_err(|e| Failure::error(format!("cannot read {}: {e}", a.bundle.display())))?;
    let report = audit::verify_bundle(std::io::BufReader::new(f))
        .map_err(|e| Failure::error(format!("{}: {e}", a.bundle.display())))?;
    if a.json {
        print_json(&report)?;
    } else if report.valid {
        println!(
            "{}: valid — {} capsules, every signature, evidence blob and chain link checked",
            a.bundle.display(),
            report.capsules
        );
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
