//! Workflow templates: validated before anything runs, each kind of
//! mistake an error naming the file, line, step and fix.

mod common;

use std::path::Path;

use common::{stderr, stdout, stella};

fn dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workflows")
}

/// Every template in tests/workflows/invalid/ fails `workflow check` with
/// exit 1 and exactly the message in its `.err` twin.
#[test]
fn invalid_templates_give_exact_errors() {
    let folder = dir().join("invalid");
    let mut n = 0;
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        n += 1;
        let expected = std::fs::read_to_string(path.with_extension("err")).unwrap();
        let out = stella(&folder)
            .args(["workflow", "check"])
            .arg(path.file_name().unwrap())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", path.display());
        assert_eq!(stderr(&out), expected, "{}", path.display());
    }
    assert!(n >= 10, "{n}");
}

#[test]
fn a_valid_template_shows_layers_and_its_critical_path() {
    let out = stella(&dir())
        .args(["workflow", "show", "standard.toml", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["layers"],
        serde_json::json!([
            ["resolve"],
            ["security", "smoke"],
            ["deploy"],
            ["health", "tell"]
        ])
    );
    let path: Vec<&str> = v["critical_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(path.len(), 4);
    assert_eq!((path[0], path[2]), ("resolve", "deploy"));
    let text = stdout(
        &stella(&dir())
            .args(["workflow", "check", "standard.toml"])
            .output()
            .unwrap(),
    );
    assert!(
        text.starts_with("standard.toml is valid: 6 steps in 4 layers"),
        "{text}"
    );
}

#[test]
fn templates_include_others_by_path() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("shared")).unwrap();
    std::fs::write(
        tmp.path().join("shared/checks.toml"),
        "[[steps]]\nid = \"lint\"\nrun = \"true\"\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("main.toml"),
        "include = [\"shared/checks.toml\"]\n\n[[steps]]\nid = \"deploy\"\nuses = \"deploy\"\nneeds = [\"lint\"]\n",
    )
    .unwrap();
    let out = stella(tmp.path())
        .args(["workflow", "show", "main.toml", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["layers"], serde_json::json!([["lint"], ["deploy"]]));

    std::fs::write(
        tmp.path().join("broken.toml"),
        "include = [\"nope.toml\"]\n",
    )
    .unwrap();
    let out = stella(tmp.path())
        .args(["workflow", "check", "broken.toml"])
        .output()
        .unwrap();
    assert_eq!(
        stderr(&out),
        "error: broken.toml:1:12: included template `nope.toml` not found (paths are relative to this file)\n"
    );
}

#[test]
fn config_check_validates_the_workflows_environments_use() {
    let ws = common::init_workspace();
    let toml = std::fs::read_to_string(ws.path().join("stella.toml")).unwrap();
    let toml = toml.replace(
        "strategy = \"direct\"",
        "strategy = \"direct\"\nworkflow = \"workflows/standard.toml\"",
    );
    std::fs::write(ws.path().join("stella.toml"), toml).unwrap();
    std::fs::copy(
        dir().join("invalid/cycle.toml"),
        ws.path().join("workflows/standard.toml"),
    )
    .unwrap();
    let out = stella(ws.path())
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: workflows/standard.toml:12:6: steps need each other in a cycle: c → a → b → c; remove one of these `needs`\n"
    );
    std::fs::copy(
        dir().join("standard.toml"),
        ws.path().join("workflows/standard.toml"),
    )
    .unwrap();
    stella(ws.path())
        .args(["config", "check"])
        .assert()
        .success();
}
