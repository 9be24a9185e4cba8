//! Tag → digest: OCI image layouts on disk and remote registries.
//!
//! A tag is only a way to find a digest. Whatever the source, the digest
//! returned is the hash of the manifest (or index) bytes actually read.

pub mod auth;
pub mod layout;
pub mod referrers;
pub mod remote;

use std::path::{Path, PathBuf};

use crate::domain::{Digest, ImageRef, Repository, Selector};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{path}: {reason}", path = .path.display())]
    Layout { path: PathBuf, reason: String },
    #[error("{reference}: tag not found{}", list_tags(.available))]
    TagNotFound {
        reference: String,
        available: Vec<String>,
    },
    #[error("{reference}: blob {digest} is missing ({path})", path = .path.display())]
    BlobMissing {
        reference: String,
        digest: Digest,
        path: PathBuf,
    },
    #[error(
        "{reference}: {source_desc} does not match its digest: expected {expected}, content hashes to {actual}; the image is corrupt or was tampered with"
    )]
    DigestMismatch {
        reference: String,
        expected: Digest,
        actual: Digest,
        source_desc: String,
    },
    #[error(
        "registry {registry} is unreachable ({detail}); check that it is running and the address is right"
    )]
    Unreachable { registry: String, detail: String },
    #[error(
        "registry {registry} is up but did not answer in time ({detail}); it may be overloaded or the network slow — try again"
    )]
    TooSlow { registry: String, detail: String },
    #[error(
        "{reference}: access denied ({detail}); set STELLA_REGISTRY_USERNAME and STELLA_REGISTRY_PASSWORD, or log in with `docker login`"
    )]
    Unauthorized { reference: String, detail: String },
    #[error("{reference}: {detail}")]
    Registry { reference: String, detail: String },
    /// The registry answered but would not store what was pushed (read-only
    /// mode, maintenance, a rejected manifest). Worth retrying later.
    #[error(
        "{reference}: the registry refused the push ({detail}); it may be read-only or under maintenance, retry later"
    )]
    Refused { reference: String, detail: String },
}

fn list_tags(tags: &[String]) -> String {
    if tags.is_empty() {
        String::new()
    } else {
        format!(" (tags here: {})", tags.join(", "))
    }
}

/// Resolves `image` (a tag defaults to `latest`) to a digest. Relative
/// layout paths are taken from `base`.
pub async fn resolve(
    image: &ImageRef,
    insecure: bool,
    base: &Path,
) -> Result<Digest, RegistryError> {
    let selector = image
        .selector
        .clone()
        .unwrap_or_else(|| Selector::Tag("latest".into()));
    let reference = image.with_selector(selector.clone()).to_string();
    if let Selector::Tag(t) = &selector
        && referrers::is_referrers_tag(t)
    {
        return Err(RegistryError::Registry {
            reference,
            detail: "a `sha256-…` tag lists what is attached to an image (its referrers), it is not a release; give the image's own tag or digest".into(),
        });
    }
    match &image.repository {
        Repository::Layout(path) => {
            let path = base.join(path);
            Layout::open(&path)?.resolve(&selector, &reference)
        }
        Repository::Remote {
            registry,
            repository,
        } => remote::resolve(registry, repository, &selector, insecure, &reference).await,
    }
}

pub use layout::Layout;

/// The manifest of an index to deploy: linux/amd64, or the only one.
pub fn pick_platform(manifests: &[serde_json::Value]) -> Option<Digest> {
    manifests
        .iter()
        .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == "amd64")
        .or(if manifests.len() == 1 {
            manifests.first()
        } else {
            None
        })
        .and_then(|m| m["digest"].as_str()?.parse().ok())
}
