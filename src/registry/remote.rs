//! Resolution against a remote registry through the distribution API.

use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::{Client, Reference};

use super::RegistryError;
use super::auth::{CredentialSource, credentials_for};
use crate::domain::reference::is_loopback_registry;
use crate::domain::{Digest, Selector};

/// What a tag may point at: single images and multi-arch indexes, OCI and
/// Docker flavours alike. A multi-arch tag resolves to its index digest.
pub(super) const ACCEPTED: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Resolves `selector` in `registry/repository` to the digest of the bytes
/// the registry serves, which must hash to the digest it advertises.
pub async fn resolve(
    registry: &str,
    repository: &str,
    selector: &Selector,
    insecure: bool,
    reference: &str,
) -> Result<Digest, RegistryError> {
    let client = client(registry, insecure);
    let oci_ref = match selector {
        Selector::Tag(t) => Reference::with_tag(registry.into(), repository.into(), t.clone()),
        Selector::Digest(d) => {
            Reference::with_digest(registry.into(), repository.into(), d.to_string())
        }
    };
    let (auth, source) = credentials_for(registry);
    let (bytes, advertised) = manifest_raw(&client, &oci_ref, &auth)
        .await
        .map_err(|e| classify(e, registry, reference, &source))?;

    let actual = Digest::of(&bytes);
    let advertised = advertised
        .parse::<Digest>()
        .map_err(|e| RegistryError::Registry {
            reference: reference.to_owned(),
            detail: format!("the registry advertised {e}"),
        })?;
    if actual != advertised {
        return Err(RegistryError::DigestMismatch {
            reference: reference.to_owned(),
            expected: advertised,
            actual,
            source_desc: "the manifest served by the registry".into(),
        });
    }
    Ok(actual)
}

/// The registry client for `registry`, made once per process: building
/// one loads the system's root certificates, which costs more than the
/// requests a command makes (a clone shares its pool and token cache).
pub(super) fn client(registry: &str, insecure: bool) -> Client {
    static CLIENTS: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<(String, bool), Client>>,
    > = std::sync::LazyLock::new(Default::default);
    let mut clients = CLIENTS.lock().unwrap_or_else(|p| p.into_inner());
    clients
        .entry((registry.to_owned(), insecure))
        .or_insert_with(|| new_client(registry, insecure))
        .clone()
}

/// A manifest's bytes and advertised digest; a GET that met a kept-alive
/// connection the registry had closed is sent once more.
async fn manifest_raw(
    client: &Client,
    reference: &Reference,
    auth: &oci_client::secrets::RegistryAuth,
) -> Result<(Vec<u8>, String), OciDistributionError> {
    match client.pull_manifest_raw(reference, auth, ACCEPTED).await {
        Err(OciDistributionError::RequestError(e))
            if e.is_request() && !e.is_connect() && !e.is_timeout() =>
        {
            client.pull_manifest_raw(reference, auth, ACCEPTED).await
        }
        other => other,
    }
    .map(|(bytes, digest)| (bytes.to_vec(), digest))
}

fn new_client(registry: &str, insecure: bool) -> Client {
    let plain_http = insecure || is_loopback_registry(registry);
    Client::new(ClientConfig {
        protocol: if plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        connect_timeout: Some(Duration::from_secs(5)),
        read_timeout: Some(Duration::from_secs(30)),
        ..Default::default()
    })
}

/// Every blob needed to unpack the image `digest` names — its manifest
/// (and index), and each layer — fetched and checked against its digest.
pub async fn fetch_image(
    registry: &str,
    repository: &str,
    digest: &Digest,
    insecure: bool,
) -> Result<std::collections::BTreeMap<Digest, Vec<u8>>, RegistryError> {
    let client = client(registry, insecure);
    let (auth, source) = credentials_for(registry);
    let reference = format!("{registry}/{repository}@{digest}");
    let at = |d: &Digest| Reference::with_digest(registry.into(), repository.into(), d.to_string());
    let mut blobs = std::collections::BTreeMap::new();
    let mut manifest_digest = digest.clone();
    loop {
        let (bytes, _) = manifest_raw(&client, &at(&manifest_digest), &auth)
            .await
            .map_err(|e| classify(e, registry, &reference, &source))?;
        if Digest::of(&bytes) != manifest_digest {
            return Err(RegistryError::DigestMismatch {
                reference: reference.clone(),
                expected: manifest_digest,
                actual: Digest::of(&bytes),
                source_desc: "a manifest served by the registry".into(),
            });
        }
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::Registry {
                reference: reference.clone(),
                detail: format!("manifest {manifest_digest} is not JSON ({e})"),
            })?;
        blobs.insert(manifest_digest.clone(), bytes.to_vec());
        let Some(list) = v["manifests"].as_array() else {
            let layers: Vec<Digest> = v["layers"]
                .as_array()
                .map(|ls| {
                    ls.iter()
                        .filter_map(|l| l["digest"].as_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            for layer in layers {
                let mut out = Vec::new();
                client
                    .pull_blob(&at(digest), layer.to_string().as_str(), &mut out)
                    .await
                    .map_err(|e| classify(e, registry, &reference, &source))?;
                blobs.insert(layer, out);
            }
            return Ok(blobs);
        };
        let pick = super::pick_platform(list).ok_or_else(|| RegistryError::Registry {
            reference: reference.clone(),
            detail: "an index with no linux/amd64 manifest".into(),
        })?;
        manifest_digest = pick;
    }
}

pub(super) fn classify(
    e: OciDistributionError,
    registry: &str,
    reference: &str,
    source: &CredentialSource,
) -> RegistryError {
    let denied = |detail: String| RegistryError::Unauthorized {
        reference: reference.to_owned(),
        detail: match source {
            CredentialSource::Anonymous => {
                format!("{detail}; no credentials were found for {registry}")
            }
            CredentialSource::Environment => {
                format!("{detail}; credentials from STELLA_REGISTRY_USERNAME/PASSWORD were refused")
            }
            CredentialSource::DockerConfig(p) => {
                format!("{detail}; credentials from {} were refused", p.display())
            }
        },
    };
    match e {
        OciDistributionError::RequestError(re) if re.is_timeout() && !re.is_connect() => {
            RegistryError::TooSlow {
                registry: registry.to_owned(),
                detail: chain(&re),
            }
        }
        OciDistributionError::RequestError(re) if re.is_connect() => RegistryError::Unreachable {
            registry: registry.to_owned(),
            detail: chain(&re),
        },
        OciDistributionError::RequestError(re) => RegistryError::Unreachable {
            registry: registry.to_owned(),
            detail: chain(&re),
        },
        OciDistributionError::UnauthorizedError { url } => denied(format!("401 from {url}")),
        OciDistributionError::AuthenticationFailure(m) => denied(m),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                RegistryError::TagNotFound {
                    reference: reference.to_owned(),
                    available: Vec::new(),
                }
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                denied(envelope.to_string())
            } else {
                RegistryError::Registry {
                    reference: reference.to_owned(),
                    detail: envelope.to_string(),
                }
            }
        }
        OciDistributionError::ServerError { code: 404, .. } => RegistryError::TagNotFound {
            reference: reference.to_owned(),
            available: Vec::new(),
        },
        OciDistributionError::DigestError(oci_client::errors::DigestError::VerificationError {
            expected,
            actual,
        }) => match (expected.parse::<Digest>(), actual.parse::<Digest>()) {
            (Ok(expected), Ok(actual)) => RegistryError::DigestMismatch {
                reference: reference.to_owned(),
                expected,
                actual,
                source_desc: "the manifest served by the registry".into(),
            },
            _ => RegistryError::Registry {
                reference: reference.to_owned(),
                detail: format!("manifest digest {expected} does not match its content ({actual})"),
            },
        },
        other => RegistryError::Registry {
            reference: reference.to_owned(),
            detail: other.to_string(),
        },
    }
}

/// An error and its causes on one line: reqwest's top-level message alone
/// ("error sending request") hides the useful part.
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}
