//! Artifacts attached to an image: OCI 1.1 manifests whose `subject` names
//! the image manifest, found again through the referrers API, the referrers
//! tag schema (`sha256-<hex>`, an image index kept under that tag) or, in an
//! OCI image layout, the same index tagged in `index.json`.
//!
//! Everything read back is untrusted: sizes are bounded before bodies are
//! read, digests are checked against the bytes, and entries that cannot be
//! understood are skipped when listing and preserved when rewriting.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde_json::{Value, json};

use super::RegistryError;
use super::auth::{CredentialSource, credentials_for};
use crate::domain::reference::is_loopback_registry;
use crate::domain::{Digest, Repository};

/// One artifact to attach: an OCI 1.1 image manifest with `artifactType`, the empty config
/// (`application/vnd.oci.empty.v1+json`, `{}`), exactly one layer holding `bytes`, a `subject` descriptor naming the
/// image manifest, and `annotations` copied onto the manifest.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub artifact_type: String,
    pub layer_media_type: String,
    pub bytes: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

/// How an attachment was made findable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    ReferrersApi,
    TagSchema,
    Layout,
}

#[derive(Debug, Clone)]
pub struct Attached {
    pub manifest: Digest,
    pub via: Via,
}

/// A descriptor found for a subject (from the referrers API, the `sha256-<hex>` tag index, or a layout).
/// Annotations and artifactType here are UNTRUSTED hints.
#[derive(Debug, Clone)]
pub struct Referrer {
    pub manifest: Digest,
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
    pub size: u64,
}

/// One attached artifact fetched and checked: the manifest bytes hash to `manifest`, the layer bytes hash to the
/// layer descriptor's digest and size, both within bounds.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub manifest: Digest,
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    pub annotations: BTreeMap<String, String>,
    pub layer_media_type: String,
    pub bytes: Vec<u8>,
}

/// Media types of the pieces of an attachment.
pub mod media {
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const EMPTY: &str = "application/vnd.oci.empty.v1+json";
}

/// The empty config every attachment carries.
const EMPTY_CONFIG: &[u8] = b"{}";
/// A referrers index (API answer, tag index, layout index) larger than this is refused.
pub const MAX_INDEX: u64 = 4 * 1024 * 1024;
/// An artifact manifest larger than this is refused.
pub const MAX_MANIFEST: u64 = 256 * 1024;
/// The image manifest (or index) an artifact is attached to.
const MAX_SUBJECT: u64 = 4 * 1024 * 1024;
/// Read-change-write rounds on the tag index before giving up on a race.
const ROUNDS: u32 = 10;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The referrers tag schema's tag for `subject`.
/// Whether `tag` names a referrers index (`sha256-` and 64 hex digits):
/// where an image's attachments are listed, never a release.
pub fn is_referrers_tag(tag: &str) -> bool {
    tag.strip_prefix("sha256-")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub fn tag_for(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

/// Attaches `artifact` to the image manifest `subject` of `repository` (relative layout paths from `base`;
/// plain HTTP when `insecure` or a loopback registry, as `remote::resolve` does). Idempotent: attaching the same
/// artifact again gives the same manifest digest and never a duplicate index entry.
pub async fn attach(
    repository: &Repository,
    subject: &Digest,
    artifact: &Artifact,
    insecure: bool,
    base: &Path,
) -> Result<Attached, RegistryError> {
    match repository {
        Repository::Layout(path) => {
            let path = base.join(path);
            let (subject, artifact) = (subject.clone(), artifact.clone());
            blocking(move || layout::attach(&path, &subject, &artifact)).await
        }
        Repository::Remote {
            registry,
            repository,
        } => {
            let remote =
                Remote::connect(registry, repository, insecure, Some(subject), true).await?;
            remote.attach(subject, artifact).await
        }
    }
}

/// Every referrer of `subject`, optionally only those whose artifactType is `artifact_type`.
/// A registry that is down is `RegistryError::Unreachable` — never an empty list.
pub async fn referrers(
    repository: &Repository,
    subject: &Digest,
    artifact_type: Option<&str>,
    insecure: bool,
    base: &Path,
) -> Result<Vec<Referrer>, RegistryError> {
    let all = match repository {
        Repository::Layout(path) => {
            let path = base.join(path);
            let subject = subject.clone();
            blocking(move || layout::referrers(&path, &subject)).await?
        }
        Repository::Remote {
            registry,
            repository,
        } => {
            let remote =
                Remote::connect(registry, repository, insecure, Some(subject), false).await?;
            remote.referrers(subject).await?
        }
    };
    Ok(all
        .into_iter()
        .filter(|r| artifact_type.is_none_or(|t| r.artifact_type.as_deref() == Some(t)))
        .collect())
}

/// Fetches one attached artifact (its manifest and its single layer), refusing a layer over `limit` bytes.
pub async fn fetch(
    repository: &Repository,
    manifest: &Digest,
    limit: u64,
    insecure: bool,
    base: &Path,
) -> Result<Fetched, RegistryError> {
    match repository {
        Repository::Layout(path) => {
            let path = base.join(path);
            let manifest = manifest.clone();
            blocking(move || layout::fetch(&path, &manifest, limit)).await
        }
        Repository::Remote {
            registry,
            repository,
        } => {
            let remote =
                Remote::connect(registry, repository, insecure, Some(manifest), false).await?;
            remote.fetch(manifest, limit).await
        }
    }
}

/// A request that failed on a connection the other end had closed (not
/// one that could not connect, nor a timeout).
fn stale(e: &reqwest::Error) -> bool {
    e.is_request() && !e.is_connect() && !e.is_timeout()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(RegistryError::Registry {
            reference: "OCI layout".into(),
            detail: format!("the layout task failed: {e}"),
        })
    })
}

/// The artifact manifest for `artifact` attached to `subject` (a
/// descriptor), and the digest of the layer it holds.
fn artifact_manifest(artifact: &Artifact, subject: Value) -> Vec<u8> {
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::MANIFEST,
        "artifactType": artifact.artifact_type,
        "config": {
            "mediaType": media::EMPTY,
            "digest": Digest::of(EMPTY_CONFIG).to_string(),
            "size": EMPTY_CONFIG.len(),
        },
        "layers": [{
            "mediaType": artifact.layer_media_type,
            "digest": Digest::of(&artifact.bytes).to_string(),
            "size": artifact.bytes.len(),
        }],
        "subject": subject,
    });
    if !artifact.annotations.is_empty() {
        manifest["annotations"] = json!(artifact.annotations);
    }
    serde_json::to_vec(&manifest).expect("JSON values serialize")
}

/// The index entry naming an artifact manifest.
fn index_entry(artifact: &Artifact, manifest: &Digest, size: usize) -> Value {
    let mut entry = json!({
        "mediaType": media::MANIFEST,
        "digest": manifest.to_string(),
        "size": size,
        "artifactType": artifact.artifact_type,
    });
    if !artifact.annotations.is_empty() {
        entry["annotations"] = json!(artifact.annotations);
    }
    entry
}

/// The subject descriptor for the image manifest `bytes` (already checked
/// to hash to `digest`); `content_type` is the server's header if any.
fn subject_descriptor(bytes: &[u8], digest: &Digest, content_type: Option<&str>) -> Value {
    let declared = serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_owned));
    let media_type = declared
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_owned()))
        .unwrap_or_else(|| media::MANIFEST.to_owned());
    json!({"mediaType": media_type, "digest": digest.to_string(), "size": bytes.len()})
}

/// Whether a referrers index already names `manifest`.
fn index_has(index: &Value, manifest: &Digest) -> bool {
    let wanted = manifest.to_string();
    index["manifests"]
        .as_array()
        .is_some_and(|ms| ms.iter().any(|m| m["digest"].as_str() == Some(&wanted)))
}

/// Parses a referrers index read from `what`; refuses anything that is not
/// an image index, so that it is never overwritten blindly.
fn parse_index(bytes: &[u8], what: &str) -> Result<Value, String> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("{what} is not JSON ({e})"))?;
    if !v.is_object() || !v["manifests"].is_array() && !v["manifests"].is_null() {
        return Err(format!(
            "{what} is not an OCI image index (no `manifests` list)"
        ));
    }
    Ok(v)
}

/// `index` with `entry` added (unless an entry for that digest exists);
/// entries not understood here are kept as they are.
fn merged(index: Option<Value>, entry: Value) -> Value {
    let mut index = index.unwrap_or_else(|| json!({}));
    if !index["manifests"].is_array() {
        index["manifests"] = json!([]);
    }
    index["schemaVersion"] = json!(2);
    index["mediaType"] = json!(media::INDEX);
    let digest = entry["digest"].as_str().map(str::to_owned);
    if let Some(list) = index["manifests"].as_array_mut()
        && !list
            .iter()
            .any(|m| m["digest"].as_str() == digest.as_deref())
    {
        list.push(entry);
    }
    index
}

/// The referrers an index lists; malformed entries (no valid sha256 digest,
/// no size) are skipped.
fn listed(index: &Value) -> Vec<Referrer> {
    let Some(list) = index["manifests"].as_array() else {
        return Vec::new();
    };
    let mut out: Vec<Referrer> = Vec::new();
    for m in list {
        let Some(manifest) = m["digest"].as_str().and_then(|d| d.parse::<Digest>().ok()) else {
            continue;
        };
        let Some(size) = m["size"].as_u64() else {
            continue;
        };
        if out.iter().any(|r| r.manifest == manifest) {
            continue;
        }
        let annotations = m["annotations"]
            .as_object()
            .map(|a| {
                a.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        out.push(Referrer {
            manifest,
            artifact_type: m["artifactType"].as_str().map(str::to_owned),
            annotations,
            size,
        });
    }
    out
}

/// Checks a fetched artifact manifest and returns what it says, and the
/// layer descriptor (digest, size) to fetch, refused over `limit`.
fn read_artifact_manifest(bytes: &[u8], limit: u64) -> Result<(Fetched, Digest, u64), String> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("the artifact manifest is not JSON ({e})"))?;
    let layers = v["layers"]
        .as_array()
        .ok_or("the artifact manifest has no `layers` list")?;
    let [layer] = layers.as_slice() else {
        return Err(format!(
            "the artifact manifest has {} layers; an attachment has exactly one",
            layers.len()
        ));
    };
    let layer_digest = layer["digest"]
        .as_str()
        .ok_or("the layer descriptor has no digest")?
        .parse::<Digest>()
        .map_err(|e| format!("the layer descriptor's digest: {e}"))?;
    let size = layer["size"]
        .as_u64()
        .ok_or("the layer descriptor has no valid size")?;
    if size > limit {
        return Err(format!(
            "the layer is {size} bytes, over the limit of {limit} bytes; refused"
        ));
    }
    let annotations = v["annotations"]
        .as_object()
        .map(|a| {
            a.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok((
        Fetched {
            manifest: Digest::of(bytes),
            artifact_type: v["artifactType"].as_str().map(str::to_owned),
            subject: v["subject"]["digest"].as_str().and_then(|d| d.parse().ok()),
            annotations,
            layer_media_type: layer["mediaType"].as_str().unwrap_or_default().to_owned(),
            bytes: Vec::new(),
        },
        layer_digest,
        size,
    ))
}

/// A registry repository spoken to through `oci-client` for pushes and
/// through bounded raw GETs for everything read back (the client reads
/// whole bodies, whatever their announced size).
struct Remote {
    registry: String,
    repository: String,
    reference: String,
    client: Client,
    http: reqwest::Client,
    base_url: String,
    auth: RegistryAuth,
    source: CredentialSource,
    token: Option<String>,
}

impl Remote {
    async fn connect(
        registry: &str,
        repository: &str,
        insecure: bool,
        at: Option<&Digest>,
        push: bool,
    ) -> Result<Remote, RegistryError> {
        let plain_http = insecure || is_loopback_registry(registry);
        let client = super::remote::client(registry, insecure);
        let (auth, source) = credentials_for(registry);
        let reference = match at {
            Some(d) => format!("{registry}/{repository}@{d}"),
            None => format!("{registry}/{repository}"),
        };
        // One HTTP client per process, for the same reason as
        // `remote::client`: building one loads the root certificates.
        static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
        let http = match HTTP.get() {
            Some(c) => c.clone(),
            None => {
                let built = reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(Duration::from_secs(60))
                    .build()
                    .map_err(|e| RegistryError::Registry {
                        reference: reference.clone(),
                        detail: format!("cannot build an HTTP client: {e}"),
                    })?;
                HTTP.get_or_init(|| built).clone()
            }
        };
        let oci_ref = Reference::with_tag(registry.into(), repository.into(), "latest".into());
        let op = if push {
            RegistryOperation::Push
        } else {
            RegistryOperation::Pull
        };
        let token = match client.auth(&oci_ref, &auth, op).await {
            // The clients live for the process: a kept-alive connection
            // the registry closed meanwhile is retried once (a GET).
            Err(OciDistributionError::RequestError(e)) if stale(&e) => {
                client.auth(&oci_ref, &auth, op).await
            }
            other => other,
        }
        .map_err(|e| super::remote::classify(e, registry, &reference, &source))?;
        Ok(Remote {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            base_url: format!(
                "{}://{registry}/v2/{repository}",
                if plain_http { "http" } else { "https" }
            ),
            reference,
            client,
            http,
            auth,
            source,
            token,
        })
    }

    fn at_digest(&self, d: &Digest) -> Reference {
        Reference::with_digest(
            self.registry.clone(),
            self.repository.clone(),
            d.to_string(),
        )
    }

    fn unreachable(&self, e: &reqwest::Error) -> RegistryError {
        if e.is_timeout() && !e.is_connect() {
            return RegistryError::TooSlow {
                registry: self.registry.clone(),
                detail: super::remote::chain(e),
            };
        }
        RegistryError::Unreachable {
            registry: self.registry.clone(),
            detail: super::remote::chain(e),
        }
    }

    /// A GET of `path` (under `/v2/<name>`) whose body may not exceed
    /// `limit` bytes: `None` on 404, the body and its Content-Type on 200.
    async fn get(
        &self,
        path: &str,
        accept: &str,
        limit: u64,
        what: &str,
    ) -> Result<Option<(Vec<u8>, Option<String>)>, RegistryError> {
        // docker-registry's filesystem storage rewrites a tag's link in
        // place, so a read racing a writer can get a transient 500: retried.
        let mut attempt = 0;
        let mut resp = loop {
            let mut req = self
                .http
                .get(format!("{}/{path}", self.base_url))
                .header(reqwest::header::ACCEPT, accept);
            req = match (&self.token, &self.auth) {
                (Some(t), _) => req.bearer_auth(t),
                (None, RegistryAuth::Basic(u, p)) => req.basic_auth(u, Some(p)),
                _ => req,
            };
            let resp = match req.send().await {
                Ok(r) => r,
                // A kept-alive connection the registry closed meanwhile:
                // a GET is safe to send again, once, on a new one.
                Err(e) if stale(&e) && attempt == 0 => {
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(self.unreachable(&e)),
            };
            if resp.status().is_server_error() && attempt < 4 {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                continue;
            }
            break resp;
        };
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(super::remote::classify(
                OciDistributionError::UnauthorizedError {
                    url: resp.url().to_string(),
                },
                &self.registry,
                &self.reference,
                &self.source,
            ));
        }
        if !status.is_success() {
            return Err(RegistryError::Registry {
                reference: self.reference.clone(),
                detail: format!("reading {what} failed: the registry answered {status}"),
            });
        }
        if let Some(len) = resp.content_length()
            && len > limit
        {
            return Err(self.too_big(what, len, limit));
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.unreachable(&e))? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(self.too_big(what, (body.len() + chunk.len()) as u64, limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some((body, content_type)))
    }

    fn too_big(&self, what: &str, len: u64, limit: u64) -> RegistryError {
        RegistryError::Registry {
            reference: self.reference.clone(),
            detail: format!(
                "{what} is at least {len} bytes, over the limit of {limit} bytes; refused"
            ),
        }
    }

    fn push_error(&self, e: OciDistributionError) -> RegistryError {
        let denied = matches!(
            &e,
            OciDistributionError::RegistryError { envelope, .. }
                if envelope.errors.iter().any(|c| matches!(c.code, OciErrorCode::Denied | OciErrorCode::Unauthorized))
        );
        let answered = match &e {
            OciDistributionError::RequestError(re) => re.status(),
            _ => None,
        };
        if let Some(status) = answered {
            return if status == reqwest::StatusCode::UNAUTHORIZED
                || status == reqwest::StatusCode::FORBIDDEN
            {
                super::remote::classify(
                    OciDistributionError::UnauthorizedError {
                        url: self.reference.clone(),
                    },
                    &self.registry,
                    &self.reference,
                    &self.source,
                )
            } else {
                RegistryError::Refused {
                    reference: self.reference.clone(),
                    detail: format!("HTTP {status}"),
                }
            };
        }
        if denied
            || matches!(
                e,
                OciDistributionError::RequestError(_)
                    | OciDistributionError::UnauthorizedError { .. }
                    | OciDistributionError::AuthenticationFailure(_)
            )
        {
            return super::remote::classify(e, &self.registry, &self.reference, &self.source);
        }
        let detail = match e {
            OciDistributionError::ServerError { code, message, .. } => {
                let message = message.trim();
                if message.is_empty() {
                    format!("HTTP {code}")
                } else {
                    format!(
                        "HTTP {code}: {}",
                        message.chars().take(200).collect::<String>()
                    )
                }
            }
            OciDistributionError::RegistryError { envelope, .. } => envelope.to_string(),
            other => other.to_string(),
        };
        RegistryError::Refused {
            reference: self.reference.clone(),
            detail,
        }
    }

    /// Pushes a blob unless the registry has it. Two writers pushing the
    /// same blob at once (the empty config is shared by every attachment)
    /// can get a transient 5xx from docker-registry while the other links
    /// it; that is retried a few times, a refusal (405) is not.
    async fn push_blob(&self, at: &Reference, blob: &[u8]) -> Result<(), RegistryError> {
        let d = Digest::of(blob).to_string();
        let mut attempt = 0;
        loop {
            let result = match self.client.blob_exists(at, &d).await {
                Ok(true) => Ok(()),
                Ok(false) => self
                    .client
                    .push_blob(at, blob.to_vec(), &d)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            match result {
                Err(e) if attempt < 4 && server_error(&e) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                other => return other.map_err(|e| self.push_error(e)),
            }
        }
    }

    async fn manifest(
        &self,
        reference: &str,
        accept: &str,
        limit: u64,
        what: &str,
    ) -> Result<Option<(Vec<u8>, Option<String>)>, RegistryError> {
        self.get(&format!("manifests/{reference}"), accept, limit, what)
            .await
    }

    /// The manifest `digest` (a `what`), which must be there and hash to
    /// its name; `hint` follows the error when it is missing.
    async fn checked_manifest(
        &self,
        digest: &Digest,
        accept: &str,
        limit: u64,
        what: &str,
        hint: &str,
    ) -> Result<(Vec<u8>, Option<String>), RegistryError> {
        let Some((bytes, content_type)) = self
            .manifest(&digest.to_string(), accept, limit, &format!("the {what}"))
            .await?
        else {
            return Err(RegistryError::Registry {
                reference: self.reference.clone(),
                detail: format!(
                    "no {what} {digest} in {}/{}{hint}",
                    self.registry, self.repository
                ),
            });
        };
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(RegistryError::DigestMismatch {
                reference: self.reference.clone(),
                expected: digest.clone(),
                actual,
                source_desc: format!("the {what} served by the registry"),
            });
        }
        Ok((bytes, content_type))
    }

    async fn attach(
        &self,
        subject: &Digest,
        artifact: &Artifact,
    ) -> Result<Attached, RegistryError> {
        let (bytes, content_type) = self
            .checked_manifest(
                subject,
                &super::remote::ACCEPTED.join(", "),
                MAX_SUBJECT,
                "image manifest",
                "; push the image first or check the digest",
            )
            .await?;
        let manifest = artifact_manifest(
            artifact,
            subject_descriptor(&bytes, subject, content_type.as_deref()),
        );
        let digest = Digest::of(&manifest);
        let at = self.at_digest(subject);
        for blob in [EMPTY_CONFIG, artifact.bytes.as_slice()] {
            self.push_blob(&at, blob).await?;
        }
        self.client
            .push_manifest_raw(
                &self.at_digest(&digest),
                manifest.clone(),
                reqwest::header::HeaderValue::from_static(media::MANIFEST),
            )
            .await
            .map_err(|e| self.push_error(e))?;

        if self.has_referrers_api(subject).await? {
            return Ok(Attached {
                manifest: digest,
                via: Via::ReferrersApi,
            });
        }
        let entry = index_entry(artifact, &digest, manifest.len());
        self.add_to_tag_index(subject, &digest, entry).await?;
        Ok(Attached {
            manifest: digest,
            via: Via::TagSchema,
        })
    }

    /// Per the distribution spec, a registry with the referrers API answers
    /// 200 on `/referrers/<digest>`; 404 means it has none.
    async fn has_referrers_api(&self, subject: &Digest) -> Result<bool, RegistryError> {
        Ok(self.referrers_api(subject).await?.is_some())
    }

    async fn referrers_api(&self, subject: &Digest) -> Result<Option<Value>, RegistryError> {
        let Some((bytes, _)) = self
            .get(
                &format!("referrers/{subject}"),
                media::INDEX,
                MAX_INDEX,
                "the referrers list",
            )
            .await?
        else {
            return Ok(None);
        };
        parse_index(&bytes, "the referrers list")
            .map(Some)
            .map_err(|detail| RegistryError::Registry {
                reference: self.reference.clone(),
                detail,
            })
    }

    async fn tag_index(&self, subject: &Digest) -> Result<Option<Value>, RegistryError> {
        let tag = tag_for(subject);
        let what = format!("the referrers tag index `{tag}`");
        let Some((bytes, _)) = self.manifest(&tag, media::INDEX, MAX_INDEX, &what).await? else {
            return Ok(None);
        };
        parse_index(&bytes, &what)
            .map(Some)
            .map_err(|detail| RegistryError::Registry {
                reference: self.reference.clone(),
                detail,
            })
    }

    /// Adds `entry` to the index under the `sha256-<hex>` tag. The registry
    /// has no compare-and-swap, so two writers can overwrite each other:
    /// after each PUT the index is read back (twice, a short pause apart,
    /// so that a writer that read before our PUT has had time to land its
    /// own) and, if our entry is gone, merged and written again — at most
    /// `ROUNDS` times, then an error rather than a silent loss.
    async fn add_to_tag_index(
        &self,
        subject: &Digest,
        manifest: &Digest,
        entry: Value,
    ) -> Result<(), RegistryError> {
        let tag_ref = Reference::with_tag(
            self.registry.clone(),
            self.repository.clone(),
            tag_for(subject),
        );
        for round in 0..ROUNDS {
            // A pause that differs per writer and per round, so racing
            // writers fall out of step.
            let jitter = pause(manifest, round);
            let current = self.tag_index(subject).await?;
            if current.as_ref().is_some_and(|i| index_has(i, manifest)) {
                tokio::time::sleep(Duration::from_millis(60 + jitter)).await;
                if self
                    .tag_index(subject)
                    .await?
                    .is_some_and(|i| index_has(&i, manifest))
                {
                    return Ok(());
                }
                continue;
            }
            let index = merged(current, entry.clone());
            let bytes = serde_json::to_vec(&index).expect("JSON values serialize");
            self.client
                .push_manifest_raw(
                    &tag_ref,
                    bytes,
                    reqwest::header::HeaderValue::from_static(media::INDEX),
                )
                .await
                .map_err(|e| self.push_error(e))?;
            tokio::time::sleep(Duration::from_millis(jitter / 2)).await;
        }
        Err(RegistryError::Registry {
            reference: self.reference.clone(),
            detail: format!(
                "other writers kept replacing the referrers tag index `{}` for {ROUNDS} rounds; {manifest} is pushed but not listed, attach again",
                tag_for(subject)
            ),
        })
    }

    async fn referrers(&self, subject: &Digest) -> Result<Vec<Referrer>, RegistryError> {
        let index = match self.referrers_api(subject).await? {
            Some(index) => Some(index),
            None => self.tag_index(subject).await?,
        };
        Ok(index.map(|i| listed(&i)).unwrap_or_default())
    }

    async fn fetch(&self, manifest: &Digest, limit: u64) -> Result<Fetched, RegistryError> {
        let (bytes, _) = self
            .checked_manifest(
                manifest,
                media::MANIFEST,
                MAX_MANIFEST,
                "artifact manifest",
                "",
            )
            .await?;
        let (mut fetched, layer, size) =
            read_artifact_manifest(&bytes, limit).map_err(|detail| RegistryError::Registry {
                reference: self.reference.clone(),
                detail,
            })?;
        let Some((body, _)) = self
            .get(&format!("blobs/{layer}"), "*/*", size, "the attached layer")
            .await?
        else {
            return Err(RegistryError::Registry {
                reference: self.reference.clone(),
                detail: format!("the attached layer {layer} is missing from the registry"),
            });
        };
        check_layer(&body, &layer, size, &self.reference)?;
        fetched.bytes = body;
        Ok(fetched)
    }
}

/// Milliseconds to wait in round `round` of a tag index update: 0–127,
/// from the writer's manifest digest, the round and the clock.
fn pause(manifest: &Digest, round: u32) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed = format!("{manifest}{round}{nanos}");
    u64::from_str_radix(&Digest::of(seed.as_bytes()).hex()[..2], 16).unwrap_or(0) % 128
}

/// Whether the registry answered with a server error other than a refusal.
fn server_error(e: &OciDistributionError) -> bool {
    let code = match e {
        OciDistributionError::RequestError(re) => re.status().map(|s| s.as_u16()),
        OciDistributionError::ServerError { code, .. } => Some(*code),
        _ => None,
    };
    code.is_some_and(|c| c >= 500 && c != 501 && c != 503)
}

fn check_layer(
    body: &[u8],
    layer: &Digest,
    size: u64,
    reference: &str,
) -> Result<(), RegistryError> {
    let actual = Digest::of(body);
    if actual != *layer {
        return Err(RegistryError::DigestMismatch {
            reference: reference.to_owned(),
            expected: layer.clone(),
            actual,
            source_desc: "the attached layer".into(),
        });
    }
    if body.len() as u64 != size {
        return Err(RegistryError::Registry {
            reference: reference.to_owned(),
            detail: format!(
                "the attached layer is {} bytes but its descriptor says {size}",
                body.len()
            ),
        });
    }
    Ok(())
}

/// The same, in an OCI image layout: blobs under `blobs/sha256/`, the
/// referrers index tagged `sha256-<hex>` in `index.json`.
mod layout {
    use std::io::{Read, Write};

    use cap_std::ambient_authority;
    use cap_std::fs::{Dir, OpenOptions};

    use super::*;

    use crate::registry::layout::INDEX_LOCK as LOCK;

    fn err(path: &Path, reason: impl Into<String>) -> RegistryError {
        RegistryError::Layout {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    fn open(path: &Path) -> Result<Dir, RegistryError> {
        let dir = Dir::open_ambient_dir(path, ambient_authority()).map_err(|e| {
            err(
                path,
                format!("cannot open the layout ({e}); expected an OCI image layout directory"),
            )
        })?;
        if !dir.is_file("oci-layout") {
            return Err(err(
                path,
                "no `oci-layout` file; is this an OCI image layout?",
            ));
        }
        Ok(dir)
    }

    /// Reads `rel`, refusing it over `limit` bytes; `None` when absent.
    fn read(
        dir: &Dir,
        path: &Path,
        rel: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        // A FIFO or device would block the open or never end: only
        // regular files are read (links resolve inside the layout).
        match dir.metadata(rel) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(err(
                    path,
                    format!("{rel} is not a regular file (a FIFO, device or folder); refused"),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(path, format!("cannot read {rel}: {e}"))),
        }
        let file = match dir.open(rel) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(path, format!("cannot read {rel}: {e}"))),
        };
        let mut body = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut body)
            .map_err(|e| err(path, format!("cannot read {rel}: {e}")))?;
        if body.len() as u64 > limit {
            return Err(err(
                path,
                format!("{rel} is over the limit of {limit} bytes; refused"),
            ));
        }
        Ok(Some(body))
    }

    fn blob_rel(d: &Digest) -> String {
        format!("blobs/sha256/{}", d.hex())
    }

    /// Reads the blob `d`, checking it hashes to `d`.
    fn read_blob(
        dir: &Dir,
        path: &Path,
        d: &Digest,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        let Some(bytes) = read(dir, path, &blob_rel(d), limit)? else {
            return Ok(None);
        };
        let actual = Digest::of(&bytes);
        if actual != *d {
            return Err(RegistryError::DigestMismatch {
                reference: path.display().to_string(),
                expected: d.clone(),
                actual,
                source_desc: format!("blob {}", blob_rel(d)),
            });
        }
        Ok(Some(bytes))
    }

    static TMP: AtomicU64 = AtomicU64::new(0);

    /// Writes `bytes` to `rel` atomically: a fresh temp file, then a rename.
    fn write_atomic(dir: &Dir, path: &Path, rel: &str, bytes: &[u8]) -> Result<(), RegistryError> {
        let tmp = format!(
            "{rel}.tmp-{}-{}",
            std::process::id(),
            TMP.fetch_add(1, Ordering::Relaxed)
        );
        let fail = |e: std::io::Error| err(path, format!("cannot write {rel}: {e}"));
        let mut f = dir
            .open_with(&tmp, OpenOptions::new().write(true).create_new(true))
            .map_err(fail)?;
        f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| {
            let _ = dir.remove_file(&tmp);
            fail(e)
        })?;
        dir.rename(&tmp, dir, rel).map_err(|e| {
            let _ = dir.remove_file(&tmp);
            fail(e)
        })
    }

    fn write_blob(dir: &Dir, path: &Path, bytes: &[u8]) -> Result<Digest, RegistryError> {
        let d = Digest::of(bytes);
        let rel = blob_rel(&d);
        let present = dir
            .metadata(&rel)
            .is_ok_and(|m| m.len() == bytes.len() as u64);
        if !present {
            dir.create_dir_all("blobs/sha256")
                .map_err(|e| err(path, format!("cannot create blobs/sha256: {e}")))?;
            write_atomic(dir, path, &rel, bytes)?;
        }
        Ok(d)
    }

    fn read_index_json(dir: &Dir, path: &Path) -> Result<Value, RegistryError> {
        let bytes = read(dir, path, "index.json", MAX_INDEX)?
            .ok_or_else(|| err(path, "no `index.json`; is this an OCI image layout?"))?;
        parse_index(&bytes, "index.json").map_err(|r| err(path, r))
    }

    /// The referrers index tagged for `subject`, if any.
    fn tag_index(
        dir: &Dir,
        path: &Path,
        index_json: &Value,
        subject: &Digest,
    ) -> Result<Option<Value>, RegistryError> {
        let tag = tag_for(subject);
        let Some(entry) = index_json["manifests"].as_array().and_then(|ms| {
            ms.iter()
                .rev()
                .find(|m| m["annotations"][REF_NAME].as_str() == Some(tag.as_str()))
        }) else {
            return Ok(None);
        };
        let d = entry["digest"]
            .as_str()
            .and_then(|d| d.parse::<Digest>().ok())
            .ok_or_else(|| {
                err(
                    path,
                    format!("index.json names tag `{tag}` without a valid sha256 digest"),
                )
            })?;
        let bytes = read_blob(dir, path, &d, MAX_INDEX)?.ok_or_else(|| {
            err(
                path,
                format!("index.json names tag `{tag}` but blob {d} is missing"),
            )
        })?;
        parse_index(&bytes, &format!("the referrers index `{tag}`"))
            .map(Some)
            .map_err(|r| err(path, r))
    }

    pub(super) fn attach(
        path: &Path,
        subject: &Digest,
        artifact: &Artifact,
    ) -> Result<Attached, RegistryError> {
        let dir = open(path)?;
        let image = read_blob(&dir, path, subject, MAX_SUBJECT)?.ok_or_else(|| {
            err(
                path,
                format!(
                    "image manifest {subject} is not in this layout (no {}); check the digest",
                    blob_rel(subject)
                ),
            )
        })?;
        let manifest = artifact_manifest(artifact, subject_descriptor(&image, subject, None));
        write_blob(&dir, path, EMPTY_CONFIG)?;
        write_blob(&dir, path, &artifact.bytes)?;
        let digest = write_blob(&dir, path, &manifest)?;
        let entry = index_entry(artifact, &digest, manifest.len());

        let lock = dir
            .open_with(
                LOCK,
                OpenOptions::new().write(true).create(true).truncate(false),
            )
            .map_err(|e| err(path, format!("cannot open the lock {LOCK}: {e}")))?
            .into_std();
        lock.lock()
            .map_err(|e| err(path, format!("cannot lock {LOCK}: {e}")))?;

        let mut index_json = read_index_json(&dir, path)?;
        let current = tag_index(&dir, path, &index_json, subject)?;
        if current.as_ref().is_some_and(|i| index_has(i, &digest)) {
            return Ok(Attached {
                manifest: digest,
                via: Via::Layout,
            });
        }
        let index = serde_json::to_vec(&merged(current, entry)).expect("JSON values serialize");
        let index_digest = write_blob(&dir, path, &index)?;
        let tag = tag_for(subject);
        if !index_json["manifests"].is_array() {
            index_json["manifests"] = json!([]);
        }
        if let Some(list) = index_json["manifests"].as_array_mut() {
            list.retain(|m| m["annotations"][REF_NAME].as_str() != Some(tag.as_str()));
            list.push(json!({
                "mediaType": media::INDEX,
                "digest": index_digest.to_string(),
                "size": index.len(),
                "annotations": {REF_NAME: tag},
            }));
        }
        let text = serde_json::to_vec_pretty(&index_json).expect("JSON values serialize");
        write_atomic(&dir, path, "index.json", &text)?;
        drop(lock);
        Ok(Attached {
            manifest: digest,
            via: Via::Layout,
        })
    }

    pub(super) fn referrers(path: &Path, subject: &Digest) -> Result<Vec<Referrer>, RegistryError> {
        let dir = open(path)?;
        let index_json = read_index_json(&dir, path)?;
        Ok(tag_index(&dir, path, &index_json, subject)?
            .map(|i| listed(&i))
            .unwrap_or_default())
    }

    pub(super) fn fetch(
        path: &Path,
        manifest: &Digest,
        limit: u64,
    ) -> Result<Fetched, RegistryError> {
        let dir = open(path)?;
        let bytes = read_blob(&dir, path, manifest, MAX_MANIFEST)?.ok_or_else(|| {
            err(
                path,
                format!("no artifact manifest {manifest} in this layout"),
            )
        })?;
        let (mut fetched, layer, size) =
            read_artifact_manifest(&bytes, limit).map_err(|r| err(path, r))?;
        let reference = path.display().to_string();
        let body = read(&dir, path, &blob_rel(&layer), size)?
            .ok_or_else(|| err(path, format!("the attached layer {layer} is missing")))?;
        check_layer(&body, &layer, size, &reference)?;
        fetched.bytes = body;
        Ok(fetched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn art() -> Artifact {
        Artifact {
            artifact_type: "application/vnd.example+json".into(),
            layer_media_type: "application/json".into(),
            bytes: b"{\"a\":1}".to_vec(),
            annotations: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
        }
    }

    #[test]
    fn the_artifact_manifest_is_deterministic_and_complete() {
        let subject = json!({"mediaType": media::MANIFEST, "digest": Digest::of(b"s").to_string(), "size": 1});
        let a = artifact_manifest(&art(), subject.clone());
        assert_eq!(a, artifact_manifest(&art(), subject.clone()));
        let v: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["artifactType"], "application/vnd.example+json");
        assert_eq!(v["config"]["digest"], Digest::of(b"{}").to_string());
        assert_eq!(v["layers"][0]["size"], 7);
        assert_eq!(v["subject"], subject);
        assert_eq!(v["annotations"]["k"], "v");
        let (fetched, layer, size) = read_artifact_manifest(&a, 7).unwrap();
        assert_eq!((layer, size), (Digest::of(b"{\"a\":1}"), 7));
        assert_eq!(fetched.subject, Some(Digest::of(b"s")));
        assert!(
            read_artifact_manifest(&a, 6)
                .unwrap_err()
                .contains("over the limit")
        );
    }

    #[test]
    fn merging_keeps_unknown_entries_and_never_duplicates() {
        let d = Digest::of(b"m");
        let entry = index_entry(&art(), &d, 10);
        let odd = json!({"schemaVersion": 2, "extra": true, "manifests": ["??", {"digest": 3}]});
        let once = merged(Some(odd), entry.clone());
        let twice = merged(Some(once.clone()), entry);
        assert_eq!(once, twice);
        assert_eq!(once["extra"], true);
        assert_eq!(once["manifests"].as_array().unwrap().len(), 3);
        assert!(index_has(&once, &d));
        assert_eq!(listed(&once).len(), 1);
    }

    #[test]
    fn hostile_manifests_are_errors() {
        for bad in [
            &b"not json"[..],
            br#"{"layers": "x"}"#,
            br#"{"layers": []}"#,
            br#"{"layers": [{"digest": "sha256:zz", "size": 1}]}"#,
            br#"{"layers": [{"digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000"}]}"#,
            br#"{"layers": [{}, {}]}"#,
        ] {
            assert!(read_artifact_manifest(bad, 1 << 20).is_err());
        }
        assert!(parse_index(b"[]", "x").is_err());
        assert!(parse_index(br#"{"manifests": {}}"#, "x").is_err());
    }
}
