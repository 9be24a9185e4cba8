//! Artifacts attached to an image (OCI referrers): against a real
//! `docker-registry` on loopback (which has no referrers API, so the
//! `sha256-<hex>` tag schema is used) and in OCI image layouts. Skipped
//! (with a reason) where the registry tools are missing, except under CI=true.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use common::{Registry, add_image};
use stella::domain::{Digest, Repository, Selector};
use stella::registry::RegistryError;
use stella::registry::layout::Layout;
use stella::registry::referrers::{self, Artifact, Via};

const CAPSULE: &str = "application/vnd.stella.capsule.v1+json";
const VSA: &str = "application/vnd.stella.vsa.v1+json";

fn artifact(artifact_type: &str, body: &str, env: &str) -> Artifact {
    Artifact {
        artifact_type: artifact_type.into(),
        layer_media_type: "application/json".into(),
        bytes: body.as_bytes().to_vec(),
        annotations: BTreeMap::from([
            ("dev.stella.environment".to_owned(), env.to_owned()),
            (
                "org.opencontainers.image.created".to_owned(),
                "2026-01-01T00:00:00Z".to_owned(),
            ),
        ]),
    }
}

fn remote(reg: &Registry, repo: &str) -> Repository {
    Repository::Remote {
        registry: reg.addr.clone(),
        repository: repo.into(),
    }
}

/// An image pushed with skopeo to `repo:1.0`; its manifest digest.
fn pushed_image(reg: &Registry, repo: &str) -> (tempfile::TempDir, Digest) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("build");
    let digest = add_image(&layout, "1.0", "hello");
    reg.push(&layout, "1.0", repo, "1.0");
    assert_eq!(reg.content_digest(repo, "1.0"), digest);
    (dir, digest.parse().unwrap())
}

/// The registry's blob file for `d` (filesystem storage driver layout).
fn stored_blob(reg: &Registry, d: &Digest) -> std::path::PathBuf {
    reg.storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&d.hex()[..2])
        .join(d.hex())
        .join("data")
}

/// Attaching twice, listing, filtering and fetching, against `repo`.
async fn attach_list_fetch(repo: &Repository, subject: &Digest, base: &Path, via: Via) {
    let capsule = artifact(CAPSULE, r#"{"capsule":1}"#, "prod");
    let vsa = artifact(VSA, r#"{"vsa":"PASSED"}"#, "prod");
    let a = referrers::attach(repo, subject, &capsule, false, base)
        .await
        .unwrap();
    let b = referrers::attach(repo, subject, &vsa, false, base)
        .await
        .unwrap();
    assert_eq!((a.via, b.via), (via, via));
    assert_ne!(a.manifest, b.manifest);

    let all = referrers::referrers(repo, subject, None, false, base)
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    let found_a = all.iter().find(|r| r.manifest == a.manifest).unwrap();
    assert_eq!(found_a.artifact_type.as_deref(), Some(CAPSULE));
    assert_eq!(found_a.annotations["dev.stella.environment"], "prod");
    let found_b = all.iter().find(|r| r.manifest == b.manifest).unwrap();
    assert_eq!(found_b.artifact_type.as_deref(), Some(VSA));

    let only = referrers::referrers(repo, subject, Some(VSA), false, base)
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].manifest, b.manifest);

    let fetched = referrers::fetch(repo, &a.manifest, 1 << 20, false, base)
        .await
        .unwrap();
    assert_eq!(fetched.bytes, capsule.bytes);
    assert_eq!(fetched.manifest, a.manifest);
    assert_eq!(fetched.subject.as_ref(), Some(subject));
    assert_eq!(fetched.artifact_type.as_deref(), Some(CAPSULE));
    assert_eq!(fetched.layer_media_type, "application/json");
    assert_eq!(fetched.annotations, capsule.annotations);

    // A layer over the caller's limit is refused before it is read.
    let err = referrers::fetch(repo, &a.manifest, 4, false, base)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("over the limit"), "{err}");

    // Idempotent: same digest, still one entry each.
    let again = referrers::attach(repo, subject, &capsule, false, base)
        .await
        .unwrap();
    assert_eq!(again.manifest, a.manifest);
    let all = referrers::referrers(repo, subject, None, false, base)
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
}

#[tokio::test]
async fn registry_attach_list_filter_fetch_through_the_tag_schema() {
    let Some(reg) = Registry::start() else { return };
    let (dir, subject) = pushed_image(&reg, "acme/api");
    let repo = remote(&reg, "acme/api");

    // docker-registry 2.8 has no referrers API: a 404, as the spec says.
    let (status, _) = reg.raw(
        "GET",
        &format!("/v2/acme/api/referrers/{subject}"),
        &[],
        b"",
    );
    assert_eq!(status, 404);

    attach_list_fetch(&repo, &subject, dir.path(), Via::TagSchema).await;

    // The tag index exists, read without stella's client.
    let (status, body) = reg.raw(
        "GET",
        &format!("/v2/acme/api/manifests/sha256-{}", subject.hex()),
        &[("Accept", "application/vnd.oci.image.index.v1+json")],
        b"",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let index: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let mut types: Vec<&str> = entries
        .iter()
        .map(|e| e["artifactType"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(types, [CAPSULE, VSA]);

    // The artifact manifest itself carries the subject, served as pushed.
    let m = entries[0]["digest"].as_str().unwrap();
    let (status, body) = reg.raw(
        "GET",
        &format!("/v2/acme/api/manifests/{m}"),
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
        b"",
    );
    assert_eq!(status, 200);
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(manifest["subject"]["digest"], subject.to_string());
    assert_eq!(
        manifest["subject"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(manifest["config"]["size"], 2);

    // The image's own tag is untouched.
    assert_eq!(reg.content_digest("acme/api", "1.0"), subject.to_string());
}

#[tokio::test]
async fn layout_attach_list_filter_fetch_and_the_tag_still_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let subject: Digest = add_image(&dir.path().join("img"), "1.0", "hello")
        .parse()
        .unwrap();
    // Relative to `base`, as apps name their layouts.
    let repo = Repository::Layout("img".into());
    attach_list_fetch(&repo, &subject, dir.path(), Via::Layout).await;

    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("img/index.json")).unwrap()).unwrap();
    let tag = format!("sha256-{}", subject.hex());
    let tagged: Vec<_> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag.as_str())
        .collect();
    assert_eq!(
        tagged.len(),
        1,
        "one entry for the referrers index: {index}"
    );
    assert_eq!(
        tagged[0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );

    let layout = Layout::open(&dir.path().join("img")).unwrap();
    assert_eq!(
        layout
            .resolve(&Selector::Tag("1.0".into()), "img:1.0")
            .unwrap(),
        subject
    );
    // No temp files left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("img"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".tmp")), "{names:?}");
}

#[tokio::test]
async fn a_stopped_registry_is_unreachable_never_an_empty_list() {
    let Some(mut reg) = Registry::start() else {
        return;
    };
    let (dir, subject) = pushed_image(&reg, "acme/api");
    let repo = remote(&reg, "acme/api");
    let attached = referrers::attach(
        &repo,
        &subject,
        &artifact(CAPSULE, "{}", "dev"),
        false,
        dir.path(),
    )
    .await
    .unwrap();
    reg.stop();

    let err = referrers::referrers(&repo, &subject, None, false, dir.path())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err}");
    let err = referrers::attach(
        &repo,
        &subject,
        &artifact(VSA, "{}", "dev"),
        false,
        dir.path(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err}");
    let err = referrers::fetch(&repo, &attached.manifest, 1 << 20, false, dir.path())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn a_read_only_registry_refuses_the_push_and_still_lists() {
    let Some(mut reg) = Registry::start() else {
        return;
    };
    let (dir, subject) = pushed_image(&reg, "acme/api");
    let repo = remote(&reg, "acme/api");
    let first = referrers::attach(
        &repo,
        &subject,
        &artifact(CAPSULE, "{}", "dev"),
        false,
        dir.path(),
    )
    .await
    .unwrap();
    reg.restart(true);

    // A new layer: the blob upload is what is refused.
    let err = referrers::attach(
        &repo,
        &subject,
        &artifact(VSA, "new bytes", "dev"),
        false,
        dir.path(),
    )
    .await
    .unwrap_err();
    eprintln!("read-only registry, new blob: {err}");
    assert!(matches!(err, RegistryError::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("refused the push"), "{err}");
    // Blobs already there ("{}" is the first one's layer): the manifest PUT is.
    let err = referrers::attach(
        &repo,
        &subject,
        &artifact(VSA, "{}", "dev"),
        false,
        dir.path(),
    )
    .await
    .unwrap_err();
    eprintln!("read-only registry, manifest: {err}");
    assert!(matches!(err, RegistryError::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("405"), "{err}");

    // Nothing was lost: the earlier attachment is still listed.
    let all = referrers::referrers(&repo, &subject, None, false, dir.path())
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].manifest, first.manifest);

    // A registry started read-only from the outset answers the same way.
    let Some(ro) = Registry::start_read_only() else {
        return;
    };
    let err = referrers::attach(
        &remote(&ro, "acme/api"),
        &subject,
        &artifact(VSA, "{}", "dev"),
        false,
        dir.path(),
    )
    .await
    .unwrap_err();
    // Its repository is empty, so the subject is what is missing.
    assert!(err.to_string().contains("push the image first"), "{err}");
}

#[tokio::test]
async fn an_unknown_subject_is_a_clear_error() {
    let missing = Digest::of(b"no such image");
    let dir = tempfile::tempdir().unwrap();
    add_image(&dir.path().join("img"), "1.0", "hello");
    let err = referrers::attach(
        &Repository::Layout("img".into()),
        &missing,
        &artifact(CAPSULE, "{}", "dev"),
        false,
        dir.path(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("image manifest {missing} is not in this layout")),
        "{err}"
    );

    let Some(reg) = Registry::start() else { return };
    let (dir, _) = pushed_image(&reg, "acme/api");
    let err = referrers::attach(
        &remote(&reg, "acme/api"),
        &missing,
        &artifact(CAPSULE, "{}", "dev"),
        false,
        dir.path(),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&missing.to_string()) && text.contains("push the image first"),
        "{text}"
    );
    // Nothing was left pointing at the missing subject.
    let (status, _) = reg.raw(
        "GET",
        &format!("/v2/acme/api/manifests/sha256-{}", missing.hex()),
        &[("Accept", "application/vnd.oci.image.index.v1+json")],
        b"",
    );
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_layer_whose_bytes_do_not_match_is_a_digest_mismatch() {
    // Layout.
    let dir = tempfile::tempdir().unwrap();
    let subject: Digest = add_image(&dir.path().join("img"), "1.0", "hello")
        .parse()
        .unwrap();
    let repo = Repository::Layout("img".into());
    let art = artifact(CAPSULE, "original", "dev");
    let a = referrers::attach(&repo, &subject, &art, false, dir.path())
        .await
        .unwrap();
    let layer = Digest::of(&art.bytes);
    std::fs::write(
        dir.path().join("img/blobs/sha256").join(layer.hex()),
        "tampered",
    )
    .unwrap();
    let err = referrers::fetch(&repo, &a.manifest, 1 << 20, false, dir.path())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");

    // Registry: the stored blob is changed behind its back.
    let Some(reg) = Registry::start() else { return };
    let (dir, subject) = pushed_image(&reg, "acme/api");
    let repo = remote(&reg, "acme/api");
    let a = referrers::attach(&repo, &subject, &art, false, dir.path())
        .await
        .unwrap();
    std::fs::write(stored_blob(&reg, &layer), "tampered").unwrap();
    let err = referrers::fetch(&repo, &a.manifest, 1 << 20, false, dir.path())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_hostile_layout_index_is_an_error_or_a_skipped_entry_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let subject: Digest = add_image(&img, "1.0", "hello").parse().unwrap();
    let repo = Repository::Layout("img".into());
    let a = referrers::attach(
        &repo,
        &subject,
        &artifact(CAPSULE, "{}", "dev"),
        false,
        dir.path(),
    )
    .await
    .unwrap();
    let index_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.join("index.json")).unwrap()).unwrap();
    let tag = format!("sha256-{}", subject.hex());
    let entry = index_json["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag.as_str())
        .unwrap()
        .clone();

    // Re-point the tag at a referrers index of our choosing.
    let point = |bytes: &[u8]| {
        let d = Digest::of(bytes);
        std::fs::write(img.join("blobs/sha256").join(d.hex()), bytes).unwrap();
        let mut index = index_json.clone();
        for m in index["manifests"].as_array_mut().unwrap() {
            if m["digest"] == entry["digest"] {
                m["digest"] = serde_json::json!(d.to_string());
                m["size"] = serde_json::json!(bytes.len());
            }
        }
        std::fs::write(img.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    };

    // Bad digests, missing sizes, odd types: skipped, the good entry kept.
    let hostile = serde_json::json!({"schemaVersion": 2, "manifests": [
        {"digest": "sha256:../../../etc/passwd", "size": 3},
        {"digest": "md5:abcd", "size": 3},
        {"digest": a.manifest.to_string()},
        {"digest": 7, "size": "x"},
        "not an object",
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": a.manifest.to_string(),
         "size": 10, "artifactType": CAPSULE, "annotations": {"k": "v", "n": 1}},
    ]});
    point(&serde_json::to_vec(&hostile).unwrap());
    let all = referrers::referrers(&repo, &subject, None, false, dir.path())
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].manifest, a.manifest);
    assert_eq!(
        all[0].annotations,
        BTreeMap::from([("k".to_owned(), "v".to_owned())])
    );

    // A later attach keeps entries it does not understand.
    referrers::attach(
        &repo,
        &subject,
        &artifact(VSA, "{}", "dev"),
        false,
        dir.path(),
    )
    .await
    .unwrap();
    let all = referrers::referrers(&repo, &subject, None, false, dir.path())
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    let index_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.join("index.json")).unwrap()).unwrap();
    let d: Digest = index_json["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag.as_str())
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.join("blobs/sha256").join(d.hex())).unwrap())
            .unwrap();
    assert_eq!(kept["manifests"].as_array().unwrap().len(), 7, "{kept}");

    // Not JSON: an error naming the index, and attach refuses to overwrite it.
    point(b"\x00\xffnot json");
    let err = referrers::referrers(&repo, &subject, None, false, dir.path())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not JSON"), "{err}");
    let err = referrers::attach(
        &repo,
        &subject,
        &artifact(VSA, "x", "dev"),
        false,
        dir.path(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not JSON"), "{err}");

    // Over 4 MiB: refused.
    let mut huge = br#"{"schemaVersion":2,"manifests":[],"annotations":{"pad":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'a', 5 << 20));
    huge.extend(br#""}}"#);
    point(&huge);
    let err = referrers::referrers(&repo, &subject, None, false, dir.path())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("over the limit"), "{err}");
}

/// A peer speaking just enough of the distribution API to give hostile
/// answers no real registry would give: `answer(path)` is the status line,
/// extra headers and body for each request.
fn hostile_peer(answer: fn(&str) -> (String, Vec<u8>)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 8192];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            let path = req.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let (head, body) = answer(&path);
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    addr
}

fn ok(body: &[u8], extra: &str) -> (String, Vec<u8>) {
    (
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
            body.len()
        ),
        body.to_vec(),
    )
}

fn not_found() -> (String, Vec<u8>) {
    (
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
        Vec::new(),
    )
}

#[tokio::test]
async fn hostile_registry_answers_are_errors_or_skipped_never_panics() {
    let subject = Digest::of(b"subject");
    let base = Path::new(".");
    let list = |addr: String| async move {
        let repo = Repository::Remote {
            registry: addr,
            repository: "acme/api".into(),
        };
        referrers::referrers(&repo, &Digest::of(b"subject"), None, false, Path::new(".")).await
    };

    // Announces 10 GiB: refused without reading it.
    let addr = hostile_peer(|path| {
        if path == "/v2/" {
            ok(b"{}", "")
        } else if path.contains("/referrers/") {
            not_found()
        } else {
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 10737418240\r\nConnection: close\r\n\r\n"
                    .into(),
                b"{".to_vec(),
            )
        }
    });
    let err = list(addr).await.unwrap_err();
    assert!(err.to_string().contains("over the limit"), "{err}");

    // No Content-Length, a body that goes on past 4 MiB: cut off.
    let addr = hostile_peer(|path| {
        if path == "/v2/" {
            ok(b"{}", "")
        } else if path.contains("/referrers/") {
            not_found()
        } else {
            (
                "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".into(),
                vec![b' '; 5 << 20],
            )
        }
    });
    let err = list(addr).await.unwrap_err();
    assert!(err.to_string().contains("over the limit"), "{err}");

    // Not JSON.
    let addr = hostile_peer(|path| {
        if path == "/v2/" {
            ok(b"{}", "")
        } else if path.contains("/referrers/") {
            not_found()
        } else {
            ok(b"<html>hello</html>", "")
        }
    });
    let err = list(addr).await.unwrap_err();
    assert!(err.to_string().contains("not JSON"), "{err}");

    // A referrers API answer with a bad entry: skipped.
    let addr = hostile_peer(|path| {
        if path == "/v2/" {
            ok(b"{}", "")
        } else if path.contains("/referrers/") {
            let good = Digest::of(b"good").to_string();
            ok(
                format!(
                    r#"{{"schemaVersion":2,"manifests":[{{"digest":"sha256:zz","size":1}},{{"digest":"{good}","size":5,"artifactType":"t"}}]}}"#
                )
                .as_bytes(),
                "",
            )
        } else {
            not_found()
        }
    });
    let all = list(addr.clone()).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].manifest, Digest::of(b"good"));

    // A fetched manifest that does not hash to its digest.
    let repo = Repository::Remote {
        registry: addr,
        repository: "acme/api".into(),
    };
    let err = referrers::fetch(&repo, &subject, 1 << 20, false, base)
        .await
        .unwrap_err();
    // The peer answers 404 for manifests: a clear "no artifact manifest".
    assert!(err.to_string().contains("no artifact manifest"), "{err}");
    let addr = hostile_peer(|path| {
        if path == "/v2/" {
            ok(b"{}", "")
        } else {
            ok(br#"{"schemaVersion":2,"layers":[]}"#, "")
        }
    });
    let repo = Repository::Remote {
        registry: addr,
        repository: "acme/api".into(),
    };
    let err = referrers::fetch(&repo, &subject, 1 << 20, false, base)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_attaches_are_all_listed() {
    async fn eight(repo: Repository, subject: Digest, base: std::path::PathBuf) {
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (repo, subject, base) = (repo.clone(), subject.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                let art = artifact(CAPSULE, &format!("{{\"n\":{i}}}"), &format!("env{i}"));
                referrers::attach(&repo, &subject, &art, false, &base)
                    .await
                    .unwrap()
                    .manifest
            }));
        }
        let mut attached = Vec::new();
        for t in tasks {
            attached.push(t.await.unwrap());
        }
        let all = referrers::referrers(&repo, &subject, Some(CAPSULE), false, &base)
            .await
            .unwrap();
        let mut listed: Vec<Digest> = all.into_iter().map(|r| r.manifest).collect();
        listed.sort();
        attached.sort();
        assert_eq!(listed, attached);
    }

    let dir = tempfile::tempdir().unwrap();
    let subject: Digest = add_image(&dir.path().join("img"), "1.0", "hello")
        .parse()
        .unwrap();
    eight(
        Repository::Layout("img".into()),
        subject,
        dir.path().to_owned(),
    )
    .await;

    let Some(reg) = Registry::start() else { return };
    let (dir, subject) = pushed_image(&reg, "acme/api");
    eight(remote(&reg, "acme/api"), subject, dir.path().to_owned()).await;
}

#[tokio::test]
async fn a_registry_that_wants_credentials_is_unauthorized() {
    if std::env::var_os("STELLA_REGISTRY_USERNAME").is_some() {
        eprintln!("skipped: STELLA_REGISTRY_USERNAME is set");
        return;
    }
    let Some(reg) = Registry::start_with_auth() else {
        return;
    };
    let subject = Digest::of(b"any image");
    let repo = remote(&reg, "acme/api");
    let base = Path::new(".");
    let err = referrers::referrers(&repo, &subject, None, false, base)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    let err = referrers::attach(
        &repo,
        &subject,
        &artifact(CAPSULE, "{}", "dev"),
        false,
        base,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
}
