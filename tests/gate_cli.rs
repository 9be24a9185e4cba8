//! A release walked from blocked to allowed through the real binary,
//! changing one input at a time, and the ways approvals are tampered with.

mod common;

use std::path::Path;

use common::{add_image, stderr, stdout, stella};

const CONFIG: &str = r#"
[workspace]
name = "walk"

[apps.api]
image = "oci-layout:images/api"

[environments.dev]

[environments.staging]
from = "dev"

[environments.staging.gates.security]
max_reachable = { critical = 0, high = 1 }

[environments.staging.gates.approval]
required = 1
approvers = ["alice@example.com", "bob@example.com"]
four_eyes = true

[environments.staging.gates.freeze]
windows = ["black-friday"]

[environments.staging.gates.policy]
modules = ["policies/staging.rego"]

[freeze.black-friday]
from = "2037-11-27T00:00:00Z"
until = "2037-11-30T23:59:59Z"
"#;
// The what-if clocks (`gate check --at`) are in a November to come:
// approvals are signed, and releases marked live, at the real clock.

const POLICY: &str = r#"package stella.gates

deny contains "must be live in dev first" if not input.upstream
"#;

/// Two high findings (over the limit of 1) in a Trivy report.
const TRIVY: &str = r#"{"SchemaVersion": 2, "ArtifactName": "api", "Results": [{"Target": "app", "Vulnerabilities": [
  {"VulnerabilityID": "CVE-2026-0001", "PkgName": "left-pad", "PkgIdentifier": {"PURL": "pkg:npm/left-pad@1.0.0"}, "InstalledVersion": "1.0.0", "Severity": "HIGH"},
  {"VulnerabilityID": "CVE-2026-0002", "PkgName": "right-pad", "PkgIdentifier": {"PURL": "pkg:npm/right-pad@2.0.0"}, "InstalledVersion": "2.0.0", "Severity": "HIGH"}]}]}"#;

const VEX: &str = r#"{"@context": "https://openvex.dev/ns/v0.2.0", "@id": "vex-1", "statements": [
  {"vulnerability": {"name": "CVE-2026-0002"}, "products": [{"@id": "pkg:npm/right-pad@2.0.0"}],
   "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"}]}"#;

fn workspace() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    std::fs::write(ws.join("stella.toml"), CONFIG).unwrap();
    std::fs::create_dir_all(ws.join("policies")).unwrap();
    std::fs::write(ws.join("policies/staging.rego"), POLICY).unwrap();
    let digest = add_image(&ws.join("images/api"), "1.0", "api 1.0");
    std::fs::write(ws.join("trivy.json"), TRIVY).unwrap();
    std::fs::write(ws.join("vex.json"), VEX).unwrap();
    for (name, email) in [("alice", "alice@example.com"), ("bob", "bob@example.com")] {
        stella(ws)
            .args(["key", "gen", name, "--email", email])
            .assert()
            .success();
    }
    stella(ws)
        .args(["evidence", "add", "api:1.0", "trivy.json"])
        .assert()
        .success();
    (dir, digest)
}

fn check(ws: &Path, at: &str) -> (i32, serde_json::Value, Vec<u8>) {
    let out = stella(ws)
        .args([
            "gate",
            "check",
            "api:1.0",
            "--env",
            "staging",
            "--at",
            at,
            "--as",
            "alice@example.com",
            "--json",
        ])
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    (out.status.code().unwrap(), v, out.stdout)
}

fn verdicts(v: &serde_json::Value) -> Vec<(String, String)> {
    v["gates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["gate"].as_str().unwrap().to_owned(),
                g["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

const FROZEN: &str = "2037-11-28T12:00:00Z";
const AFTER: &str = "2037-12-01T09:00:00Z";

#[test]
fn a_release_walks_from_blocked_to_allowed_one_input_at_a_time() {
    let (dir, digest) = workspace();
    let ws = dir.path();

    // Everything blocks: a high finding over the limit, no approvals,
    // black friday, and the policy wants it live in dev.
    let (code, v, _) = check(ws, FROZEN);
    assert_eq!(code, 3);
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["app"], "api");
    assert_eq!(v["digest"], digest.as_str());
    assert_eq!(v["environment"], "staging");
    assert_eq!(v["evaluated_at"], FROZEN);
    assert_eq!(
        verdicts(&v),
        pairs(&[
            ("security", "fail"),
            ("approval", "fail"),
            ("freeze", "fail"),
            ("policy", "fail")
        ])
    );
    assert_eq!(v["gates"][0]["measured"]["reachable"]["high"], 2);
    assert_eq!(
        v["gates"][0]["summary"],
        "FAIL — 2 reachable high CVEs over the limit of 1"
    );

    // 1. VEX shows one finding unreachable: security warns (1 of 1).
    stella(ws)
        .args(["evidence", "add", "api:1.0", "vex.json"])
        .assert()
        .success();
    let (code, v, _) = check(ws, FROZEN);
    assert_eq!(code, 3);
    assert_eq!(
        verdicts(&v),
        pairs(&[
            ("security", "warn"),
            ("approval", "fail"),
            ("freeze", "fail"),
            ("policy", "fail")
        ])
    );
    assert_eq!(v["gates"][0]["measured"]["suppressed"], 1);

    // 2. Alice asks, so her approval does not count; Bob's does.
    stella(ws)
        .args(["approve", "api:1.0", "--env", "staging", "--key", "alice"])
        .assert()
        .success();
    let (_, v, _) = check(ws, FROZEN);
    assert_eq!(v["gates"][1]["verdict"], "fail");
    stella(ws)
        .args(["approve", "api:1.0", "--env", "staging", "--key", "bob"])
        .assert()
        .success();
    let (code, v, _) = check(ws, FROZEN);
    assert_eq!(code, 3);
    assert_eq!(
        verdicts(&v),
        pairs(&[
            ("security", "warn"),
            ("approval", "pass"),
            ("freeze", "fail"),
            ("policy", "fail")
        ])
    );
    assert_eq!(v["gates"][1]["summary"], "PASS — signed by bob@example.com");
    // The text says who signed and which approval did not count, and why,
    // though the gate passed.
    let out = stella(ws)
        .args([
            "gate",
            "check",
            "api:1.0",
            "--env",
            "staging",
            "--at",
            FROZEN,
            "--as",
            "alice@example.com",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Approval gate: PASS — signed by bob@example.com\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "    not counted: alice@example.com requested this promotion; with four eyes their own approval does not count\n"
        ),
        "{text}"
    );

    // 3. After the freeze.
    let (code, v, _) = check(ws, AFTER);
    assert_eq!(code, 3);
    assert_eq!(
        verdicts(&v),
        pairs(&[
            ("security", "warn"),
            ("approval", "pass"),
            ("freeze", "pass"),
            ("policy", "fail")
        ])
    );
    assert_eq!(
        v["gates"][3]["reasons"][0],
        "deny: must be live in dev first"
    );

    // 4. Live in dev: allowed.
    stella(ws)
        .args(["release", "mark-live", "api:1.0", "--env", "dev"])
        .assert()
        .success();
    let (code, v, bytes) = check(ws, AFTER);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["decision"], "allow");
    assert_eq!(
        verdicts(&v),
        pairs(&[
            ("security", "warn"),
            ("approval", "pass"),
            ("freeze", "pass"),
            ("policy", "pass")
        ])
    );

    // Same inputs and clock: the same bytes.
    let (_, _, again) = check(ws, AFTER);
    assert_eq!(bytes, again);

    // The human form: one line per gate, then the decision.
    let out = stella(ws)
        .args([
            "gate",
            "check",
            "api:1.0",
            "--env",
            "staging",
            "--at",
            FROZEN,
            "--as",
            "alice@example.com",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let text = stdout(&out);
    assert!(
        text.contains("Security gate: WARN — 1 reachable high CVE, near the limit of 1"),
        "{text}"
    );
    assert!(
        text.contains("Approval gate: PASS — signed by bob@example.com"),
        "{text}"
    );
    assert!(
        text.contains("Freeze window: FAIL — frozen: black-friday until Mon 2037-11-30 23:59 UTC"),
        "{text}"
    );
    assert!(text.contains("Blocked. What would unblock it:"), "{text}");
    assert!(
        text.contains("freeze    wait for the freeze to end"),
        "{text}"
    );
}

#[test]
fn an_approval_for_another_digest_does_not_unblock_this_one() {
    let (dir, _) = workspace();
    let ws = dir.path();
    add_image(&ws.join("images/api"), "2.0", "api 2.0");
    stella(ws)
        .args(["approve", "api:2.0", "--env", "staging", "--key", "bob"])
        .assert()
        .success();
    let (_, v, _) = check(ws, AFTER);
    assert_eq!(v["gates"][1]["verdict"], "fail");
    assert_eq!(v["gates"][1]["measured"]["valid"], 0);
}

#[test]
fn a_modified_approval_file_is_detected() {
    let (dir, _) = workspace();
    let ws = dir.path();
    let out = stella(ws)
        .args([
            "approve", "api:1.0", "--env", "staging", "--key", "bob", "--json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hex = v["approval"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let blob = ws.join(".stella/evidence/sha256").join(&hex);
    let text = std::fs::read_to_string(&blob).unwrap();
    std::fs::write(&blob, text.replacen("\"sig\"", "\"sig\" ", 1)).unwrap();

    let out = stella(ws)
        .args([
            "gate", "check", "api:1.0", "--env", "staging", "--at", AFTER,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("evidence sha256:{hex} is corrupt")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_key_not_on_the_list_does_not_count_and_the_cli_says_so() {
    let (dir, _) = workspace();
    let ws = dir.path();
    stella(ws)
        .args(["key", "gen", "mallory", "--email", "mallory@example.com"])
        .assert()
        .success();
    let out = stella(ws)
        .args(["approve", "api:1.0", "--env", "staging", "--key", "mallory"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(stderr(&out).contains("mallory@example.com is not on staging's approver list"));
    let (_, v, _) = check(ws, AFTER);
    let reasons = v["gates"][1]["reasons"].to_string();
    assert!(
        reasons.contains("mallory@example.com is not an approver for staging"),
        "{reasons}"
    );
}

#[test]
fn keys_are_private_listed_exported_and_imported() {
    let (dir, _) = workspace();
    let ws = dir.path();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ws.join(".stella/keys/alice.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = stella(ws)
        .args(["key", "gen", "alice", "--email", "alice@example.com"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists; not overwriting it"));

    let pem = stdout(&stella(ws).args(["key", "export", "bob"]).output().unwrap());
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));

    let other = tempfile::tempdir().unwrap();
    stella(other.path())
        .args(["init", "--name", "other"])
        .assert()
        .success();
    std::fs::write(other.path().join("bob.pub"), &pem).unwrap();
    stella(other.path())
        .args([
            "key",
            "import",
            "bob",
            "--email",
            "bob@example.com",
            "bob.pub",
        ])
        .assert()
        .success();
    let out = stella(other.path())
        .args(["key", "list", "--json"])
        .output()
        .unwrap();
    let keys: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys[0]["name"], "bob");
    assert_eq!(keys[0]["private"], false);
    // An imported key cannot sign.
    let out = stella(other.path())
        .args(["approve", "api:1.0", "--env", "staging", "--key", "bob"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    std::fs::write(other.path().join("junk.pub"), "hello").unwrap();
    let out = stella(other.path())
        .args(["key", "import", "x", "--email", "x@example.com", "junk.pub"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not an ed25519 public key"));
}

#[test]
fn evidence_is_refused_when_it_is_not_a_known_format() {
    let (dir, _) = workspace();
    let ws = dir.path();
    std::fs::write(ws.join("notes.json"), r#"{"hello": 1}"#).unwrap();
    let out = stella(ws)
        .args(["evidence", "add", "api:1.0", "notes.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: notes.json: not a report stella knows; expected Trivy JSON, Grype JSON, SARIF 2.1.0, CycloneDX JSON or OpenVEX\nhint: attach it with --kind other to keep it as evidence without reading it\n"
    );
    stella(ws)
        .args([
            "evidence",
            "add",
            "api:1.0",
            "notes.json",
            "--kind",
            "other",
        ])
        .assert()
        .success();
    let out = stella(ws)
        .args(["evidence", "add", "api:1.0", "trivy.json", "--kind", "vex"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = stella(ws)
        .args(["evidence", "list", "api:1.0", "--json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["scan", "other"]);
}

#[test]
fn freeze_list_shows_the_month_and_when_the_freeze_ends() {
    let (dir, _) = workspace();
    let ws = dir.path();
    let out = stella(ws)
        .env("TZ", "UTC")
        .args([
            "freeze", "list", "--env", "staging", "--at", FROZEN, "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["month"], "2037-11");
    assert_eq!(v["frozen_now"], true);
    assert_eq!(v["windows"][0]["active_until"], "2037-11-30T23:59:59Z");
    let frozen: Vec<&str> = v["days"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["frozen"] != "none")
        .map(|d| d["date"].as_str().unwrap())
        .collect();
    assert_eq!(
        frozen,
        ["2037-11-27", "2037-11-28", "2037-11-29", "2037-11-30"]
    );

    let text = stdout(
        &stella(ws)
            .env("TZ", "UTC")
            .args(["freeze", "list", "--at", FROZEN])
            .output()
            .unwrap(),
    );
    assert!(text.contains(" 27* 28* 29*"), "{text}");
    assert!(text.contains(" 30+"), "{text}");
    assert!(
        text.contains("frozen by black-friday until Mon 2037-11-30 23:59 UTC"),
        "{text}"
    );
}
