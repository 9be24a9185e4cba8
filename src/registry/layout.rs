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
        // Reading a FIFO would wait forever: only a regular file is read.
        let index = self.path.join("index.json");
        if let Ok(m) = fs::metadata(&index)
            && !m.is_file()
        {
            return Err(RegistryError::Layout {
                path: self.path.clone(),
                reason: "`index.json` is not a regular file (a FIFO, device or folder); refused"
                    .into(),
            });
        }
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
            .filter(|t| !super::referrers::is_referrers_tag(t))
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
        if let Ok(m) = fs::metadata(&blob)
            && !m.is_file()
        {
            return Err(RegistryError::Layout {
                path: self.path.clone(),
                reason: format!("blob {digest} is not a regular file; refused"),
            });
        }
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

/// Media types stella writes.
pub mod media {
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
}

/// A file to put in an image layer.
pub struct LayerFile<'a> {
    pub path: &'a str,
    pub mode: u32,
    pub contents: &'a [u8],
}

/// Writes OCI image layouts: images with one gzip layer, tagged in
/// `index.json`. Output is deterministic (zero mtimes, sorted keys), so the
/// same files always give the same digest.
pub struct LayoutWriter {
    path: PathBuf,
}

impl LayoutWriter {
    /// Creates (or reopens) a layout directory.
    pub fn create(path: &Path) -> std::io::Result<LayoutWriter> {
        fs::create_dir_all(path.join("blobs").join("sha256"))?;
        let marker = path.join("oci-layout");
        if !marker.exists() {
            fs::write(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = path.join("index.json");
        if !index.exists() {
            fs::write(&index, index_json(&[]))?;
        }
        Ok(LayoutWriter {
            path: path.to_owned(),
        })
    }

    /// Writes a blob; returns its descriptor.
    pub fn blob(&self, media_type: &str, bytes: &[u8]) -> std::io::Result<serde_json::Value> {
        let digest = Digest::of(bytes);
        fs::write(self.path.join("blobs/sha256").join(digest.hex()), bytes)?;
        Ok(
            serde_json::json!({"mediaType": media_type, "digest": digest.to_string(), "size": bytes.len()}),
        )
    }

    /// Builds an image of one layer holding `files`, tags it, and returns
    /// the manifest digest. A tag already present is moved.
    pub fn add_image(&self, tag: &str, files: &[LayerFile<'_>]) -> std::io::Result<Digest> {
        let mut tar_bytes = Vec::new();
        {
            let mut tar = tar::Builder::new(&mut tar_bytes);
            for f in files {
                let mut h = tar::Header::new_ustar();
                h.set_size(f.contents.len() as u64);
                h.set_mode(f.mode);
                h.set_mtime(0);
                h.set_entry_type(tar::EntryType::Regular);
                tar.append_data(&mut h, f.path, f.contents)?;
            }
            tar.finish()?;
        }
        self.add_layers(tag, &[tar_bytes])
    }

    /// Builds an image from uncompressed tar layers (gzipped here), tags it,
    /// and returns the manifest digest.
    pub fn add_layers(&self, tag: &str, tars: &[Vec<u8>]) -> std::io::Result<Digest> {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for tar_bytes in tars {
            diff_ids.push(Digest::of(tar_bytes).to_string());
            let mut gz = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut gz, tar_bytes)?;
            layers.push(self.blob(media::LAYER_GZIP, &gz.finish()?)?);
        }
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"org.opencontainers.image.version": tag}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = self.blob(media::CONFIG, &serde_json::to_vec(&config)?)?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::MANIFEST,
            "config": config,
            "layers": layers,
        });
        let desc = self.blob(media::MANIFEST, &serde_json::to_vec(&manifest)?)?;
        self.tag(tag, desc)
    }

    /// Tags an index of `manifests` (digests of manifests in this layout)
    /// as a multi-platform image; returns the index digest.
    pub fn add_index(&self, tag: &str, manifests: &[(Digest, &str)]) -> std::io::Result<Digest> {
        let mut entries = Vec::new();
        for (d, arch) in manifests {
            let bytes = fs::read(self.path.join("blobs/sha256").join(d.hex()))?;
            entries.push(serde_json::json!({
                "mediaType": media::MANIFEST, "digest": d.to_string(), "size": bytes.len(),
                "platform": {"architecture": arch, "os": "linux"},
            }));
        }
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": media::INDEX, "manifests": entries});
        let desc = self.blob(media::INDEX, &serde_json::to_vec(&index)?)?;
        self.tag(tag, desc)
    }

    /// Points `tag` at `desc` in index.json, replacing an earlier entry,
    /// under the lock attachments take (`registry::referrers`).
    fn tag(&self, tag: &str, mut desc: serde_json::Value) -> std::io::Result<Digest> {
        let lock = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.path.join(INDEX_LOCK))?;
        lock.lock()?;
        let index_path = self.path.join("index.json");
        let current: serde_json::Value = serde_json::from_slice(&fs::read(&index_path)?)?;
        let mut entries: Vec<serde_json::Value> = current["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m["annotations"][ANNOTATION_REF_NAME] != tag)
            .collect();
        desc["annotations"] = serde_json::json!({ ANNOTATION_REF_NAME: tag });
        let digest = desc["digest"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .expect("descriptors written here carry a digest");
        entries.push(desc);
        let tmp = self.path.join(".index.json.tmp");
        fs::write(&tmp, index_json(&entries))?;
        fs::rename(tmp, index_path)?;
        Ok(digest)
    }
}

/// The advisory lock file held around every read-change-write of
/// `index.json`.
pub const INDEX_LOCK: &str = ".index.json.lock";

fn index_json(manifests: &[serde_json::Value]) -> Vec<u8> {
    serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::INDEX,
        "manifests": manifests,
    }))
    .expect("JSON values serialize")
}
