//! The decision clock is the real clock, and the requester is proven:
//! `--at` only ever asks a what-if, and who asked is a key's owner or the
//! operating-system account, unverified — never a name someone typed.

mod common;

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{Duration, SecondsFormat, Utc};
use common::{add_image, stderr, stdout, stella};

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `web` in dev (no gates), staging (a 1h soak after dev, deployed to a
/// dir target) and prod (frozen from an hour ago to an hour from now,
/// four eyes on one approval from alice or bob).
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    stella(ws)
        .args(["init", "--name", "clock"])
        .assert()
        .success();
    let now = Utc::now();
    let config = format!(
        r#"
[workspace]
name = "clock"

[apps.web]
image = "oci-layout:images/web"

[environments.dev]

[environments.staging]
from = "dev"
targets = ["staging-dir"]

[environments.staging.gates.upstream]
soak = "1h"

[environments.prod]

[environments.prod.gates.approval]
required = 1
approvers = ["alice@example.com", "bob@example.com"]
four_eyes = true

[environments.prod.gates.freeze]
windows = ["incident"]

[environments.review]

[environments.review.gates.approval]
required = 1
approvers = ["alice@example.com", "bob@example.com"]
four_eyes = true

[freeze.incident]
from = "{}"
until = "{}"

[targets.staging-dir]
kind = "dir"
path = "deploy/staging/{{app}}"
"#,
        rfc3339(now - Duration::hours(1)),
        rfc3339(now + Duration::hours(1)),
    );
    std::fs::write(ws.join("stella.toml"), config).unwrap();
    add_image(&ws.join("images/web"), "1.0.0", "web 1.0.0");
    for (name, email) in [
        ("alice", "alice@example.com"),
        ("bob", "bob@example.com"),
        ("carol", "carol@example.com"),
    ] {
        stella(ws)
            .args(["key", "gen", name, "--email", email])
            .assert()
            .success();
    }
    dir
}

fn run(ws: &Path, args: &[&str]) -> std::process::Output {
    stella(ws).args(args).output().unwrap()
}

fn capsules(ws: &Path) -> Vec<serde_json::Value> {
    let out = run(ws, &["capsule", "list", "--json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)))
        .as_array()
        .unwrap()
        .clone()
}

/// The newest capsule's statement.
fn newest_statement(ws: &Path) -> serde_json::Value {
    let out = run(ws, &["capsule", "show", "latest", "--json"]);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    v
}

#[test]
fn a_promotion_at_an_invented_clock_is_refused_and_changes_nothing() {
    let dir = workspace();
    let ws = dir.path();
    let out = run(ws, &["release", "promote", "web:1.0.0", "--to", "dev"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let before = capsules(ws).len();

    // Two hours from now the soak would be over: the clock is not ours to pick.
    let later = rfc3339(Utc::now() + Duration::hours(2));
    let out = run(
        ws,
        &[
            "release",
            "promote",
            "web:1.0.0",
            "--to",
            "staging",
            "--at",
            &later,
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("acts at the real clock"), "{err}");
    assert!(
        err.contains("--dry-run") && err.contains("gate check"),
        "{err}"
    );
    assert_eq!(capsules(ws).len(), before, "nothing sealed");
    assert!(!ws.join("deploy/staging").exists(), "no target touched");

    // The same as a what-if: evaluated at that clock, nothing done — not
    // even the tag's resolution recorded.
    let resolutions = || stdout(&run(ws, &["release", "list", "--json"]));
    let resolved = resolutions();
    let out = run(
        ws,
        &[
            "release",
            "promote",
            "web:1.0.0",
            "--to",
            "staging",
            "--dry-run",
            "--at",
            &later,
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["evaluated_at"], later.as_str());
    assert!(v.get("capsule").is_none(), "{v:#}");
    assert_eq!(capsules(ws).len(), before, "a dry run seals nothing");
    assert_eq!(resolutions(), resolved, "a dry run records nothing");
    assert!(
        !ws.join("deploy/staging").exists(),
        "a dry run deploys nothing"
    );

    // At the real clock the soak holds it.
    let out = run(
        ws,
        &[
            "release",
            "promote",
            "web:1.0.0",
            "--to",
            "staging",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let upstream = v["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == "upstream")
        .unwrap();
    assert_eq!(upstream["verdict"], "fail", "{upstream:#}");
    assert!(!ws.join("deploy/staging").exists());
}

#[test]
fn a_freeze_cannot_be_stepped_over_by_naming_a_later_clock() {
    let dir = workspace();
    let ws = dir.path();
    run(
        ws,
        &["approve", "web:1.0.0", "--env", "prod", "--key", "bob"],
    );
    let later = rfc3339(Utc::now() + Duration::hours(2));
    let out = run(
        ws,
        &[
            "release",
            "promote",
            "web:1.0.0",
            "--to",
            "prod",
            "--key",
            "alice",
            "--at",
            &later,
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(capsules(ws).is_empty());
    // Now, it is frozen, and that is what is sealed.
    let out = run(
        ws,
        &[
            "release",
            "promote",
            "web:1.0.0",
            "--to",
            "prod",
            "--key",
            "alice",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let freeze = v["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == "freeze")
        .unwrap();
    assert_eq!(freeze["verdict"], "fail");
}

#[test]
fn every_command_that_acts_refuses_at_without_dry_run() {
    let dir = workspace();
    let ws = dir.path();
    run(ws, &["release", "promote", "web:1.0.0", "--to", "dev"]);
    let t = rfc3339(Utc::now() - Duration::days(3));
    for args in [
        vec!["release", "rollback", "web", "--env", "dev", "--at", &t],
        vec!["release", "unpin", "web", "--env", "dev", "--at", &t],
        vec![
            "release",
            "mark-live",
            "web:1.0.0",
            "--env",
            "staging",
            "--at",
            &t,
        ],
        vec![
            "approve",
            "web:1.0.0",
            "--env",
            "prod",
            "--key",
            "bob",
            "--at",
            &t,
        ],
    ] {
        let out = run(ws, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("hint:"), "{args:?}: {}", stderr(&out));
    }
    // A release marked live three days ago would have soaked: refused
    // above, so staging's soak still holds at the real clock.
    let out = run(ws, &["gate", "check", "web:1.0.0", "--env", "staging"]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    // `--as` is a what-if's alone.
    let out = run(
        ws,
        &[
            "release",
            "promote",
            "web:1.0.0",
            "--to",
            "review",
            "--as",
            "bob@example.com",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(capsules(ws).len(), 1);
}

#[test]
fn four_eyes_compares_proven_identities_and_fails_closed_without_one() {
    let dir = workspace();
    let ws = dir.path();
    let out = run(
        ws,
        &["approve", "web:1.0.0", "--env", "review", "--key", "alice"],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // Without a key the requester is the account, whatever $USER or
    // $STELLA_USER say; four eyes cannot tell it from alice: blocked.
    let out = stella(ws)
        .env("USER", "bob")
        .env("STELLA_USER", "bob@example.com")
        .args([
            "release",
            "promote",
            "web:1.0.0",
            "--to",
            "review",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let approval = &v["gates"][0];
    assert_eq!(approval["gate"], "approval");
    assert_eq!(approval["verdict"], "fail");
    assert!(
        approval["unblock"]
            .to_string()
            .contains("sign the request with --key NAME"),
        "{approval:#}"
    );
    let st = newest_statement(ws);
    let p = &st["predicate"];
    let account = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .map(|u| u.name)
        .unwrap();
    assert_eq!(p["requested_by"], format!("unverified: uid {account}"));
    assert_eq!(p["requester"]["verified"], false);
    assert_eq!(p["requester"]["uid"], nix::unistd::getuid().as_raw());

    // Alice asking: her own approval does not count.
    let out = run(
        ws,
        &[
            "release",
            "promote",
            "web:1.0.0",
            "--to",
            "review",
            "--key",
            "alice",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(stdout(&out).contains("alice@example.com requested this promotion"));

    // Carol asking, proven by her key: alice's approval counts.
    let out = run(
        ws,
        &[
            "release",
            "promote",
            "web:1.0.0",
            "--to",
            "review",
            "--key",
            "carol",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let st = newest_statement(ws);
    let p = &st["predicate"];
    assert_eq!(p["requested_by"], "carol@example.com");
    assert_eq!(p["requester"]["identity"], "carol@example.com");
    assert_eq!(p["requester"]["verified"], true);
    let keys = run(ws, &["key", "list", "--json"]);
    let keys: serde_json::Value = serde_json::from_slice(&keys.stdout).unwrap();
    let carol = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "carol")
        .unwrap();
    assert_eq!(p["requester"]["keyid"], carol["keyid"]);
    let file = ws.join(v["capsule"].as_str().unwrap());
    let out = stella(ws)
        .args(["capsule", "replay"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn replay_checks_the_request_signature_again() {
    let dir = workspace();
    let ws = dir.path();
    let out = run(
        ws,
        &[
            "release",
            "promote",
            "web:1.0.0",
            "--to",
            "dev",
            "--key",
            "carol",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let file = ws.join(v["capsule"].as_str().unwrap());

    // The request re-attributed to alice and the capsule sealed again
    // with the workspace's own key, so only the request signature can
    // tell.
    let mut c: serde_json::Value =
        yaml_serde::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let payload = STANDARD
        .decode(c["envelope"]["payload"].as_str().unwrap())
        .unwrap();
    let mut st: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    st["predicate"]["requested_by"] = "alice@example.com".into();
    st["predicate"]["requester"]["identity"] = "alice@example.com".into();
    let payload = serde_json_canonicalizer::to_vec(&st).unwrap();
    let key = stella::sign::PrivateKey::from_pem(
        &std::fs::read_to_string(ws.join(".stella/keys/workspace.key")).unwrap(),
    )
    .unwrap();
    let envelope =
        stella::sign::Envelope::sign(stella::capsule::statement::PAYLOAD_TYPE, &payload, &key);
    c["envelope"] = serde_json::to_value(&envelope).unwrap();
    // Its verification summary names the capsule as it was; a forger
    // re-sealing it would leave that out (or it alone would refuse it).
    c.as_object_mut().unwrap().remove("summary");
    let forged = ws.join("forged.json");
    std::fs::write(&forged, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    let out = stella(ws)
        .args(["capsule", "replay"])
        .arg(&forged)
        .arg("--json")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["identical"], false);
    let diffs = r["differences"].to_string();
    assert!(
        diffs.contains("requester") && diffs.contains("does not verify"),
        "{diffs}"
    );

    // Signed again, correctly, by a key of someone else's making that
    // claims to be alice: the signature holds, the key was never alice's.
    let mallory = stella::sign::PrivateKey::from_seed(&[7; 32]);
    let p = &st["predicate"];
    let digest: stella::domain::Digest = p["release"]["digest"].as_str().unwrap().parse().unwrap();
    let asked = stella::domain::requester::Asked {
        action: p["action"].as_str().unwrap(),
        app: p["app"].as_str().unwrap(),
        digest: &digest,
        environment: p["to"].as_str().unwrap(),
        clock: p["clock"].as_str().unwrap(),
        also: &[],
    };
    let nonce = p["requester"]["nonce"].as_str().unwrap().to_owned();
    let message =
        stella::domain::requester::Requester::message(&asked, &nonce, "alice@example.com");
    let mut st = st.clone();
    let requester = &mut st["predicate"]["requester"];
    requester["keyid"] = mallory.public().keyid().into();
    requester["public_key"] = mallory.public().to_pem().into();
    requester["signature"] = STANDARD.encode(mallory.sign(&message)).into();
    let payload = serde_json_canonicalizer::to_vec(&st).unwrap();
    c["envelope"] = serde_json::to_value(stella::sign::Envelope::sign(
        stella::capsule::statement::PAYLOAD_TYPE,
        &payload,
        &key,
    ))
    .unwrap();
    std::fs::write(&forged, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    let out = stella(ws)
        .args(["capsule", "replay"])
        .arg(&forged)
        .arg("--json")
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["identical"], false, "{r:#}");
    assert!(
        r["differences"]
            .to_string()
            .contains("a key the decision's workspace did not hold"),
        "{r:#}"
    );
}

#[test]
fn a_second_key_for_an_email_needs_saying_so() {
    let dir = workspace();
    let ws = dir.path();
    let other = tempfile::tempdir().unwrap();
    stella(other.path())
        .args(["init", "--name", "mallory"])
        .assert()
        .success();
    stella(other.path())
        .args(["key", "gen", "mallory", "--email", "mallory@example.com"])
        .assert()
        .success();
    let pem = stdout(&run(other.path(), &["key", "export", "mallory"]));
    std::fs::write(ws.join("mallory.pub"), pem).unwrap();

    let out = run(
        ws,
        &[
            "key",
            "import",
            "alice2",
            "--email",
            "alice@example.com",
            "mallory.pub",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("alice@example.com already has a key: `alice`"),
        "{err}"
    );
    assert!(err.contains("--another-key"), "{err}");
    let keys = stdout(&run(ws, &["key", "list"]));
    assert!(!keys.contains("alice2"), "{keys}");

    let out = run(
        ws,
        &["key", "gen", "alice-laptop", "--email", "alice@example.com"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));

    let out = run(
        ws,
        &[
            "key",
            "import",
            "alice2",
            "--email",
            "alice@example.com",
            "mallory.pub",
            "--another-key",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("more than one key"),
        "{}",
        stdout(&out)
    );
}
