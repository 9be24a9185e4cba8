//! Content-addressed evidence blobs under `.stella/evidence/sha256/<hex>`.
//!
//! A blob's name is its hash, so writing twice is a no-op and a blob that
//! no longer hashes to its name is corrupt: reads verify and refuse it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::domain::Digest;

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("evidence {digest} is not in the store")]
    Missing { digest: Digest },
    #[error(
        "evidence {digest} is corrupt: {path} hashes to {actual}; the blob was changed on disk and will not be used"
    )]
    Corrupt {
        digest: Digest,
        actual: Digest,
        path: PathBuf,
    },
    #[error("evidence store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The evidence folder of a workspace.
#[derive(Debug, Clone)]
pub struct EvidenceStore {
    root: PathBuf,
}

impl EvidenceStore {
    /// `root` is `.stella/evidence`; blobs go under `root/sha256/`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        EvidenceStore { root: root.into() }
    }

    pub fn path_of(&self, digest: &Digest) -> PathBuf {
        self.root.join("sha256").join(digest.hex())
    }

    /// Stores `bytes` and returns their digest. Writing what is already
    /// there (intact) does nothing; a corrupt copy is replaced.
    pub fn put(&self, bytes: &[u8]) -> Result<Digest, EvidenceError> {
        let digest = Digest::of(bytes);
        let path = self.path_of(&digest);
        if let Ok(existing) = fs::read(&path)
            && digest.matches(&existing)
        {
            return Ok(digest);
        }
        let dir = path.parent().expect("blob paths have a parent");
        let io = |source| EvidenceError::Io {
            path: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        // Write beside the final name and rename: a reader sees the whole
        // blob or none of it, even if this process dies mid-write.
        let mut tmp = tempfile_in(dir).map_err(io)?;
        tmp.1.write_all(bytes).map_err(io)?;
        tmp.1.sync_all().map_err(io)?;
        fs::rename(&tmp.0, &path).map_err(io)?;
        Ok(digest)
    }

    /// Reads a blob, verifying it still hashes to `digest`.
    pub fn get(&self, digest: &Digest) -> Result<Vec<u8>, EvidenceError> {
        let path = self.path_of(digest);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EvidenceError::Missing {
                    digest: digest.clone(),
                });
            }
            Err(source) => return Err(EvidenceError::Io { path, source }),
        };
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(EvidenceError::Corrupt {
                digest: digest.clone(),
                actual,
                path,
            });
        }
        Ok(bytes)
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path_of(digest).is_file()
    }
}

/// A uniquely named temp file in `dir` (same filesystem as the target, so
/// the rename is atomic).
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".tmp-{}-{n}", std::process::id()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_dedupes_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let cas = EvidenceStore::new(dir.path().join("evidence"));
        let d = cas.put(b"scan report").unwrap();
        assert_eq!(d, Digest::of(b"scan report"));
        assert_eq!(cas.put(b"scan report").unwrap(), d);
        assert_eq!(cas.get(&d).unwrap(), b"scan report");
        let files = fs::read_dir(dir.path().join("evidence/sha256"))
            .unwrap()
            .count();
        assert_eq!(files, 1, "no temp files left behind, one blob");

        fs::write(cas.path_of(&d), b"scan report, edited").unwrap();
        let err = cas.get(&d).unwrap_err();
        assert!(matches!(err, EvidenceError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("is corrupt"));

        // Putting the true content again repairs the blob.
        cas.put(b"scan report").unwrap();
        assert_eq!(cas.get(&d).unwrap(), b"scan report");

        let missing = Digest::of(b"nothing");
        assert!(matches!(
            cas.get(&missing),
            Err(EvidenceError::Missing { .. })
        ));
    }
}
