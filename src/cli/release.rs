//! `stella release resolve|list`.

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand};

use super::{Context, Failure, exit, load_config, print_json};
use crate::config::Config;
use crate::domain::{Digest, ImageRef, ReleaseSpec, Resolution, Selector};
use crate::registry;
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
    Rollback(super::decide::RollbackArgs),
}

#[derive(Debug, Args)]
pub struct MarkLiveArgs {
    /// APP:TAG or APP@sha256:HEX
    pub reference: String,
    /// The environment it is live in
    #[arg(long)]
    pub env: String,
    /// Since when (RFC 3339; default now)
    #[arg(long)]
    pub at: Option<String>,
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
    }
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

/// Resolves a release spec to its digest (from the layout or registry) and
/// records it in the workspace's store, if there is a workspace. Notes go
/// to stderr unless `quiet`.
pub fn resolve_and_record(
    ctx: &Context,
    config: Option<&Config>,
    spec: ReleaseSpec,
    quiet: bool,
) -> Result<Resolution, Failure> {
    let ws = ctx.workspace.as_ref().ok();
    let (app, image, insecure) = match spec {
        ReleaseSpec::App { app, selector } => {
            let Some(config) = config else {
                return Err(ctx
                    .workspace()
                    .err()
                    .unwrap_or_else(|| Failure::error("an app name needs a workspace")));
            };
            let Some(a) = config.apps.get(&app) else {
                return Err(unknown_app(&app, config));
            };
            let selector = selector.unwrap_or_else(|| Selector::Tag("latest".into()));
            (Some(app), a.image.with_selector(selector), a.insecure)
        }
        ReleaseSpec::Direct(image) => (None, image, false),
    };
    let base: &Path = ws.map_or(ctx.cwd.as_path(), |w| w.root());
    let digest = super::runtime()?.block_on(registry::resolve(&image, insecure, base))?;
    let image = resolved_ref(&image);
    let resolution = Resolution {
        app,
        reference: image.to_string(),
        tag: image.tag().map(str::to_owned),
        digest,
        resolved_at: Utc::now(),
    };
    tracing::info!(reference = %resolution.reference, digest = %resolution.digest, "resolved");

    match ws {
        Some(ws) => {
            let mut store = ws.open_store()?;
            let previous = store
                .resolutions(resolution.app.as_deref())?
                .into_iter()
                .rev()
                .find(|r| r.reference == resolution.reference);
            store.record_resolution(&resolution)?;
            if let Some(prev) = previous
                && prev.digest != resolution.digest
                && !quiet
            {
                eprintln!(
                    "note: {} moved: it was {} at {}",
                    resolution.reference,
                    prev.digest,
                    prev.resolved_at.to_rfc3339_opts(SecondsFormat::Secs, true)
                );
            }
        }
        None if !quiet => {
            eprintln!("note: not inside a workspace, so this resolution was not recorded");
        }
        None => {}
    }
    Ok(resolution)
}

/// A release of an app from stella.toml: what gates, approvals and
/// promotions are about.
#[derive(Debug, Clone)]
pub struct AppRelease {
    pub app: String,
    pub digest: Digest,
    pub tag: Option<String>,
}

/// Names the release a deciding command is about. `APP` alone, with an
/// environment that promotes from another, means what is live upstream at
/// `now`; otherwise tags resolve as `resolve` does.
pub fn app_release(
    ctx: &Context,
    ws: &Workspace,
    config: &Config,
    reference: &str,
    env: Option<&str>,
    now: &DateTime<Utc>,
    quiet: bool,
) -> Result<AppRelease, Failure> {
    let spec = ReleaseSpec::parse(reference).map_err(Failure::usage)?;
    if let ReleaseSpec::App {
        app,
        selector: None,
    } = &spec
        && config.apps.contains_key(app)
        && let Some(from) = env
            .and_then(|e| config.environment(e))
            .and_then(|e| e.from.as_ref())
    {
        let store = ws.open_store()?;
        if let Some(live) = store.live_at(from.get_ref(), app, now)? {
            if !quiet {
                eprintln!(
                    "note: {app} means the release live in {}: {}",
                    from.get_ref(),
                    live.digest
                );
            }
            return Ok(AppRelease {
                app: app.clone(),
                digest: live.digest,
                tag: None,
            });
        }
    }
    if let ReleaseSpec::Direct(_) = spec {
        return Err(Failure::usage(format!(
            "`{reference}` is not an app: gates, approvals and promotions are about apps in stella.toml"
        ))
        .hint("name it APP:TAG or APP@sha256:HEX, with the app defined under [apps]"));
    }
    let r = resolve_and_record(ctx, Some(config), spec, quiet)?;
    Ok(AppRelease {
        app: r.app.expect("app specs resolve with their app"),
        digest: r.digest,
        tag: r.tag,
    })
}

/// A tag-less reference resolves `latest`; record it as such.
fn resolved_ref(image: &ImageRef) -> ImageRef {
    match &image.selector {
        Some(_) => image.clone(),
        None => image.with_selector(Selector::Tag("latest".into())),
    }
}

fn unknown_app(app: &str, config: &Config) -> Failure {
    let known: Vec<&str> = config.apps.keys().map(String::as_str).collect();
    let f = Failure::usage(format!("no app `{app}` in {}", config.path.display()));
    if known.is_empty() {
        f.hint("add it under [apps], or give a direct reference like oci-layout:PATH:TAG")
    } else {
        f.hint(format!(
            "apps defined: {}; or give a direct reference like oci-layout:PATH:TAG",
            known.join(", ")
        ))
    }
}

fn list(ctx: &Context, args: ListArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let store = ws.open_store()?;
    let rows = store.resolutions(args.app.as_deref())?;
    if args.json {
        print_json(&rows)?;
        return Ok(exit::OK);
    }
    if rows.is_empty() {
        eprintln!("no releases resolved yet; try `stella release resolve APP:TAG`");
        return Ok(exit::OK);
    }
    let width = |f: &dyn Fn(&Resolution) -> usize, min: usize| {
        rows.iter().map(f).max().unwrap_or(0).max(min)
    };
    let wa = width(&|r| r.app.as_deref().unwrap_or("-").len(), 3);
    let wt = width(&|r| r.tag.as_deref().unwrap_or("-").len(), 3);
    println!(
        "{:<wa$}  {:<wt$}  {:<19}  {:<20}  REFERENCE",
        "APP", "TAG", "DIGEST", "RESOLVED"
    );
    for r in &rows {
        println!(
            "{:<wa$}  {:<wt$}  sha256:{}  {:<20}  {}",
            r.app.as_deref().unwrap_or("-"),
            r.tag.as_deref().unwrap_or("-"),
            r.digest.short(),
            r.resolved_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            r.reference
        );
    }
    Ok(exit::OK)
}

fn mark_live(ctx: &Context, args: MarkLiveArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    let at = super::parse_at(args.at.as_deref())?;
    if config.environment(&args.env).is_none() {
        return Err(super::unknown_environment(&args.env, &config));
    }
    let rel = app_release(ctx, ws, &config, &args.reference, None, &at, false)?;
    let mut store = ws.open_store()?;
    store.mark_live(
        &crate::store::LiveRecord {
            environment: args.env.clone(),
            app: rel.app.clone(),
            digest: rel.digest.clone(),
            since: at,
            source: "mark-live".into(),
        },
        None,
    )?;
    println!(
        "{}@{} is live in {} since {}",
        rel.app,
        rel.digest,
        args.env,
        at.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    Ok(exit::OK)
}
