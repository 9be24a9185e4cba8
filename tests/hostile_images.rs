//! Hostile images and what the targets serve: every layer of the corpus
//! (`tests/hostile/`) is refused by name with nothing outside the release
//! created or removed and the previous release serving, through a `dir`
//! target and the real promote path of `dir`, `router` and `nginx`
//! targets; bombs stop at their limit at once; the built-in router and
//! nginx refuse paths that lead out of the release; a kill -9 leaves
//! nothing behind for good, and a recovery returns once the old release
//! serves again.

mod common;
mod hostile;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::stella;
use hostile::{Bomb, E};
use stella::deploy::dir::DirTarget;
use stella::deploy::unpack::{Limits, UnpackError};
use stella::domain::Digest;
use stella::registry::Layout;
use stella::registry::layout::LayoutWriter;

/// Everything under `root` (links not followed): path → what it is.
fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(list) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in list.flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                dirs.push(p.clone());
                "dir".to_owned()
            } else {
                format!("file {}", Digest::of(&std::fs::read(&p).unwrap()))
            };
            out.insert(p.strip_prefix(root).unwrap().to_owned(), what);
        }
    }
    out
}

/// An image of `layers` tagged `tag` in the layout: plain tars are
/// gzipped by the layout writer, a layer already gzipped (a bomb) goes in
/// as it is.
fn layout_image(layout: &Path, tag: &str, layers: &[Vec<u8>]) -> Digest {
    use stella::registry::layout::media;
    let w = LayoutWriter::create(layout).unwrap();
    if !layers.iter().any(|l| l.starts_with(&[0x1f, 0x8b])) {
        return w.add_layers(tag, layers).unwrap();
    }
    let descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| w.blob(media::LAYER_GZIP, l).unwrap())
        .collect();
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}});
    let config = w
        .blob(media::CONFIG, &serde_json::to_vec(&config).unwrap())
        .unwrap();
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": media::MANIFEST, "config": config, "layers": descs});
    let mut desc = w
        .blob(media::MANIFEST, &serde_json::to_vec(&manifest).unwrap())
        .unwrap();
    desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(desc.clone());
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    desc["digest"].as_str().unwrap().parse().unwrap()
}

#[test]
fn the_corpus_in_the_repo_is_what_the_generator_makes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile");
    let regen = std::env::var_os("STELLA_REGENERATE_HOSTILE").is_some();
    for (name, layer, _) in hostile::corpus() {
        let path = dir.join(format!("{name}.tar"));
        if regen {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &layer).unwrap();
        }
        let kept = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (STELLA_REGENERATE_HOSTILE=1 writes it)",
                path.display()
            )
        });
        assert!(
            kept == layer,
            "{name}: the kept file differs from the generator"
        );
    }
}

/// A `dir` target serving `good`, an image with `layer` beside it, and a
/// file outside the target; the deploy of the hostile image must fail
/// saying `expected`, leaving every file of the workspace as it was.
/// Returns how long the refused deploy took.
fn refused_through_a_dir_target(
    name: &str,
    layer: Vec<u8>,
    expected: &str,
    limits: Limits,
) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let layout_dir = dir.path().join("layout");
    let good = layout_image(
        &layout_dir,
        "good",
        &[hostile::tar_of(&[E::File("index.html", "good")])],
    );
    let bad = layout_image(&layout_dir, "bad", &[layer]);
    let layout = Layout::open(&layout_dir).unwrap();
    let target = DirTarget::new(dir.path().join("deploy")).with_limits(limits);
    target.deploy(&layout, &good).unwrap();
    std::fs::write(dir.path().join("outside"), "outside").unwrap();
    let before = tree(dir.path());

    let started = Instant::now();
    let err = target.deploy(&layout, &bad).unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            UnpackError::Refused { .. } | UnpackError::Limit { .. } | UnpackError::Layer { .. }
        ),
        "{name}: {err}"
    );
    assert!(err.to_string().contains(expected), "{name}: {err}");
    assert_eq!(target.current(), Some(good.clone()), "{name}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("deploy/current/index.html")).unwrap(),
        "good",
        "{name}"
    );
    assert_eq!(tree(dir.path()), before, "{name}: something changed");
    assert!(
        !Path::new("/tmp/stella-hostile-absolute").exists(),
        "{name}"
    );
    took
}

#[test]
fn every_hostile_layer_is_refused_by_name_and_nothing_outside_changes() {
    for (name, layer, expected) in hostile::corpus() {
        let _ = refused_through_a_dir_target(name, layer, expected, Limits::default());
    }
}

#[test]
fn too_many_entries_are_refused_naming_the_setting() {
    let limits = Limits {
        max_entries: 100,
        ..Limits::default()
    };
    let _ = refused_through_a_dir_target(
        "many-entries",
        hostile::many_entries(101),
        "the release has more than 100 entries (at `f100`); refused (`max_entries`",
        limits,
    );
}

/// CPU time of this thread: what a step costs whatever else runs on
/// the machine (tests share it).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // Fields after the command's `)`: utime and stime are the 12th and
    // 13th, in clock ticks (100 a second on Linux).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    Duration::from_millis((f[11] + f[12]) * 10)
}

#[test]
fn a_gzip_bomb_is_refused_at_once_and_writes_nothing() {
    // The one seen: 4 MiB of gzip that a tar says is a 4 GiB file.
    let bomb = hostile::gzip_bomb(4 << 30, Bomb::File);
    assert!(bomb.len() < 5 << 20, "{} bytes", bomb.len());
    let ratio = (4u64 << 30) / bomb.len() as u64;
    assert!(ratio >= 1000, "a {ratio}× bomb");
    // The unpack itself stops at the tar header, before a byte is
    // written (timed alone: checking the blob's digest is not the bomb's
    // doing, and tests share the machine).
    let scratch = tempfile::tempdir().unwrap();
    let digest = Digest::of(&bomb);
    let (started, cpu) = (Instant::now(), cpu_time());
    let err =
        stella::deploy::unpack::unpack_layer(&digest, &bomb, scratch.path(), &Limits::default())
            .unwrap_err();
    let (took, spent) = (started.elapsed(), cpu_time() - cpu);
    eprintln!("the file bomb was refused in {took:?} ({spent:?} of CPU): {err}");
    assert!(spent < Duration::from_millis(200), "took {spent:?} of CPU");
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
    let _ = refused_through_a_dir_target(
        "file bomb",
        bomb,
        "expands past 50× its compressed size",
        Limits::default(),
    );

    // Zeros that no header announces (a pax header): the decompressed
    // stream is counted, and stops at the ratio.
    let bomb = hostile::gzip_bomb(1 << 30, Bomb::Pax);
    let cpu = cpu_time();
    let took = refused_through_a_dir_target(
        "pax bomb",
        bomb,
        "an entry's headers (long names, pax records) take more than 1.0 MiB: refused",
        Limits::default(),
    );
    let spent = cpu_time() - cpu;
    eprintln!("the pax bomb was refused in {took:?} ({spent:?} of CPU, with its digest)");
    assert!(spent < Duration::from_secs(1), "took {spent:?} of CPU");
    // Read whole into memory by a tar reader: bounded far below the ratio.
    let _ = refused_through_a_dir_target(
        "pax bomb in a big layer",
        hostile::gzip_bomb(64 << 20, Bomb::Pax),
        "an entry's headers (long names, pax records) take more than 1.0 MiB: refused",
        Limits::default(),
    );

    // Headers under that cap, one after another: the stream is counted
    // against the ratio though no file grows.
    let _ = refused_through_a_dir_target(
        "pax series",
        hostile::pax_series(20, 900 << 10),
        "expands past 50× its compressed size",
        Limits::default(),
    );

    // The whole release is bounded too.
    let limits = Limits {
        max_release_bytes: 1 << 20,
        ..Limits::default()
    };
    let _ = refused_through_a_dir_target(
        "release cap",
        hostile::tar_of(&[E::File("a", &"x".repeat(2 << 20))]),
        "the release expands past 1.0 MiB unpacked; refused (`max_release_mib`",
        limits,
    );
}

#[test]
fn an_ordinary_image_unpacks_whole_within_the_defaults() {
    // 35 MiB of text that compresses several times, in 400 files, links
    // inside and a whiteout of a lower layer's file.
    let text: String = (0..40_000)
        .map(|i| format!("{i:08} the quick brown fox {}\n", i * 7919 % 104_729))
        .collect();
    let names: Vec<String> = (0..400).map(|i| format!("assets/f{i}.txt")).collect();
    let mut entries = vec![E::Dir("assets"), E::File("index.html", "ok")];
    for n in &names {
        entries.push(E::File(n, &text[..text.len() / 16]));
    }
    entries.push(E::Symlink("latest", "assets/f1.txt"));
    entries.push(E::Symlink("assets/up", "../index.html"));
    let dir = tempfile::tempdir().unwrap();
    let layout_dir = dir.path().join("layout");
    let d = layout_image(
        &layout_dir,
        "1",
        &[
            hostile::tar_of(&entries),
            hostile::tar_of(&[E::File("assets/.wh.f0.txt", "")]),
        ],
    );
    let target = DirTarget::new(dir.path().join("deploy"));
    let done = target
        .deploy(&Layout::open(&layout_dir).unwrap(), &d)
        .unwrap();
    assert_eq!(done.entries, 404);
    let cur = dir.path().join("deploy/current");
    assert_eq!(
        std::fs::read_to_string(cur.join("assets/up")).unwrap(),
        "ok"
    );
    assert!(std::fs::read(cur.join("latest")).unwrap().len() > 1000);
    assert!(!cur.join("assets/f0.txt").exists());
}

// ---- The real promote path ------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Dir,
    Router,
    Nginx,
}

impl Kind {
    fn available(self) -> bool {
        match self {
            Kind::Dir | Kind::Router => true,
            Kind::Nginx => common::require(&["nginx"]),
        }
    }
}

/// A starter workspace whose `dev` deploys to `dev-web` of `kind`
/// (`extra` added to the target), with api-gateway 1.0 saying `v1` and
/// 2.0 made of `layers`. Returns it and the port (routed kinds).
fn workspace(kind: Kind, extra: &str, layers: &[Vec<u8>]) -> (tempfile::TempDir, u16) {
    let dir = common::init_workspace();
    let ws = dir.path();
    common::app_image(ws, "1.0", "v1");
    layout_image(&ws.join("images/api-gateway"), "2.0", layers);
    let port = common::free_port();
    let target = match kind {
        Kind::Dir => "kind = \"dir\"\n".to_owned(),
        Kind::Router => format!("kind = \"router\"\nlisten = \"127.0.0.1:{port}\"\n"),
        Kind::Nginx => format!("kind = \"nginx\"\nlisten = \"127.0.0.1:{port}\"\n"),
    };
    let toml = std::fs::read_to_string(ws.join("stella.toml")).unwrap();
    let toml = toml.replace(
        "[environments.dev]\ntargets = [\"dev-local\"]",
        "[environments.dev]\ntargets = [\"dev-web\"]",
    ) + &format!("\n[targets.dev-web]\n{target}path = \"deploy/dev-web\"\n{extra}");
    std::fs::write(ws.join("stella.toml"), toml).unwrap();
    stella(ws).args(["config", "check"]).assert().success();
    (dir, port)
}

struct StopRouter(PathBuf);

impl Drop for StopRouter {
    fn drop(&mut self) {
        let _ = stella(&self.0).args(["router", "stop", "dev-web"]).output();
    }
}

/// The status and body of a GET of `path` (sent as is) on `port`.
fn get_raw(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |b| b.1).to_owned();
    (status, body)
}

fn promote(ws: &Path, reference: &str) -> std::process::Output {
    stella(ws)
        .args(["release", "promote", reference, "--to", "dev", "--json"])
        .output()
        .unwrap()
}

/// Why the promotion `v` (promote's JSON) failed, as its capsule says.
fn failure_of(ws: &Path, v: &serde_json::Value) -> String {
    assert_eq!(v["outcome"], "deploy-failed", "{v}");
    let show: serde_json::Value = serde_json::from_slice(
        &stella(ws)
            .args(["capsule", "show", "latest", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    show["predicate"]["reason"].as_str().unwrap().to_owned()
}

/// Paths that try to leave the release, as a client sends them.
const TRAVERSALS: [&str; 5] = [
    "/passwd-link",
    "/../../etc/passwd",
    "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/..%2f..%2f..%2fetc%2fpasswd",
    "/d/d/d/d/d/d/d/d/d/d/d/d/s/../../../etc/passwd",
];

/// Promotes 1.0, then the hostile 2.0 through `kind`: refused by name,
/// the workspace's deploy folder as it was, 1.0 serving, and no path of
/// `TRAVERSALS` answered with the host's files.
fn hostile_promotion_refused(kind: Kind, layer: Vec<u8>, expected: &str) {
    if !kind.available() {
        return;
    }
    let (dir, port) = workspace(kind, "", &[layer]);
    let ws = dir.path();
    let _stop = StopRouter(ws.to_owned());
    let out = promote(ws, "api-gateway:1.0");
    assert!(out.status.success(), "{}", common::stdout(&out));
    let deploy = ws.join("deploy");
    let before = tree(&deploy);

    let out = promote(ws, "api-gateway:2.0");
    assert_eq!(out.status.code(), Some(1), "{}", common::stdout(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "deploy-failed", "{v}");
    let said = failure_of(ws, &v);
    assert!(said.contains(expected), "{said}");
    assert_eq!(tree(&deploy), before, "the deploy folder changed");
    match kind {
        Kind::Dir => assert_eq!(
            std::fs::read_to_string(ws.join("deploy/dev-web/current/index.html")).unwrap(),
            "v1"
        ),
        _ => {
            assert_eq!(get_raw(port, "/"), (200, "v1".to_owned()));
            for path in TRAVERSALS {
                let (status, body) = get_raw(port, path);
                assert!(
                    status >= 400 && !body.contains("root:"),
                    "{path}: {status} {body}"
                );
            }
        }
    }
}

#[test]
fn the_escape_chain_is_refused_through_each_kind_of_target() {
    let expected =
        "symlink to `s/../../../../../../../../../../../..` leaves the release directory";
    for kind in [Kind::Dir, Kind::Router, Kind::Nginx] {
        hostile_promotion_refused(kind, hostile::escape_chain(), expected);
    }
}

#[test]
fn a_whiteout_of_dotdot_is_refused_and_every_release_stays() {
    let layer = hostile::tar_of(&[E::File("index.html", "v2"), E::File(".wh...", "")]);
    for kind in [Kind::Dir, Kind::Router] {
        hostile_promotion_refused(kind, layer.clone(), "entry `.wh...` is refused");
    }
}

#[test]
fn limits_are_set_per_target_and_named_when_reached() {
    let (dir, _) = workspace(
        Kind::Dir,
        "unpack = { max_entries = 100 }\n",
        &[hostile::many_entries(150)],
    );
    let ws = dir.path();
    assert!(promote(ws, "api-gateway:1.0").status.success());
    let out = promote(ws, "api-gateway:2.0");
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let said = failure_of(ws, &v);
    assert!(
        said.contains("more than 100 entries")
            && said.contains("`max_entries` in the target's `[targets.NAME.unpack]` table"),
        "{said}"
    );
    // A zero limit, or a key that is not one, is a config error.
    let toml = std::fs::read_to_string(ws.join("stella.toml")).unwrap();
    std::fs::write(
        ws.join("stella.toml"),
        toml.replace("max_entries = 100", "max_entries = 0"),
    )
    .unwrap();
    let out = stella(ws).args(["config", "check"]).output().unwrap();
    assert!(
        common::stderr(&out).contains("unpack `max_entries` must be at least 1"),
        "{}",
        common::stderr(&out)
    );
    std::fs::write(
        ws.join("stella.toml"),
        toml.replace("max_entries = 100", "max_files = 100"),
    )
    .unwrap();
    let out = stella(ws).args(["config", "check"]).output().unwrap();
    assert!(
        common::stderr(&out).contains("unknown field `max_files`"),
        "{}",
        common::stderr(&out)
    );
}

// ---- Serving never leaves the release -------------------------------

/// The live release's folder of a routed target.
fn live_release(ws: &Path) -> PathBuf {
    let routes: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ws.join(".stella/router/dev-web/routes.json")).unwrap(),
    )
    .unwrap();
    PathBuf::from(routes["stable"]["dir"].as_str().unwrap())
}

/// Links put into a live release behind stella's back (a release made
/// by an unpacker with a hole): the router serves none that leads out.
#[test]
fn the_built_in_router_refuses_links_that_lead_out_of_the_release() {
    let (dir, port) = workspace(Kind::Router, "", &[]);
    let ws = dir.path();
    let _stop = StopRouter(ws.to_owned());
    assert!(promote(ws, "api-gateway:1.0").status.success());
    let release = live_release(ws);
    let key = ws.join(".stella/keys/workspace.key");
    std::os::unix::fs::symlink("/etc/passwd", release.join("passwd-link")).unwrap();
    std::os::unix::fs::symlink(&key, release.join("key")).unwrap();
    std::os::unix::fs::symlink("../../../..", release.join("up")).unwrap();
    std::os::unix::fs::symlink("index.html", release.join("same")).unwrap();
    for path in [
        "/passwd-link",
        "/key",
        "/up/.stella/keys/workspace.key",
        "/up/stella.toml",
    ] {
        let (status, body) = get_raw(port, path);
        assert_eq!(status, 404, "{path}: {body}");
    }
    for path in TRAVERSALS {
        let (status, body) = get_raw(port, path);
        assert!(status >= 400 && !body.contains("root:"), "{path}: {status}");
    }
    // A link inside the release is served.
    assert_eq!(get_raw(port, "/same"), (200, "v1".to_owned()));
}

fn is_root() -> bool {
    nix_uid() == 0
}

fn nix_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

/// The uids nginx's workers (the master's children) run as.
fn worker_uids(master: u32) -> Vec<u32> {
    let mut uids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
        };
        if field("PPid:").is_some_and(|p| p == master.to_string())
            && let Some(uid) = field("Uid:").and_then(|u| u.parse().ok())
        {
            uids.push(uid);
        }
    }
    uids
}

#[test]
fn nginx_workers_never_run_as_root_and_links_to_others_files_are_refused() {
    if !Kind::Nginx.available() {
        return;
    }
    let (dir, port) = workspace(Kind::Nginx, "", &[]);
    let ws = dir.path();
    let _stop = StopRouter(ws.to_owned());
    assert!(promote(ws, "api-gateway:1.0").status.success());
    let conf = std::fs::read_to_string(ws.join(".stella/nginx/dev-web/nginx.conf")).unwrap();
    assert!(!conf.contains("user root"), "{conf}");
    // As root everything stella unpacks is root's, like `/etc/passwd`:
    // "same owner" would admit a link to it, so no link is followed.
    let links = if is_root() {
        "disable_symlinks on;"
    } else {
        "disable_symlinks if_not_owner from=$document_root;"
    };
    assert!(conf.contains(links), "{conf}");
    let master: u32 = std::fs::read_to_string(ws.join(".stella/nginx/dev-web/nginx.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let uids = worker_uids(master);
    assert!(!uids.is_empty());
    assert!(!uids.contains(&0), "workers as root: {uids:?}");
    if is_root() {
        assert!(conf.contains("\nuser "), "{conf}");
    }
    let release = live_release(ws);
    // A file someone else owns, readable by all, and a link to it put
    // into the live release: nginx does not follow it.
    let other = ws.join("not-the-release.txt");
    std::fs::write(&other, "root:x:0:0 secret").unwrap();
    if is_root() {
        std::os::unix::fs::chown(&other, Some(65534), Some(65534)).unwrap();
    }
    std::os::unix::fs::symlink(&other, release.join("passwd-link")).unwrap();
    std::os::unix::fs::symlink("index.html", release.join("same")).unwrap();
    if is_root() {
        let (status, body) = get_raw(port, "/passwd-link");
        assert!(status >= 400 && !body.contains("root:"), "{status} {body}");
        // Seen: a root-owned link to a root-owned, world-readable file
        // was served under `if_not_owner`.
        std::os::unix::fs::symlink("/etc/passwd", release.join("etc-passwd")).unwrap();
        let (status, body) = get_raw(port, "/etc-passwd");
        assert!(status >= 400 && !body.contains("root:"), "{status} {body}");
    }
    // The workers cannot read the workspace's key, and a link inside the
    // release is still served.
    std::os::unix::fs::symlink(ws.join(".stella/keys/workspace.key"), release.join("key")).unwrap();
    let (status, body) = get_raw(port, "/key");
    assert!(
        status >= 400 && !body.contains("PRIVATE"),
        "{status} {body}"
    );
    // A link inside the release is served, except as root (see above).
    let same = get_raw(port, "/same");
    if is_root() {
        assert!(same.0 >= 400, "{same:?}");
    } else {
        assert_eq!(same, (200, "v1".to_owned()));
    }
    for path in TRAVERSALS {
        let (status, body) = get_raw(port, path);
        assert!(status >= 400 && !body.contains("root:"), "{path}: {status}");
    }
}

// ---- Faults ---------------------------------------------------------

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn binary() -> PathBuf {
    assert_cmd::cargo::cargo_bin("stella")
}

/// `release promote api-gateway:2.0 --to dev` in a child process, with
/// `env` set.
fn spawn_promote(ws: &Path, env: &[(&str, &Path)]) -> std::process::Child {
    let mut cmd = Command::new(binary());
    cmd.args(["release", "promote", "api-gateway:2.0", "--to", "dev"])
        .current_dir(ws)
        .env_remove("STELLA_WORKSPACE")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn temp_leftovers(ws: &Path) -> Vec<String> {
    std::fs::read_dir(ws.join("deploy/dev-web/releases"))
        .map(|l| {
            l.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_kill_mid_unpack_leaves_no_temp_folder_on_routed_targets() {
    for kind in [Kind::Router, Kind::Nginx] {
        if !kind.available() {
            continue;
        }
        let (dir, port) = workspace(kind, "", &[hostile::tar_of(&[E::File("index.html", "v2")])]);
        let ws = dir.path();
        let _stop = StopRouter(ws.to_owned());
        assert!(promote(ws, "api-gateway:1.0").status.success());
        let mark = ws.join("failpoint.mark");
        let mut child = spawn_promote(
            ws,
            &[
                ("STELLA_FAILPOINT", Path::new("unpacked")),
                ("STELLA_FAILPOINT_MARK", &mark),
            ],
        );
        wait_for("the failpoint", || mark.exists());
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(temp_leftovers(ws).len(), 1, "the kill left its temp folder");
        // `stella recover` finds the promotion interrupted and clears what
        // it left.
        let out = stella(ws).args(["recover"]).output().unwrap();
        assert!(common::stdout(&out).contains("was interrupted"));
        assert_eq!(temp_leftovers(ws), Vec::<String>::new());
        assert_eq!(get_raw(port, "/"), (200, "v1".to_owned()));
        assert!(promote(ws, "api-gateway:2.0").status.success());
        assert_eq!(get_raw(port, "/"), (200, "v2".to_owned()));
    }
}

/// A promotion killed in a step after the switch: the next command puts
/// the old release back and returns only once it serves.
fn recovery_returns_once_the_old_release_serves(kind: Kind) {
    if !kind.available() {
        return;
    }
    let (dir, port) = workspace(kind, "", &[hostile::tar_of(&[E::File("index.html", "v2")])]);
    let ws = dir.path();
    let _stop = StopRouter(ws.to_owned());
    assert!(promote(ws, "api-gateway:1.0").status.success());
    std::fs::write(
        ws.join("workflows/slow.toml"),
        "[[steps]]\nid = \"deploy\"\nuses = \"deploy\"\n\n[[steps]]\nid = \"soak\"\nrun = \"sleep 60\"\nneeds = [\"deploy\"]\n",
    )
    .unwrap();
    let toml = std::fs::read_to_string(ws.join("stella.toml")).unwrap();
    std::fs::write(
        ws.join("stella.toml"),
        toml.replace(
            "[environments.dev]\ntargets = [\"dev-web\"]",
            "[environments.dev]\ntargets = [\"dev-web\"]\nworkflow = \"workflows/slow.toml\"",
        ),
    )
    .unwrap();
    let mut child = spawn_promote(ws, &[]);
    wait_for("v2 to serve", || get_raw(port, "/").1 == "v2");
    child.kill().unwrap();
    child.wait().unwrap();
    let out = stella(ws).args(["recover"]).output().unwrap();
    assert!(common::stdout(&out).contains("was interrupted"));
    // At once, no waiting: what the command reported is what clients see.
    assert_eq!(get_raw(port, "/"), (200, "v1".to_owned()));
}

#[test]
fn a_recovery_through_the_built_in_router_returns_once_the_old_release_serves() {
    recovery_returns_once_the_old_release_serves(Kind::Router);
}

#[test]
fn a_recovery_through_nginx_returns_once_the_old_release_serves() {
    recovery_returns_once_the_old_release_serves(Kind::Nginx);
}

/// The fuzz target's property, over the corpus and deterministic
/// mutations of it (the fuzz target itself needs cargo-fuzz): no panic,
/// and after a successful unpack nothing resolves outside the release.
#[test]
fn after_any_unpack_nothing_resolves_outside_the_release() {
    use stella::deploy::unpack::{first_escape, unpack_layer};
    let limits = Limits {
        max_release_bytes: 64 << 20,
        max_entries: 10_000,
        max_depth: 64,
        ..Limits::default()
    };
    // xorshift: the same mutations on every run.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut cases: Vec<Vec<u8>> = hostile::corpus().into_iter().map(|c| c.1).collect();
    // Random layers of entries made from the pieces escapes are made of.
    const NAMES: [&str; 8] = [
        "a",
        "b",
        "s",
        ".",
        "..",
        ".wh.a",
        ".wh..wh..opq",
        "index.html",
    ];
    for _ in 0..800 {
        let mut pick = |n: u64| (next() % n) as usize;
        let path = |parts: usize, pick: &mut dyn FnMut(u64) -> usize| {
            (0..parts)
                .map(|_| NAMES[pick(NAMES.len() as u64)])
                .collect::<Vec<_>>()
                .join("/")
        };
        let n = 1 + pick(6);
        let mut owned: Vec<(u8, String, String)> = Vec::new();
        for _ in 0..n {
            let kind = pick(4) as u8;
            let p = path(1 + pick(3), &mut pick);
            let t = path(1 + pick(4), &mut pick);
            owned.push((kind, p, t));
        }
        let entries: Vec<E<'_>> = owned
            .iter()
            .map(|(k, p, t)| match k {
                0 => E::Dir(p),
                1 => E::File(p, "x"),
                2 => E::Symlink(p, t),
                _ => E::Hardlink(p, t),
            })
            .collect();
        cases.push(hostile::tar_of(&entries));
    }
    let (mut ok, mut refused) = (0, 0);
    for data in &cases {
        let dir = tempfile::tempdir().unwrap();
        let release = dir.path().join("release");
        std::fs::create_dir(&release).unwrap();
        match unpack_layer(&Digest::of(data), data, &release, &limits) {
            Ok(_) => {
                ok += 1;
                assert_eq!(first_escape(&release).unwrap(), None, "{data:?}");
            }
            Err(_) => refused += 1,
        }
    }
    eprintln!("{ok} unpacked, {refused} refused");
    assert!(ok > 0 && refused > 0);
}
