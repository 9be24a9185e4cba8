//! `stella demo`: the embedded default builds a complete, consistent
//! workspace with live things to drive, and can be rebuilt.

mod common;

use common::stella;

#[test]
fn the_demo_builds_a_workspace_with_history_and_something_to_drive() {
    let home = tempfile::tempdir().unwrap();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("demo");
    let build = |force: bool| {
        let mut cmd = stella(parent.path());
        cmd.env("HOME", home.path())
            .args(["demo", "demo", "--no-open"]);
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    let out = build(false);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(common::stdout(&out).contains("sealed capsules"));
    for app in ["api-gateway", "billing", "web"] {
        assert!(dir.join("images").join(app).join("index.json").is_file());
    }

    // Every capsule verifies and the chains hold.
    stella(&dir)
        .args(["audit", "verify-chain"])
        .assert()
        .success();
    let capsules: serde_json::Value = serde_json::from_slice(
        &stella(&dir)
            .args(["capsule", "list", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let rows = capsules.as_array().unwrap();
    assert!(rows.len() >= 15, "{}", rows.len());
    assert!(rows.iter().any(|c| c["action"] == "rollback"));
    // The history was asked for by the on-call, proven by their key.
    let newest: serde_json::Value = serde_json::from_slice(
        &stella(&dir)
            .args(["capsule", "show", "latest", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(newest["predicate"]["requested_by"], "oncall@demo.example");
    assert_eq!(newest["predicate"]["requester"]["verified"], true);
    assert!(rows.iter().any(|c| c["decision"] == "deny"));

    // Something to drive: web 3.1 is ready for staging, billing 2.4 is
    // blocked by a finding, prod is frozen now.
    let check = |reference: &str, env: &str| {
        stella(&dir)
            // As the demo's on-call, whose key the demo made: four eyes
            // needs a proven requester.
            .args([
                "gate", "check", reference, "--env", env, "--key", "oncall", "--json",
            ])
            .output()
            .unwrap()
    };
    let ready = check("web:3.1", "staging");
    assert_eq!(ready.status.code(), Some(0), "{}", common::stdout(&ready));
    let blocked = check("billing:2.4", "staging");
    assert_eq!(blocked.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&blocked.stdout).unwrap();
    assert_eq!(v["gates"][0]["measured"]["reachable"]["critical"], 1);
    let frozen = check("api-gateway:1.1", "prod");
    assert_eq!(frozen.status.code(), Some(3));
    assert!(common::stdout(&frozen).contains("incident-freeze"));
    // ... and the rollback pinned api-gateway there.
    let v: serde_json::Value = serde_json::from_slice(&frozen.stdout).unwrap();
    assert_eq!(v["pin"]["app"], "api-gateway", "{v}");
    // The VEX suppresses a finding of api-gateway.
    let v: serde_json::Value =
        serde_json::from_slice(&check("api-gateway:1.2", "staging").stdout).unwrap();
    assert_eq!(v["gates"][0]["measured"]["suppressed"], 1);
    // The rollback left 1.0 serving in prod.
    assert_eq!(
        std::fs::read_to_string(dir.join("deploy/prod/api-gateway/current/index.html")).unwrap(),
        "<h1>api-gateway 1.0</h1>\n"
    );

    // Built again only with --force; nothing written outside DIR.
    let again = build(false);
    assert_eq!(again.status.code(), Some(1));
    assert!(common::stderr(&again).contains("already holds a demo"));
    assert!(build(true).status.success());
    assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 0);

    // A folder the demo did not make is never removed.
    let other = parent.path().join("mine");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "keep me").unwrap();
    let out = stella(parent.path())
        .args(["demo", "mine", "--force", "--no-open"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(common::stderr(&out).contains("was not made by `stella demo`"));
    assert_eq!(
        std::fs::read_to_string(other.join("notes.txt")).unwrap(),
        "keep me"
    );
}
