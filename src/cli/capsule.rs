//! `stella capsule list|show|export|verify|replay`.

use std::path::PathBuf;

use chrono::SecondsFormat;
use clap::{Args, Subcommand};

use super::{Context, Failure, exit, print_json};
use crate::capsule::file::{CapsuleFile, Format};
use crate::capsule::replay;
use crate::capsule::statement::Statement;
use crate::capsule::verify::{self, Trusted};
use crate::engine::keys::trusted;
use crate::engine::seal::{capsule_file, write_atomic};
use crate::sign::PublicKey;
use crate::store::{CapsuleFilter, CapsuleRow};

#[derive(Debug, Subcommand)]
pub enum CapsuleCommand {
    /// List sealed decisions, oldest first
    List(ListArgs),
    /// Show a capsule's decoded statement
    Show(ShowArgs),
    /// Write a capsule as one self-contained file (envelope + evidence)
    Export(ExportArgs),
    /// Check a capsule file: signature, evidence digests, shape, chain link
    ///
    /// Exit 0 valid, 1 invalid.
    Verify(VerifyArgs),
    /// Re-evaluate a capsule's decision from its embedded inputs and compare
    ///
    /// Exit 0 identical, 1 different.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this environment
    #[arg(long)]
    pub env: Option<String>,
    /// Only this app
    #[arg(long)]
    pub app: Option<String>,
    /// allow or deny
    #[arg(long)]
    pub decision: Option<String>,
    /// A digest or its prefix (sha256:abc…)
    #[arg(long)]
    pub digest: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A capsule id (`stella capsule list`) or `latest`
    pub id: String,
    /// With `latest`: the latest of this environment
    #[arg(long)]
    pub env: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A capsule id or `latest`
    pub id: String,
    /// Only this environment
    #[arg(long)]
    pub env: Option<String>,
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: Format,
    /// Where to write it (default: stdout)
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    pub file: PathBuf,
    /// Trust this public key (SPKI PEM) instead of the workspace's keys
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    pub file: PathBuf,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, cmd: CapsuleCommand) -> Result<u8, Failure> {
    match cmd {
        CapsuleCommand::List(a) => list(ctx, a),
        CapsuleCommand::Show(a) => show(ctx, a),
        CapsuleCommand::Export(a) => export(ctx, a),
        CapsuleCommand::Verify(a) => verify_file(ctx, a),
        CapsuleCommand::Replay(a) => replay_file(a),
    }
}

fn list(ctx: &Context, a: ListArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let rows = ws.open_store()?.capsules(&CapsuleFilter {
        environment: a.env,
        app: a.app,
        decision: a.decision,
        digest: a.digest,
    })?;
    if a.json {
        print_json(&rows)?;
        return Ok(exit::OK);
    }
    if rows.is_empty() {
        eprintln!("no capsules yet; every `stella release promote` or `rollback` seals one");
        return Ok(exit::OK);
    }
    println!(
        "{:>5}  {:<12} {:<14} {:<12} {:<8} {:<19}  {:<20}  PAYLOAD",
        "ID", "ENV", "APP", "ACTION", "DECISION", "DIGEST", "SEALED"
    );
    for r in rows {
        println!(
            "{:>5}  {:<12} {:<14} {:<12} {:<8} sha256:{}  {:<20}  {}…",
            r.id,
            r.environment,
            r.app,
            r.action,
            r.decision,
            r.digest.short(),
            r.sealed_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            &r.payload_digest.to_string()[..19]
        );
    }
    Ok(exit::OK)
}

/// Finds a capsule by id or `latest` (optionally of one environment).
fn find(ctx: &Context, id: &str, env: Option<&str>) -> Result<(CapsuleRow, Vec<u8>), Failure> {
    let ws = ctx.workspace()?;
    let store = ws.open_store()?;
    let found = if id == "latest" {
        let rows = store.capsules(&CapsuleFilter {
            environment: env.map(str::to_owned),
            ..Default::default()
        })?;
        match rows.last() {
            Some(r) => store.capsule(r.id)?,
            None => None,
        }
    } else {
        let n: i64 = id.trim_start_matches('#').parse().map_err(|_| {
            Failure::usage(format!("`{id}` is not a capsule id"))
                .hint("give a number from `stella capsule list`, or `latest`")
        })?;
        store.capsule(n)?
    };
    found.ok_or_else(|| {
        Failure::error(format!("no capsule {id}"))
            .hint("`stella capsule list` shows the capsules there are")
    })
}

fn statement_of(envelope: &[u8]) -> Result<Statement, Failure> {
    let env: crate::sign::Envelope = serde_json::from_slice(envelope).map_err(Failure::error)?;
    serde_json::from_slice(&env.payload_bytes().map_err(Failure::error)?).map_err(Failure::error)
}

fn show(ctx: &Context, a: ShowArgs) -> Result<u8, Failure> {
    let (row, envelope) = find(ctx, &a.id, a.env.as_deref())?;
    let st = statement_of(&envelope)?;
    if a.json {
        print_json(&st)?;
        return Ok(exit::OK);
    }
    let p = &st.predicate;
    // A promotion goes into an environment; every other decision is
    // taken in one.
    let into = match p.action {
        crate::capsule::statement::Action::Promote
        | crate::capsule::statement::Action::BreakGlass => "into",
        _ => "in",
    };
    println!(
        "Capsule #{} — {} {} of {} {into} {}",
        row.id,
        p.decision_word(),
        p.action.as_str(),
        p.app,
        p.to
    );
    println!(
        "  release   {}{}",
        p.release.digest,
        p.release
            .tag
            .as_ref()
            .map(|t| format!(" (tag {t})"))
            .unwrap_or_default()
    );
    println!("  clock     {}", p.clock);
    println!("  by        {}", p.requested_by);
    println!("  outcome   {}", p.outcome);
    println!("  payload   {}", row.payload_digest);
    println!(
        "  previous  {}",
        p.previous.as_ref().map_or(
            "(first in this environment)".to_owned(),
            ToString::to_string
        )
    );
    if let Some(r) = &p.restores {
        println!(
            "  restores  {}{}",
            r.digest,
            r.capsule
                .as_ref()
                .map(|c| format!(" (promoted under {c})"))
                .unwrap_or_default()
        );
    }
    if let Some(r) = &p.reason {
        println!("  reason    {r}");
    }
    println!("Gates:");
    if p.gates.is_empty() {
        println!("  (none evaluated)");
    }
    for v in &p.gates {
        println!("  {}: {}", v.gate.title(), v.summary);
    }
    println!("Evidence:");
    for e in &p.inputs.evidence {
        println!("  {:<9} {}  {}", e.kind, e.digest, e.media_type);
    }
    for m in &p.inputs.policies {
        println!("  {:<9} {}  {}", "policy", m.digest, m.path);
    }
    println!(
        "  {:<9} {}  {}",
        "config", p.inputs.environment.digest, p.inputs.environment.media_type
    );
    for k in &p.inputs.keys {
        println!("  {:<9} {}  {} ({})", "key", k.digest, k.name, k.email);
    }
    Ok(exit::OK)
}

fn export(ctx: &Context, a: ExportArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let (_, envelope) = find(ctx, &a.id, a.env.as_deref())?;
    let file = capsule_file(ws, &envelope)?;
    let bytes = file.to_bytes(a.format);
    match &a.out {
        Some(path) => {
            write_atomic(path, &bytes)?;
            eprintln!("Decision capsule exported: {}", path.display());
        }
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
        }
    }
    Ok(exit::OK)
}

fn read_file(path: &PathBuf) -> Result<CapsuleFile, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::error(format!("cannot read {}: {e}", path.display())))?;
    CapsuleFile::parse(&bytes).map_err(|e| {
        let f = Failure::error(format!("{}: {e}", path.display()));
        match e {
            crate::capsule::file::FileError::Parse(_) => f.hint(
                "a capsule file is what `stella capsule export` writes (YAML or JSON); `stella capsule list` shows the store's",
            ),
            crate::capsule::file::FileError::Version(_) => f,
        }
    })
}

fn verify_file(ctx: &Context, a: VerifyArgs) -> Result<u8, Failure> {
    let file = read_file(&a.file)?;
    let trusted_keys: Vec<Trusted> = match &a.key {
        Some(p) => {
            let pem = std::fs::read_to_string(p)
                .map_err(|e| Failure::error(format!("cannot read {}: {e}", p.display())))?;
            let key = PublicKey::from_pem(&pem)
                .map_err(|e| Failure::error(format!("{}: {e}", p.display())))?;
            vec![Trusted {
                name: p.display().to_string(),
                key,
            }]
        }
        None => match ctx.workspace() {
            Ok(ws) => trusted(ws)?,
            Err(_) => Vec::new(),
        },
    };
    let mut report = verify::verify(&file, &trusted_keys);
    // The chain link, when the workspace holds this capsule.
    if let (Ok(ws), Some(payload)) = (ctx.workspace(), report.payload_digest.clone()) {
        let store = ws.open_store()?;
        match store.capsule_by_payload(&payload)? {
            Some((row, _)) => {
                let before = store
                    .capsules(&CapsuleFilter {
                        environment: Some(row.environment.clone()),
                        ..Default::default()
                    })?
                    .into_iter()
                    .take_while(|r| r.id < row.id)
                    .last();
                let stated = report
                    .statement
                    .as_ref()
                    .and_then(|s| s.predicate.previous.clone());
                if stated != before.as_ref().map(|b| b.payload_digest.clone()) {
                    report.problems.push(format!(
                        "chain: it links to {}, but the capsule before it in {} is {}",
                        stated.map_or("nothing".into(), |d| d.to_string()),
                        row.environment,
                        before.map_or("none".into(), |b| format!(
                            "#{} ({})",
                            b.id, b.payload_digest
                        ))
                    ));
                } else {
                    report.notes.push(format!(
                        "chain: capsule #{} links to the capsule before it in {}",
                        row.id, row.environment
                    ));
                }
            }
            None => report
                .notes
                .push("chain: not in this workspace's store; link not checked".into()),
        }
        report.valid = report.problems.is_empty();
    }
    if a.json {
        print_json(
            &serde_json::json!({"valid": report.valid, "problems": report.problems, "notes": report.notes, "signed_by": report.signed_by, "payload_digest": report.payload_digest}),
        )?;
    } else if report.valid {
        println!("{}: valid", a.file.display());
        if let Some(s) = &report.signed_by {
            println!("  signed by {s}");
        }
        for n in &report.notes {
            println!("  {n}");
        }
    } else {
        println!("{}: INVALID", a.file.display());
        for p in &report.problems {
            println!("  {p}");
        }
    }
    Ok(if report.valid { exit::OK } else { exit::ERROR })
}

fn replay_file(a: ReplayArgs) -> Result<u8, Failure> {
    let file = read_file(&a.file)?;
    let outcome =
        replay::replay(&file).map_err(|e| Failure::error(format!("{}: {e}", a.file.display())))?;
    if a.json {
        print_json(&outcome)?;
    } else if outcome.identical {
        println!("{}: identical", a.file.display());
    } else {
        println!("{}: DIFFERENT", a.file.display());
        for d in &outcome.differences {
            println!(
                "  {} {}: recorded {} — replayed {}",
                d.gate, d.field, d.recorded, d.replayed
            );
        }
    }
    Ok(if outcome.identical {
        exit::OK
    } else {
        exit::ERROR
    })
}
