//! Promotions that run an environment's workflow template: steps persisted
//! with their logs, logs sealed as evidence, and a failing step after the
//! switch putting the previous release back.

mod common;

use std::path::Path;

use common::{stderr, stella};

fn image(ws: &Path, tag: &str, body: &str) {
    common::app_image(ws, tag, body);
}

const WORKFLOW: &str = r#"
[[steps]]
id = "smoke"
run = "echo smoke-testing ${{ release.digest }}; echo verdict=good >> $STELLA_OUTPUT"

[[steps]]
id = "scan"
run = "echo scanning in $STELLA_ENV_NAME"

[[steps]]
id = "deploy"
uses = "deploy"
needs = ["smoke", "scan"]

[[steps]]
id = "health"
run = "grep -q ok deploy/dev/current/index.html && echo ${{ steps.smoke.outputs.verdict }}"
needs = ["deploy", "smoke"]
"#;

fn workspace() -> tempfile::TempDir {
    let dir = common::workspace_with_dev_workflow(WORKFLOW);
    stella(dir.path())
        .args(["config", "check"])
        .assert()
        .success();
    dir
}

fn json(ws: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let out = stella(ws).args(args).arg("--json").output().unwrap();
    (
        out.status.code().unwrap(),
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out))),
    )
}

#[test]
fn the_workflow_runs_and_every_step_is_recorded_and_sealed() {
    let dir = workspace();
    let ws = dir.path();
    image(ws, "1.0", "ok v1");
    let (code, v) = json(
        ws,
        &["release", "promote", "api-gateway:1.0", "--to", "dev"],
    );
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["outcome"], "deployed");
    let id = v["promotion_id"].as_i64().unwrap().to_string();

    let (_, p) = json(ws, &["promotion", "show", &id]);
    let steps = p["steps"].as_array().unwrap();
    let state = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .map(|s| s["state"].as_str().unwrap().to_owned())
    };
    for s in ["smoke", "scan", "deploy", "health"] {
        assert_eq!(state(s).as_deref(), Some("succeeded"), "{s}: {p:#}");
    }
    let log = |name: &str| {
        steps.iter().find(|s| s["step"] == name).unwrap()["log"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(log("scan"), "scanning in dev\n");
    assert_eq!(
        log("health"),
        "good\n",
        "a step output passed through substitution"
    );
    assert!(log("smoke").starts_with("smoke-testing sha256:"));
    assert_eq!(p["promotion"]["run_state"], "succeeded");

    // The step logs are evidence of the decision, and it still replays.
    let (_, show) = json(ws, &["capsule", "show", "latest"]);
    let kinds: Vec<&str> = show["predicate"]["inputs"]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "log").count(),
        4,
        "{kinds:?}"
    );
    let file = ws.join(v["capsule"].as_str().unwrap());
    assert_eq!(
        stella(ws)
            .args(["capsule", "verify"])
            .arg(&file)
            .output()
            .unwrap()
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        stella(ws)
            .args(["capsule", "replay"])
            .arg(&file)
            .output()
            .unwrap()
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn a_failing_step_after_the_switch_puts_the_previous_release_back() {
    let dir = workspace();
    let ws = dir.path();
    image(ws, "1.0", "ok v1");
    image(ws, "2.0", "bad v2");
    assert_eq!(
        json(
            ws,
            &["release", "promote", "api-gateway:1.0", "--to", "dev"]
        )
        .0,
        0
    );
    let (code, v) = json(
        ws,
        &["release", "promote", "api-gateway:2.0", "--to", "dev"],
    );
    assert_eq!(code, 1);
    assert_eq!(v["outcome"], "deploy-failed");
    assert_eq!(
        std::fs::read_to_string(ws.join("deploy/dev/current/index.html")).unwrap(),
        "ok v1"
    );
    let id = v["promotion_id"].as_i64().unwrap().to_string();
    let (_, p) = json(ws, &["promotion", "show", &id]);
    let health = p["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "health")
        .unwrap()
        .clone();
    assert_eq!(health["state"], "failed");
    let (_, show) = json(ws, &["capsule", "show", "latest"]);
    assert!(
        show["predicate"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("step `health` failed: exited with status 1"),
        "{show:#}"
    );
}
