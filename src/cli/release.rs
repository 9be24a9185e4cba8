//! `stella release resolve|list`.

use std::path::Path;

use chrono::{SecondsFormat, Utc};
use clap::{Args, Subcommand};

use super::{Context, Failure, exit, load_config, print_json};
use crate::config::Config;
use crate::domain::{ImageRef, ReleaseSpec, Resolution, Selector};
use crate::registry;

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
    }
}

fn resolve(ctx: &Context, args: ResolveArgs) -> Result<u8, Failure> {
    let spec = ReleaseSpec::parse(&args.reference).map_err(Failure::usage)?;
    let ws = ctx.workspace.as_ref().ok();
    let config = ws.map(|w| load_config(ctx, w)).transpose()?;
    let (app, image, insecure) = match spec {
        ReleaseSpec::App { app, selector } => {
            let Some(config) = &config else {
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
    let digest = runtime()?.block_on(registry::resolve(&image, insecure, base))?;
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
                && !args.json
            {
                eprintln!(
                    "note: {} moved: it was {} at {}",
                    resolution.reference,
                    prev.digest,
                    prev.resolved_at.to_rfc3339_opts(SecondsFormat::Secs, true)
                );
            }
        }
        None if !args.json => {
            eprintln!("note: not inside a workspace, so this resolution was not recorded");
        }
        None => {}
    }
    if args.json {
        print_json(&resolution)?;
    } else {
        println!("{}", resolution.digest);
    }
    Ok(exit::OK)
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

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::error(format!("cannot start the async runtime: {e}")))
}
