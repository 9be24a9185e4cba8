//! Hostile capsules and a tampered store: a capsule nested to exhaust the
//! parser, one re-signed with an approver's key, an edited payload replayed,
//! the chain cut at its end or its index rewritten, and a weak key that
//! batch verification alone would accept.

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{stderr, stdout, stella};

const CONFIG: &str = r#"
[workspace]
name = "hostile"

[apps.api]
image = "oci-layout:images/api"

[apps.billing]
image = "oci-layout:images/api"

[environments.dev]
"#;

/// A workspace with two allowed promotions of api into dev, and an
/// approver's key `bob`.
fn workspace() -> tempfile::TempDir {
    let dir = common::promoted_twice("hostile", CONFIG);
    stella(dir.path())
        .args(["key", "gen", "bob", "--email", "bob@example.com"])
        .assert()
        .success();
    dir
}

fn export_latest(ws: &Path, name: &str) -> std::path::PathBuf {
    let path = ws.join(name);
    stella(ws)
        .args(["capsule", "export", "latest", "--format", "json", "--out"])
        .arg(&path)
        .assert()
        .success();
    path
}

fn load(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn db(ws: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(ws.join(".stella/stella.db")).unwrap()
}

#[test]
fn a_capsule_nested_200000_deep_is_refused_quickly_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.yaml");
    let deep = format!(
        "capsule_version: 1\nenvelope: {}{}\n",
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    std::fs::write(&path, deep).unwrap();
    // The old parser took over a minute here.
    let out = stella(dir.path())
        .args(["capsule", "verify"])
        .arg(&path)
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nested too deep") && stderr(&out).contains("limit of 1024"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_capsule_resigned_with_an_approvers_key_does_not_verify() {
    let dir = workspace();
    let ws = dir.path();
    let file = export_latest(ws, "c.json");
    let mut v = load(&file);
    let payload = STANDARD
        .decode(v["envelope"]["payload"].as_str().unwrap())
        .unwrap();
    let bob = stella::sign::PrivateKey::from_pem(
        &std::fs::read_to_string(ws.join(".stella/keys/bob.key")).unwrap(),
    )
    .unwrap();
    v["envelope"] = serde_json::to_value(stella::sign::Envelope::sign(
        stella::capsule::statement::PAYLOAD_TYPE,
        &payload,
        &bob,
    ))
    .unwrap();
    v["public_key_pem"] = bob.public().to_pem().into();
    std::fs::write(&file, serde_json::to_vec(&v).unwrap()).unwrap();
    let out = stella(ws)
        .args(["capsule", "verify"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("INVALID"), "{text}");
    assert!(
        text.contains("`bob` (bob@example.com), a key of this workspace that is not a sealing key"),
        "{text}"
    );
    assert!(!text.contains("signed by bob"), "{text}");
    // Nor does replay call it identical.
    let out = stella(ws)
        .args(["capsule", "replay"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("NOT REPLAYED"), "{}", stdout(&out));
}

#[test]
fn verify_names_the_signing_key_and_its_trust() {
    let dir = workspace();
    let ws = dir.path();
    let file = export_latest(ws, "c.json");
    let out = stella(ws)
        .args(["capsule", "verify"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let keyid = load(&file)["envelope"]["signatures"][0]["keyid"]
        .as_str()
        .unwrap()[..16]
        .to_owned();
    assert!(
        stdout(&out).contains(&format!(
            "signed by key {keyid} (workspace, a sealing key of this workspace)"
        )),
        "{}",
        stdout(&out)
    );
}

#[test]
fn replay_refuses_an_edited_payload_whose_signature_no_longer_verifies() {
    let dir = workspace();
    let ws = dir.path();
    let file = export_latest(ws, "c.json");
    let mut v = load(&file);
    let payload = STANDARD
        .decode(v["envelope"]["payload"].as_str().unwrap())
        .unwrap();
    let mut st: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    st["predicate"]["requested_by"] = "someone-else@example.com".into();
    v["envelope"]["payload"] = STANDARD
        .encode(serde_json_canonicalizer::to_vec(&st).unwrap())
        .into();
    std::fs::write(&file, serde_json::to_vec(&v).unwrap()).unwrap();
    let out = stella(ws)
        .args(["capsule", "replay"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(!stdout(&out).contains("identical"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("NOT REPLAYED") && stdout(&out).contains("signature does not verify"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn deleting_the_newest_capsule_is_named_by_the_chain_audit_and_the_list() {
    let dir = workspace();
    let ws = dir.path();
    stella(ws)
        .args(["audit", "verify-chain"])
        .assert()
        .success();
    let conn = db(ws);
    conn.execute(
        "DELETE FROM capsules WHERE id = (SELECT max(id) FROM capsules)",
        [],
    )
    .unwrap();
    drop(conn);
    let out = stella(ws).args(["audit", "verify-chain"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("dev: the chain was cut at its end"),
        "{}",
        stdout(&out)
    );
    let out = stella(ws).args(["capsule", "list"]).output().unwrap();
    assert!(
        stdout(&out).contains("dev: the chain was cut at its end"),
        "{}",
        stdout(&out)
    );
    // Seen: the next decision sealed over the cut (reusing the deleted
    // capsule's id) and the audit said "Chains intact" again. Nothing is
    // sealed on a cut chain, and the cut stays named.
    let before = db(ws)
        .query_row("SELECT count(*) FROM capsules", [], |r| r.get::<_, i64>(0))
        .unwrap();
    let out = stella(ws)
        .args(["release", "promote", "api:1.0", "--to", "dev"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("does not end where its signed head says"),
        "{}",
        stderr(&out)
    );
    let after = db(ws)
        .query_row("SELECT count(*) FROM capsules", [], |r| r.get::<_, i64>(0))
        .unwrap();
    assert_eq!(before, after);
    let out = stella(ws).args(["audit", "verify-chain"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}

#[test]
fn a_rewritten_sealed_time_is_named_by_the_chain_audit_and_the_list() {
    // Seen: `sealed_at` set to 2020 went unnoticed, and `audit export
    // --since` then left the decision out of the bundle.
    let dir = workspace();
    let ws = dir.path();
    db(ws)
        .execute(
            "UPDATE capsules SET sealed_at = '2020-01-01T00:00:00Z' WHERE id = (SELECT max(id) FROM capsules)",
            [],
        )
        .unwrap();
    let out = stella(ws).args(["audit", "verify-chain"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("sealed_at is `2020-01-01T00:00:00Z` in the index"),
        "{}",
        stdout(&out)
    );
    let out = stella(ws).args(["capsule", "list"]).output().unwrap();
    assert!(stdout(&out).contains("sealed_at is"), "{}", stdout(&out));
}

#[test]
fn rewritten_index_columns_are_named_by_the_chain_audit_and_marked_by_the_list() {
    let dir = workspace();
    let ws = dir.path();
    let conn = db(ws);
    conn.execute(
        "UPDATE capsules SET app = 'billing', action = 'rollback', decision = 'deny', outcome = 'blocked' WHERE id = (SELECT max(id) FROM capsules)",
        [],
    )
    .unwrap();
    drop(conn);
    let out = stella(ws).args(["audit", "verify-chain"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("index disagrees with signed payload"),
        "{text}"
    );
    assert!(
        text.contains("app is `billing` in the index, `api` signed")
            && text.contains("action is `rollback` in the index, `promote` signed")
            && text.contains("decision is `deny` in the index, `allow` signed")
            && text.contains("outcome is `blocked` in the index, `live` signed"),
        "{text}"
    );
    let out = stella(ws).args(["capsule", "list"]).output().unwrap();
    let text = stdout(&out);
    let marked: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("! index disagrees with signed payload"))
        .collect();
    assert_eq!(marked.len(), 1, "{text}");
    let out = stella(ws)
        .args(["capsule", "list", "--json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["problems"].as_array().unwrap().len(), 0);
    assert!(
        rows[1]["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("index disagrees with signed payload")
    );
}

/// A small-order key (the identity point) and a "signature" with R the
/// identity and s = 0: ed25519 batch verification alone accepts it for
/// any message. Even trusted as a sealing key, the chain audit refuses it.
#[test]
fn a_weak_key_that_batch_verification_alone_accepts_is_refused_by_the_chain_audit() {
    let dir = workspace();
    let ws = dir.path();
    let mut identity = [0u8; 32];
    identity[0] = 1;
    // SPKI DER of an ed25519 key: the algorithm prefix, then the point.
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(&identity);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(&der)
    );
    let weak = stella::sign::PublicKey::from_pem(&pem).unwrap();
    let conn = db(ws);
    let now = "2026-01-01T00:00:00.000000Z";
    conn.execute(
        "INSERT INTO keys (name, email, keyid, public_pem, private, added_at) VALUES ('weak', 'w@example.com', ?1, ?2, 0, ?3)",
        rusqlite::params![weak.keyid(), weak.to_pem(), now],
    )
    .unwrap();
    // Trusted as a sealing key too (the table exists from schema 5).
    let _ = conn.execute(
        "INSERT INTO sealing_keys (keyid, name, public_pem, added_at) VALUES (?1, 'weak', ?2, ?3)",
        rusqlite::params![weak.keyid(), weak.to_pem(), now],
    );
    // A capsule after the newest, its statement linked properly, "signed"
    // by the weak key.
    let (id, envelope, digest): (i64, Vec<u8>, String) = conn
        .query_row(
            "SELECT id, envelope, payload_digest FROM capsules ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let env: serde_json::Value = serde_json::from_slice(&envelope).unwrap();
    let mut st: serde_json::Value =
        serde_json::from_slice(&STANDARD.decode(env["payload"].as_str().unwrap()).unwrap())
            .unwrap();
    st["predicate"]["previous"] = digest.clone().into();
    st["predicate"]["reason"] = "forged".into();
    let payload = serde_json_canonicalizer::to_vec(&st).unwrap();
    let mut sig = [0u8; 64];
    sig[0] = 1;
    let forged = serde_json::json!({
        "payloadType": stella::capsule::statement::PAYLOAD_TYPE,
        "payload": STANDARD.encode(&payload),
        "signatures": [{"keyid": weak.keyid(), "sig": STANDARD.encode(sig)}],
    });
    conn.execute(
        "INSERT INTO capsules (environment, app, digest, action, decision, promotion_id, payload_digest, previous, envelope, sealed_at)
         SELECT environment, app, digest, action, decision, promotion_id, ?1, ?2, ?3, sealed_at FROM capsules WHERE id = ?4",
        rusqlite::params![
            stella::domain::Digest::of(&payload).to_string(),
            digest,
            serde_json::to_vec(&forged).unwrap(),
            id
        ],
    )
    .unwrap();
    drop(conn);
    let out = stella(ws)
        .args(["audit", "verify-chain", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = r["problems"].to_string();
    assert!(
        problems.contains(&format!(
            "capsule #{} (dev): signature does not verify with key {}",
            id + 1,
            &weak.keyid()[..16]
        )),
        "{problems}"
    );
}
