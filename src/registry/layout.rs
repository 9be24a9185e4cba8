//! Resolution against an OCI image layout on disk
//! (`oci-layout`, `index.json`, `blobs/sha256/…`).

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::image::{ANNOTATION_REF_NAME, ImageIndex, OciLayout};

use super::RegistryError;
use crate::domain::{Digest, Selector};

/// The OCI layout directory at `path`.
pub struct Layout {
    path: PathBuf,
}

impl Layout {
    /// Opens a layout, checking its `oci-layout` marker.
    pub fn open(path: &Path) -> Result<Layout, RegistryError> {
        let marker = path.join("oci-layout");
        if !path.is_dir() {
            return Err(RegistryError::Layout {
                path: path.to_owned(),
                reason: "no such directory (expected an OCI image layout, e.g. made by `skopeo copy … oci:DIR:TAG`)".into(),
            });
        }
        let layout = OciLayout::from_file(&marker).map_err(|e| RegistryError::Layout {
            path: path.to_owned(),
            reason: format!(
                "cannot read its `oci-layout` file ({e}); is this an OCI image layout?"
            ),
        })?;
        if !layout.image_layout_version().starts_with("1.") {
            return Err(RegistryError::Layout {
                path: path.to_owned(),
                reason: format!(
                    "imageLayoutVersion `{}` is not supported (expected 1.x)",
                    layout.image_layout_version()
                ),
            });
        }
        Ok(Layout {
            path: path.to_owned(),
        })
    }

    fn index(&self) -> Result<ImageIndex, RegistryError> {
        ImageIndex::from_file(self.path.join("index.json")).map_err(|e| RegistryError::Layout {
            path: self.path.clone(),
            reason: format!("`index.json` is not a valid OCI image index: {e}"),
        })
    }

    /// The tags the layout's index names.
    pub fn tags(&self) -> Result<Vec<String>, RegistryError> {
        Ok(self
            .index()?
            .manifests()
            .iter()
            .filter_map(|d| d.annotations().as_ref()?.get(ANNOTATION_REF_NAME).cloned())
            .collect())
    }

    /// Resolves a tag (or checks a digest) to the digest of the manifest or
    /// index it names, verifying that blob's bytes hash to it.
    pub fn resolve(&self, selector: &Selector, reference: &str) -> Result<Digest, RegistryError> {
        let (digest, size) = match selector {
            Selector::Digest(d) => (d.clone(), None),
            Selector::Tag(tag) => {
                let index = self.index()?;
                let found = index.manifests().iter().find(|d| {
                    d.annotations()
                        .as_ref()
                        .and_then(|a| a.get(ANNOTATION_REF_NAME))
                        .is_some_and(|n| n == tag)
                });
                let Some(desc) = found else {
                    return Err(RegistryError::TagNotFound {
                        reference: reference.to_owned(),
                        available: self.tags()?,
                    });
                };
                let d = desc.digest().to_string().parse::<Digest>().map_err(|e| {
                    RegistryError::Layout {
                        path: self.path.clone(),
                        reason: format!("index.json names tag `{tag}` with {e}"),
                    }
                })?;
                (d, Some(desc.size()))
            }
        };
        let blob = self.blob_path(&digest);
        let bytes = match fs::read(&blob) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RegistryError::BlobMissing {
                    reference: reference.to_owned(),
                    digest,
                    path: blob,
                });
            }
            Err(e) => {
                return Err(RegistryError::Layout {
                    path: self.path.clone(),
                    reason: format!("cannot read {}: {e}", blob.display()),
                });
            }
        };
        let actual = Digest::of(&bytes);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                reference: reference.to_owned(),
                expected: digest,
                actual,
                source_desc: format!("blob {}", blob.display()),
            });
        }
        if let Some(size) = size
            && size != bytes.len() as u64
        {
            return Err(RegistryError::Layout {
                path: self.path.clone(),
                reason: format!(
                    "blob {digest} is {} bytes but index.json says {size}",
                    bytes.len()
                ),
            });
        }
        check_manifest(&bytes).map_err(|reason| RegistryError::Layout {
            path: self.path.clone(),
            reason: format!("blob {digest}: {reason}"),
        })?;
        Ok(digest)
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.path.join("blobs").join("sha256").join(digest.hex())
    }
}

/// A release digest must name an image manifest or an index, not a layer.
fn check_manifest(bytes: &[u8]) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Versioned {
        schema_version: u32,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let v: Versioned = serde_json::from_slice(bytes)
        .map_err(|e| format!("not an image manifest or index ({e})"))?;
    if v.schema_version != 2 {
        return Err(format!(
            "schemaVersion {} is not supported (expected 2)",
            v.schema_version
        ));
    }
    if v.manifests.is_none() && v.layers.is_none() && v.media_type.is_none() {
        return Err("neither an image manifest nor an index".into());
    }
    Ok(())
}
