//! Decision capsules through the real binary: sealing on promote, the
//! exported file, verify, replay, tampering, chains, rollback and audit
//! bundles.

mod common;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{add_image, stderr, stdout, stella};

const CONFIG: &str = r#"
[workspace]
name = "caps"

[apps.api]
image = "oci-layout:images/api"

[environments.dev]

[environments.staging]
from = "dev"

[environments.staging.gates.security]
max_reachable = { critical = 0, high = 5 }

[environments.staging.gates.approval]
required = 1
approvers = ["alice@example.com"]

[environments.staging.gates.freeze]
windows = ["last-year"]

[environments.staging.gates.policy]
modules = ["policies/staging.rego"]

[environments.staging.gates.upstream]
soak = "1s"

[freeze.last-year]
from = "2025-12-24T00:00:00Z"
until = "2025-12-27T00:00:00Z"
"#;

const POLICY: &str = "package stella.gates\n\nwarn contains \"no tag\" if not input.release.tag\n\
deny contains \"too early\" if time.clock([time.now_ns(), \"UTC\"])[0] < 0\n";

const TRIVY: &str = r#"{"SchemaVersion": 2, "Results": [{"Target": "app", "Vulnerabilities": [
  {"VulnerabilityID": "CVE-2026-0001", "PkgName": "left-pad", "InstalledVersion": "1.0.0", "Severity": "HIGH"}]}]}"#;

/// A workspace with v1 live in dev and v2 promoted there too, both allowed.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    stella(ws)
        .args(["init", "--name", "caps"])
        .assert()
        .success();
    std::fs::write(ws.join("stella.toml"), CONFIG).unwrap();
    std::fs::write(ws.join("policies/staging.rego"), POLICY).unwrap();
    std::fs::write(ws.join("trivy.json"), TRIVY).unwrap();
    add_image(&ws.join("images/api"), "1.0", "v1");
    add_image(&ws.join("images/api"), "2.0", "v2");
    stella(ws)
        .args(["key", "gen", "alice", "--email", "alice@example.com"])
        .assert()
        .success();
    for tag in ["1.0", "2.0"] {
        stella(ws)
            .args(["evidence", "add", &format!("api:{tag}"), "trivy.json"])
            .assert()
            .success();
    }
    dir
}

fn promote(ws: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let out = stella(ws)
        .args(["release", "promote"])
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    (out.status.code().unwrap(), v)
}

/// v1 to dev, then (its one-second soak later) to staging with an
/// approval: a capsule with every gate, decided at the real clock.
fn staging_capsule(ws: &Path) -> PathBuf {
    let (code, _) = promote(ws, &["api:1.0", "--to", "dev"]);
    assert_eq!(code, 0);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, v) = promote(
        ws,
        &["api:1.0", "--to", "staging", "--approve", "--key", "alice"],
    );
    assert_eq!(code, 0, "{v:#}");
    ws.join(v["capsule"].as_str().unwrap())
}

fn verify(ws: &Path, file: &Path) -> (i32, serde_json::Value) {
    let out = stella(ws)
        .args(["capsule", "verify"])
        .arg(file)
        .arg("--json")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

fn replay(ws: &Path, file: &Path) -> std::process::Output {
    stella(ws)
        .args(["capsule", "replay"])
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn a_promotion_seals_exports_verifies_and_replays() {
    let dir = workspace();
    let ws = dir.path();
    let file = staging_capsule(ws);
    assert_eq!(
        file.parent().unwrap(),
        ws.join("capsules"),
        "exported into capsules/"
    );
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let clock = load(&file)["envelope"]["payload"].as_str().map(|p| {
        let st: serde_json::Value = serde_json::from_slice(&STANDARD.decode(p).unwrap()).unwrap();
        st["predicate"]["clock"].as_str().unwrap()[..10].to_owned()
    });
    assert!(
        name.starts_with("staging-") && name.ends_with(&format!("-{}.yaml", clock.unwrap())),
        "{name}"
    );

    let (code, v) = promote(ws, &["api:2.0", "--to", "staging"]);
    assert_eq!(code, 3, "v2 is not live in dev and has no approval");
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["outcome"], "blocked");
    assert!(v["promotion_id"].as_i64().unwrap() > 0);
    assert!(
        ws.join(v["capsule"].as_str().unwrap()).exists(),
        "a blocked decision is sealed too"
    );

    let (code, v) = verify(ws, &file);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["valid"], true);
    assert_eq!(v["signed_by"], "workspace, a sealing key of this workspace");

    let out = replay(ws, &file);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains(": identical\n"), "{}", stdout(&out));

    // The file is self-contained: it verifies and replays elsewhere,
    // given the sealing key.
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("c.yaml");
    std::fs::copy(&file, &copy).unwrap();
    let pem = stdout(
        &stella(ws)
            .args(["key", "export", "workspace"])
            .output()
            .unwrap(),
    );
    std::fs::write(elsewhere.path().join("ws.pub"), pem).unwrap();
    let out = stella(elsewhere.path())
        .args(["capsule", "verify", "c.yaml", "--key", "ws.pub"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = stella(elsewhere.path())
        .args(["capsule", "verify", "c.yaml"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the key in the file is not trusted by itself"
    );
    assert!(stdout(&out).contains("which is not a sealing key trusted here"));
    // Replay verifies first: elsewhere it needs the sealing key trusted.
    let out = stella(elsewhere.path())
        .args(["capsule", "replay", "c.yaml", "--json"])
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["identical"], false);
    assert_eq!(r["verified"], false);
    let out = stella(elsewhere.path())
        .args(["capsule", "replay", "c.yaml", "--json", "--trust", "ws.pub"])
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["identical"], true);

    // JSON export is the same capsule.
    let out = stella(ws)
        .args(["capsule", "export", "1", "--format", "json"])
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["capsule_version"], 1);
    assert_eq!(j["envelope"]["payloadType"], "application/vnd.in-toto+json");
}

fn load(file: &Path) -> serde_json::Value {
    yaml_serde::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

fn save(file: &Path, v: &serde_json::Value) {
    std::fs::write(file, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

fn problems(ws: &Path, file: &Path) -> String {
    let (code, v) = verify(ws, file);
    assert_eq!(code, 1, "tampering must be detected: {v:#}");
    v["problems"].to_string()
}

#[test]
fn tampering_with_any_part_is_detected_and_named() {
    let dir = workspace();
    let ws = dir.path();
    let file = staging_capsule(ws);
    let original = load(&file);
    let t = ws.join("tampered.json");

    // One byte of the payload.
    let mut v = original.clone();
    let mut payload = STANDARD
        .decode(v["envelope"]["payload"].as_str().unwrap())
        .unwrap();
    let at = payload.iter().position(|&b| b == b'1').unwrap();
    payload[at] = b'2';
    v["envelope"]["payload"] = STANDARD.encode(&payload).into();
    save(&t, &v);
    assert!(problems(ws, &t).contains("signature does not verify with key workspace"));

    // One byte of the signature.
    let mut v = original.clone();
    let mut sig = STANDARD
        .decode(v["envelope"]["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    sig[10] ^= 1;
    v["envelope"]["signatures"][0]["sig"] = STANDARD.encode(&sig).into();
    save(&t, &v);
    assert!(problems(ws, &t).contains("signature does not verify with key workspace"));

    // One byte of an evidence blob.
    let mut v = original.clone();
    let blob = &mut v["evidence"][0];
    let digest = blob["digest"].as_str().unwrap().to_owned();
    let mut content = STANDARD
        .decode(blob["content_base64"].as_str().unwrap())
        .unwrap();
    content[0] ^= 1;
    blob["content_base64"] = STANDARD.encode(&content).into();
    save(&t, &v);
    assert!(problems(ws, &t).contains(&format!("evidence {digest} does not match its content")));
    let out = replay(ws, &t);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("NOT REPLAYED"), "{}", stdout(&out));
    assert!(stdout(&out).contains(&format!("evidence {digest} does not match its content")));

    // The policy edited, with its blob renamed to the new digest: the
    // statement still names the old one.
    let mut v = original.clone();
    let evidence = v["evidence"].as_array_mut().unwrap();
    let policy = evidence
        .iter_mut()
        .find(|b| b["media_type"] == "application/vnd.stella.rego")
        .unwrap();
    let old = policy["digest"].as_str().unwrap().to_owned();
    let edited = POLICY.replace("too early", "too late");
    policy["content_base64"] = STANDARD.encode(edited.as_bytes()).into();
    policy["digest"] = stella::domain::Digest::of(edited.as_bytes())
        .to_string()
        .into();
    save(&t, &v);
    assert!(problems(ws, &t).contains(&format!(
        "evidence {old} is referenced by the statement but not in the file"
    )));
    let out = replay(ws, &t);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(&format!(
            "evidence {old} is referenced by the statement but not in the file"
        )),
        "{}",
        stdout(&out)
    );

    // Untouched, it still verifies.
    save(&t, &original);
    assert_eq!(verify(ws, &t).0, 0);
}

#[test]
fn a_capsule_files_verification_summary_is_checked_against_the_capsule() {
    let dir = workspace();
    let ws = dir.path();
    let file = staging_capsule(ws);
    let original = load(&file);
    let summary: stella::sign::Envelope =
        serde_json::from_value(original["summary"].clone()).expect("a summary in the file");
    let mut vsa: serde_json::Value =
        serde_json::from_slice(&summary.payload_bytes().unwrap()).unwrap();
    assert_eq!(
        vsa["predicateType"],
        "https://slsa.dev/verification_summary/v1"
    );
    assert_eq!(verify(ws, &file).0, 0);

    // Re-signed with the sealing key itself, but saying the opposite.
    let flipped = if vsa["predicate"]["verificationResult"] == "PASSED" {
        "FAILED"
    } else {
        "PASSED"
    };
    vsa["predicate"]["verificationResult"] = flipped.into();
    let key = stella::sign::PrivateKey::from_pem(
        &std::fs::read_to_string(ws.join(".stella/keys/workspace.key")).unwrap(),
    )
    .unwrap();
    let mut v = original.clone();
    v["summary"] = serde_json::to_value(stella::sign::Envelope::sign(
        stella::capsule::statement::PAYLOAD_TYPE,
        &serde_json_canonicalizer::to_vec(&vsa).unwrap(),
        &key,
    ))
    .unwrap();
    save(&file, &v);
    assert!(
        problems(ws, &file).contains("the verification summary: it says"),
        "{}",
        problems(ws, &file)
    );

    // Changed after signing.
    let mut v = original.clone();
    v["summary"]["payload"] = STANDARD.encode(b"{}").into();
    save(&file, &v);
    assert!(
        problems(ws, &file).contains("the verification summary: signature does not verify"),
        "{}",
        problems(ws, &file)
    );
    save(&file, &original);
    assert_eq!(verify(ws, &file).0, 0);
}

#[test]
fn replay_reports_the_exact_differences() {
    let dir = workspace();
    let ws = dir.path();
    let file = staging_capsule(ws);
    // Re-seal the same statement with a different recorded verdict, as a
    // capsule from a stella that decided differently would be.
    let mut v = load(&file);
    let payload = STANDARD
        .decode(v["envelope"]["payload"].as_str().unwrap())
        .unwrap();
    let mut st: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let gates = st["predicate"]["gates"].as_array_mut().unwrap();
    let security = gates.iter_mut().find(|g| g["gate"] == "security").unwrap();
    security["measured"]["reachable"]["high"] = 7.into();
    security["summary"] = "PASS — 7 reachable CVEs below threshold".into();
    let payload = serde_json_canonicalizer::to_vec(&st).unwrap();
    let key = stella::sign::PrivateKey::from_pem(
        &std::fs::read_to_string(ws.join(".stella/keys/workspace.key")).unwrap(),
    )
    .unwrap();
    v["envelope"] = serde_json::to_value(stella::sign::Envelope::sign(
        stella::capsule::statement::PAYLOAD_TYPE,
        &payload,
        &key,
    ))
    .unwrap();
    // The file's verification summary names the original capsule; one
    // re-signed this way no longer matches it, so it goes too.
    v.as_object_mut().unwrap().remove("summary");
    save(&file, &v);
    let out = stella(ws)
        .args(["capsule", "replay"])
        .arg(&file)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["identical"], false);
    let diffs = r["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 2, "{diffs:#?}");
    assert_eq!(diffs[0]["gate"], "security");
    assert_eq!(diffs[0]["field"], "summary");
    assert_eq!(
        diffs[0]["recorded"],
        "PASS — 7 reachable CVEs below threshold"
    );
    assert_eq!(
        diffs[0]["replayed"],
        "PASS — 1 reachable CVE below threshold"
    );
    assert_eq!(diffs[1]["field"], "measured");
}

fn sql(ws: &Path, statements: &str) {
    let conn = rusqlite::Connection::open(ws.join(".stella/stella.db")).unwrap();
    conn.execute_batch(statements).unwrap();
}

fn chain(ws: &Path) -> (i32, serde_json::Value) {
    let out = stella(ws)
        .args(["audit", "verify-chain", "--json"])
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

/// Four capsules in dev: 1.0, 2.0, 1.0 again, 2.0 again.
fn dev_chain() -> tempfile::TempDir {
    let dir = workspace();
    let ws = dir.path();
    for tag in ["1.0", "2.0", "1.0", "2.0"] {
        assert_eq!(promote(ws, &[&format!("api:{tag}"), "--to", "dev"]).0, 0);
    }
    dir
}

#[test]
fn capsule_list_pages_with_limit_after_and_since() {
    let dir = dev_chain();
    let ws = dir.path();
    let list = |args: &[&str]| -> Vec<i64> {
        let out = stella(ws)
            .args(["capsule", "list", "--json"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        rows.iter().map(|r| r["id"].as_i64().unwrap()).collect()
    };
    let all = list(&[]);
    assert_eq!(all.len(), 4);
    let first = list(&["--limit", "3"]);
    assert_eq!(first, all[..3]);
    let next = list(&["--after", &first[2].to_string(), "--limit", "3"]);
    assert_eq!(next, all[3..]);
    assert!(list(&["--since", "2999-01-01"]).is_empty());
    assert_eq!(
        list(&["--since", "2000-01-01T00:00:00Z", "--limit", "1"]),
        all[..1]
    );

    let out = stella(ws)
        .args(["capsule", "list", "--since", "yesterday"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("YYYY-MM-DD"), "{}", stderr(&out));
}

#[test]
fn the_chain_detects_a_swap_and_a_deletion() {
    let dir = dev_chain();
    let ws = dir.path();
    let (code, v) = chain(ws);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["capsules"], 4);

    // Swap the contents of capsules 2 and 3 (ids stay, order changes).
    sql(
        ws,
        "UPDATE capsules SET id = -2 WHERE id = 2; UPDATE capsules SET id = 2 WHERE id = 3; UPDATE capsules SET id = 3 WHERE id = -2;",
    );
    let (code, v) = chain(ws);
    assert_eq!(code, 1);
    let p = v["problems"].to_string();
    assert!(p.contains("the chain was reordered"), "{p}");
    // The file-level verify names the broken link too.
    let out = stella(ws)
        .args(["capsule", "export", "3", "--out", "c3.yaml"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let (code, v) = verify(ws, &ws.join("c3.yaml"));
    assert_eq!(code, 1);
    assert!(
        v["problems"].to_string().contains("chain: it links to"),
        "{v:#}"
    );
}

#[test]
fn a_deleted_capsule_is_named_missing() {
    let dir = dev_chain();
    let ws = dir.path();
    sql(ws, "DELETE FROM capsules WHERE id = 2;");
    let (code, v) = chain(ws);
    assert_eq!(code, 1);
    let p = v["problems"][0].as_str().unwrap();
    assert!(
        p.starts_with("capsule #3 (dev): links to sha256:")
            && p.ends_with("which is missing from the store"),
        "{p}"
    );

    let dir = dev_chain();
    let ws = dir.path();
    sql(
        ws,
        "UPDATE capsules SET envelope = CAST(replace(CAST(envelope AS TEXT), '\"sig\":\"', '\"sig\":\"A') AS BLOB) WHERE id = 4;",
    );
    let (_, v) = chain(ws);
    assert!(
        v["problems"]
            .to_string()
            .contains("capsule #4 (dev): signature does not verify"),
        "{v:#}"
    );
}

#[test]
fn rollback_returns_to_the_last_known_good_and_references_its_capsule() {
    let dir = workspace();
    let ws = dir.path();
    let (_, first) = promote(ws, &["api:1.0", "--to", "dev"]);
    promote(ws, &["api:2.0", "--to", "dev"]);
    let v1 = first["digest"].as_str().unwrap().to_owned();
    let out = stella(ws)
        .args([
            "release",
            "rollback",
            "api",
            "--env",
            "dev",
            "--reason",
            "5xx spike",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["digest"], v1.as_str());
    assert_eq!(r["outcome"], "rolled-back");
    let capsules: serde_json::Value = serde_json::from_slice(
        &stella(ws)
            .args(["capsule", "list", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(r["restores_capsule"], capsules[0]["payload_digest"]);
    assert_eq!(capsules[2]["action"], "rollback");

    let show: serde_json::Value = serde_json::from_slice(
        &stella(ws)
            .args(["capsule", "show", "latest", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let p = &show["predicate"];
    assert_eq!(p["restores"]["capsule"], capsules[0]["payload_digest"]);
    assert_eq!(p["reason"], "5xx spike");
    let kinds: Vec<&str> = p["inputs"]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["capsule", "scan"],
        "the original capsule and its evidence, preserved"
    );
    let file = ws.join(r["capsule"].as_str().unwrap());
    assert_eq!(verify(ws, &file).0, 0);
    assert_eq!(replay(ws, &file).status.code(), Some(0));

    // Now live again in dev: the next gate check sees v1 upstream.
    let out = stella(ws)
        .args(["gate", "check", "api", "--env", "staging", "--json"])
        .output()
        .unwrap();
    let g: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(g["digest"], v1.as_str());

    let out = stella(ws)
        .args(["release", "rollback", "api", "--env", "staging"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("api is not live in staging"));
}

#[test]
fn audit_bundles_verify_offline_and_name_tampering() {
    let dir = workspace();
    let ws = dir.path();
    staging_capsule(ws);
    for tag in ["2.0", "1.0"] {
        assert_eq!(promote(ws, &[&format!("api:{tag}"), "--to", "dev"]).0, 0);
    }
    let bundle = ws.join("bundle.tar.gz");
    let out = stella(ws)
        .args(["audit", "export", "--out"])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("4 capsules in 2 chain(s)"),
        "{}",
        stdout(&out)
    );

    // Elsewhere, the reviewer trusts the sealing key they were given.
    let elsewhere = tempfile::tempdir().unwrap();
    let pem = stdout(
        &stella(ws)
            .args(["key", "export", "workspace"])
            .output()
            .unwrap(),
    );
    std::fs::write(elsewhere.path().join("ws.pub"), pem).unwrap();
    let out = stella(elsewhere.path())
        .args(["audit", "verify", "--trust", "ws.pub"])
        .arg(&bundle)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["capsules"], 4);

    // Unpack, change one evidence byte in one capsule, repack.
    let mut files = Vec::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(&bundle).unwrap(),
    ));
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
        files.push((path, bytes));
    }
    let readme = String::from_utf8(
        files
            .iter()
            .find(|(p, _)| p == "README.txt")
            .unwrap()
            .1
            .clone(),
    )
    .unwrap();
    assert!(readme.contains("securesystemslib") && readme.contains("stella audit verify"));
    // Every promotion's capsule travels with its verification summary.
    let capsules: Vec<serde_json::Value> = files
        .iter()
        .filter(|(p, _)| p.starts_with("capsules/"))
        .map(|(_, b)| serde_json::from_slice(b).unwrap())
        .collect();
    assert_eq!(capsules.len(), 4);
    for c in &capsules {
        let summary: stella::sign::Envelope =
            serde_json::from_value(c["summary"].clone()).expect("a summary in each capsule");
        let vsa: serde_json::Value =
            serde_json::from_slice(&summary.payload_bytes().unwrap()).unwrap();
        assert_eq!(
            vsa["predicateType"],
            "https://slsa.dev/verification_summary/v1"
        );
    }
    // Unpacked and packed again by hand (`./`-prefixed names, folder
    // entries): the same bundle, and it verifies.
    let unpacked = ws.join("unpacked");
    for (p, b) in &files {
        let path = unpacked.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b).unwrap();
    }
    let repacked = ws.join("repacked.tgz");
    let tar = std::process::Command::new("tar")
        .arg("czf")
        .arg(&repacked)
        .arg("-C")
        .arg(&unpacked)
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());
    let out = stella(elsewhere.path())
        .args(["audit", "verify", "--trust", "ws.pub"])
        .arg(&repacked)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    let (_, capsule) = files
        .iter_mut()
        .find(|(p, _)| p.starts_with("capsules/dev/"))
        .unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(capsule).unwrap();
    let b64 = v["evidence"][0]["content_base64"].as_str().unwrap();
    let mut content = STANDARD.decode(b64).unwrap();
    content[1] ^= 1;
    v["evidence"][0]["content_base64"] = STANDARD.encode(&content).into();
    *capsule = serde_json::to_vec(&v).unwrap();
    let tampered = ws.join("tampered.tar.gz");
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&tampered).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    for (p, b) in &files {
        let mut h = tar::Header::new_ustar();
        h.set_size(b.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, p, b.as_slice()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
    let out = stella(elsewhere.path())
        .args(["audit", "verify", "--trust", "ws.pub"])
        .arg(&tampered)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("does not match its content"),
        "{}",
        stdout(&out)
    );
}

/// `sealed_at` is the index's record of when each capsule joined its
/// chain. Stepping backwards along the chain is a warning (the signed
/// links still prove the order); sealed before its own signed decision
/// clock is a broken index.
#[test]
fn the_chain_audit_flags_sealed_at_going_backwards() {
    let dir = dev_chain();
    let ws = dir.path();
    let (code, v) = chain(ws);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["warnings"], serde_json::json!([]), "{v:#}");

    sql(
        ws,
        "UPDATE capsules SET sealed_at = '2099-01-01T00:00:00.000000Z' WHERE id = 2;",
    );
    let out = stella(ws)
        .args(["audit", "verify-chain", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "a warning, not a break: {v:#}");
    let w = v["warnings"].to_string();
    assert!(
        w.contains("capsule #3 (dev): sealed_at") && w.contains("of #2"),
        "{v:#}"
    );
    assert!(
        stderr(&out).contains("warning: capsule #3"),
        "{}",
        stderr(&out)
    );

    sql(
        ws,
        "UPDATE capsules SET sealed_at = '2000-01-01T00:00:00.000000Z' WHERE id = 4;",
    );
    let (code, v) = chain(ws);
    assert_eq!(code, 1, "{v:#}");
    assert!(
        v["problems"]
            .to_string()
            .contains("before the signed decision clock"),
        "{v:#}"
    );
}
