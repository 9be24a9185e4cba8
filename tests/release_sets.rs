//! Release sets: several apps promoted as one decision through two lanes —
//! gates per app, one capsule with a subject per app, deployed all or
//! none, rolled back together — and the capsule verifies and replays.

mod common;

use std::path::Path;

use common::{stderr, stdout, stella};
use stella::registry::layout::{LayerFile, LayoutWriter};

const CONFIG: &str = r#"
[workspace]
name = "acme"

[apps.api-gateway]
image = "oci-layout:images/api-gateway"

[apps.web]
image = "oci-layout:images/web"

[environments.dev]
targets = ["dev-local"]

[environments.staging]
from = "dev"
targets = ["staging-local"]

[environments.staging.gates.upstream]

[targets.dev-local]
kind = "dir"
path = "deploy/dev/{app}"

[targets.staging-local]
kind = "dir"
path = "deploy/staging/{app}"
"#;

fn workspace() -> tempfile::TempDir {
    let dir = common::init_workspace();
    std::fs::write(dir.path().join("stella.toml"), CONFIG).unwrap();
    for app in ["api-gateway", "web"] {
        for (tag, body) in [("1.0", "1"), ("2.0", "2")] {
            image(dir.path(), app, tag, &format!("{app} {body}"));
        }
    }
    dir
}

fn image(ws: &Path, app: &str, tag: &str, body: &str) -> String {
    LayoutWriter::create(&ws.join("images").join(app))
        .unwrap()
        .add_image(
            tag,
            &[LayerFile {
                path: "index.html",
                mode: 0o644,
                contents: body.as_bytes(),
            }],
        )
        .unwrap()
        .to_string()
}

/// An image whose layer climbs out of its release folder: its deploy fails.
fn hostile_image(ws: &Path, app: &str, tag: &str) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..12].copy_from_slice(b"../../escape");
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    tar.append(&h, &b"x"[..]).unwrap();
    LayoutWriter::create(&ws.join("images").join(app))
        .unwrap()
        .add_layers(tag, &[tar.into_inner().unwrap()])
        .unwrap();
}

fn run(ws: &Path, args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = stella(ws).args(args).arg("--json").output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap(),
        v,
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

fn serving(ws: &Path, env: &str, app: &str) -> String {
    std::fs::read_to_string(ws.join(format!("deploy/{env}/{app}/current/index.html")))
        .unwrap_or_else(|_| "nothing".into())
}

fn statement(ws: &Path) -> serde_json::Value {
    let (code, v, out) = run(ws, &["capsule", "show", "latest"]);
    assert_eq!(code, 0, "{out}");
    v
}

fn verify_and_replay(ws: &Path, file: &str) {
    let file = ws.join(file);
    let (code, v, out) = run(ws, &["capsule", "verify", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["valid"], true, "{v:#}");
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
    assert!(stdout(&out).contains(": identical\n"), "{}", stdout(&out));
}

#[test]
fn a_release_set_goes_through_two_lanes_all_or_none_and_rolls_back_together() {
    let dir = workspace();
    let ws = dir.path();

    // dev: both apps at 1.0, one decision.
    let (code, v, out) = run(
        ws,
        &[
            "release",
            "promote",
            "api-gateway:1.0",
            "web:1.0",
            "--to",
            "dev",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["outcome"], "deployed");
    assert_eq!(v["members"][0]["app"], "web");
    assert_eq!(serving(ws, "dev", "api-gateway"), "api-gateway 1");
    assert_eq!(serving(ws, "dev", "web"), "web 1");
    let st = statement(ws);
    let subjects: Vec<&str> = st["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["api-gateway", "web"], "one subject per app");
    assert_eq!(st["predicate"]["members"][0]["app"], "web");
    verify_and_replay(ws, v["capsule"].as_str().unwrap());
    let out = stella(ws)
        .args(["capsule", "push", &v["capsule_id"].to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("decides a release set"),
        "{}",
        stderr(&out)
    );

    // A set whose second app fails to deploy puts the first back too.
    hostile_image(ws, "web", "evil");
    let (code, v, out) = run(
        ws,
        &[
            "release",
            "promote",
            "api-gateway:2.0",
            "web:evil",
            "--to",
            "dev",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(v["outcome"], "deploy-failed", "{v:#}");
    assert_eq!(
        serving(ws, "dev", "api-gateway"),
        "api-gateway 1",
        "api-gateway deployed first, and went back with the set"
    );
    assert_eq!(serving(ws, "dev", "web"), "web 1");
    let st = statement(ws);
    assert_eq!(st["predicate"]["outcome"], "deploy-failed");
    let reason = st["predicate"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("web: ") && reason.contains("put back whole"),
        "{reason}"
    );
    verify_and_replay(ws, v["capsule"].as_str().unwrap());

    // dev: 2.0 of both; staging takes what is live upstream, as a set.
    let (code, _, out) = run(
        ws,
        &[
            "release",
            "promote",
            "api-gateway:2.0",
            "web:2.0",
            "--to",
            "dev",
        ],
    );
    assert_eq!(code, 0, "{out}");
    // A set with one app not live upstream is blocked whole.
    let (code, v, out) = run(
        ws,
        &[
            "release",
            "promote",
            "api-gateway",
            "web:evil",
            "--to",
            "staging",
        ],
    );
    assert_eq!(code, 3, "{out}");
    assert_eq!(v["decision"], "deny");
    assert_eq!(
        v["gates"][0]["verdict"], "pass",
        "api-gateway alone would pass: {v:#}"
    );
    assert_eq!(v["members"][0]["decision"], "deny", "{v:#}");
    assert_eq!(serving(ws, "staging", "api-gateway"), "nothing");
    verify_and_replay(ws, v["capsule"].as_str().unwrap());

    let (code, _, out) = run(
        ws,
        &[
            "release",
            "promote",
            "api-gateway:1.0",
            "web:1.0",
            "--to",
            "staging",
        ],
    );
    assert_eq!(code, 3, "1.0 is no longer live in dev: {out}");
    let (code, v, out) = run(
        ws,
        &[
            "release",
            "promote",
            "web",
            "api-gateway",
            "--to",
            "staging",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["app"], "web");
    assert_eq!(serving(ws, "staging", "api-gateway"), "api-gateway 2");
    assert_eq!(serving(ws, "staging", "web"), "web 2");

    // Rolling back one app of dev's set rolls back both, in one capsule,
    // and pins both.
    let (code, v, out) = run(
        ws,
        &[
            "release",
            "rollback",
            "api-gateway",
            "--env",
            "dev",
            "--dry-run",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        v["members"][0]["app"], "web",
        "the dry run names the set: {v:#}"
    );
    assert_eq!(
        serving(ws, "dev", "web"),
        "web 2",
        "a dry run changes nothing"
    );
    let (code, v, out) = run(ws, &["release", "rollback", "api-gateway", "--env", "dev"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["outcome"], "rolled-back");
    assert_eq!(v["members"][0]["app"], "web", "{v:#}");
    assert_eq!(serving(ws, "dev", "api-gateway"), "api-gateway 1");
    assert_eq!(serving(ws, "dev", "web"), "web 1");
    let st = statement(ws);
    assert_eq!(st["subject"].as_array().unwrap().len(), 2);
    assert_eq!(st["predicate"]["action"], "rollback");
    assert!(st["predicate"]["members"][0]["restores"]["capsule"].is_string());
    verify_and_replay(ws, v["capsule"].as_str().unwrap());
    for app in ["api-gateway", "web"] {
        let (code, _, out) = run(
            ws,
            &["release", "promote", &format!("{app}:2.0"), "--to", "dev"],
        );
        assert_eq!(code, 3, "{app} is pinned by the set's rollback: {out}");
        assert!(out.contains("pinned"), "{out}");
    }

    // --alone moves one app of staging's set; the other stays.
    let (code, v, out) = run(
        ws,
        &["release", "rollback", "web", "--env", "staging", "--alone"],
    );
    assert_eq!(code, 1, "web has had only one release in staging: {out}");
    assert!(
        v["error"].is_object() || out.contains("only one release"),
        "{out}"
    );

    let out = stella(ws).args(["audit", "verify-chain"]).output().unwrap();
    assert!(out.status.success(), "{}", stdout(&out));

    // A set's process dies after switching both apps in dev: recovery puts
    // every app of the set back, not only the one its promotion row names.
    let mut digests = Vec::new();
    for app in ["api-gateway", "web"] {
        let out = stella(ws)
            .args(["release", "resolve", &format!("{app}:2.0")])
            .output()
            .unwrap();
        let d = stdout(&out).trim().to_owned();
        let current = ws.join(format!("deploy/dev/{app}/current"));
        std::fs::remove_file(&current).unwrap();
        std::os::unix::fs::symlink(Path::new("releases").join(&d["sha256:".len()..]), &current)
            .unwrap();
        digests.push(d);
    }
    assert_eq!(serving(ws, "dev", "web"), "web 2");
    let db = rusqlite::Connection::open(ws.join(".stella/stella.db")).unwrap();
    db.execute_batch(&format!(
        "INSERT INTO promotions (id, app, digest, environment, requested_by, state, created_at)
           VALUES (900, 'api-gateway', '{a}', 'dev', 'x@example.com', 'running', '2026-01-01T00:00:00Z');
         INSERT INTO promotion_members (promotion_id, app, digest) VALUES (900, 'web', '{w}');
         INSERT INTO locks (environment, promotion_id, holder, pid, acquired_at)
           VALUES ('dev', 900, 'x@example.com', 999999999, '2026-01-01T00:00:00Z');",
        a = digests[0],
        w = digests[1]
    ))
    .unwrap();
    let out = stella(ws).arg("recover").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(serving(ws, "dev", "api-gateway"), "api-gateway 1");
    assert_eq!(serving(ws, "dev", "web"), "web 1", "{}", stdout(&out));
}

#[test]
fn a_failed_set_runs_script_targets_hooks_again_with_the_release_live_before() {
    let dir = workspace();
    let ws = dir.path();
    std::fs::write(
        ws.join("stella.toml"),
        r#"
[workspace]
name = "acme"

[apps.api-gateway]
image = "oci-layout:images/api-gateway"

[apps.web]
image = "oci-layout:images/web"

[environments.dev]
targets = ["dev-script"]

[targets.dev-script]
kind = "script"
deploy = 'if [ "$STELLA_RELEASE_APP" = web ] && [ -e fail-web ]; then exit 7; fi; echo "$STELLA_RELEASE_DIGEST" > "served-$STELLA_RELEASE_APP"'
"#,
    )
    .unwrap();
    let (code, _, out) = run(
        ws,
        &[
            "release",
            "promote",
            "api-gateway:1.0",
            "web:1.0",
            "--to",
            "dev",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let first = std::fs::read_to_string(ws.join("served-api-gateway")).unwrap();
    std::fs::write(ws.join("fail-web"), "").unwrap();
    let (code, v, out) = run(
        ws,
        &[
            "release",
            "promote",
            "api-gateway:2.0",
            "web:2.0",
            "--to",
            "dev",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(v["outcome"], "deploy-failed");
    assert_eq!(
        std::fs::read_to_string(ws.join("served-api-gateway")).unwrap(),
        first,
        "api-gateway's hook ran again with the release live before: {out}"
    );
}

#[test]
fn a_set_names_each_app_once() {
    let dir = workspace();
    let ws = dir.path();
    let (code, _, out) = run(
        ws,
        &["release", "promote", "web:1.0", "web:2.0", "--to", "dev"],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("`web` is named twice"), "{out}");
    assert_eq!(serving(ws, "dev", "web"), "nothing");
}
