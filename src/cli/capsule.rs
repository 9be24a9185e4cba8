//! `stella capsule list|show|export|verify|replay`; push, pull and envelope are in `attest.rs`.

use std::path::PathBuf;

use chrono::SecondsFormat;
use clap::{Args, Subcommand};

use super::{Context, Failure, exit, print_json};
use crate::capsule::file::{CapsuleFile, Format};
use crate::capsule::replay;
use crate::capsule::statement::Statement;
use crate::capsule::verify::{self, Trusted};
use crate::domain::PromotionOutcome;
use crate::engine::seal::{capsule_file, write_atomic};
use crate::store::{CapsuleFilter, CapsuleRow};

#[derive(Debug, Subcommand)]
pub enum CapsuleCommand {
    /// List sealed decisions, oldest first
    List(ListArgs),
    /// Show a capsule's decoded statement: a stored one, or a capsule file
    /// (verified first, as `capsule verify` does)
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
    /// Attach a capsule and its verification summary to the image (OCI
    /// referrers), or retry every pending attachment
    ///
    /// Exit 0 attached, 1 not (it stays pending, with its error).
    Push(super::attest::PushArgs),
    /// Fetch every capsule attached to an image, to verify and replay
    /// offline (no workspace needed)
    Pull(super::attest::PullArgs),
    /// Write a capsule's DSSE envelope, or its verification summary's, as
    /// DSSE JSON or a Sigstore bundle
    Envelope(super::attest::EnvelopeArgs),
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
    /// Only capsules that ended so: live, blocked, deploy-failed,
    /// rolled-back, rollback-failed, aborted, interrupted, paused, unpinned,
    /// flags-set
    #[arg(long)]
    pub outcome: Option<String>,
    /// Only capsules sealed at or after this date (YYYY-MM-DD) or time
    /// (RFC 3339)
    #[arg(long)]
    pub since: Option<String>,
    /// Only capsules after this id: the next page after the last one shown
    #[arg(long, value_name = "ID")]
    pub after: Option<i64>,
    /// At most this many, oldest first; page on with --after
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A capsule id (`stella capsule list`), `latest`, or a capsule file
    /// (what `stella capsule export` writes)
    pub id: String,
    /// With `latest`: the latest of this environment
    #[arg(long)]
    pub env: Option<String>,
    /// For a capsule file: also trust this sealing public key (SPKI PEM);
    /// repeatable
    #[arg(long = "trust", value_name = "KEY.pub")]
    pub trust: Vec<PathBuf>,
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
    /// Also trust this sealing public key (SPKI PEM), e.g. another
    /// workspace's `keys/workspace.pub`; repeatable. Inside a workspace
    /// its own sealing keys are trusted already.
    #[arg(long = "trust", alias = "key", value_name = "KEY.pub")]
    pub trust: Vec<PathBuf>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    pub file: PathBuf,
    /// Also trust this sealing public key (SPKI PEM); repeatable. A capsule
    /// is replayed only once it verifies.
    #[arg(long = "trust", alias = "key", value_name = "KEY.pub")]
    pub trust: Vec<PathBuf>,
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
        CapsuleCommand::Replay(a) => replay_file(ctx, a),
        CapsuleCommand::Push(a) => super::attest::push(ctx, a),
        CapsuleCommand::Pull(a) => super::attest::pull(ctx, a),
        CapsuleCommand::Envelope(a) => super::attest::envelope(ctx, a),
    }
}

fn list(ctx: &Context, a: ListArgs) -> Result<u8, Failure> {
    use std::io::Write;
    let outcome = a
        .outcome
        .as_deref()
        .map(|o| {
            o.parse::<PromotionOutcome>().map_err(|_| {
                Failure::usage(format!("--outcome `{o}` is not an outcome")).hint(format!(
                    "write one of: {}",
                    PromotionOutcome::words().join(", ")
                ))
            })
        })
        .transpose()?;
    let ws = ctx.workspace()?;
    let store = ws.read_store()?;
    let since = a
        .since
        .as_deref()
        .map(|s| super::audit::date(s, "--since"))
        .transpose()?;
    let filter = CapsuleFilter {
        environment: a.env,
        app: a.app,
        decision: a.decision,
        digest: a.digest,
        outcome,
        since,
        after: a.after,
        limit: a.limit,
    };
    // Streamed: one row at a time, each checked against its signed
    // payload; the newest row seen of each environment is kept to check
    // the chain's end against its signed head.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut newest: std::collections::BTreeMap<String, (i64, crate::domain::Digest)> =
        Default::default();
    let mut count = 0usize;
    let mut marked = 0usize;
    let whole_chains = filter.app.is_none()
        && filter.decision.is_none()
        && filter.digest.is_none()
        && filter.outcome.is_none()
        && filter.since.is_none()
        && filter.after.is_none()
        && filter.limit.is_none();
    store.for_each_capsule_matching(
        &filter,
        |r: CapsuleRow, envelope: &[u8]| -> Result<(), Failure> {
            let problems = crate::capsule::audit::row_problems(&r, envelope);
            marked += usize::from(!problems.is_empty());
            newest.insert(r.environment.clone(), (r.id, r.payload_digest.clone()));
            if a.json {
                let mut v = serde_json::to_value(&r).map_err(Failure::error)?;
                v["problems"] = serde_json::json!(problems);
                writeln!(out, "{}{}", if count == 0 { "[" } else { "," }, v)?;
            } else {
                if count == 0 {
                    writeln!(
                        out,
                        "{:>5}  {:<12} {:<14} {:<12} {:<8} {:<15} {:<19}  {:<20}  PAYLOAD",
                        "ID", "ENV", "APP", "ACTION", "DECISION", "OUTCOME", "DIGEST", "SEALED"
                    )?;
                }
                writeln!(
                    out,
                    "{:>5}  {:<12} {:<14} {:<12} {:<8} {:<15} sha256:{}  {:<20}  {}…",
                    r.id,
                    r.environment,
                    r.app,
                    r.action,
                    r.decision,
                    r.outcome.map_or("?", |o| o.as_str()),
                    r.digest.short(),
                    r.sealed_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    &r.payload_digest.to_string()[..19]
                )?;
                for p in &problems {
                    writeln!(out, "       ! {p}")?;
                }
            }
            count += 1;
            Ok(())
        },
    )?;
    // The end of each chain listed whole, against its signed head.
    let mut ends = Vec::new();
    if whole_chains {
        let trusted = crate::capsule::trust::sealing_keys(&store).map_err(Failure::error)?;
        let heads = store.chain_heads()?;
        for env in newest.keys() {
            if !heads.iter().any(|h| &h.environment == env) {
                ends.push(format!(
                    "{env}: no signed chain head; the end of its chain is not anchored"
                ));
            }
        }
        for h in heads {
            if filter
                .environment
                .as_ref()
                .is_some_and(|e| *e != h.environment)
            {
                continue;
            }
            let last = newest.get(&h.environment);
            match crate::capsule::seal::ChainHead::verify(&h.envelope, &trusted) {
                Ok((head, _)) if last.is_some_and(|(_, d)| *d == head.newest) && head.environment == h.environment => {}
                Ok((head, _)) => ends.push(format!(
                    "{}: the chain was cut at its end: the signed chain head names {} (sealed {}) as the newest capsule, {}",
                    h.environment,
                    head.newest,
                    head.sealed_at,
                    match last {
                        Some((id, _)) => format!("but the newest listed is #{id}"),
                        None => "and none is left".into(),
                    }
                )),
                Err(e) => ends.push(format!("{}: {e}", h.environment)),
            }
        }
    }
    if a.json {
        if count == 0 {
            write!(out, "[")?;
        }
        writeln!(out, "]")?;
    } else {
        for e in &ends {
            writeln!(out, "  ! {e}")?;
        }
    }
    out.flush()?;
    drop(out);
    if count == 0 && !a.json {
        eprintln!("no capsules yet; every `stella release promote` or `rollback` seals one");
    }
    if a.json {
        for e in &ends {
            eprintln!("warning: {e}");
        }
    }
    if marked > 0 || !ends.is_empty() {
        eprintln!(
            "warning: {marked} capsule(s) whose index disagrees with what was signed, {} chain end(s) not matching their signed head; `stella audit verify-chain` checks every signature",
            ends.len()
        );
    }
    Ok(exit::OK)
}

/// Finds a capsule by id or `latest` (optionally of one environment).
pub(super) fn find(
    ctx: &Context,
    id: &str,
    env: Option<&str>,
) -> Result<(CapsuleRow, Vec<u8>), Failure> {
    let ws = ctx.workspace()?;
    let store = ws.read_store()?;
    let found = if id == "latest" {
        // The newest row only, however long the history.
        let rows = store.capsules_page(
            &CapsuleFilter {
                environment: env.map(str::to_owned),
                ..Default::default()
            },
            1,
        )?;
        match rows.first() {
            Some(r) => store.capsule(r.id)?,
            None => None,
        }
    } else {
        let n: i64 = id.trim_start_matches('#').parse().map_err(|_| {
            Failure::usage(format!("`{id}` is not a capsule id")).hint(
                "give a number from `stella capsule list`, `latest`, or the path of a capsule file",
            )
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

/// Is `id` a capsule file rather than a stored capsule? Ids and `latest`
/// win over a file of the same name.
fn names_a_file(id: &str) -> bool {
    id != "latest"
        && id.trim_start_matches('#').parse::<i64>().is_err()
        && std::path::Path::new(id).is_file()
}

fn show(ctx: &Context, a: ShowArgs) -> Result<u8, Failure> {
    if names_a_file(&a.id) {
        return show_file(ctx, a);
    }
    let (row, envelope) = find(ctx, &a.id, a.env.as_deref())?;
    let st = statement_of(&envelope)?;
    if a.json {
        print_json(&st)?;
        return Ok(exit::OK);
    }
    print_statement(
        &format!("Capsule #{}", row.id),
        &row.payload_digest.to_string(),
        &st,
    );
    Ok(exit::OK)
}

/// A capsule file, read within the capsule limits and verified the way
/// `capsule verify` does (signature, evidence, shape, chain link): its
/// statement is shown with the verdict, and a file that does not verify
/// exits 1.
fn show_file(ctx: &Context, a: ShowArgs) -> Result<u8, Failure> {
    let path = PathBuf::from(&a.id);
    if a.env.is_some() {
        return Err(
            Failure::usage("--env picks among stored capsules; a file is one capsule")
                .hint("drop --env, or use `stella capsule show latest --env ENV`"),
        );
    }
    let file = read_file(&path)?;
    let trusted_keys = trust(ctx, &a.trust)?;
    let mut report = verify_with(ctx, &file, &trusted_keys)?;
    check_chain(ctx, &mut report)?;
    let Some(st) = report.statement.clone() else {
        if a.json {
            print_json(&serde_json::json!({"verification": report}))?;
        } else {
            println!("{}: INVALID", path.display());
            for p in &report.problems {
                println!("  {p}");
            }
        }
        return Ok(exit::ERROR);
    };
    if a.json {
        let mut v = serde_json::to_value(&st).map_err(Failure::error)?;
        v["verification"] = serde_json::to_value(&report).map_err(Failure::error)?;
        print_json(&v)?;
    } else {
        let payload = report
            .payload_digest
            .as_ref()
            .map_or("(not known)".to_owned(), ToString::to_string);
        print_statement(&format!("Capsule file {}", path.display()), &payload, &st);
        if report.valid {
            println!("Verified: valid");
            if let (Some(s), Some(k)) = (&report.signed_by, &report.keyid) {
                println!("  signed by key {} ({s})", crate::capsule::trust::short(k));
            }
            for n in &report.notes {
                println!("  {n}");
            }
        } else {
            println!("Verified: INVALID — nothing it records can be trusted:");
            for p in &report.problems {
                println!("  {p}");
            }
        }
    }
    Ok(if report.valid { exit::OK } else { exit::ERROR })
}

fn print_statement(label: &str, payload: &str, st: &Statement) {
    let p = &st.predicate;
    // A promotion goes into an environment; every other decision is
    // taken in one.
    let into = match p.action {
        crate::capsule::statement::Action::Promote
        | crate::capsule::statement::Action::BreakGlass => "into",
        _ => "in",
    };
    println!(
        "{label} — {} {} of {} {into} {}",
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
    println!("  payload   {payload}");
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

fn read_file(path: &std::path::Path) -> Result<CapsuleFile, Failure> {
    let bytes = crate::capsule::limits::read_bounded(
        path,
        crate::capsule::limits::MAX_CAPSULE_BYTES,
        "capsule file",
    )
    .map_err(Failure::error)?;
    CapsuleFile::parse(&bytes).map_err(|e| {
        let f = Failure::error(format!("{}: {e}", path.display()));
        match e {
            crate::capsule::file::FileError::Parse(_) => f.hint(
                "a capsule file is what `stella capsule export` writes (YAML or JSON); `stella capsule list` shows the store's",
            ),
            _ => f,
        }
    })
}

/// The keys a capsule may be sealed with: this workspace's sealing keys
/// (when inside one) and every `--trust` key.
fn trust(ctx: &Context, files: &[PathBuf]) -> Result<Vec<Trusted>, Failure> {
    let mut keys = crate::capsule::trust::from_files(files).map_err(Failure::error)?;
    if let Ok(ws) = ctx.workspace() {
        keys.extend(
            crate::capsule::trust::sealing_keys(&*ws.read_store()?).map_err(Failure::error)?,
        );
    }
    Ok(keys)
}

/// Verifies a file against the trusted keys and says, when its signer is
/// a key of this workspace that may not seal, whose key it is.
fn verify_with(
    ctx: &Context,
    file: &CapsuleFile,
    trusted: &[Trusted],
) -> Result<verify::Report, Failure> {
    let mut report = verify::verify(file, trusted);
    if report.signed_by.is_none()
        && let (Ok(ws), Some(keyid)) = (ctx.workspace(), report.keyid.clone())
        && let Some(k) = ws
            .read_store()?
            .keys()?
            .into_iter()
            .find(|k| k.keyid == keyid)
    {
        report.problems.push(format!(
            "key {} is `{}` ({}), a key of this workspace that is not a sealing key: approvers' keys sign approvals, never capsules",
            crate::capsule::trust::short(&keyid),
            k.name,
            k.email
        ));
    }
    Ok(report)
}

/// The chain link, when the workspace holds this capsule.
fn check_chain(ctx: &Context, report: &mut verify::Report) -> Result<(), Failure> {
    // The chain link, when the workspace holds this capsule.
    if let (Ok(ws), Some(payload)) = (ctx.workspace(), report.payload_digest.clone()) {
        let store = ws.read_store()?;
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
    Ok(())
}

fn verify_file(ctx: &Context, a: VerifyArgs) -> Result<u8, Failure> {
    let file = read_file(&a.file)?;
    let trusted_keys = trust(ctx, &a.trust)?;
    let mut report = verify_with(ctx, &file, &trusted_keys)?;
    check_chain(ctx, &mut report)?;
    if a.json {
        print_json(
            &serde_json::json!({"valid": report.valid, "problems": report.problems, "notes": report.notes, "signed_by": report.signed_by, "keyid": report.keyid, "payload_digest": report.payload_digest}),
        )?;
    } else if report.valid {
        println!("{}: valid", a.file.display());
        if let (Some(s), Some(k)) = (&report.signed_by, &report.keyid) {
            println!("  signed by key {} ({s})", crate::capsule::trust::short(k));
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

fn replay_file(ctx: &Context, a: ReplayArgs) -> Result<u8, Failure> {
    let file = read_file(&a.file)?;
    // Only what verifies is replayed: an edited payload, or one sealed by
    // a key not trusted here, is never called identical.
    let trusted_keys = trust(ctx, &a.trust)?;
    let report = verify_with(ctx, &file, &trusted_keys)?;
    if !report.valid {
        if a.json {
            print_json(&serde_json::json!({
                "identical": false, "verified": false, "problems": report.problems
            }))?;
        } else {
            println!(
                "{}: NOT REPLAYED — it does not verify, so nothing it records can be trusted:",
                a.file.display()
            );
            for p in &report.problems {
                println!("  {p}");
            }
        }
        return Ok(exit::ERROR);
    }
    let outcome =
        replay::replay(&file).map_err(|e| Failure::error(format!("{}: {e}", a.file.display())))?;
    if a.json {
        print_json(&serde_json::json!({
            "identical": outcome.identical,
            "verified": true,
            "signed_by": report.signed_by,
            "keyid": report.keyid,
            "differences": outcome.differences,
        }))?;
    } else if outcome.identical {
        println!("{}: identical", a.file.display());
        if let (Some(s), Some(k)) = (&report.signed_by, &report.keyid) {
            println!("  signed by key {} ({s})", crate::capsule::trust::short(k));
        }
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
