//! `stella release resolve|list` against OCI image layouts built here.

mod common;

use std::path::Path;

use common::{add_image, init_workspace, stderr, stdout, stella};
use stella::domain::Digest;
use stella::registry::layout::LayoutWriter;

fn resolve_json(ws: &Path, reference: &str) -> serde_json::Value {
    let out = stella(ws)
        .args(["release", "resolve", reference, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn list_json(ws: &Path) -> Vec<serde_json::Value> {
    let out = stella(ws)
        .args(["release", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn resolves_an_app_tag_to_the_manifest_digest() {
    let ws = init_workspace();
    let layout = ws.path().join("images/api-gateway");
    let digest = add_image(&layout, "1.0", "v1");

    // The digest is the hash of the manifest blob the index names.
    let blob = std::fs::read(layout.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap();
    assert_eq!(Digest::of(&blob).to_string(), digest);

    let v = resolve_json(ws.path(), "api-gateway:1.0");
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["app", "digest", "reference", "resolved_at", "tag"]);
    assert_eq!(v["app"], "api-gateway");
    assert_eq!(v["tag"], "1.0");
    assert_eq!(v["digest"], digest.as_str());
    assert_eq!(v["reference"], "oci-layout:images/api-gateway:1.0");
    assert!(chrono::DateTime::parse_from_rfc3339(v["resolved_at"].as_str().unwrap()).is_ok());

    // Plain output is the digest alone, for scripts.
    let out = stella(ws.path())
        .args(["release", "resolve", "api-gateway:1.0"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), digest);

    let rows = list_json(ws.path());
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["digest"] == digest.as_str()));
}

#[test]
fn a_moved_tag_resolves_to_its_new_digest_and_keeps_the_old_record() {
    let ws = init_workspace();
    let layout = ws.path().join("images/api-gateway");
    let first = add_image(&layout, "stable", "one");
    assert_eq!(
        resolve_json(ws.path(), "api-gateway:stable")["digest"],
        first.as_str()
    );

    let second = add_image(&layout, "stable", "two");
    assert_ne!(first, second);
    let out = stella(ws.path())
        .args(["release", "resolve", "api-gateway:stable"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), second);
    assert!(
        stderr(&out).contains(&format!("moved: it was {first}")),
        "{}",
        stderr(&out)
    );

    let rows = list_json(ws.path());
    let digests: Vec<&str> = rows.iter().map(|r| r["digest"].as_str().unwrap()).collect();
    assert_eq!(digests, [first.as_str(), second.as_str()]);

    let table = stdout(
        &stella(ws.path())
            .args(["release", "list", "api-gateway"])
            .output()
            .unwrap(),
    );
    assert!(table.starts_with("APP"), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");
}

#[test]
fn a_digest_reference_is_checked_against_the_layout() {
    let ws = init_workspace();
    let layout = ws.path().join("images/api-gateway");
    let digest = add_image(&layout, "1.0", "v1");
    let v = resolve_json(ws.path(), &format!("api-gateway@{digest}"));
    assert_eq!(v["digest"], digest.as_str());
    assert_eq!(v["tag"], serde_json::Value::Null);

    let absent = Digest::of(b"no such manifest");
    let out = stella(ws.path())
        .args(["release", "resolve", &format!("api-gateway@{absent}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is missing"), "{}", stderr(&out));
}

#[test]
fn a_multi_platform_tag_resolves_to_the_index_digest() {
    let ws = init_workspace();
    let layout = ws.path().join("images/api-gateway");
    let amd = add_image(&layout, "amd", "amd64 build")
        .parse::<Digest>()
        .unwrap();
    let arm = add_image(&layout, "arm", "arm64 build")
        .parse::<Digest>()
        .unwrap();
    let index = LayoutWriter::create(&layout)
        .unwrap()
        .add_index("2.0", &[(amd.clone(), "amd64"), (arm, "arm64")])
        .unwrap();
    let v = resolve_json(ws.path(), "api-gateway:2.0");
    assert_eq!(v["digest"], index.to_string());
    assert_ne!(v["digest"], amd.to_string());
}

#[test]
fn a_corrupt_blob_is_refused_and_nothing_is_recorded() {
    let ws = init_workspace();
    let layout = ws.path().join("images/api-gateway");
    let digest = add_image(&layout, "1.0", "v1");
    let blob = layout.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x01;
    std::fs::write(&blob, bytes).unwrap();

    let out = stella(ws.path())
        .args(["release", "resolve", "api-gateway:1.0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("does not match its digest"), "{err}");
    assert!(err.contains(&digest), "{err}");
    assert!(list_json(ws.path()).is_empty());
}

#[test]
fn a_missing_tag_names_the_tags_there() {
    let ws = init_workspace();
    let layout = ws.path().join("images/api-gateway");
    add_image(&layout, "1.0", "v1");
    add_image(&layout, "1.1", "v1.1");
    let out = stella(ws.path())
        .args(["release", "resolve", "api-gateway:9.9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: oci-layout:images/api-gateway:9.9: tag not found (tags here: 1.0, 1.1)\n"
    );
    assert!(list_json(ws.path()).is_empty());
}

#[test]
fn a_folder_that_is_not_a_layout_is_named() {
    let ws = init_workspace();
    std::fs::create_dir_all(ws.path().join("images/api-gateway")).unwrap();
    let out = stella(ws.path())
        .args(["release", "resolve", "api-gateway:1.0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot read its `oci-layout` file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn direct_references_and_unknown_apps() {
    let ws = init_workspace();
    let other = tempfile::tempdir().unwrap();
    let digest = add_image(&other.path().join("web"), "3.1", "web");
    let v = resolve_json(
        ws.path(),
        &format!("oci-layout:{}:3.1", other.path().join("web").display()),
    );
    assert_eq!(v["app"], serde_json::Value::Null);
    assert_eq!(v["digest"], digest.as_str());

    let out = stella(ws.path())
        .args(["release", "resolve", "billing:1.0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no app `billing`"));
    assert!(stderr(&out).contains("apps defined: api-gateway"));
}

/// The README's quick start builds its layout with scripts/make-layout.sh;
/// what that script writes must resolve to the digest it prints.
#[test]
fn the_readme_layout_script_makes_a_resolvable_layout() {
    if !common::require(&["tar", "gzip", "sha256sum"]) {
        return;
    }
    let ws = init_workspace();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-layout.sh");
    let layout = ws.path().join("images/api-gateway");
    let run = |tag: &str| {
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg(&layout)
            .arg(tag)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_owned()
    };
    let one = run("1.0");
    let two = run("2.0");
    assert_eq!(
        resolve_json(ws.path(), "api-gateway:1.0")["digest"],
        one.as_str()
    );
    assert_eq!(
        resolve_json(ws.path(), "api-gateway:2.0")["digest"],
        two.as_str()
    );
}
