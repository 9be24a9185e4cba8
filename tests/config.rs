//! `stella init` and `stella config check` against the real binary.

mod common;

use common::{init_workspace, stderr, stdout, stella};

#[test]
fn init_then_check_passes() {
    let ws = init_workspace();
    for f in [
        "stella.toml",
        "policies/staging.rego",
        ".stella/stella.db",
        ".gitignore",
    ] {
        assert!(ws.path().join(f).exists(), "{f} missing");
    }
    assert!(ws.path().join("workflows").is_dir());
    let out = stella(ws.path())
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("workspace `acme`, 1 app, 3 environments (dev → staging → prod), 3 targets, 1 freeze window"),
        "{text}"
    );
}

#[cfg(unix)]
#[test]
fn init_keeps_keys_private() {
    use std::os::unix::fs::PermissionsExt;
    let ws = init_workspace();
    let mode = std::fs::metadata(ws.path().join(".stella/keys"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let ws = init_workspace();
    std::fs::write(
        ws.path().join("stella.toml"),
        "[workspace]\nname = \"mine\"\n",
    )
    .unwrap();
    let out = stella(ws.path()).arg("init").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists; not overwriting it"));
    assert!(stderr(&out).contains("--force"));
    let kept = std::fs::read_to_string(ws.path().join("stella.toml")).unwrap();
    assert_eq!(kept, "[workspace]\nname = \"mine\"\n");

    stella(ws.path())
        .args(["init", "--force", "--name", "again"])
        .assert()
        .success();
    let fresh = std::fs::read_to_string(ws.path().join("stella.toml")).unwrap();
    assert!(fresh.contains("name = \"again\""));
}

#[test]
fn works_from_a_subfolder_and_with_an_explicit_workspace() {
    let ws = init_workspace();
    let deep = ws.path().join("policies");
    stella(&deep).args(["config", "check"]).assert().success();

    let elsewhere = tempfile::tempdir().unwrap();
    stella(elsewhere.path())
        .args(["config", "check", "--workspace"])
        .arg(ws.path())
        .assert()
        .success();
    stella(elsewhere.path())
        .env("STELLA_WORKSPACE", ws.path())
        .args(["config", "check"])
        .assert()
        .success();
}

#[test]
fn outside_a_workspace_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = stella(dir.path())
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("not inside a stella workspace"), "{err}");
    assert!(err.contains("hint: run `stella init`"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = stella(dir.path())
        .args(["config", "chekc"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = stella(dir.path())
        .args(["release", "resolve", "api@sha256:nothex"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not a digest"), "{}", stderr(&out));
}

/// Every file in tests/invalid_configs/ fails `config check` with exit 1 and
/// exactly the message in its `.err` twin.
#[test]
fn invalid_configs_give_exact_errors() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid_configs");
    let mut cases = 0;
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        cases += 1;
        let expected = std::fs::read_to_string(path.with_extension("err")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(&path, dir.path().join("stella.toml")).unwrap();
        let out = stella(dir.path())
            .args(["config", "check"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", path.display());
        assert_eq!(stderr(&out), expected, "{}", path.display());
    }
    assert!(cases >= 10, "only {cases} invalid configs");
}

#[test]
fn check_json_lists_problems() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stella.toml"),
        "[workspace]\nname = \"acme\"\n\n[environments.staging]\nfrom = \"dev\"\n",
    )
    .unwrap();
    let out = stella(dir.path())
        .args(["config", "check", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"][0]["line"], 5);
    assert_eq!(v["problems"][0]["col"], 8);
    assert!(
        v["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("`dev`, which is not an environment")
    );
}
