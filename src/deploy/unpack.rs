//! Unpacking an OCI image's layers into a directory, safely.
//!
//! Every blob is checked against its digest before it is read. Entries
//! with `..`, absolute paths, symlinks or hard links that resolve outside
//! the release directory, and writes through a symlink are refused: the
//! whole unpack fails naming the entry, and nothing is left behind (the
//! caller unpacks into a temporary directory and renames it only when
//! complete). OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) remove what lower
//! layers put there.

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::domain::Digest;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer {layer}: entry `{entry}` is refused: {why}")]
    Refused {
        layer: Digest,
        entry: String,
        why: String,
    },
    #[error("blob {digest} does not match its digest (content hashes to {actual})")]
    Corrupt { digest: Digest, actual: Digest },
    #[error("blob {0} is missing")]
    Missing(Digest),
    #[error("manifest {digest}: {why}")]
    Manifest { digest: Digest, why: String },
    #[error("layer {layer}: {why}")]
    Layer { layer: Digest, why: String },
    #[error("{path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where blobs come from: an OCI layout on disk, or a registry.
pub trait BlobSource {
    fn blob(&self, digest: &Digest) -> Result<Vec<u8>, UnpackError>;
}

impl BlobSource for crate::registry::Layout {
    fn blob(&self, digest: &Digest) -> Result<Vec<u8>, UnpackError> {
        let path = self.blob_path(digest);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(UnpackError::Missing(digest.clone()));
            }
            Err(source) => return Err(UnpackError::Io { path, source }),
        };
        Ok(bytes)
    }
}

/// Blobs already fetched (from a registry), by digest.
pub struct MemoryBlobs(pub std::collections::BTreeMap<Digest, Vec<u8>>);

impl BlobSource for MemoryBlobs {
    fn blob(&self, digest: &Digest) -> Result<Vec<u8>, UnpackError> {
        self.0
            .get(digest)
            .cloned()
            .ok_or_else(|| UnpackError::Missing(digest.clone()))
    }
}

/// Reads a blob and checks it against its digest.
fn verified(src: &dyn BlobSource, digest: &Digest) -> Result<Vec<u8>, UnpackError> {
    let bytes = src.blob(digest)?;
    let actual = Digest::of(&bytes);
    if actual != *digest {
        return Err(UnpackError::Corrupt {
            digest: digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// The layer digests of the image `digest` names (a manifest, or an index
/// from which the linux/amd64 manifest — or the only one — is taken).
pub fn layers(src: &dyn BlobSource, digest: &Digest) -> Result<Vec<Digest>, UnpackError> {
    let bad = |why: String| UnpackError::Manifest {
        digest: digest.clone(),
        why,
    };
    let v: serde_json::Value = serde_json::from_slice(&verified(src, digest)?)
        .map_err(|e| bad(format!("not JSON ({e})")))?;
    if let Some(manifests) = v["manifests"].as_array() {
        let d = crate::registry::pick_platform(manifests)
            .ok_or_else(|| bad("an index with no linux/amd64 manifest".into()))?;
        return layers(src, &d);
    }
    let layers = v["layers"]
        .as_array()
        .ok_or_else(|| bad("no `layers`: not an image manifest".into()))?;
    layers
        .iter()
        .map(|l| {
            l["digest"]
                .as_str()
                .unwrap_or("")
                .parse::<Digest>()
                .map_err(|e| bad(format!("a layer has {e}")))
        })
        .collect()
}

/// Unpacks every layer of `digest` into `dest` (which must exist and be
/// empty), in order.
pub fn unpack_image(
    src: &dyn BlobSource,
    digest: &Digest,
    dest: &Path,
) -> Result<usize, UnpackError> {
    let mut entries = 0;
    for layer in layers(src, digest)? {
        let bytes = verified(src, &layer)?;
        entries += unpack_layer(&layer, &bytes, dest)?;
    }
    Ok(entries)
}

/// `a/./b/` → `a/b`; `None` for absolute paths or any `..`.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Resolves a symlink target written at `link` (relative to the root)
/// lexically; `None` if it leaves the root.
fn resolve_link(link: &Path, target: &Path) -> Option<PathBuf> {
    if target.is_absolute() {
        return None;
    }
    let mut out: Vec<&std::ffi::OsStr> = link
        .parent()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    for c in target.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out.iter().collect())
}

/// Refuses to go through a symlink on the way to `rel` inside `root`.
fn no_symlink_parents(root: &Path, rel: &Path) -> Result<(), String> {
    let mut cur = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            if let Ok(m) = fs::symlink_metadata(&cur)
                && m.file_type().is_symlink()
            {
                return Err(format!(
                    "its parent `{}` is a symlink; writing through it is not allowed",
                    cur.strip_prefix(root).unwrap_or(&cur).display()
                ));
            }
        }
    }
    Ok(())
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Unpacks one layer (gzip or plain tar, told apart by the gzip magic).
pub fn unpack_layer(layer: &Digest, bytes: &[u8], dest: &Path) -> Result<usize, UnpackError> {
    let reader: Box<dyn Read + '_> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let mut archive = tar::Archive::new(reader);
    let layer_err = |why: String| UnpackError::Layer {
        layer: layer.clone(),
        why,
    };
    let io = |path: &Path, source: std::io::Error| UnpackError::Io {
        path: path.to_owned(),
        source,
    };
    let mut count = 0;
    for entry in archive
        .entries()
        .map_err(|e| layer_err(format!("not a tar archive ({e})")))?
    {
        let mut entry = entry.map_err(|e| layer_err(format!("a corrupt tar entry ({e})")))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let refuse = |why: &str| UnpackError::Refused {
            layer: layer.clone(),
            entry: raw.clone(),
            why: why.to_owned(),
        };
        let rel = clean(Path::new(&raw))
            .ok_or_else(|| refuse("absolute paths and `..` are not allowed"))?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        no_symlink_parents(dest, &rel).map_err(|w| refuse(&w))?;
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let target = dest.join(&rel);
        // OCI whiteouts.
        if name == ".wh..wh..opq" {
            let dir = target.parent().unwrap_or(dest);
            if let Ok(list) = fs::read_dir(dir) {
                for e in list.flatten() {
                    remove_any(&e.path()).map_err(|e| io(dir, e))?;
                }
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let victim = target.with_file_name(hidden);
            remove_any(&victim).map_err(|e| io(&victim, e))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => {
                if fs::symlink_metadata(&target).is_ok_and(|m| !m.is_dir()) {
                    remove_any(&target).map_err(|e| io(&target, e))?;
                }
                fs::create_dir_all(&target).map_err(|e| io(&target, e))?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| layer_err(e.to_string()))?
                    .ok_or_else(|| refuse("a symlink without a target"))?
                    .into_owned();
                if resolve_link(&rel, &link).is_none() {
                    return Err(refuse(&format!(
                        "symlink to `{}` leaves the release directory",
                        link.display()
                    )));
                }
                remove_any(&target).map_err(|e| io(&target, e))?;
                std::os::unix::fs::symlink(&link, &target).map_err(|e| io(&target, e))?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(|e| layer_err(e.to_string()))?
                    .ok_or_else(|| refuse("a hard link without a target"))?
                    .into_owned();
                let src_rel = clean(&link).ok_or_else(|| {
                    refuse(&format!(
                        "hard link to `{}` leaves the release directory",
                        link.display()
                    ))
                })?;
                no_symlink_parents(dest, &src_rel).map_err(|w| refuse(&w))?;
                let src = dest.join(&src_rel);
                if fs::symlink_metadata(&src)
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(true)
                {
                    return Err(refuse(&format!(
                        "hard link to `{}`, which is not a file in this release",
                        link.display()
                    )));
                }
                remove_any(&target).map_err(|e| io(&target, e))?;
                fs::hard_link(&src, &target).map_err(|e| io(&target, e))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_any(&target).map_err(|e| io(&target, e))?;
                let mut out = fs::File::create(&target).map_err(|e| io(&target, e))?;
                std::io::copy(&mut entry, &mut out).map_err(|e| io(&target, e))?;
                let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                    .map_err(|e| io(&target, e))?;
            }
            // Devices, fifos and the like have no place in a release.
            _ => continue,
        }
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_or_refused() {
        assert_eq!(clean(Path::new("./a/b/")), Some(PathBuf::from("a/b")));
        assert_eq!(clean(Path::new("a/../b")), None);
        assert_eq!(clean(Path::new("/etc/passwd")), None);
        assert_eq!(
            resolve_link(Path::new("bin/sh"), Path::new("busybox")),
            Some(PathBuf::from("bin/busybox"))
        );
        assert_eq!(
            resolve_link(Path::new("bin/sh"), Path::new("../lib/x")),
            Some(PathBuf::from("lib/x"))
        );
        assert_eq!(
            resolve_link(Path::new("bin/sh"), Path::new("../../etc")),
            None
        );
        assert_eq!(resolve_link(Path::new("a"), Path::new("/etc")), None);
    }
}
