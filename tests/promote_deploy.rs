//! Promotions that deploy: `dir` targets through dev → staging, rollback,
//! a failed deploy that leaves the previous release serving, and the
//! environment lock.

mod common;

use std::path::Path;

use common::{stderr, stdout, stella};
use stella::registry::layout::{LayerFile, LayoutWriter};

fn image(ws: &Path, tag: &str, body: &str) -> String {
    LayoutWriter::create(&ws.join("images/api-gateway"))
        .unwrap()
        .add_image(
            tag,
            &[
                LayerFile {
                    path: "index.html",
                    mode: 0o644,
                    contents: body.as_bytes(),
                },
                LayerFile {
                    path: "bin/run.sh",
                    mode: 0o755,
                    contents: b"#!/bin/sh\necho hi\n",
                },
            ],
        )
        .unwrap()
        .to_string()
}

fn promote(ws: &Path, args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = stella(ws)
        .args(["release", "promote"])
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap(), v, stderr(&out))
}

fn current(ws: &Path, env: &str) -> String {
    std::fs::read_to_string(ws.join(format!("deploy/{env}/current/index.html"))).unwrap()
}

#[test]
fn promotions_deploy_to_dir_targets_and_rollback_restores() {
    let ws = common::init_workspace();
    let ws = ws.path();
    let v1 = image(ws, "1.0", "v1");
    image(ws, "2.0", "v2");

    let (code, v, err) = promote(ws, &["api-gateway:1.0", "--to", "dev"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["outcome"], "deployed");
    assert_eq!(current(ws, "dev"), "v1");
    let mode = std::fs::metadata(ws.join("deploy/dev/current/bin/run.sh")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        mode.permissions().mode() & 0o777,
        0o755,
        "file modes from the image"
    );
    let link = std::fs::read_link(ws.join("deploy/dev/current")).unwrap();
    assert_eq!(link, Path::new("releases").join(&v1["sha256:".len()..]));

    let out = stella(ws)
        .args(["release", "promote", "api-gateway:2.0", "--to", "dev"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Deploying to dev-local…"), "{text}");
    assert!(text.contains("Deployed\n"), "{text}");
    assert!(
        text.contains("Decision capsule exported: capsules/dev-"),
        "{text}"
    );
    assert_eq!(current(ws, "dev"), "v2");

    let out = stella(ws)
        .args([
            "release",
            "rollback",
            "api-gateway",
            "--env",
            "dev",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["digest"], v1.as_str());
    assert_eq!(r["outcome"], "rolled-back");
    assert_eq!(r["pinned"], true);
    assert_eq!(current(ws, "dev"), "v1");

    // The rollback pins api-gateway in dev: promotions over it are refused
    // (exit 3, nothing sealed, nothing deployed) until someone unpins it.
    let capsules_before = std::fs::read_dir(ws.join("capsules")).unwrap().count();
    let (code, _, err) = promote(ws, &["api-gateway:2.0", "--to", "dev"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("api-gateway is pinned in dev to ") && err.contains("by a rollback"),
        "{err}"
    );
    assert!(
        err.contains("`stella release unpin api-gateway --env dev"),
        "{err}"
    );
    assert_eq!(current(ws, "dev"), "v1");
    assert_eq!(
        std::fs::read_dir(ws.join("capsules")).unwrap().count(),
        capsules_before
    );
    let out = stella(ws)
        .args(["gate", "check", "api-gateway:2.0", "--env", "dev", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let g: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(g["decision"], "deny");
    assert_eq!(g["pin"]["digest"], v1.as_str());
    let out = stella(ws)
        .args(["release", "pins", "--json"])
        .output()
        .unwrap();
    let pins: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pins.as_array().unwrap().len(), 1, "{pins}");
    assert_eq!(pins[0]["environment"], "dev");
    // `stella status` shows the lane as it is: v1 back, pinned, serving.
    let out = stella(ws)
        .args(["status", "--env", "dev", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cell = &st[0]["cells"][0];
    assert_eq!(cell["app"], "api-gateway");
    assert_eq!(cell["live"]["digest"], v1.as_str());
    assert_eq!(cell["health"], "serving");
    assert_eq!(cell["last"]["outcome"], "rolled-back");
    assert_eq!(cell["pin"]["digest"], v1.as_str());
    assert_eq!(cell["history"].as_array().unwrap().len(), 3, "{cell}");
    let text = stdout(&stella(ws).args(["status"]).output().unwrap());
    assert!(
        text.contains("dev — first lane") && text.contains("PINNED by the rollback in capsule #"),
        "{text}"
    );

    // Unpinning is a decision of its own, sealed; then promotions move again.
    let out = stella(ws)
        .args([
            "release",
            "unpin",
            "api-gateway",
            "--env",
            "dev",
            "--reason",
            "fixed in 2.0",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let u: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(u["outcome"], "unpinned");
    let capsule = ws.join(u["capsule"].as_str().unwrap());
    for (verb, word) in [("verify", "valid"), ("replay", "identical")] {
        let out = stella(ws)
            .args(["capsule", verb])
            .arg(&capsule)
            .output()
            .unwrap();
        assert!(out.status.success(), "{verb}: {}", stdout(&out));
        assert!(stdout(&out).contains(word), "{verb}: {}", stdout(&out));
    }
    let text = std::fs::read_to_string(&capsule).unwrap();
    assert!(text.contains("application/vnd.stella.pin+json"), "{text}");
    let out = stella(ws)
        .args(["release", "unpin", "api-gateway", "--env", "dev"])
        .output()
        .unwrap();
    // Unpinning twice changes nothing and says so: exit 0, nothing sealed.
    assert_eq!(
        out.status.code(),
        Some(0),
        "unpinned twice: {}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("api-gateway is not pinned in dev: nothing to unpin"));

    let (code, v, err) = promote(ws, &["api-gateway:2.0", "--to", "dev"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["outcome"], "deployed");
    assert_eq!(current(ws, "dev"), "v2");

    // Every capsule still verifies; the chain is intact.
    let out = stella(ws).args(["audit", "verify-chain"]).output().unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn a_failed_deploy_leaves_the_previous_release_serving_and_is_sealed() {
    let ws = common::init_workspace();
    let ws = ws.path();
    image(ws, "1.0", "v1");
    // An image whose layer tries to climb out of its release directory.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..12].copy_from_slice(b"../../escape");
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    tar.append(&h, &b"x"[..]).unwrap();
    LayoutWriter::create(&ws.join("images/api-gateway"))
        .unwrap()
        .add_layers("evil", &[tar.into_inner().unwrap()])
        .unwrap();

    assert_eq!(promote(ws, &["api-gateway:1.0", "--to", "dev"]).0, 0);
    let (code, v, _) = promote(ws, &["api-gateway:evil", "--to", "dev"]);
    assert_eq!(code, 1, "a failed deploy exits 1");
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["outcome"], "deploy-failed");
    assert_eq!(
        current(ws, "dev"),
        "v1",
        "the previous release keeps serving"
    );
    assert!(!ws.join("escape").exists() && !ws.join("deploy/escape").exists());

    let show: serde_json::Value = serde_json::from_slice(
        &stella(ws)
            .args(["capsule", "show", "latest", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(show["predicate"]["outcome"], "deploy-failed");
    assert!(
        show["predicate"]["reason"]
            .as_str()
            .unwrap()
            .contains("`../../escape` is refused"),
        "{show:#}"
    );
    // Not live: a gate check for staging still sees 1.0 upstream.
    let out = stella(ws)
        .args(["gate", "check", "api-gateway", "--env", "staging", "--json"])
        .output()
        .unwrap();
    let g: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let v1 = stdout(
        &stella(ws)
            .args(["release", "resolve", "api-gateway:1.0"])
            .output()
            .unwrap(),
    );
    assert_eq!(g["digest"], v1.trim());
}

#[test]
fn a_locked_environment_is_refused_and_a_dead_holder_is_recovered() {
    let ws = common::init_workspace();
    let ws = ws.path();
    image(ws, "1.0", "v1");
    let db = rusqlite::Connection::open(ws.join(".stella/stella.db")).unwrap();
    db.execute_batch(&format!(
        "INSERT INTO promotions (id, app, digest, environment, requested_by, state, created_at)
           VALUES (41, 'api-gateway', 'sha256:{z}', 'dev', 'alice@example.com', 'running', '2026-01-01T00:00:00Z');
         INSERT INTO locks (environment, promotion_id, holder, pid, acquired_at)
           VALUES ('dev', 41, 'alice@example.com', {pid}, '2026-01-01T00:00:00Z');",
        z = "0".repeat(64),
        pid = std::process::id()
    ))
    .unwrap();
    let (code, _, err) = promote(ws, &["api-gateway:1.0", "--to", "dev"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(
            "error: environment dev is locked by promotion #41 (started by alice@example.com, "
        ),
        "{err}"
    );
    assert!(!ws.join("deploy/dev/current").exists());

    // The holder's process is gone: its promotion is interrupted, the lock released.
    db.execute("UPDATE locks SET pid = 999999999", []).unwrap();
    let (code, v, err) = promote(ws, &["api-gateway:1.0", "--to", "dev"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["outcome"], "deployed");
    let state: String = db
        .query_row("SELECT state FROM promotions WHERE id = 41", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(state, "interrupted");
    let locks: i64 = db
        .query_row("SELECT count(*) FROM locks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(locks, 0, "the lock is released when the capsule is sealed");
}

#[test]
fn script_targets_run_the_users_hooks_with_the_release_in_the_environment() {
    let ws = common::init_workspace();
    let ws = ws.path();
    let v1 = image(ws, "1.0", "v1");
    let v2 = image(ws, "2.0", "v2");
    let toml = std::fs::read_to_string(ws.join("stella.toml")).unwrap();
    let toml = toml.replace(
        "[environments.dev]\ntargets = [\"dev-local\"]",
        "[environments.dev]\ntargets = [\"dev-hooks\"]",
    ) + "\n[targets.dev-hooks]\nkind = \"script\"\n\
           deploy = \"echo deploy $STELLA_RELEASE_APP $STELLA_RELEASE_DIGEST >> hooks.log\"\n\
           health = \"grep -q $STELLA_RELEASE_DIGEST hooks.log\"\n\
           rollback = \"echo rollback $STELLA_RELEASE_DIGEST >> hooks.log\"\n";
    std::fs::write(ws.join("stella.toml"), toml).unwrap();
    stella(ws).args(["config", "check"]).assert().success();

    assert_eq!(promote(ws, &["api-gateway:1.0", "--to", "dev"]).0, 0);
    assert_eq!(promote(ws, &["api-gateway:2.0", "--to", "dev"]).0, 0);
    stella(ws)
        .args(["release", "rollback", "api-gateway", "--env", "dev"])
        .assert()
        .success();
    let log = std::fs::read_to_string(ws.join("hooks.log")).unwrap();
    assert_eq!(
        log,
        format!("deploy api-gateway {v1}\ndeploy api-gateway {v2}\nrollback {v1}\n")
    );

    // The rollback pinned the lane; lift it to promote again.
    stella(ws)
        .args(["release", "unpin", "api-gateway", "--env", "dev"])
        .assert()
        .success();

    // A failing hook fails the deploy, and says which hook.
    let toml = std::fs::read_to_string(ws.join("stella.toml"))
        .unwrap()
        .replace("grep -q", "false && grep -q");
    std::fs::write(ws.join("stella.toml"), toml).unwrap();
    let (code, v, _) = promote(ws, &["api-gateway:2.0", "--to", "dev"]);
    assert_eq!(code, 1);
    assert_eq!(v["outcome"], "deploy-failed");
    let show: serde_json::Value = serde_json::from_slice(
        &stella(ws)
            .args(["capsule", "show", "latest", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        show["predicate"]["reason"]
            .as_str()
            .unwrap()
            .contains("target `dev-hooks`: the health hook failed (exit 1)"),
        "{show:#}"
    );
}

#[test]
fn a_hanging_hook_is_killed_with_its_children_at_the_targets_timeout() {
    let ws = common::init_workspace();
    let ws = ws.path();
    image(ws, "1.0", "v1");
    let toml = std::fs::read_to_string(ws.join("stella.toml")).unwrap();
    let toml = toml.replace(
        "[environments.dev]\ntargets = [\"dev-local\"]",
        "[environments.dev]\ntargets = [\"dev-hooks\"]",
    ) + "\n[targets.dev-hooks]\nkind = \"script\"\ntimeout = \"1s\"\n\
           deploy = \"(sleep 30; touch survived) & echo started; sleep 30\"\n";
    std::fs::write(ws.join("stella.toml"), toml).unwrap();
    let started = std::time::Instant::now();
    let (code, v, _) = promote(ws, &["api-gateway:1.0", "--to", "dev"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(code, 1);
    assert_eq!(v["outcome"], "deploy-failed");
    let show: serde_json::Value = serde_json::from_slice(
        &stella(ws)
            .args(["capsule", "show", "latest", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let reason = show["predicate"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("the deploy hook timed out after 1s; its process group was killed"),
        "{reason}"
    );
    assert!(reason.contains("started"), "its output is kept: {reason}");
    // A bad timeout is a config error with its place.
    let toml = std::fs::read_to_string(ws.join("stella.toml"))
        .unwrap()
        .replace("timeout = \"1s\"", "timeout = \"soon\"");
    std::fs::write(ws.join("stella.toml"), toml).unwrap();
    let out = stella(ws).args(["config", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("timeout:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A failed deploy says why in `--json` (`error`: what, where, hint) and
/// on stderr; so does a refused unpin.
#[test]
fn a_failed_deploy_carries_its_error_in_json_and_on_stderr() {
    let ws = common::init_workspace();
    let ws = ws.path();
    image(ws, "1.0", "v1");
    let toml = std::fs::read_to_string(ws.join("stella.toml")).unwrap();
    let toml = toml.replace(
        "[environments.dev]\ntargets = [\"dev-local\"]",
        "[environments.dev]\ntargets = [\"dev-hooks\"]",
    ) + "\n[targets.dev-hooks]\nkind = \"script\"\n\
           deploy = \"true\"\n\
           health = \"echo unhealthy >&2; exit 7\"\n\
           rollback = \"true\"\n";
    std::fs::write(ws.join("stella.toml"), toml).unwrap();

    let (code, v, err) = promote(ws, &["api-gateway:1.0", "--to", "dev"]);
    assert_eq!(code, 1);
    assert_eq!(v["outcome"], "deploy-failed");
    let e = &v["error"];
    assert!(
        e["what"]
            .as_str()
            .is_some_and(|w| w.contains("target `dev-hooks`: the health hook failed (exit 7)")),
        "{v:#}"
    );
    assert!(
        e["where"]
            .as_str()
            .is_some_and(|w| w.contains("promotion #") && w.contains("to dev")),
        "{v:#}"
    );
    assert!(e["hint"].as_str().is_some_and(|h| !h.is_empty()), "{v:#}");
    assert!(
        err.lines().any(|l| l.starts_with("error: ")
            && l.contains("target `dev-hooks`: the health hook failed (exit 7)"))
            && err.contains("hint: "),
        "stderr: {err}"
    );

    // An error before anything is sealed is an `error` object too.
    let out = stella(ws)
        .args([
            "release",
            "unpin",
            "api-gateway",
            "--env",
            "nowhere",
            "--json",
        ])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["error"]["what"].as_str().is_some_and(|w| !w.is_empty()),
        "{v:#}"
    );
    assert_eq!(
        v["error"]["where"],
        "release unpin api-gateway --env nowhere"
    );
    assert!(stderr(&out).contains("error: "), "{}", stderr(&out));
}

/// `capsule list` shows each capsule's outcome and filters by it;
/// `capsule show FILE` shows an exported capsule, verified.
#[test]
fn capsules_list_their_outcome_and_show_reads_a_file() {
    use base64::Engine as _;
    let ws = common::init_workspace();
    let ws = ws.path();
    image(ws, "1.0", "v1");
    image(ws, "2.0", "v2");
    assert_eq!(promote(ws, &["api-gateway:1.0", "--to", "dev"]).0, 0);
    let toml = std::fs::read_to_string(ws.join("stella.toml")).unwrap();
    let toml = toml.replace(
        "[environments.dev]\ntargets = [\"dev-local\"]",
        "[environments.dev]\ntargets = [\"dev-hooks\"]",
    ) + "\n[targets.dev-hooks]\nkind = \"script\"\ndeploy = \"exit 3\"\n";
    std::fs::write(ws.join("stella.toml"), toml).unwrap();
    assert_eq!(promote(ws, &["api-gateway:2.0", "--to", "dev"]).0, 1);

    let list = |extra: &[&str]| {
        stella(ws)
            .args(["capsule", "list"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = list(&["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcomes: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap_or("(none)"))
        .collect();
    assert_eq!(outcomes.last(), Some(&"deploy-failed"), "{v:#}");
    assert!(outcomes.len() >= 2, "{v:#}");
    let text = stdout(&list(&[]));
    assert!(
        text.contains("OUTCOME") && text.contains("deploy-failed"),
        "{text}"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&list(&["--outcome", "deploy-failed", "--json"]).stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(v[0]["outcome"], "deploy-failed");
    let bad = list(&["--outcome", "exploded"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("deploy-failed") && stderr(&bad).contains("rolled-back"),
        "{}",
        stderr(&bad)
    );

    // The failed capsule, exported, shown from its file and verified.
    let id = v[0]["id"].as_i64().unwrap().to_string();
    stella(ws)
        .args([
            "capsule",
            "export",
            &id,
            "--format",
            "json",
            "--out",
            "failed.json",
        ])
        .assert()
        .success();
    let out = stella(ws)
        .args(["capsule", "show", "failed.json"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains("Capsule file failed.json")
            && text.contains("outcome   deploy-failed")
            && text.contains("Verified: valid"),
        "{text}"
    );
    let out = stella(ws)
        .args(["capsule", "show", "failed.json", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["predicate"]["outcome"], "deploy-failed");
    assert_eq!(v["verification"]["valid"], true, "{v:#}");

    // A file whose signature was touched is shown as INVALID, exit 1.
    let mut f: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.join("failed.json")).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut sig = b64
        .decode(f["envelope"]["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    sig[10] ^= 1;
    f["envelope"]["signatures"][0]["sig"] = b64.encode(&sig).into();
    std::fs::write(ws.join("forged.json"), serde_json::to_vec(&f).unwrap()).unwrap();
    let out = stella(ws)
        .args(["capsule", "show", "forged.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("Verified: INVALID"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn promotion_and_release_lists_page_oldest_first() {
    let ws = common::init_workspace();
    let ws = ws.path();
    for (tag, body) in [("1.0", "v1"), ("2.0", "v2"), ("3.0", "v3")] {
        image(ws, tag, body);
        assert_eq!(
            promote(ws, &[&format!("api-gateway:{tag}"), "--to", "dev"]).0,
            0
        );
    }
    let list = |args: &[&str]| -> Vec<serde_json::Value> {
        let out = stella(ws).args(args).arg("--json").output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
    };
    let all = list(&["promotion", "list"]);
    assert_eq!(all.len(), 3);
    let page = list(&["promotion", "list", "--limit", "2"]);
    assert_eq!(page, all[..2], "the oldest two");
    let last = page[1]["id"].as_i64().unwrap().to_string();
    assert_eq!(list(&["promotion", "list", "--after", &last]), all[2..]);
    assert!(list(&["promotion", "list", "--since", "2999-01-01"]).is_empty());
    assert_eq!(
        list(&["promotion", "list", "--env", "staging"]),
        Vec::<serde_json::Value>::new()
    );

    let releases = list(&["release", "list"]);
    assert_eq!(releases.len(), 3);
    assert_eq!(list(&["release", "list", "--limit", "1"]), releases[..1]);
    assert!(list(&["release", "list", "--since", "2999-01-01"]).is_empty());

    let out = stella(ws)
        .args(["promotion", "list", "--since", "yesterday"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let id = all[0]["id"].as_i64().unwrap().to_string();
    let out = stella(ws)
        .args(["promotion", "show", &id])
        .output()
        .unwrap();
    assert!(stdout(&out).contains("api-gateway"), "{}", stdout(&out));
}
