//! Unpacking an OCI image's layers into a directory, contained by
//! construction and bounded.
//!
//! Every blob is checked against its digest before it is read. Every
//! entry is created through a capability handle on the release directory
//! (`cap_std::fs::Dir`): paths resolve beneath it, so no entry can be
//! created, removed or written outside it whatever the links already
//! unpacked say. A symlink is checked where it lands on disk when it is
//! made, and every symlink of the release again once the last layer is
//! in (a later entry can change what an earlier link resolves through):
//! one that resolves outside the release fails the unpack. Absolute
//! paths, `..`, writes through a symlink, hard links to anything but a
//! file of the release, and whiteouts naming `.`, `..` or nothing are
//! refused by name. OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) remove
//! what lower layers put there, inside the release only.
//!
//! Limits (`Limits`, from the target's `[targets.NAME.unpack]`) bound
//! the bytes a layer may expand to (a ratio to its compressed size), the
//! bytes of the whole release, the number of entries and the depth of a
//! path; past one, the unpack stops at once with an error naming the
//! limit and the setting to raise. The caller unpacks into a temporary
//! directory and renames it only when complete, so a refused image
//! leaves nothing behind.

use std::cell::Cell;
use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use cap_std::fs::Dir;

use crate::domain::Digest;

/// How far an image may expand; each is a key of the target's
/// `[targets.NAME.unpack]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A layer may expand to this many times its compressed size
    /// (`max_ratio`), beyond a first `RATIO_FLOOR` every layer may use.
    pub max_ratio: u64,
    /// Bytes of a whole release, all layers together (`max_release_mib`).
    pub max_release_bytes: u64,
    /// Entries of a whole release, all layers together (`max_entries`).
    pub max_entries: u64,
    /// Components of an entry's path (`max_depth`).
    pub max_depth: usize,
}

/// What every layer may expand to whatever its ratio: a tar's own
/// padding makes a tiny layer look like a bomb.
pub const RATIO_FLOOR: u64 = 16 << 20;

impl Default for Limits {
    /// Ordinary images compress 2–10×; a gzip bomb 1000×. 16 GiB holds
    /// any ordinary image of several GiB.
    fn default() -> Limits {
        Limits {
            max_ratio: 50,
            max_release_bytes: 16 << 30,
            max_entries: 1_000_000,
            max_depth: 128,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer {layer}: entry `{entry}` is refused: {why}")]
    Refused {
        layer: Digest,
        entry: String,
        why: String,
    },
    /// A limit of `Limits` was reached; `setting` is its key.
    #[error(
        "layer {layer}: {what}; refused (`{setting}` in the target's `[targets.NAME.unpack]` table; raise it if the image is genuine)"
    )]
    Limit {
        layer: Digest,
        what: String,
        setting: &'static str,
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
/// empty), in order, within `limits`; returns the entries unpacked.
pub fn unpack_image(
    src: &dyn BlobSource,
    digest: &Digest,
    dest: &Path,
    limits: &Limits,
) -> Result<usize, UnpackError> {
    let mut release = Release::open(dest, limits)?;
    let layers = layers(src, digest)?;
    for layer in &layers {
        let bytes = verified(src, layer)?;
        release.layer(layer, &bytes)?;
    }
    if let Some(last) = layers.last() {
        release.check_links(last)?;
    }
    Ok(release.count)
}

/// Unpacks one layer (gzip or plain tar) into `dest` as a whole image,
/// links checked: what the fuzz target drives.
pub fn unpack_layer(
    layer: &Digest,
    bytes: &[u8],
    dest: &Path,
    limits: &Limits,
) -> Result<usize, UnpackError> {
    let mut release = Release::open(dest, limits)?;
    release.layer(layer, bytes)?;
    release.check_links(layer)?;
    Ok(release.count)
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

/// What the tar reader may read on its own between two entries: their
/// headers, long names and pax records, which it holds in memory whole.
/// Ordinary ones take a few KiB.
const HEADERS_CAP: u64 = 1 << 20;

/// Counts what a reader yields, so a layer's expansion is known however
/// its bytes are spent (file contents, headers, padding).
struct Counted<R> {
    inner: R,
    read: Rc<Cell<u64>>,
    /// Past this, reading fails: the decompressor stops at once.
    cap: u64,
    /// Bytes read since the last entry other than its contents (which
    /// the unpacker reads itself, `contents` set): past `HEADERS_CAP`,
    /// reading fails.
    headers: Rc<Cell<u64>>,
    contents: Rc<Cell<bool>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.read.get() + n as u64;
        self.read.set(total);
        if total > self.cap {
            return Err(std::io::Error::other("over the unpack limit"));
        }
        if !self.contents.get() {
            self.headers.set(self.headers.get() + n as u64);
            if self.headers.get() > HEADERS_CAP {
                return Err(std::io::Error::other("headers over their limit"));
            }
        }
        Ok(n)
    }
}

/// A release being unpacked: the handle everything goes through, and
/// what the limits have used so far.
struct Release<'a> {
    root: Dir,
    path: PathBuf,
    limits: &'a Limits,
    /// Entries seen (for `max_entries`) and entries unpacked (returned).
    seen: u64,
    count: usize,
    /// Bytes of the layers before this one.
    bytes: u64,
    /// Directories known to be real directories (not symlinks), so a
    /// write's parents are looked at on disk once; cleared whenever a
    /// directory is removed.
    real_dirs: HashSet<PathBuf>,
}

/// cap-std's `escape_attempt()`: a path led outside the directory (an
/// `EACCES` of a folder the release locks is not one).
fn is_escape(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied && e.to_string().contains("outside")
}

impl<'a> Release<'a> {
    fn open(dest: &Path, limits: &'a Limits) -> Result<Release<'a>, UnpackError> {
        let root = Dir::open_ambient_dir(dest, cap_std::ambient_authority()).map_err(|source| {
            UnpackError::Io {
                path: dest.to_owned(),
                source,
            }
        })?;
        Ok(Release {
            root,
            path: dest.to_owned(),
            limits,
            seen: 0,
            count: 0,
            bytes: 0,
            real_dirs: HashSet::new(),
        })
    }

    fn io(&self, rel: &Path) -> impl FnOnce(std::io::Error) -> UnpackError + '_ {
        let path = self.path.join(rel);
        move |source| UnpackError::Io { path, source }
    }

    /// Refuses to go through a symlink on the way to `rel`: an entry's
    /// place on disk is then its path, as the image says.
    fn no_symlink_parents(&mut self, rel: &Path) -> Result<(), String> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        let mut cur = PathBuf::new();
        for c in parent.components() {
            cur.push(c);
            if self.real_dirs.contains(&cur) {
                continue;
            }
            match self.root.symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(format!(
                        "its parent `{}` is a symlink; writing through it is not allowed",
                        cur.display()
                    ));
                }
                Ok(m) if m.is_dir() => {
                    self.real_dirs.insert(cur.clone());
                }
                // Missing (made below) or a file (the create fails).
                _ => {}
            }
        }
        Ok(())
    }

    /// The entries of the folder `rel` (`""`: the release itself).
    fn list(&self, rel: &Path) -> std::io::Result<cap_std::fs::ReadDir> {
        if rel.as_os_str().is_empty() {
            self.root.entries()
        } else {
            self.root.read_dir(rel)
        }
    }

    /// Removes whatever is at `rel` (nothing there is fine).
    fn remove_any(&mut self, rel: &Path) -> std::io::Result<()> {
        match self.root.symlink_metadata(rel) {
            Ok(m) if m.is_dir() => {
                self.real_dirs.clear();
                self.root.remove_dir_all(rel)
            }
            Ok(_) => self.root.remove_file(rel),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Where a symlink at `rel` lands on disk: refused if outside.
    fn link_stays_inside(&self, rel: &Path) -> Result<(), std::io::Error> {
        match self.root.metadata(rel) {
            Err(e) if is_escape(&e) => Err(e),
            // Inside, dangling inside, or a loop: none reaches out.
            _ => Ok(()),
        }
    }

    /// Unpacks one layer (gzip or plain tar, told apart by the gzip magic).
    fn layer(&mut self, layer: &Digest, bytes: &[u8]) -> Result<(), UnpackError> {
        let limits = *self.limits;
        let allowed = (bytes.len() as u64)
            .saturating_mul(limits.max_ratio)
            .max(RATIO_FLOOR);
        let left_in_release = limits.max_release_bytes.saturating_sub(self.bytes);
        let read = Rc::new(Cell::new(0u64));
        let inner: Box<dyn Read + '_> = if bytes.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::GzDecoder::new(bytes))
        } else {
            Box::new(bytes)
        };
        let headers = Rc::new(Cell::new(0u64));
        let contents = Rc::new(Cell::new(false));
        let reader = Counted {
            inner,
            read: read.clone(),
            cap: allowed.min(left_in_release),
            headers: headers.clone(),
            contents: contents.clone(),
        };
        let mut archive = tar::Archive::new(reader);
        let layer_err = |why: String| UnpackError::Layer {
            layer: layer.clone(),
            why,
        };
        // Which limit `used` bytes of this layer broke, if any.
        let over = |used: u64| -> Option<UnpackError> {
            if used > allowed {
                Some(UnpackError::Limit {
                    layer: layer.clone(),
                    what: format!(
                        "it expands past {}× its compressed size ({} compressed, more than {} unpacked): a decompression bomb",
                        limits.max_ratio,
                        human(bytes.len() as u64),
                        human(allowed)
                    ),
                    setting: "max_ratio",
                })
            } else if used > left_in_release {
                Some(UnpackError::Limit {
                    layer: layer.clone(),
                    what: format!(
                        "the release expands past {} unpacked",
                        human(limits.max_release_bytes)
                    ),
                    setting: "max_release_mib",
                })
            } else {
                None
            }
        };
        // A reader error past a limit is that limit, not a corrupt layer.
        let broken = |e: std::io::Error, what: &str| -> UnpackError {
            if headers.get() > HEADERS_CAP {
                return layer_err(format!(
                    "an entry's headers (long names, pax records) take more than {}: refused",
                    human(HEADERS_CAP)
                ));
            }
            over(read.get()).unwrap_or_else(|| layer_err(format!("{what} ({e})")))
        };
        // Bytes written to files, counted with the stream: sparse files
        // expand beyond what the stream holds.
        let mut written = 0u64;
        let entries = archive
            .entries()
            .map_err(|e| broken(e, "not a tar archive"))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| broken(e, "a corrupt tar entry"))?;
            headers.set(0);
            self.seen += 1;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            if self.seen > limits.max_entries {
                return Err(UnpackError::Limit {
                    layer: layer.clone(),
                    what: format!(
                        "the release has more than {} entries (at `{raw}`)",
                        limits.max_entries
                    ),
                    setting: "max_entries",
                });
            }
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
            let depth = rel.components().count();
            if depth > limits.max_depth {
                return Err(UnpackError::Limit {
                    layer: layer.clone(),
                    what: format!(
                        "entry `{raw}` is {depth} levels deep, more than {}",
                        limits.max_depth
                    ),
                    setting: "max_depth",
                });
            }
            self.no_symlink_parents(&rel).map_err(|w| refuse(&w))?;
            let name = rel
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // OCI whiteouts.
            if name == ".wh..wh..opq" {
                let dir = rel.parent().unwrap_or(Path::new(""));
                if let Ok(list) = self.list(dir) {
                    let names: Vec<_> = list.flatten().map(|e| e.file_name()).collect();
                    for n in names {
                        let victim = dir.join(n);
                        self.remove_any(&victim).map_err(self.io(&victim))?;
                    }
                }
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                if hidden.is_empty() {
                    return Err(refuse("a whiteout that names nothing is not allowed"));
                }
                if matches!(hidden, "." | "..") {
                    return Err(refuse(&format!(
                        "a whiteout of `{hidden}` names a folder, not an entry; only entries inside the release can be whited out"
                    )));
                }
                let victim = rel.with_file_name(hidden);
                self.remove_any(&victim).map_err(self.io(&victim))?;
                continue;
            }
            if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                self.root.create_dir_all(parent).map_err(|e| {
                    if is_escape(&e) {
                        refuse("its folder leads outside the release directory")
                    } else {
                        UnpackError::Io {
                            path: self.path.join(parent),
                            source: e,
                        }
                    }
                })?;
            }
            let kind = entry.header().entry_type();
            match kind {
                tar::EntryType::Directory => {
                    if self.root.symlink_metadata(&rel).is_ok_and(|m| !m.is_dir()) {
                        self.remove_any(&rel).map_err(self.io(&rel))?;
                    }
                    self.root.create_dir_all(&rel).map_err(self.io(&rel))?;
                }
                tar::EntryType::Symlink => {
                    let link = entry
                        .link_name()
                        .map_err(|e| layer_err(e.to_string()))?
                        .ok_or_else(|| refuse("a symlink without a target"))?
                        .into_owned();
                    if link.has_root() {
                        return Err(refuse(&format!(
                            "symlink to `{}` leaves the release directory",
                            link.display()
                        )));
                    }
                    self.remove_any(&rel).map_err(self.io(&rel))?;
                    self.root.symlink(&link, &rel).map_err(self.io(&rel))?;
                    if self.link_stays_inside(&rel).is_err() {
                        return Err(refuse(&format!(
                            "symlink to `{}` leaves the release directory",
                            link.display()
                        )));
                    }
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
                    self.no_symlink_parents(&src_rel).map_err(|w| refuse(&w))?;
                    if !self
                        .root
                        .symlink_metadata(&src_rel)
                        .is_ok_and(|m| m.is_file())
                    {
                        return Err(refuse(&format!(
                            "hard link to `{}`, which is not a file in this release",
                            link.display()
                        )));
                    }
                    if src_rel != rel {
                        self.remove_any(&rel).map_err(self.io(&rel))?;
                        self.root
                            .hard_link(&src_rel, &self.root, &rel)
                            .map_err(self.io(&rel))?;
                    }
                }
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => {
                    // A file that says it is too big is refused before a
                    // byte of it is written.
                    let size = entry.header().size().unwrap_or(0);
                    let real = entry
                        .header()
                        .as_gnu()
                        .and_then(|g| g.real_size().ok())
                        .unwrap_or(0)
                        .max(size);
                    if let Some(e) = over(read.get().max(written.saturating_add(real))) {
                        return Err(e);
                    }
                    self.remove_any(&rel).map_err(self.io(&rel))?;
                    let mut out = self.root.create(&rel).map_err(self.io(&rel))?;
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        contents.set(true);
                        let got = entry.read(&mut buf);
                        contents.set(false);
                        let n = match got {
                            Ok(0) => break,
                            Ok(n) => n,
                            Err(e) => return Err(broken(e, "a corrupt tar entry")),
                        };
                        written += n as u64;
                        if let Some(e) = over(read.get().max(written)) {
                            return Err(e);
                        }
                        out.write_all(&buf[..n]).map_err(self.io(&rel))?;
                    }
                    let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
                    use std::os::unix::fs::PermissionsExt;
                    out.set_permissions(cap_std::fs::Permissions::from_std(
                        fs::Permissions::from_mode(mode),
                    ))
                    .map_err(self.io(&rel))?;
                }
                // Devices, fifos and the like have no place in a release.
                _ => continue,
            }
            self.count += 1;
        }
        // The end of the archive is read too: trailing bytes count.
        let used = read.get().max(written);
        if let Some(e) = over(used) {
            return Err(e);
        }
        self.bytes += used;
        Ok(())
    }

    /// Every symlink of the release, once all layers are in: a later
    /// entry can change what an earlier link resolves through, so each
    /// is resolved again on disk, beneath the release.
    fn check_links(&self, layer: &Digest) -> Result<(), UnpackError> {
        let mut dirs = vec![PathBuf::new()];
        while let Some(dir) = dirs.pop() {
            let list = self.list(&dir).map_err(self.io(&dir))?;
            for e in list {
                let e = e.map_err(self.io(&dir))?;
                let rel = dir.join(e.file_name());
                let kind = e.file_type().map_err(self.io(&rel))?;
                if kind.is_dir() {
                    dirs.push(rel);
                } else if kind.is_symlink() && self.link_stays_inside(&rel).is_err() {
                    let target = self.root.read_link_contents(&rel).unwrap_or_default();
                    return Err(UnpackError::Refused {
                        layer: layer.clone(),
                        entry: rel.display().to_string(),
                        why: format!(
                            "symlink to `{}` leaves the release directory (through links unpacked after it)",
                            target.display()
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The first entry under `root` that the operating system resolves
/// (`canonicalize`, following every link) to somewhere outside it, if
/// any: the property the fuzz target and the tests check after an
/// unpack, judged independently of the handle the unpack used.
pub fn first_escape(root: &Path) -> std::io::Result<Option<PathBuf>> {
    let base = fs::canonicalize(root)?;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in fs::read_dir(&dir)? {
            let path = e?.path();
            if let Ok(real) = fs::canonicalize(&path)
                && !real.starts_with(&base)
            {
                return Ok(Some(path));
            }
            // Links are followed by `canonicalize` above, never walked.
            if fs::symlink_metadata(&path)?.is_dir() {
                dirs.push(path);
            }
        }
    }
    Ok(None)
}

/// `4.0 MiB`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_or_refused() {
        assert_eq!(clean(Path::new("./a/b/")), Some(PathBuf::from("a/b")));
        assert_eq!(clean(Path::new("a/../b")), None);
        assert_eq!(clean(Path::new("/etc/passwd")), None);
        assert_eq!(human(4 << 20), "4.0 MiB");
        assert_eq!(human(12), "12 B");
    }
}
