//! The `dir` target: releases unpacked under `PATH/releases/<hex>`, and
//! `PATH/current` a symlink switched atomically (a new link under a temp
//! name, renamed over the old one), so `current` always names exactly one
//! complete release.

use std::fs;
use std::path::{Path, PathBuf};

use super::unpack::{BlobSource, Limits, UnpackError, unpack_image};
use crate::domain::Digest;

pub struct DirTarget {
    root: PathBuf,
    limits: Limits,
}

/// What a deploy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    pub digest: Digest,
    pub previous: Option<Digest>,
    /// False when the release was already unpacked and only `current` moved.
    pub unpacked: bool,
    pub entries: usize,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.to_owned(),
        source,
    }
}

impl DirTarget {
    /// A target at `root` unpacking within the default limits.
    pub fn new(root: impl Into<PathBuf>) -> DirTarget {
        DirTarget {
            root: root.into(),
            limits: Limits::default(),
        }
    }

    /// The same target, unpacking within `limits`.
    pub fn with_limits(mut self, limits: Limits) -> DirTarget {
        self.limits = limits;
        self
    }

    pub fn release_dir(&self, digest: &Digest) -> PathBuf {
        self.root.join("releases").join(digest.hex())
    }

    pub fn current_link(&self) -> PathBuf {
        self.root.join("current")
    }

    /// The release `current` points at, if any.
    pub fn current(&self) -> Option<Digest> {
        let target = fs::read_link(self.current_link()).ok()?;
        Digest::from_hex(&target.file_name()?.to_string_lossy()).ok()
    }

    /// Unpacks `digest` (unless already there) and points `current` at it.
    /// On any error `current` is untouched and no partial release remains.
    pub fn deploy(&self, src: &dyn BlobSource, digest: &Digest) -> Result<Deployed, UnpackError> {
        let (unpacked, entries) = self.unpack(src, digest)?;
        let previous = self.current();
        self.switch(digest)?;
        Ok(Deployed {
            digest: digest.clone(),
            previous,
            unpacked,
            entries,
        })
    }

    /// Unpacks `digest` into `releases/<hex>` unless it is there already;
    /// returns whether it unpacked, and how many entries. A failure leaves
    /// no partial release; what a killed deploy left is removed first.
    pub fn unpack(
        &self,
        src: &dyn BlobSource,
        digest: &Digest,
    ) -> Result<(bool, usize), UnpackError> {
        let releases = self.root.join("releases");
        fs::create_dir_all(&releases).map_err(io(&releases))?;
        self.clean_stale();
        let dir = self.release_dir(digest);
        let mut entries = 0;
        let unpacked = !dir.is_dir();
        if unpacked {
            let tmp = releases.join(format!(".tmp-{}-{}", digest.short(), std::process::id()));
            let _ = fs::remove_dir_all(&tmp);
            fs::create_dir_all(&tmp).map_err(io(&tmp))?;
            match unpack_image(src, digest, &tmp, &self.limits) {
                Ok(n) => entries = n,
                Err(e) => {
                    let _ = fs::remove_dir_all(&tmp);
                    return Err(e);
                }
            }
            super::failpoint::hit(super::failpoint::UNPACKED);
            fs::rename(&tmp, &dir).map_err(io(&dir))?;
        }
        Ok((unpacked, entries))
    }

    /// Points `current` at an unpacked release, atomically.
    pub fn switch(&self, digest: &Digest) -> Result<(), UnpackError> {
        let dir = self.release_dir(digest);
        if !dir.is_dir() {
            return Err(UnpackError::Missing(digest.clone()));
        }
        let link = self.current_link();
        let tmp = self.root.join(format!(".current-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(Path::new("releases").join(digest.hex()), &tmp)
            .map_err(io(&tmp))?;
        super::failpoint::hit(super::failpoint::SWITCH);
        fs::rename(&tmp, &link).map_err(io(&link))
    }

    /// Removes what a process that died mid-deploy left: half-unpacked
    /// `releases/.tmp-*` folders and `.current-*` links never renamed, of
    /// processes no longer alive. `current` is never among them.
    pub fn clean_stale(&self) -> Vec<PathBuf> {
        let dead = |name: &str, prefix: &str| {
            name.strip_prefix(prefix)
                .and_then(|rest| rest.rsplit('-').next())
                .and_then(|pid| pid.parse::<i64>().ok())
                .is_some_and(|pid| !crate::store::process_alive(pid))
        };
        let mut removed = Vec::new();
        for (dir, prefix) in [
            (self.root.join("releases"), ".tmp-"),
            (self.root.clone(), ".current-"),
        ] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !dead(&name, prefix) {
                    continue;
                }
                let path = e.path();
                let gone = if prefix == ".tmp-" {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                if gone.is_ok() {
                    removed.push(path);
                }
            }
        }
        removed
    }

    /// Removes unpacked releases beyond the newest `keep`, never the current
    /// one; returns what was removed.
    pub fn prune(&self, keep: usize) -> Result<Vec<Digest>, UnpackError> {
        let releases = self.root.join("releases");
        let current = self.current();
        let mut all: Vec<(std::time::SystemTime, Digest)> = fs::read_dir(&releases)
            .map_err(io(&releases))?
            .flatten()
            .filter_map(|e| {
                let d = Digest::from_hex(&e.file_name().to_string_lossy()).ok()?;
                Some((e.metadata().ok()?.modified().ok()?, d))
            })
            .collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.0));
        let mut removed = Vec::new();
        for (_, d) in all.into_iter().skip(keep) {
            if Some(&d) == current.as_ref() {
                continue;
            }
            let dir = self.release_dir(&d);
            fs::remove_dir_all(&dir).map_err(io(&dir))?;
            removed.push(d);
        }
        Ok(removed)
    }
}
