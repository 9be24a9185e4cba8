//! Decisions attached to the image: a promotion of a registry-backed app
//! leaves its capsule and verification summary as referrers of the image
//! in a real `docker-registry`; `stella verify` answers from them in an
//! empty folder with only the public key; a tampered or foreign-signed
//! attestation is named and ignored; a registry that is down is an error
//! (exit 1) for `verify`, and for a promotion a pending attachment that is
//! retried, reported, and pushed later — nothing sealed is lost.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{Registry, add_image, init_workspace, stderr, stdout, stella};
use stella::capsule::summary::{
    CAPSULE_ARTIFACT_TYPE, CAPSULE_FILE_MEDIA_TYPE, DSSE_MEDIA_TYPE, SUMMARY_ARTIFACT_TYPE,
};
use stella::domain::{Digest, Repository};
use stella::registry::referrers::{self, Artifact};
use stella::sign::{Envelope, PrivateKey};

const REPO: &str = "acme/api-gateway";

/// A workspace whose api-gateway lives in `reg`, with images 1.0 and 2.0
/// pushed; returns their digests.
fn registry_workspace(reg: &Registry) -> (tempfile::TempDir, String, String) {
    let ws = init_workspace();
    let layout = ws.path().join("build");
    let v1 = add_image(&layout, "1.0", "one");
    let v2 = add_image(&layout, "2.0", "two");
    reg.push(&layout, "1.0", REPO, "1.0");
    reg.push(&layout, "2.0", REPO, "2.0");
    let path = ws.path().join("stella.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "image = \"oci-layout:images/api-gateway\"",
        &format!("image = \"{}/{REPO}\"", reg.addr),
    );
    std::fs::write(path, text).unwrap();
    (ws, v1, v2)
}

fn public_key(ws: &Path, into: &Path) {
    let out = stella(ws)
        .args(["key", "export", "workspace"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(into, &out.stdout).unwrap();
}

fn verify(dir: &Path, image: &str, env: &str, key: &Path) -> std::process::Output {
    stella(dir)
        .args(["verify", image, "--env", env, "--key"])
        .arg(key)
        .arg("--json")
        .output()
        .unwrap()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn repository(reg: &Registry) -> Repository {
    Repository::Remote {
        registry: reg.addr.clone(),
        repository: REPO.into(),
    }
}

#[test]
fn promotions_attach_their_decisions_and_verify_answers_from_them_alone() {
    let Some(reg) = Registry::start() else { return };
    let (ws, v1, v2) = registry_workspace(&reg);
    let image1 = format!("{}/{REPO}@{v1}", reg.addr);
    let image2 = format!("{}/{REPO}@{v2}", reg.addr);

    // dev has no gates: allowed. staging wants a scan: blocked.
    let out = stella(ws.path())
        .args([
            "release",
            "promote",
            &format!("api-gateway@{v1}"),
            "--to",
            "dev",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let promoted = json(&out);
    assert_eq!(promoted["attachment"]["state"], "attached", "{promoted:#}");
    assert!(
        stderr(&out).contains("attached: capsule #"),
        "{}",
        stderr(&out)
    );
    let out = stella(ws.path())
        .args([
            "release",
            "promote",
            &format!("api-gateway@{v1}"),
            "--to",
            "staging",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // Both are referrers of the image, found from its digest alone.
    let found = attached(&reg, &v1.parse().unwrap(), None);
    let types: Vec<&str> = found
        .iter()
        .filter_map(|r| r.artifact_type.as_deref())
        .collect();
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == SUMMARY_ARTIFACT_TYPE)
            .count(),
        2,
        "{types:?}"
    );
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == CAPSULE_ARTIFACT_TYPE)
            .count(),
        2,
        "{types:?}"
    );

    // An empty folder, the public key, and the image: nothing else.
    let empty = tempfile::tempdir().unwrap();
    let key = empty.path().join("workspace.pub");
    public_key(ws.path(), &key);

    let out = verify(empty.path(), &image1, "dev", &key);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["allowed"], true);
    assert_eq!(v["decision"]["result"], "PASSED");
    assert_eq!(v["decision"]["environment"], "dev");
    assert_eq!(v["decision"]["action"], "promote");
    assert!(
        v["decision"]["policy_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(v["rejected"].as_array().unwrap().len(), 0);

    // Blocked: a FAILED summary, exit 3, with what held and what did not.
    let out = verify(empty.path(), &image1, "staging", &key);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["allowed"], false);
    assert_eq!(v["decision"]["result"], "FAILED");
    assert_eq!(v["decision"]["outcome"], "blocked");
    let levels: Vec<&str> = v["decision"]["verified_levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(!levels.contains(&"STELLA_GATE_SECURITY"), "{levels:?}");

    // Never promoted anywhere; and never to prod.
    let out = verify(empty.path(), &image2, "dev", &key);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(json(&out)["decision"].is_null());
    let out = verify(empty.path(), &image1, "prod", &key);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // A tag is refused: a decision is about one exact image.
    let out = stella(empty.path())
        .args([
            "verify",
            &format!("{}/{REPO}:1.0", reg.addr),
            "--env",
            "dev",
            "--key",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("names no digest"), "{}", stderr(&out));

    // `capsule pull` fetches both capsules; they verify offline.
    let pulled = empty.path().join("pulled");
    let out = stella(empty.path())
        .args(["capsule", "pull", &image1, "--bundle", "--json", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(&pulled)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let p = json(&out);
    let capsules = p["capsules"].as_array().unwrap();
    assert_eq!(capsules.len(), 2, "{p:#}");
    for c in capsules {
        assert_eq!(c["valid"], true, "{c:#}");
        let file = c["path"].as_str().unwrap();
        let out = stella(empty.path())
            .args(["capsule", "replay", file, "--trust"])
            .arg(&key)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(Path::new(c["bundle"].as_str().unwrap()).is_file());
    }
}

/// Attaches `bytes` to `digest`, the way a registry writer other than
/// stella could.
fn inject(reg: &Registry, digest: &Digest, artifact_type: &str, layer: &str, bytes: Vec<u8>) {
    runtime()
        .block_on(referrers::attach(
            &repository(reg),
            digest,
            &Artifact {
                artifact_type: artifact_type.into(),
                layer_media_type: layer.into(),
                bytes,
                annotations: BTreeMap::new(),
            },
            false,
            Path::new("."),
        ))
        .unwrap();
}

/// Attaches `envelope` to `digest` as a summary.
fn inject_summary(reg: &Registry, digest: &Digest, envelope: &Envelope) {
    let bytes = serde_json::to_vec(envelope).unwrap();
    inject(reg, digest, SUMMARY_ARTIFACT_TYPE, DSSE_MEDIA_TYPE, bytes);
}

/// What is attached to `digest` (of one artifact type, or all).
fn attached(reg: &Registry, digest: &Digest, kind: Option<&str>) -> Vec<referrers::Referrer> {
    runtime()
        .block_on(referrers::referrers(
            &repository(reg),
            digest,
            kind,
            false,
            Path::new("."),
        ))
        .unwrap()
}

/// One attached artifact, fetched.
fn fetched(reg: &Registry, manifest: &Digest) -> referrers::Fetched {
    runtime()
        .block_on(referrers::fetch(
            &repository(reg),
            manifest,
            1 << 26,
            false,
            Path::new("."),
        ))
        .unwrap()
}

#[test]
fn tampered_and_foreign_signed_summaries_are_named_and_ignored() {
    let Some(reg) = Registry::start() else { return };
    let (ws, v1, _) = registry_workspace(&reg);
    let image1 = format!("{}/{REPO}@{v1}", reg.addr);
    let digest: Digest = v1.parse().unwrap();
    let out = stella(ws.path())
        .args([
            "release",
            "promote",
            &format!("api-gateway@{v1}"),
            "--to",
            "staging",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let empty = tempfile::tempdir().unwrap();
    let key = empty.path().join("workspace.pub");
    public_key(ws.path(), &key);

    // The genuine FAILED summary, as attached.
    let found = attached(&reg, &digest, Some(SUMMARY_ARTIFACT_TYPE));
    assert_eq!(found.len(), 1);
    let genuine: Envelope =
        serde_json::from_slice(&fetched(&reg, &found[0].manifest).bytes).unwrap();
    let payload = String::from_utf8(genuine.payload_bytes().unwrap()).unwrap();
    assert!(payload.contains("\"FAILED\""));
    // Later, and PASSED: the same signature over changed bytes.
    let forged = payload.replace("\"FAILED\"", "\"PASSED\"").replacen(
        "\"timeVerified\":\"20",
        "\"timeVerified\":\"21",
        1,
    );
    let mut tampered = genuine.clone();
    tampered.payload = STANDARD.encode(forged.as_bytes());
    inject_summary(&reg, &digest, &tampered);
    // A PASSED summary signed by a key nobody trusts.
    let foreign = PrivateKey::from_seed(&[9; 32]);
    inject_summary(
        &reg,
        &digest,
        &Envelope::sign("application/vnd.in-toto+json", forged.as_bytes(), &foreign),
    );

    let out = verify(empty.path(), &image1, "staging", &key);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["allowed"], false);
    assert_eq!(v["decision"]["result"], "FAILED", "the genuine one decides");
    let problems: Vec<&str> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["problem"].as_str().unwrap())
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("tampered")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("not a key trusted here")),
        "{problems:?}"
    );
    let err = stderr(&out);
    assert!(err.contains("ignored attestation"), "{err}");

    // The forged ones say staging; for dev there is no valid decision.
    let out = verify(empty.path(), &image1, "dev", &key);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

#[test]
fn a_registry_that_is_down_is_an_error_for_verify() {
    let Some(mut reg) = Registry::start() else {
        return;
    };
    let (ws, v1, _) = registry_workspace(&reg);
    let image1 = format!("{}/{REPO}@{v1}", reg.addr);
    let empty = tempfile::tempdir().unwrap();
    let key = empty.path().join("workspace.pub");
    public_key(ws.path(), &key);
    reg.stop();
    for as_json in [false, true] {
        let mut cmd = stella(empty.path());
        cmd.args(["verify", &image1, "--env", "dev", "--key"])
            .arg(&key);
        if as_json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("unreachable"), "{err}");
        assert!(err.contains("nothing was verified"), "{err}");
        if as_json {
            let e = &json(&out)["error"];
            assert!(e["what"].as_str().unwrap().contains("unreachable"), "{e:#}");
            assert!(e["hint"].as_str().unwrap().contains("nothing was verified"));
        }
    }
}

#[test]
fn a_refused_push_leaves_the_decision_sealed_and_is_retried_and_reported() {
    let Some(mut reg) = Registry::start() else {
        return;
    };
    let (ws, v1, _) = registry_workspace(&reg);
    let image1 = format!("{}/{REPO}@{v1}", reg.addr);
    let empty = tempfile::tempdir().unwrap();
    let key = empty.path().join("workspace.pub");
    public_key(ws.path(), &key);

    // Pulls are served, pushes refused: no write access.
    reg.restart(true);
    let out = stella(ws.path())
        .args([
            "release",
            "promote",
            &format!("api-gateway@{v1}"),
            "--to",
            "dev",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["outcome"], "deployed", "{v:#}");
    assert_eq!(v["attachment"]["state"], "pending", "{v:#}");
    assert_eq!(v["attachment"]["attempts"], 3, "{v:#}");
    let err = stderr(&out);
    assert!(
        err.contains("is not attached") && err.contains("capsule push"),
        "{err}"
    );
    let capsule = v["capsule_id"].as_i64().unwrap();
    // The decision is in the chain and on disk.
    let out = stella(ws.path())
        .args(["capsule", "show", &capsule.to_string(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = stella(ws.path()).args(["status"]).output().unwrap();
    assert!(
        stderr(&out).contains("not yet attached to their image"),
        "{}",
        stderr(&out)
    );
    let out = verify(empty.path(), &image1, "dev", &key);
    assert_eq!(
        out.status.code(),
        Some(3),
        "nothing attached yet: {}",
        stderr(&out)
    );

    // Still refused: `capsule push` says so, exits 1, keeps it pending.
    let out = stella(ws.path())
        .args(["capsule", "push", "--pending", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let p = json(&out);
    assert_eq!(p["pushed"][0]["capsule_id"], capsule);
    assert_eq!(p["pushed"][0]["state"], "pending");
    assert_eq!(p["pushed"][0]["attempts"], 6);
    assert!(
        p["pushed"][0]["error"].as_str().unwrap().len() > 10,
        "{p:#}"
    );

    // Writable again: the push lands and the decision verifies.
    reg.restart(false);
    let out = stella(ws.path())
        .args(["capsule", "push", "--pending", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["pushed"][0]["state"], "attached");
    let out = verify(empty.path(), &image1, "dev", &key);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = stella(ws.path())
        .args(["capsule", "push", "--pending"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing pending"), "{}", stdout(&out));
}

fn python() -> Option<String> {
    match std::env::var("STELLA_INTEROP_PYTHON") {
        Ok(p) => Some(p),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "CI=true but STELLA_INTEROP_PYTHON is not set; .ci/run installs oras, securesystemslib and sigstore-protobuf-specs"
            )
        }
        Err(_) => {
            eprintln!(
                "skipped: set STELLA_INTEROP_PYTHON to a python with oras, securesystemslib[crypto] and sigstore-protobuf-specs"
            );
            None
        }
    }
}

#[test]
fn oras_securesystemslib_and_sigstores_types_check_what_was_attached() {
    let Some(reg) = Registry::start() else { return };
    let Some(python) = python() else { return };
    let (ws, v1, _) = registry_workspace(&reg);
    let key = ws.path().join("workspace.pub");
    public_key(ws.path(), &key);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/attached.py");
    let check = |expect: &str, bundle: &Path| {
        let out = std::process::Command::new(&python)
            .arg(&script)
            .args([reg.addr.as_str(), REPO, v1.as_str()])
            .arg(&key)
            .arg(expect)
            .arg(bundle)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
        assert!(stdout(&out).starts_with("OK:"), "{}", stdout(&out));
    };
    let bundle = |env: &str| {
        let path = ws.path().join(format!("{env}.sigstore.json"));
        let out = stella(ws.path())
            .args([
                "capsule",
                "envelope",
                "latest",
                "--env",
                env,
                "--summary",
                "--bundle",
                "--out",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        path
    };

    let out = stella(ws.path())
        .args([
            "release",
            "promote",
            &format!("api-gateway@{v1}"),
            "--to",
            "dev",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    check("PASSED", &bundle("dev"));

    let out = stella(ws.path())
        .args([
            "release",
            "promote",
            &format!("api-gateway@{v1}"),
            "--to",
            "staging",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    check("FAILED", &bundle("staging"));
}

#[test]
fn an_image_layout_holds_its_decisions_too_when_asked() {
    let ws = init_workspace();
    let layout = ws.path().join("images/api-gateway");
    let v1 = add_image(&layout, "1.0", "one");
    let path = ws.path().join("stella.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "image = \"oci-layout:images/api-gateway\"",
        "image = \"oci-layout:images/api-gateway\"\nattach = true",
    );
    std::fs::write(&path, text).unwrap();
    let out = stella(ws.path())
        .args([
            "release",
            "promote",
            "api-gateway:1.0",
            "--to",
            "dev",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["attachment"]["state"], "attached", "{v:#}");
    assert!(stderr(&out).contains("(image layout)"), "{}", stderr(&out));

    let key = ws.path().join("workspace.pub");
    public_key(ws.path(), &key);
    let image = format!("oci-layout:images/api-gateway@{v1}");
    let out = verify(ws.path(), &image, "dev", &key);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["decision"]["result"], "PASSED");
    let out = verify(ws.path(), &image, "staging", &key);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // The layout still resolves its tags, and lists no referrers tag as
    // one of them.
    let out = stella(ws.path())
        .args(["release", "resolve", "api-gateway:1.0"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), v1);
    let out = stella(ws.path())
        .args(["release", "resolve", "api-gateway:nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("1.0") && !err.contains("sha256-"), "{err}");
}

#[test]
fn capsule_pull_keeps_every_file_inside_its_folder_whatever_a_capsule_says() {
    let Some(reg) = Registry::start() else { return };
    let (ws, v1, _) = registry_workspace(&reg);
    let digest: Digest = v1.parse().unwrap();
    let out = stella(ws.path())
        .args([
            "release",
            "promote",
            &format!("api-gateway@{v1}"),
            "--to",
            "dev",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let found = attached(&reg, &digest, Some(CAPSULE_ARTIFACT_TYPE));
    // The same capsule, claiming an environment that is a path.
    let mut file: serde_json::Value =
        serde_json::from_slice(&fetched(&reg, &found[0].manifest).bytes).unwrap();
    let mut st: serde_json::Value = serde_json::from_slice(
        &STANDARD
            .decode(file["envelope"]["payload"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    st["predicate"]["to"] = "../../escaped".into();
    file["envelope"]["payload"] = STANDARD.encode(serde_json::to_vec(&st).unwrap()).into();
    inject(
        &reg,
        &digest,
        CAPSULE_ARTIFACT_TYPE,
        CAPSULE_FILE_MEDIA_TYPE,
        serde_json::to_vec(&file).unwrap(),
    );

    let place = tempfile::tempdir().unwrap();
    let inner = place.path().join("a/b");
    std::fs::create_dir_all(&inner).unwrap();
    let out = stella(&inner)
        .args([
            "capsule",
            "pull",
            &format!("{}/{REPO}@{v1}", reg.addr),
            "--out",
            "pulled",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("unverified"), "{}", stdout(&out));
    assert!(stdout(&out).contains("NOT verified"), "{}", stdout(&out));
    let names: Vec<String> = std::fs::read_dir(inner.join("pulled"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("_.._.._escaped-promote-")),
        "{names:?}"
    );
    for dir in [
        place.path().to_owned(),
        place.path().join("a"),
        inner.clone(),
    ] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !n.contains("escaped"),
                "{n} written outside the folder in {}",
                dir.display()
            );
        }
    }

    // With the sealing key, the altered capsule is named and not written.
    let key = place.path().join("workspace.pub");
    public_key(ws.path(), &key);
    let out = stella(&inner)
        .args([
            "capsule",
            "pull",
            &format!("{}/{REPO}@{v1}", reg.addr),
            "--out",
            "checked",
            "--key",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not written"), "{}", stderr(&out));
    let names: Vec<String> = std::fs::read_dir(inner.join("checked"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "only the genuine capsule and its summary: {names:?}"
    );
    assert!(
        names.iter().all(|n| n.starts_with("dev-promote-")),
        "{names:?}"
    );
}

#[test]
fn verify_bounds_what_it_reads_and_how_long_it_waits() {
    // A layout with more summaries attached than one check reads: refused
    // unread, never hours of fetching.
    let ws = init_workspace();
    let layout = ws.path().join("images/api-gateway");
    let v1 = add_image(&layout, "1.0", "one");
    let digest: Digest = v1.parse().unwrap();
    let repo = Repository::Layout("images/api-gateway".into());
    let rt = runtime();
    for n in 0..=stella::capsule::attached::MAX_REFERRERS {
        rt.block_on(referrers::attach(
            &repo,
            &digest,
            &Artifact {
                artifact_type: SUMMARY_ARTIFACT_TYPE.into(),
                layer_media_type: DSSE_MEDIA_TYPE.into(),
                bytes: format!("{{\"n\":{n}}}").into_bytes(),
                annotations: BTreeMap::new(),
            },
            false,
            ws.path(),
        ))
        .unwrap();
    }
    let key = ws.path().join("workspace.pub");
    public_key(ws.path(), &key);
    let image = format!("oci-layout:images/api-gateway@{v1}");
    let out = verify(ws.path(), &image, "dev", &key);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("over the limit of 256"),
        "{}",
        stderr(&out)
    );

    // A FIFO where index.json should be: refused, not waited on.
    let fifo = tempfile::tempdir().unwrap();
    let lay = fifo.path().join("lay");
    add_image(&lay, "1.0", "one");
    std::fs::remove_file(lay.join("index.json")).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(lay.join("index.json"))
            .status()
            .unwrap()
            .success()
    );
    let started = std::time::Instant::now();
    let out = stella(fifo.path())
        .args([
            "verify",
            &format!("oci-layout:lay@{v1}"),
            "--env",
            "dev",
            "--timeout",
            "20",
            "--key",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));

    // A registry that accepts and never answers: given up at --timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming() {
            held.push(c);
        }
    });
    let started = std::time::Instant::now();
    let out = stella(fifo.path())
        .args([
            "verify",
            &format!("{addr}/acme/api@{v1}"),
            "--env",
            "dev",
            "--timeout",
            "2",
            "--key",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("within 2 s"), "{}", stderr(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    // A private key where the public one goes.
    let out = stella(fifo.path())
        .args(["verify", &image, "--env", "dev", "--key"])
        .arg(ws.path().join(".stella/keys/workspace.key"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is a private key"),
        "{}",
        stderr(&out)
    );
}
