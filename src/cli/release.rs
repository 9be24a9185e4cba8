//! `stella release resolve|list`.

use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand};

use super::{Context, Failure, exit, load_config, print_json};
use crate::config::Config;
use crate::domain::{ReleaseSpec, Resolution};
pub use crate::engine::resolve::AppRelease;
use crate::workspace::Workspace;

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Resolve a tag to its digest and record it
    ///
    /// REF is APP[:TAG] or APP@sha256:HEX for an app in stella.toml (the tag
    /// defaults to `latest`), or a direct reference: oci-layout:PATH:TAG or
    /// HOST[:PORT]/REPO:TAG. Prints the digest.
    Resolve(ResolveArgs),
    /// List recorded resolutions, oldest first
    List(ListArgs),
    /// Record that a release is live in an environment (deployed outside stella)
    MarkLive(MarkLiveArgs),
    /// Decide a promotion: evaluate the gates, seal the decision in a capsule
    ///
    /// Exit 0 when promoted, 3 when a gate blocks it. Either way the decision
    /// is sealed and exported to capsules/.
    Promote(super::decide::PromoteArgs),
    /// Return an environment to an earlier release, sealed in a capsule that
    /// references the capsule it was first promoted under
    ///
    /// The app is then pinned in that environment: promotions of it are
    /// refused (exit 3) until `stella release unpin`.
    Rollback(super::decide::RollbackArgs),
    /// Lift the pin a rollback put on an app in an environment, sealed
    Unpin(super::decide::UnpinArgs),
    /// List the pins rollbacks hold
    Pins(PinsArgs),
}

#[derive(Debug, Args)]
pub struct PinsArgs {
    /// Only this environment
    #[arg(long)]
    pub env: Option<String>,
    /// Print a JSON array of pins
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MarkLiveArgs {
    /// APP:TAG or APP@sha256:HEX
    pub reference: String,
    /// The environment it is live in
    #[arg(long)]
    pub env: String,
    /// What-if: print what would be recorded, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: since this clock (RFC 3339). A release is recorded
    /// live from now: a made-up past would count as soak it never had
    #[arg(long)]
    pub at: Option<String>,
    /// Print what was (or would be) recorded as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// APP[:TAG], APP@sha256:HEX, oci-layout:PATH:TAG or HOST[:PORT]/REPO:TAG
    pub reference: String,
    /// Print {"app", "reference", "tag", "digest", "resolved_at"}
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this app
    pub app: Option<String>,
    /// Only resolutions at or after this date (YYYY-MM-DD) or time (RFC 3339)
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many, oldest first
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print a JSON array of resolutions
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, cmd: ReleaseCommand) -> Result<u8, Failure> {
    match cmd {
        ReleaseCommand::Resolve(args) => resolve(ctx, args),
        ReleaseCommand::List(args) => list(ctx, args),
        ReleaseCommand::MarkLive(args) => mark_live(ctx, args),
        ReleaseCommand::Promote(args) => super::decide::promote(ctx, args),
        ReleaseCommand::Rollback(args) => super::decide::rollback(ctx, args),
        ReleaseCommand::Unpin(args) => super::decide::unpin(ctx, args),
        ReleaseCommand::Pins(args) => pins(ctx, args),
    }
}

fn pins(ctx: &Context, args: PinsArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    if let Some(env) = &args.env
        && config.environment(env).is_none()
    {
        return Err(super::unknown_environment(env, &config));
    }
    let pins: Vec<crate::store::Pin> = ws
        .read_store()?
        .pins()?
        .into_iter()
        .filter(|p| args.env.as_ref().is_none_or(|e| *e == p.environment))
        .collect();
    if args.json {
        print_json(&pins)?;
    } else if pins.is_empty() {
        println!("Nothing is pinned.");
    } else {
        for p in &pins {
            println!(
                "{:<12} {:<16} {}  rollback capsule #{} by {} at {}",
                p.environment,
                p.app,
                p.digest,
                p.capsule_id,
                p.pinned_by,
                p.pinned_at.to_rfc3339_opts(SecondsFormat::Secs, true)
            );
        }
    }
    Ok(exit::OK)
}

fn resolve(ctx: &Context, args: ResolveArgs) -> Result<u8, Failure> {
    let spec = ReleaseSpec::parse(&args.reference).map_err(Failure::usage)?;
    let ws = ctx.workspace.as_ref().ok();
    let config = ws.map(|w| load_config(ctx, w)).transpose()?;
    let resolution = resolve_and_record(ctx, config.as_ref(), spec, args.json)?;
    if args.json {
        print_json(&resolution)?;
    } else {
        println!("{}", resolution.digest);
    }
    Ok(exit::OK)
}

fn print_notes(notes: &[String], quiet: bool) {
    if !quiet {
        for n in notes {
            eprintln!("note: {n}");
        }
    }
}

/// Resolves and records a release spec (see the engine's
/// `resolve_and_record`); notes go to stderr unless `quiet`.
pub fn resolve_and_record(
    ctx: &Context,
    config: Option<&Config>,
    spec: ReleaseSpec,
    quiet: bool,
) -> Result<Resolution, Failure> {
    if matches!(spec, ReleaseSpec::App { .. }) && config.is_none() {
        ctx.workspace()?;
    }
    let (r, notes) = match (ctx.workspace.as_ref().ok(), config) {
        // Recorded: through the engine.
        (Some(ws), Some(config)) => super::decide::drive(ws, config, |h| h.resolve(spec), |_| {})?,
        // No workspace, no store: nothing to record.
        _ => crate::engine::resolve::resolve_unrecorded(&ctx.cwd, spec)?,
    };
    print_notes(&notes, quiet);
    Ok(r)
}

/// The release a deciding command is about (see the engine's
/// `app_release`); notes go to stderr unless `quiet`.
pub fn app_release(
    ws: &Workspace,
    config: &Config,
    reference: &str,
    env: Option<&str>,
    now: &DateTime<Utc>,
    quiet: bool,
) -> Result<AppRelease, Failure> {
    let (r, notes) = engine_app_release(ws, config, reference, env, now, true)?;
    print_notes(&notes, quiet);
    Ok(r)
}

/// `app_release` for a `--dry-run`: the tag is resolved, not recorded.
pub fn app_release_unrecorded(
    ws: &Workspace,
    config: &Config,
    reference: &str,
    env: Option<&str>,
    now: &DateTime<Utc>,
) -> Result<AppRelease, Failure> {
    let (r, _) = engine_app_release(ws, config, reference, env, now, false)?;
    Ok(r)
}

fn engine_app_release(
    ws: &Workspace,
    config: &Config,
    reference: &str,
    env: Option<&str>,
    now: &DateTime<Utc>,
    record: bool,
) -> Result<(AppRelease, Vec<String>), Failure> {
    let req = crate::engine::AppReleaseRequest {
        reference: reference.to_owned(),
        env: env.map(str::to_owned),
        now: *now,
        record,
    };
    super::decide::drive(ws, config, |h| h.app_release(req), |_| {})
}

fn list(ctx: &Context, args: ListArgs) -> Result<u8, Failure> {
    use std::io::Write as _;
    let ws = ctx.workspace()?;
    let store = ws.read_store()?;
    let since = args
        .since
        .as_deref()
        .map(|s| super::audit::date(s, "--since"))
        .transpose()?;
    // Streamed: one row at a time, whatever the store's size.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut count = 0usize;
    store.for_each_resolution(
        args.app.as_deref(),
        since.as_ref(),
        args.limit,
        |r: Resolution| -> Result<(), Failure> {
            if args.json {
                let v = serde_json::to_string(&r).map_err(Failure::error)?;
                writeln!(out, "{}{v}", if count == 0 { "[" } else { "," })?;
            } else {
                if count == 0 {
                    writeln!(
                        out,
                        "{:<14}  {:<12}  {:<19}  {:<20}  REFERENCE",
                        "APP", "TAG", "DIGEST", "RESOLVED"
                    )?;
                }
                writeln!(
                    out,
                    "{:<14}  {:<12}  sha256:{}  {:<20}  {}",
                    r.app.as_deref().unwrap_or("-"),
                    r.tag.as_deref().unwrap_or("-"),
                    r.digest.short(),
                    r.resolved_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    r.reference
                )?;
            }
            count += 1;
            Ok(())
        },
    )?;
    if args.json {
        writeln!(out, "{}", if count == 0 { "[]" } else { "]" })?;
    } else if count == 0 {
        eprintln!("no releases resolved match; try `stella release resolve APP:TAG`");
    }
    out.flush()?;
    Ok(exit::OK)
}

/// `release mark-live --json`: what is (or would be) recorded live.
fn mark_live_json(
    rel: &AppRelease,
    env: &str,
    at: &DateTime<Utc>,
    dry_run: bool,
) -> serde_json::Value {
    serde_json::json!({
        "app": rel.app, "digest": rel.digest.to_string(), "environment": env,
        "since": at.to_rfc3339_opts(SecondsFormat::Secs, true), "dry_run": dry_run,
    })
}

fn mark_live(ctx: &Context, args: MarkLiveArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    let clock = super::acting_clock(args.at.as_deref(), args.dry_run, "stella release mark-live")?;
    let at = clock.now();
    if config.environment(&args.env).is_none() {
        return Err(super::unknown_environment(&args.env, &config));
    }
    if args.dry_run {
        let rel = app_release_unrecorded(ws, &config, &args.reference, None, &at)?;
        if args.json {
            print_json(&mark_live_json(&rel, &args.env, &at, true))?;
            return Ok(exit::OK);
        }
        println!(
            "Dry run: would record {}@{} live in {} since {}; nothing was changed",
            rel.app,
            rel.digest,
            args.env,
            at.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        return Ok(exit::OK);
    }
    let rel = app_release(ws, &config, &args.reference, None, &at, false)?;
    let req = crate::engine::MarkLiveRequest {
        app: rel.app.clone(),
        digest: rel.digest.clone(),
        env: args.env.clone(),
        since: at,
    };
    super::decide::drive(ws, &config, |h| h.mark_release_live(req), |_| {})?;
    if args.json {
        print_json(&mark_live_json(&rel, &args.env, &at, false))?;
        return Ok(exit::OK);
    }
    println!(
        "{}@{} is live in {} since {}",
        rel.app,
        rel.digest,
        args.env,
        at.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    Ok(exit::OK)
}
