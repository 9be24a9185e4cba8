//! kill -9 in the middle of a promotion, and two promotions racing for one
//! environment, with the real binary in child processes.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::stella;

fn image(ws: &Path, tag: &str, body: &str) {
    common::app_image(ws, tag, body);
}

fn workspace(workflow: &str) -> tempfile::TempDir {
    let dir = common::workspace_with_dev_workflow(workflow);
    image(dir.path(), "1.0", "v1");
    image(dir.path(), "2.0", "v2");
    dir
}

fn binary() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("stella")
}

fn db(ws: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(ws.join(".stella/stella.db")).unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn current(ws: &Path) -> String {
    std::fs::read_to_string(ws.join("deploy/dev/current/index.html")).unwrap()
}

#[test]
fn kill_9_during_a_slow_step_leaves_one_release_serving_and_the_run_interrupted() {
    let dir = workspace(
        "[[steps]]\nid = \"deploy\"\nuses = \"deploy\"\n\n[[steps]]\nid = \"soak\"\nrun = \"sleep 60\"\nneeds = [\"deploy\"]\n",
    );
    let ws = dir.path();
    // v1 goes live first (its soak is skipped by a short workflow).
    std::fs::write(
        ws.join("workflows/fast.toml"),
        "[[steps]]\nid = \"deploy\"\nuses = \"deploy\"\n",
    )
    .unwrap();
    let toml = std::fs::read_to_string(ws.join("stella.toml")).unwrap();
    std::fs::write(
        ws.join("stella.toml"),
        toml.replace("workflows/dev.toml", "workflows/fast.toml"),
    )
    .unwrap();
    stella(ws)
        .args(["release", "promote", "api-gateway:1.0", "--to", "dev"])
        .assert()
        .success();
    std::fs::write(
        ws.join("stella.toml"),
        std::fs::read_to_string(ws.join("stella.toml"))
            .unwrap()
            .replace("workflows/fast.toml", "workflows/dev.toml"),
    )
    .unwrap();
    let capsules_before: i64 = db(ws)
        .query_row("SELECT count(*) FROM capsules", [], |r| r.get(0))
        .unwrap();

    let mut child = Command::new(binary())
        .args(["release", "promote", "api-gateway:2.0", "--to", "dev"])
        .current_dir(ws)
        .env_remove("STELLA_WORKSPACE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the soak step to start", || {
        db(ws)
            .query_row(
                "SELECT count(*) FROM steps WHERE step = 'soak' AND state = 'running'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0)
            == 1
    });
    assert_eq!(current(ws), "v2", "deployed before the soak");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Exactly one complete release is served, and no capsule was half-written.
    assert_eq!(current(ws), "v2");
    let conn = db(ws);
    let capsules: i64 = conn
        .query_row("SELECT count(*) FROM capsules", [], |r| r.get(0))
        .unwrap();
    assert_eq!(capsules, capsules_before);
    let state: String = conn
        .query_row(
            "SELECT state FROM promotions ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(state, "running", "nothing ran after the kill");

    // `stella recover` finds the run and marks it interrupted, and the
    // target goes back to what the store holds live (reading never does).
    let out = stella(ws).args(["recover"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("was interrupted"));
    let out = stella(ws)
        .args(["promotion", "list", "--json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let last = rows.as_array().unwrap().last().unwrap();
    assert_eq!(last["state"], "interrupted");
    assert_eq!(last["run_state"], "interrupted");
    assert_eq!(current(ws), "v1");
    let locks: i64 = conn
        .query_row("SELECT count(*) FROM locks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(locks, 0);
    let soak: String = conn
        .query_row("SELECT state FROM steps WHERE step = 'soak'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(soak, "interrupted");
    assert!(
        stella(ws)
            .args(["audit", "verify-chain"])
            .output()
            .unwrap()
            .status
            .success()
    );
}

#[test]
fn two_processes_promoting_into_one_environment_exactly_one_proceeds() {
    let dir = workspace(
        "[[steps]]\nid = \"settle\"\nrun = \"sleep 1.5\"\n\n[[steps]]\nid = \"deploy\"\nuses = \"deploy\"\nneeds = [\"settle\"]\n",
    );
    let ws = dir.path();
    let spawn = |tag: &str| {
        Command::new(binary())
            .args([
                "release",
                "promote",
                &format!("api-gateway:{tag}"),
                "--to",
                "dev",
            ])
            .current_dir(ws)
            .env_remove("STELLA_WORKSPACE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("1.0"), spawn("2.0"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(1)),
        "{codes:?}"
    );
    let loser = if a.status.success() { &b } else { &a };
    let err = String::from_utf8_lossy(&loser.stderr);
    assert!(
        err.contains("error: environment dev is locked by promotion #"),
        "{err}"
    );
    let winner_tag = if a.status.success() { "v1" } else { "v2" };
    assert_eq!(current(ws), winner_tag);
}

/// Starts `promote api-gateway:2.0` stopped at a failpoint, kills it there,
/// and checks that the next start finds one complete release serving.
fn kill_9_at(point: &str) {
    let dir = workspace("[[steps]]\nid = \"deploy\"\nuses = \"deploy\"\n");
    let ws = dir.path();
    stella(ws)
        .args(["release", "promote", "api-gateway:1.0", "--to", "dev"])
        .assert()
        .success();
    let capsules_before: i64 = db(ws)
        .query_row("SELECT count(*) FROM capsules", [], |r| r.get(0))
        .unwrap();
    let mark = ws.join("failpoint.mark");
    let mut child = Command::new(binary())
        .args(["release", "promote", "api-gateway:2.0", "--to", "dev"])
        .current_dir(ws)
        .env_remove("STELLA_WORKSPACE")
        .env("STELLA_FAILPOINT", point)
        .env("STELLA_FAILPOINT_MARK", &mark)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&format!("the failpoint `{point}`"), || mark.exists());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // The switch never happened: v1 serves, whole.
    assert_eq!(current(ws), "v1");
    let leftovers = |ws: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(ws.join("deploy/dev"))
            .unwrap()
            .chain(std::fs::read_dir(ws.join("deploy/dev/releases")).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        names.sort();
        names
    };
    assert!(!leftovers(ws).is_empty(), "the kill left its temp files");
    let capsules: i64 = db(ws)
        .query_row("SELECT count(*) FROM capsules", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        capsules, capsules_before,
        "no capsule for a decision not made"
    );

    // `stella recover` marks it interrupted, clears the half-made files,
    // and the environment can be promoted again.
    let out = stella(ws).args(["recover"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("was interrupted"));
    let out = stella(ws)
        .args(["promotion", "list", "--json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        rows.as_array().unwrap().last().unwrap()["state"],
        "interrupted"
    );
    assert_eq!(leftovers(ws), Vec::<String>::new());
    assert_eq!(current(ws), "v1");
    stella(ws)
        .args(["release", "promote", "api-gateway:2.0", "--to", "dev"])
        .assert()
        .success();
    assert_eq!(current(ws), "v2");
    assert!(
        stella(ws)
            .args(["audit", "verify-chain"])
            .output()
            .unwrap()
            .status
            .success()
    );
}

#[test]
fn kill_9_during_the_switch_leaves_the_previous_release_serving() {
    kill_9_at("switch");
}

#[test]
fn kill_9_mid_unpack_leaves_the_previous_release_serving() {
    kill_9_at("unpacked");
}
