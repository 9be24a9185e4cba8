//! `stella evidence add|list`: scan reports, VEX and SBOMs attached to a
//! release digest, stored content-addressed and reused by every later
//! promotion of that digest.

use chrono::SecondsFormat;
use clap::{Args, Subcommand, ValueEnum};

use super::release::resolve_and_record;
use super::{Context, Failure, exit, load_config, print_json};
use crate::domain::ReleaseSpec;
use crate::gates::EvidenceKind;
use crate::scan::{self, Format, ScanError};

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Attach a scan report, VEX document or SBOM to a release's digest
    ///
    /// The format is detected from the content: Trivy JSON, Grype JSON,
    /// SARIF 2.1.0, CycloneDX JSON or OpenVEX. `--kind other` stores any
    /// file without reading it.
    Add(AddArgs),
    /// List the evidence attached to a release's digest
    List(ListArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Scan,
    Vex,
    Sbom,
    Other,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// APP:TAG, APP@sha256:HEX, or a direct reference (the tag is resolved first)
    pub reference: String,
    /// The file to attach
    pub file: std::path::PathBuf,
    /// What it is (default: from its content)
    #[arg(long, value_enum)]
    pub kind: Option<KindArg>,
    /// Print the evidence record as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// APP:TAG, APP@sha256:HEX, or a direct reference
    pub reference: String,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, cmd: EvidenceCommand) -> Result<u8, Failure> {
    match cmd {
        EvidenceCommand::Add(a) => add(ctx, a),
        EvidenceCommand::List(a) => list(ctx, a),
    }
}

/// What a document is, from its content, checked against `--kind`.
fn classify(
    bytes: &[u8],
    wanted: Option<KindArg>,
    file: &str,
) -> Result<(EvidenceKind, String, String), Failure> {
    if wanted == Some(KindArg::Other) {
        return Ok((
            EvidenceKind::Other,
            "application/octet-stream".into(),
            "a file".into(),
        ));
    }
    let bad = |e: ScanError| {
        Failure::error(format!("{file}: {e}"))
            .hint("attach it with --kind other to keep it as evidence without reading it")
    };
    let (format, report) = scan::read(bytes).map_err(bad)?;
    // A CycloneDX document can be an SBOM, a scan (vulnerabilities) or a
    // VEX (vulnerabilities with analysis); its statements are used as VEX
    // whatever it is attached as.
    let kind = match (wanted.map(kind_of), format) {
        (None, Format::OpenVex) | (Some(EvidenceKind::Vex), Format::OpenVex) => EvidenceKind::Vex,
        (None, Format::CycloneDx) if report.findings.is_empty() => EvidenceKind::Sbom,
        (Some(EvidenceKind::Vex), Format::CycloneDx) if !report.statements.is_empty() => {
            EvidenceKind::Vex
        }
        (Some(EvidenceKind::Sbom), Format::CycloneDx) => EvidenceKind::Sbom,
        (None | Some(EvidenceKind::Scan), f) if f != Format::OpenVex => EvidenceKind::Scan,
        (w, f) => {
            let w = w.unwrap_or(EvidenceKind::Scan);
            return Err(Failure::usage(format!(
                "{file} is {}, which cannot be attached as {}",
                f.name(),
                w.as_str()
            ))
            .hint("drop --kind to use what the content says"));
        }
    };
    let what = match kind {
        EvidenceKind::Scan => format!(
            "{} report ({} findings)",
            format.name(),
            report.findings.len()
        ),
        EvidenceKind::Vex => format!(
            "{} VEX ({} statements)",
            format.name(),
            report.statements.len()
        ),
        EvidenceKind::Sbom => format!("{} SBOM ({} components)", format.name(), report.components),
        _ => format.name().to_owned(),
    };
    Ok((kind, format.media_type().to_owned(), what))
}

fn kind_of(k: KindArg) -> EvidenceKind {
    match k {
        KindArg::Scan => EvidenceKind::Scan,
        KindArg::Vex => EvidenceKind::Vex,
        KindArg::Sbom => EvidenceKind::Sbom,
        KindArg::Other => EvidenceKind::Other,
    }
}

fn add(ctx: &Context, args: AddArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    let file_name = args.file.display().to_string();
    // Bounded: a file over the limit is refused unread.
    let bytes = crate::capsule::limits::read_bounded(
        &args.file,
        crate::scan::MAX_REPORT_BYTES as u64,
        "piece of evidence (a scan report, VEX or SBOM)",
    )
    .map_err(Failure::error)?;
    // Read the file before resolving: a bad file must not leave a record.
    let (kind, media_type, what) = classify(&bytes, args.kind, &file_name)?;
    let spec = ReleaseSpec::parse(&args.reference).map_err(Failure::usage)?;
    let release = resolve_and_record(ctx, Some(&config), spec, args.json)?;

    let req = crate::engine::AttachRequest {
        subject: release.digest.clone(),
        bytes,
        media_type,
        kind: kind.as_str().into(),
    };
    let crate::engine::Attached { record, fresh } =
        super::decide::drive(ws, &config, |h| h.attach(req), |_| {})?;
    if args.json {
        print_json(&record)?;
    } else if fresh {
        println!("Attached {what} {} to {}", record.digest, release.digest);
    } else {
        println!(
            "Already attached: {what} {} to {}",
            record.digest, release.digest
        );
    }
    Ok(exit::OK)
}

fn list(ctx: &Context, args: ListArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    let spec = ReleaseSpec::parse(&args.reference).map_err(Failure::usage)?;
    // A digest is read as it is: listing needs no registry.
    let digest = match crate::engine::resolve::named_digest(&config, &spec) {
        Some(d) => d,
        None => resolve_and_record(ctx, Some(&config), spec, true)?.digest,
    };
    let rows = ws.read_store()?.evidence_for(&digest)?;
    if args.json {
        print_json(&rows)?;
        return Ok(exit::OK);
    }
    if rows.is_empty() {
        eprintln!("no evidence attached to {}", digest);
        return Ok(exit::OK);
    }
    println!("Evidence for {}", digest);
    println!(
        "{:<9} {:<19} {:>9}  {:<20}  MEDIA TYPE",
        "KIND", "DIGEST", "SIZE", "ADDED"
    );
    for r in rows {
        println!(
            "{:<9} sha256:{} {:>9}  {:<20}  {}",
            r.kind,
            r.digest.short(),
            r.size,
            r.added_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            r.media_type
        );
    }
    Ok(exit::OK)
}
