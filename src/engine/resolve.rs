//! Naming releases: a tag resolved once to its digest and recorded; `APP`
//! alone meaning what is live upstream.

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};

use super::EngineError;
use crate::config::Config;
use crate::domain::{Digest, ImageRef, ReleaseSpec, Resolution, Selector};
use crate::registry;
use crate::workspace::Workspace;

/// A release of an app from stella.toml: what gates, approvals and
/// promotions are about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRelease {
    pub app: String,
    pub digest: Digest,
    pub tag: Option<String>,
}

/// Runs a future to completion from synchronous code: on the current
/// runtime when called from one of its blocking threads (the engine runs
/// each promotion on one), or on a short-lived one otherwise (the command
/// line). Never call it from an async task: that would block a worker.
pub fn block_on<F: std::future::Future>(fut: F) -> Result<F::Output, EngineError> {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => Ok(h.block_on(fut)),
        Err(_) => Ok(tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| EngineError::error(format!("cannot start the async runtime: {e}")))?
            .block_on(fut)),
    }
}

/// Resolves a release spec to its digest (from the layout or registry) and
/// records it in the workspace's store, if there is one. `base` is where
/// relative layout paths start without a workspace. Returns the resolution
/// and notes for the person asking (a moved tag, an unrecorded resolution).
pub fn resolve_and_record(
    ws: Option<&Workspace>,
    config: Option<&Config>,
    base: &Path,
    spec: ReleaseSpec,
) -> Result<(Resolution, Vec<String>), EngineError> {
    let (app, image, insecure) = match spec {
        ReleaseSpec::App { app, selector } => {
            let Some(config) = config else {
                return Err(EngineError::error("an app name needs a workspace").hint(
                    "run inside a workspace (or pass --workspace DIR), or give a direct reference like oci-layout:PATH:TAG",
                ));
            };
            let Some(a) = config.apps.get(&app) else {
                return Err(unknown_app(&app, config));
            };
            let selector = selector.unwrap_or_else(|| Selector::Tag("latest".into()));
            (Some(app), a.image.with_selector(selector), a.insecure)
        }
        ReleaseSpec::Direct(image) => (None, image, false),
    };
    let base: &Path = ws.map_or(base, |w| w.root());
    let digest = block_on(registry::resolve(&image, insecure, base))??;
    let image = resolved_ref(&image);
    let resolution = Resolution {
        app,
        reference: image.to_string(),
        tag: image.tag().map(str::to_owned),
        digest,
        resolved_at: Utc::now(),
    };
    tracing::info!(reference = %resolution.reference, digest = %resolution.digest, "resolved");

    let mut notes = Vec::new();
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
            {
                notes.push(format!(
                    "{} moved: it was {} at {}",
                    resolution.reference,
                    prev.digest,
                    prev.resolved_at.to_rfc3339_opts(SecondsFormat::Secs, true)
                ));
            }
        }
        None => notes.push("not inside a workspace, so this resolution was not recorded".into()),
    }
    Ok((resolution, notes))
}

/// Resolves a direct reference outside any workspace: nothing is recorded,
/// as there is no store.
pub fn resolve_unrecorded(
    base: &Path,
    spec: ReleaseSpec,
) -> Result<(Resolution, Vec<String>), EngineError> {
    resolve_and_record(None, None, base, spec)
}

/// Names the release a deciding command is about. `APP` alone, with an
/// environment that promotes from another, means what is live upstream at
/// `now`; otherwise tags resolve (and are recorded) as `resolve` does.
pub fn app_release(
    ws: &Workspace,
    config: &Config,
    reference: &str,
    env: Option<&str>,
    now: &DateTime<Utc>,
) -> Result<(AppRelease, Vec<String>), EngineError> {
    app_release_inner(ws, config, reference, env, now, true, true)
}

/// `app_release` for commands that read or ask what-if (`gate check`,
/// `approve`, `--dry-run`s): the tag's resolution is recorded only when
/// `record`, and `APP@sha256:…` is taken as it is, without the registry (a
/// digest names the image already; a registry that is down cannot keep a
/// gate check from answering). `app_release`, for a promotion about to
/// pull the image, still asks the registry that the digest is there.
pub fn app_release_with(
    ws: &Workspace,
    config: &Config,
    reference: &str,
    env: Option<&str>,
    now: &DateTime<Utc>,
    record: bool,
) -> Result<(AppRelease, Vec<String>), EngineError> {
    app_release_inner(ws, config, reference, env, now, record, false)
}

fn app_release_inner(
    ws: &Workspace,
    config: &Config,
    reference: &str,
    env: Option<&str>,
    now: &DateTime<Utc>,
    record: bool,
    confirm_digest: bool,
) -> Result<(AppRelease, Vec<String>), EngineError> {
    let spec = ReleaseSpec::parse(reference).map_err(EngineError::usage)?;
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
            let note = format!(
                "{app} means the release live in {}: {}",
                from.get_ref(),
                live.digest
            );
            return Ok((
                AppRelease {
                    app: app.clone(),
                    digest: live.digest,
                    tag: None,
                },
                vec![note],
            ));
        }
    }
    if let ReleaseSpec::Direct(_) = spec {
        return Err(EngineError::usage(format!(
            "`{reference}` is not an app: gates, approvals and promotions are about apps in stella.toml"
        ))
        .hint("name it APP:TAG or APP@sha256:HEX, with the app defined under [apps]"));
    }
    if !confirm_digest && let Some(digest) = named_digest(config, &spec) {
        let ReleaseSpec::App { app, .. } = spec else {
            unreachable!("only an app's spec names a digest here")
        };
        return Ok((
            AppRelease {
                app,
                digest,
                tag: None,
            },
            Vec::new(),
        ));
    }
    let (r, mut notes) = resolve_and_record(record.then_some(ws), Some(config), ws.root(), spec)?;
    if !record {
        // Not "outside a workspace": a what-if, which records nothing.
        notes.clear();
    }
    Ok((
        AppRelease {
            app: r.app.expect("app specs resolve with their app"),
            digest: r.digest,
            tag: r.tag,
        },
        notes,
    ))
}

/// The digest `APP@sha256:…` names, for an app of `config`: what a reading
/// command takes as it is, with no registry asked. `None` for a tag, a
/// direct reference or an unknown app (which resolving reports).
pub fn named_digest(config: &Config, spec: &ReleaseSpec) -> Option<Digest> {
    match spec {
        ReleaseSpec::App {
            app,
            selector: Some(Selector::Digest(digest)),
        } if config.apps.contains_key(app) => Some(digest.clone()),
        _ => None,
    }
}

/// A tag-less reference resolves `latest`; record it as such.
fn resolved_ref(image: &ImageRef) -> ImageRef {
    match &image.selector {
        Some(_) => image.clone(),
        None => image.with_selector(Selector::Tag("latest".into())),
    }
}

/// "no app X", with the ones there are.
pub fn unknown_app(app: &str, config: &Config) -> EngineError {
    let known: Vec<&str> = config.apps.keys().map(String::as_str).collect();
    let f = EngineError::usage(format!("no app `{app}` in {}", config.path.display()));
    if known.is_empty() {
        f.hint("add it under [apps], or give a direct reference like oci-layout:PATH:TAG")
    } else {
        f.hint(format!(
            "apps defined: {}; or give a direct reference like oci-layout:PATH:TAG",
            known.join(", ")
        ))
    }
}
