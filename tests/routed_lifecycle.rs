//! Routed targets done right: counters kept per release across a swap, a
//! rollback to the warm release in one swap (pinned, and failure reported
//! as failure), and a controller that takes its nginx and release
//! processes with it — when its workspace is deleted, and after a
//! `kill -9`, by the next controller.

mod common;

use std::time::{Duration, Instant};

use common::stella;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Router,
    Nginx,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Router => "router",
            Kind::Nginx => "nginx",
        }
    }

    fn available(self) -> bool {
        common::require(&["python3"]) && (self == Kind::Router || common::require(&["nginx"]))
    }
}

struct StopRouter(std::path::PathBuf);

impl Drop for StopRouter {
    fn drop(&mut self) {
        let _ = stella(&self.0).args(["router", "stop", "dev-web"]).output();
    }
}

/// Points `dev` at a routed target `dev-web` of `kind` on a free port
/// whose releases run `server.py`; `env` goes into `[environments.dev]`.
fn route_dev(kind: Kind, ws: &std::path::Path, env: &str) -> u16 {
    let port = common::free_port();
    let toml = std::fs::read_to_string(ws.join("stella.toml")).unwrap();
    let toml = toml.replace(
        "[environments.dev]\ntargets = [\"dev-local\"]",
        &format!("[environments.dev]\ntargets = [\"dev-web\"]\n{env}"),
    ) + &format!(
        "\n[targets.dev-web]\nkind = \"{}\"\nlisten = \"127.0.0.1:{port}\"\npath = \"deploy/dev-web\"\ncommand = \"exec python3 -u server.py {{port}}\"\n",
        kind.name()
    );
    std::fs::write(ws.join("stella.toml"), toml).unwrap();
    port
}

/// A release whose server answers `body`, or 500 when `bad` (after a
/// healthy first answer, so it passes the health check).
fn server_image(ws: &std::path::Path, tag: &str, body: &str, bad: bool) {
    let script = format!(
        "import http.server, sys\n\
         n = [0]\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       n[0] += 1\n\
         \x20       self.send_response(500 if {bad} and n[0] > 1 else 200)\n\
         \x20       self.end_headers()\n\
         \x20       self.wfile.write(b'{body}')\n\
         \x20   def log_message(self, *a):\n\
         \x20       pass\n\
         http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n",
        bad = if bad { "True" } else { "False" },
    );
    stella::registry::layout::LayoutWriter::create(&ws.join("images/api-gateway"))
        .unwrap()
        .add_image(
            tag,
            &[stella::registry::layout::LayerFile {
                path: "server.py",
                mode: 0o644,
                contents: script.as_bytes(),
            }],
        )
        .unwrap();
}

fn promote(ws: &std::path::Path, tag: &str) {
    stella(ws)
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

fn get(port: u16) -> Option<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap()
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    })
}

fn pid_in(path: &std::path::Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Every process the target's controller runs: itself, its release
/// processes, its nginx master and the nginx workers of that master's
/// process group.
fn children(ws: &std::path::Path) -> Vec<i64> {
    let mut pids = Vec::new();
    if let Ok(entries) = std::fs::read_dir(ws.join(".stella/router/dev-web/backends")) {
        pids.extend(entries.flatten().filter_map(|e| pid_in(&e.path())));
    }
    if let Some(master) = pid_in(&ws.join(".stella/nginx/dev-web/nginx.pid")) {
        pids.push(master);
        pids.extend(group_members(master));
    }
    pids
}

/// The processes of process group `pg`.
fn group_members(pg: i64) -> Vec<i64> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    // pid (comm) state ppid pgrp …; comm may hold spaces.
                    let rest = &s[s.rfind(')')? + 2..];
                    rest.split(' ').nth(2)?.parse::<i64>().ok()
                })
                == Some(pg)
        })
        .collect()
}

/// A live process, not a zombie waiting for its parent.
fn running(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rfind(')')
            .and_then(|i| s.get(i + 2..i + 3))
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn refuses(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}

fn wait_until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_router_target_stops_with_its_children_when_its_workspace_is_deleted() {
    workspace_deleted(Kind::Router);
}

#[test]
fn an_nginx_target_stops_with_its_children_when_its_workspace_is_deleted() {
    workspace_deleted(Kind::Nginx);
}

fn workspace_deleted(kind: Kind) {
    if !kind.available() {
        return;
    }
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    server_image(&ws, "1.0", "v1", false);
    server_image(&ws, "2.0", "v2", false);
    let port = route_dev(kind, &ws, "strategy = \"bluegreen\"");
    promote(&ws, "1.0");
    promote(&ws, "2.0");
    assert_eq!(get(port).map(|r| r.1).as_deref(), Some("v2"));
    let controller = pid_in(&ws.join(".stella/router/dev-web/pid")).unwrap();
    let kids = children(&ws);
    // v2 and the warm v1, and for nginx its master and workers.
    let want = if kind == Kind::Nginx { 4 } else { 2 };
    assert!(kids.len() >= want, "{kids:?}");
    assert!(kids.iter().all(|p| running(*p)), "{kids:?}");
    let deleted = Instant::now();
    drop(dir);
    wait_until(
        Duration::from_secs(5),
        "the port still answers after the workspace was deleted",
        || refuses(port),
    );
    wait_until(
        Duration::from_secs(5).saturating_sub(deleted.elapsed()),
        "a child of the controller outlived its workspace",
        || !running(controller) && kids.iter().all(|p| !running(*p)),
    );
    eprintln!("{}: all stopped in {:?}", kind.name(), deleted.elapsed());
}

#[test]
fn a_controller_started_after_a_kill_stops_what_the_killed_one_left() {
    let kind = if Kind::Nginx.available() {
        Kind::Nginx
    } else {
        Kind::Router
    };
    if !kind.available() {
        return;
    }
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    server_image(&ws, "1.0", "v1", false);
    let port = route_dev(kind, &ws, "strategy = \"bluegreen\"");
    let _stop = StopRouter(ws.clone());
    promote(&ws, "1.0");
    let controller = pid_in(&ws.join(".stella/router/dev-web/pid")).unwrap();
    let left = children(&ws);
    assert!(!left.is_empty());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(controller as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until(
        Duration::from_secs(5),
        "the controller survived kill -9",
        || !running(controller),
    );
    // What it started runs on without it…
    assert!(left.iter().all(|p| running(*p)), "{left:?}");
    // …until the next controller starts, stops it, and serves anew.
    stella(&ws)
        .args(["router", "status", "dev-web"])
        .assert()
        .success();
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_stella"))
        .arg("--workspace")
        .arg(&ws)
        .args(["router", "serve", "dev-web"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(ws.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    wait_until(
        Duration::from_secs(5),
        &format!(
            "the killed controller's processes were left running: {:?}\n{}",
            left.iter()
                .filter(|p| running(**p))
                .map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default())
                .collect::<Vec<_>>(),
            std::fs::read_to_string(ws.join("serve.log")).unwrap_or_default()
        ),
        || left.iter().all(|p| !running(*p)),
    );
    wait_until(
        Duration::from_secs(10),
        "the new controller did not serve v1",
        || get(port).is_some_and(|(s, b)| s == 200 && b == "v1"),
    );
    assert_eq!(
        pid_in(&ws.join(".stella/router/dev-web/pid")),
        Some(i64::from(serve.id()))
    );
    stella(&ws)
        .args(["router", "stop", "dev-web"])
        .assert()
        .success();
    let _ = serve.wait();
    assert!(refuses(port));
}

fn routes(ws: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(ws.join(".stella/router/dev-web/routes.json")).unwrap())
        .unwrap()
}

fn digest_of(ws: &std::path::Path, tag: &str) -> String {
    let out = stella(ws)
        .args([
            "release",
            "resolve",
            &format!("api-gateway:{tag}"),
            "--json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", common::stderr(&out)));
    v["digest"].as_str().unwrap().to_owned()
}

#[test]
fn a_rollback_after_a_promoted_canary_is_one_swap_that_pins_the_lane() {
    if !Kind::Router.available() {
        return;
    }
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    server_image(&ws, "1.0", "v1", false);
    server_image(&ws, "2.0", "v2", false);
    let port = route_dev(
        Kind::Router,
        &ws,
        "strategy = \"canary\"\n\n[environments.dev.rollout]\nsteps = [50, 100]\npause = \"3s\"\n",
    );
    let _stop = StopRouter(ws.clone());
    promote(&ws, "1.0");
    promote(&ws, "2.0");
    assert_eq!(get(port).map(|r| r.1).as_deref(), Some("v2"));
    let (v1, v2) = (digest_of(&ws, "1.0"), digest_of(&ws, "2.0"));
    assert_eq!(
        routes(&ws)["candidate"]["digest"],
        v1.as_str(),
        "v1 is warm"
    );

    let started = Instant::now();
    let out = stella(&ws)
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
    let took = started.elapsed();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "rolled-back");
    assert!(v["error"].is_null());
    // One swap, not a canary walked through its 3 s steps.
    assert!(took < Duration::from_secs(3), "the rollback took {took:?}");
    let r = routes(&ws);
    assert_eq!(r["stable"]["digest"], v1.as_str());
    assert_eq!(r["weight"], 0, "no traffic on the bad release");
    assert_eq!(r["candidate"]["digest"], v2.as_str(), "v2 stays warm at 0%");
    for _ in 0..20 {
        assert_eq!(get(port).map(|r| r.1).as_deref(), Some("v1"));
    }
    // The lane is pinned to v1, as after any rollback.
    let pins = stella(&ws)
        .args(["release", "pins", "--json"])
        .output()
        .unwrap();
    let pins: serde_json::Value = serde_json::from_slice(&pins.stdout).unwrap();
    assert_eq!(pins[0]["digest"], v1.as_str(), "{pins}");
    assert_eq!(pins[0]["environment"], "dev");
}

#[test]
fn a_rollback_whose_warm_release_fails_is_reported_as_failed() {
    if !Kind::Router.available() {
        return;
    }
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    // v1 passes its first health check, then answers 500.
    server_image(&ws, "1.0", "v1", true);
    server_image(&ws, "2.0", "v2", false);
    let port = route_dev(Kind::Router, &ws, "strategy = \"bluegreen\"");
    let _stop = StopRouter(ws.clone());
    promote(&ws, "1.0");
    promote(&ws, "2.0");
    let v2 = digest_of(&ws, "2.0");
    let out = stella(&ws)
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
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "rollback-failed");
    // The error report every failed outcome carries: what, where, a hint.
    assert!(
        v["error"]["what"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "{v}"
    );
    assert!(v["error"]["hint"].is_string(), "{v}");
    assert!(
        common::stderr(&out).contains("error:") && common::stderr(&out).contains("500"),
        "{}",
        common::stderr(&out)
    );
    let out = stella(&ws)
        .args(["release", "rollback", "api-gateway", "--env", "dev"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        !common::stdout(&out).contains("Rolled back"),
        "{}",
        common::stdout(&out)
    );
    assert!(
        common::stdout(&out).contains("FAILED") && common::stderr(&out).contains("error:"),
        "{}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
    // Nothing moved, and nothing is pinned.
    assert_eq!(routes(&ws)["stable"]["digest"], v2.as_str());
    assert_eq!(get(port).map(|r| r.1).as_deref(), Some("v2"));
    let pins = stella(&ws)
        .args(["release", "pins", "--json"])
        .output()
        .unwrap();
    assert_eq!(common::stdout(&pins).trim(), "[]");
}

#[test]
fn a_flags_change_waits_for_the_promotion_that_holds_the_lock_and_is_sealed_after_it() {
    if !Kind::Router.available() {
        return;
    }
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    server_image(&ws, "1.0", "v1", false);
    server_image(&ws, "2.0", "v2", false);
    route_dev(Kind::Router, &ws, "strategy = \"bluegreen\"");
    // A second target whose deploy takes a while: the promotion holds
    // the environment's lock for that long.
    let toml = std::fs::read_to_string(ws.join("stella.toml"))
        .unwrap()
        .replace(
            "targets = [\"dev-web\"]",
            "targets = [\"dev-web\", \"dev-slow\"]",
        )
        + "\n[targets.dev-slow]\nkind = \"script\"\n\
           deploy = \"touch started-${STELLA_RELEASE_DIGEST#sha256:}; sleep 2\"\n";
    std::fs::write(ws.join("stella.toml"), toml).unwrap();
    stella(&ws).args(["config", "check"]).assert().success();
    let _stop = StopRouter(ws.clone());
    promote(&ws, "1.0");
    let v2 = digest_of(&ws, "2.0");
    let mut promotion = std::process::Command::new(env!("CARGO_BIN_EXE_stella"))
        .arg("--workspace")
        .arg(&ws)
        .args(["release", "promote", "api-gateway:2.0", "--to", "dev"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = ws.join(format!("started-{}", v2.trim_start_matches("sha256:")));
    wait_until(Duration::from_secs(10), "v2's deploy never started", || {
        started.exists()
    });
    let out = stella(&ws)
        .args(["flags", "set", "dev", "new-checkout=on"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    // It waited for the promotion, so it is sealed after it, on v2.
    assert!(
        promotion.try_wait().unwrap().is_some(),
        "the flags changed while the promotion held the lock"
    );
    assert!(promotion.wait().unwrap().success());
    let list: Vec<serde_json::Value> = serde_json::from_slice(
        &stella(&ws)
            .args(["capsule", "list", "--env", "dev", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let actions: Vec<&str> = list.iter().map(|c| c["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["promote", "promote", "flags"]);
    assert_eq!(list[2]["digest"], v2.as_str());
    assert_eq!(routes(&ws)["flags"]["new-checkout"], "on");
}
