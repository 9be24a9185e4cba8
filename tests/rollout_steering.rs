//! A canary steered from other processes through the store: each request
//! acknowledged with its capsule, a request refused with its reason rather
//! than lost, a dead owner's canary taken over, a flag set while a canary
//! holds kept through its next steps, and the capsules' seal times in
//! order along the chain.

mod common;

use std::time::{Duration, Instant};

use common::stella;

struct StopRouter(std::path::PathBuf);

impl Drop for StopRouter {
    fn drop(&mut self) {
        let _ = stella(&self.0).args(["router", "stop", "dev-web"]).output();
    }
}

fn route_dev(ws: &std::path::Path, env: &str) -> u16 {
    let port = common::free_port();
    let toml = std::fs::read_to_string(ws.join("stella.toml")).unwrap();
    let toml = toml.replace(
        "[environments.dev]\ntargets = [\"dev-local\"]",
        &format!("[environments.dev]\ntargets = [\"dev-web\"]\n{env}"),
    ) + &format!(
        "\n[targets.dev-web]\nkind = \"router\"\nlisten = \"127.0.0.1:{port}\"\npath = \"deploy/dev-web\"\n"
    );
    std::fs::write(ws.join("stella.toml"), toml).unwrap();
    port
}

fn status(ws: &std::path::Path) -> serde_json::Value {
    let out = stella(ws)
        .args(["rollout", "status", "dev", "--json"])
        .output()
        .unwrap();
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
}

fn wait_until(ws: &std::path::Path, what: &str, ok: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(ws);
        if ok(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "never {what}: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn_promote(ws: &std::path::Path, tag: &str) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("stella"))
        .args([
            "release",
            "promote",
            &format!("api-gateway:{tag}"),
            "--to",
            "dev",
        ])
        .current_dir(ws)
        .env_remove("STELLA_WORKSPACE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// `stella rollout REQ dev` as a process of its own; (exit code, stdout,
/// stderr, how long it took).
fn ask(ws: &std::path::Path, req: &str) -> (Option<i32>, String, String, Duration) {
    let t = Instant::now();
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("stella"))
        .args(["rollout", req, "dev"])
        .current_dir(ws)
        .env_remove("STELLA_WORKSPACE")
        .output()
        .unwrap();
    (
        out.status.code(),
        common::stdout(&out),
        common::stderr(&out),
        t.elapsed(),
    )
}

fn routes(ws: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(ws.join(".stella/router/dev-web/routes.json")).unwrap())
        .unwrap()
}

#[test]
fn a_canary_is_steered_from_other_processes_and_taken_over_when_its_owner_dies() {
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    for (tag, body) in [("1.0", "v1"), ("2.0", "v2"), ("3.0", "v3"), ("4.0", "v4")] {
        common::app_image(&ws, tag, body);
    }
    route_dev(
        &ws,
        "strategy = \"canary\"\n\n[environments.dev.rollout]\nsteps = [20, 40, 100]\npause = \"1s\"\n",
    );
    let _stop = StopRouter(ws.clone());
    stella(&ws)
        .args(["release", "promote", "api-gateway:1.0", "--to", "dev"])
        .assert()
        .success();

    // 2.0: paused from another process, acknowledged with its capsule.
    let mut child = spawn_promote(&ws, "2.0");
    wait_until(&ws, "at 20%", |s| s["weight"] == 20);
    let (code, out, err, took) = ask(&ws, "pause");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("pause sealed — capsule capsules/"), "{out}");
    assert!(took < Duration::from_secs(3), "answered in {took:?}");
    assert_eq!(status(&ws)["canary"]["state"], "paused");
    // A second pause is refused with its reason, not lost.
    let (code, _, err, _) = ask(&ws, "pause");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("paused at 20% already"), "{err}");
    // A flag set while the canary holds survives its next steps.
    stella(&ws)
        .args(["flags", "set", "dev", "beta=on"])
        .assert()
        .success();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(routes(&ws)["weight"], 20, "held through its pause");
    let (code, out, err, took) = ask(&ws, "resume");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("resume sealed — capsule capsules/"), "{out}");
    assert!(took < Duration::from_secs(3), "answered in {took:?}");
    assert!(child.wait().unwrap().success());
    let r = routes(&ws);
    assert_eq!(r["flags"]["beta"], "on", "the flag was dropped: {r}");
    assert_eq!(status(&ws)["canary"]["state"], "promoted");

    // 3.0: a pause and an abort sent together are each answered honestly.
    let mut child = spawn_promote(&ws, "3.0");
    wait_until(&ws, "at 20%", |s| s["weight"] == 20);
    let (pause, abort) = std::thread::scope(|s| {
        let p = s.spawn(|| ask(&ws, "pause"));
        let a = s.spawn(|| ask(&ws, "abort"));
        (p.join().unwrap(), a.join().unwrap())
    });
    assert_eq!(abort.0, Some(0), "{}{}", abort.1, abort.2);
    assert!(abort.1.contains("abort sealed — capsule"), "{}", abort.1);
    match pause.0 {
        Some(0) => assert!(pause.1.contains("pause sealed — capsule"), "{}", pause.1),
        _ => assert!(pause.2.contains("refused"), "{}", pause.2),
    }
    assert_eq!(child.wait().unwrap().code(), Some(1));
    let s = status(&ws);
    assert_eq!(s["canary"]["state"], "aborted");
    assert!(s["candidate"].is_null() && s["weight"] == 0, "{s}");

    // 3.0 again, its owner killed: a pause from another process takes it
    // over and holds it, a resume walks it on here to 100 %.
    let mut child = spawn_promote(&ws, "3.0");
    wait_until(&ws, "at 20%", |s| s["weight"] == 20);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (code, out, err, _) = ask(&ws, "pause");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("taken over"), "{out}");
    assert_eq!(routes(&ws)["weight"], 20);
    let (code, out, err, _) = ask(&ws, "resume");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("taken over"), "{out}");
    let s = status(&ws);
    assert_eq!(s["canary"]["state"], "promoted", "{s}");
    assert_eq!(routes(&ws)["flags"]["beta"], "on");

    // 4.0 killed, then aborted from another process: all back on 3.0.
    let mut child = spawn_promote(&ws, "4.0");
    wait_until(&ws, "at 20%", |s| s["weight"] == 20);
    child.kill().unwrap();
    child.wait().unwrap();
    let (code, out, err, _) = ask(&ws, "abort");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("abort sealed") && out.contains("taken over"),
        "{out}"
    );
    let s = status(&ws);
    assert!(s["candidate"].is_null() && s["weight"] == 0, "{s}");
    assert_eq!(s["canary"]["state"], "aborted");

    // The chain: the rollout's own capsules' seal times never go
    // backwards. (A promotion's final capsule carries the clock its gates
    // were decided at, before its canary walked: not checked here.)
    let out = stella(&ws)
        .args(["capsule", "list", "--env", "dev", "--json"])
        .output()
        .unwrap();
    let caps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let times: Vec<chrono::DateTime<chrono::Utc>> = caps
        .iter()
        .filter(|c| c["action"] != "promote")
        .map(|c| c["sealed_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "sealed_at went backwards: {caps:?}"
    );
    stella(&ws)
        .args(["audit", "verify-chain"])
        .assert()
        .success();

    // Every request was answered once, done with its capsule or failed
    // with its reason: a pause or a resume within a second of being asked
    // (the taken-over resume walks the canary to its end first).
    let store = stella::store::Store::open(&ws.join(".stella/stella.db")).unwrap();
    let rows = store.requests("dev", 50).unwrap();
    assert!(rows.len() >= 8, "{rows:?}");
    for r in &rows {
        let took = r.answered_at.expect("answered") - r.requested_at;
        match r.state {
            stella::domain::RequestState::Done => {
                assert!(r.capsule_id.is_some(), "{r:?}");
                use stella::domain::OperatorRequest;
                // An abort is answered once all traffic is back on stable
                // (and, sent with a pause, after that pause).
                let within = match r.request {
                    OperatorRequest::Resume if r.taken_over => None,
                    OperatorRequest::Abort => Some(chrono::Duration::seconds(2)),
                    _ => Some(chrono::Duration::seconds(1)),
                };
                if let Some(within) = within {
                    assert!(took < within, "{took} for {r:?}");
                }
            }
            stella::domain::RequestState::Failed => assert!(r.error.is_some(), "{r:?}"),
            stella::domain::RequestState::Pending => panic!("never answered: {r:?}"),
        }
    }
    // The pause, resume and abort of the killed canaries; a pause that
    // came after the abort ended a canary may say taken over too (refused).
    let taken = |r: &&stella::store::RequestRow| {
        r.taken_over && r.state == stella::domain::RequestState::Done
    };
    assert_eq!(rows.iter().filter(taken).count(), 3, "{rows:?}");
}

#[test]
fn an_ab_test_refuses_steps_and_an_abort_ends_it_on_a_sealed_under_the_lock() {
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    common::app_image(&ws, "1.0", "v1");
    common::app_image(&ws, "2.0", "v2");
    let port = route_dev(
        &ws,
        "strategy = \"ab\"\n\n[environments.dev.rollout]\nsplit = 30\n",
    );
    let _stop = StopRouter(ws.clone());
    for tag in ["1.0", "2.0"] {
        stella(&ws)
            .args([
                "release",
                "promote",
                &format!("api-gateway:{tag}"),
                "--to",
                "dev",
            ])
            .assert()
            .success();
    }
    let s = status(&ws);
    assert_eq!(s["canary"]["state"], "experiment", "{s}");
    assert_eq!(routes(&ws)["weight"], 30);
    // An A/B test has no steps: a pause is refused, with the way out.
    let (code, _, err, _) = ask(&ws, "pause");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("no steps") && err.contains("consolidate"),
        "{err}"
    );
    assert_eq!(routes(&ws)["weight"], 30, "nothing moved");
    // An abort ends it on a, sealed as a consolidation.
    let (code, out, err, _) = ask(&ws, "abort");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("abort sealed — capsule capsules/"), "{out}");
    let r = routes(&ws);
    assert!(r["candidate"].is_null() && r["weight"] == 0, "{r}");
    let url = format!("http://127.0.0.1:{port}/index.html");
    let body = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { reqwest::get(&url).await.unwrap().text().await.unwrap() });
    assert_eq!(body, "v1");
    assert_eq!(status(&ws)["canary"]["state"], "consolidated");
    // Nothing left to consolidate; the lock was released.
    let out = stella(&ws)
        .args(["rollout", "consolidate", "dev", "--winner", "b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("no A/B test is running in dev"));
    let out = stella(&ws)
        .args(["capsule", "list", "--env", "dev", "--json"])
        .output()
        .unwrap();
    let caps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(caps.last().unwrap()["action"], "consolidate", "{caps:?}");
    stella(&ws)
        .args(["audit", "verify-chain"])
        .assert()
        .success();
}
