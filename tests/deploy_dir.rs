//! The `dir` target's unpacking and switching: the files on disk match the
//! image, whiteouts apply, `current` switches atomically, and hostile
//! layers — `..`, absolute paths, links escaping the release — are refused
//! with the entry named, `current` untouched and nothing written outside.

use std::path::Path;

use stella::deploy::dir::DirTarget;
use stella::deploy::unpack::UnpackError;
use stella::domain::Digest;
use stella::registry::Layout;
use stella::registry::layout::LayoutWriter;

enum E<'a> {
    File(&'a str, &'a str),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

/// A tar written header by header, so hostile names survive (the tar
/// crate's safe builders refuse them).
fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (path, kind, link, body): (&str, tar::EntryType, &str, &[u8]) = match e {
            E::File(p, c) => (p, tar::EntryType::Regular, "", c.as_bytes()),
            E::Dir(p) => (p, tar::EntryType::Directory, "", b""),
            E::Symlink(p, t) => (p, tar::EntryType::Symlink, t, b""),
            E::Hardlink(p, t) => (p, tar::EntryType::Link, t, b""),
        };
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_size(body.len() as u64);
        h.set_mode(if matches!(e, E::Dir(_)) { 0o755 } else { 0o644 });
        h.set_entry_type(kind);
        h.set_cksum();
        b.append(&h, body).unwrap();
    }
    b.into_inner().unwrap()
}

fn image(layout: &Path, tag: &str, layers: &[Vec<u8>]) -> Digest {
    LayoutWriter::create(layout)
        .unwrap()
        .add_layers(tag, layers)
        .unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn deploys_switch_current_and_apply_whiteouts() {
    let dir = tempfile::tempdir().unwrap();
    let layout_dir = dir.path().join("layout");
    let v1 = image(
        &layout_dir,
        "1",
        &[
            tar_of(&[
                E::Dir("app"),
                E::File("app/index.html", "v1"),
                E::File("app/old.txt", "old"),
                E::Dir("app/cache"),
                E::File("app/cache/a", "a"),
            ]),
            tar_of(&[
                E::File("app/.wh.old.txt", ""),
                E::File("app/cache/.wh..wh..opq", ""),
                E::File("app/cache/b", "b"),
                E::Symlink("app/latest", "index.html"),
                E::Hardlink("app/copy.html", "app/index.html"),
            ]),
        ],
    );
    let v2 = image(
        &layout_dir,
        "2",
        &[tar_of(&[E::File("app/index.html", "v2")])],
    );
    let layout = Layout::open(&layout_dir).unwrap();
    let target = DirTarget::new(dir.path().join("deploy"));
    assert_eq!(target.current(), None);

    let d = target.deploy(&layout, &v1).unwrap();
    assert!(d.unpacked);
    assert_eq!(d.previous, None);
    let cur = dir.path().join("deploy/current");
    assert_eq!(target.current(), Some(v1.clone()));
    assert_eq!(read(&cur.join("app/index.html")), "v1");
    assert_eq!(
        read(&cur.join("app/latest")),
        "v1",
        "relative symlink inside the release"
    );
    assert_eq!(
        read(&cur.join("app/copy.html")),
        "v1",
        "hard link inside the release"
    );
    assert!(
        !cur.join("app/old.txt").exists(),
        "whiteout removed a lower layer's file"
    );
    assert!(
        !cur.join("app/cache/a").exists(),
        "opaque whiteout cleared the directory"
    );
    assert_eq!(read(&cur.join("app/cache/b")), "b");

    let d = target.deploy(&layout, &v2).unwrap();
    assert_eq!(d.previous, Some(v1.clone()));
    assert_eq!(read(&cur.join("app/index.html")), "v2");
    // Back to v1: already unpacked, only the link moves.
    let d = target.deploy(&layout, &v1).unwrap();
    assert!(!d.unpacked);
    assert_eq!(read(&cur.join("app/index.html")), "v1");

    // Pruning keeps the newest and never the current release.
    assert_eq!(target.prune(0).unwrap(), vec![v2.clone()]);
    assert!(target.release_dir(&v1).is_dir());
    assert!(!target.release_dir(&v2).exists());
}

#[test]
fn hostile_layers_are_refused_and_current_is_untouched() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            tar_of(&[E::File("../../escape", "x")]),
            "`../../escape` is refused: absolute paths and `..` are not allowed",
        ),
        (
            "nested dotdot",
            tar_of(&[E::File("app/../../escape", "x")]),
            "`app/../../escape` is refused",
        ),
        (
            "absolute",
            tar_of(&[E::File("/tmp/stella-escape", "x")]),
            "`/tmp/stella-escape` is refused: absolute paths and `..` are not allowed",
        ),
        (
            "symlink to /etc",
            tar_of(&[E::Symlink("etc", "/etc")]),
            "`etc` is refused: symlink to `/etc` leaves the release directory",
        ),
        (
            "symlink up",
            tar_of(&[E::Symlink("up", "../../..")]),
            "symlink to `../../..` leaves the release directory",
        ),
        (
            "hard link out",
            tar_of(&[E::Hardlink("h", "../outside")]),
            "hard link to `../outside` leaves the release directory",
        ),
        (
            "write through a symlink",
            tar_of(&[
                E::Dir("real"),
                E::Symlink("link", "real"),
                E::File("link/file", "x"),
            ]),
            "`link/file` is refused: its parent `link` is a symlink",
        ),
    ];
    for (name, layer, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let layout_dir = dir.path().join("layout");
        let good = image(
            &layout_dir,
            "good",
            &[tar_of(&[E::File("index.html", "good")])],
        );
        let bad = image(&layout_dir, "bad", &[layer]);
        let layout = Layout::open(&layout_dir).unwrap();
        let target = DirTarget::new(dir.path().join("deploy"));
        target.deploy(&layout, &good).unwrap();
        std::fs::write(dir.path().join("outside"), "outside").unwrap();

        let err = target.deploy(&layout, &bad).unwrap_err();
        assert!(matches!(err, UnpackError::Refused { .. }), "{name}: {err}");
        assert!(err.to_string().contains(expected), "{name}: {err}");
        assert_eq!(
            target.current(),
            Some(good.clone()),
            "{name}: current moved"
        );
        assert_eq!(read(&dir.path().join("deploy/current/index.html")), "good");
        assert!(
            !target.release_dir(&bad).exists(),
            "{name}: a partial release was left"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("deploy/releases"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{name}: {leftovers:?}");
        assert!(
            !dir.path().join("escape").exists() && !Path::new("/tmp/stella-escape").exists(),
            "{name}"
        );
        assert_eq!(read(&dir.path().join("outside")), "outside", "{name}");
    }
}

#[test]
fn a_corrupt_layer_blob_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let layout_dir = dir.path().join("layout");
    let d = image(&layout_dir, "1", &[tar_of(&[E::File("a", "a")])]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout_dir.join("blobs/sha256").join(d.hex())).unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let path = layout_dir.join("blobs/sha256").join(&layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len() - 3;
    bytes[n] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let target = DirTarget::new(dir.path().join("deploy"));
    let err = target
        .deploy(&Layout::open(&layout_dir).unwrap(), &d)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("blob sha256:{layer} does not match its digest")),
        "{err}"
    );
    assert_eq!(target.current(), None);
}
