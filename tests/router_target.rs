//! `router` and `nginx` targets end to end through the CLI: the first
//! promotion starts the target's router; the next is a blue/green switch
//! under continuous load with no failed request; a rollback switches back;
//! a release that fails its health check never takes traffic; canaries
//! split as weighted, roll back on a failed analysis and obey operators.
//! The traffic tests run once per kind; the canary also runs through an
//! nginx stella does not run.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::stella;

struct StopRouter(std::path::PathBuf);

impl Drop for StopRouter {
    fn drop(&mut self) {
        let _ = stella(&self.0).args(["router", "stop", "dev-web"]).output();
        let site = self.0.join("site");
        if site.exists() {
            let _ = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{} -s quit", site_nginx(&site)))
                .output();
        }
    }
}

/// The kinds of routed target: each traffic test runs through each.
#[derive(Clone, Copy)]
enum Kind {
    Router,
    /// The nginx stella runs.
    Nginx,
    /// An nginx stella does not run (the test's "site" nginx), driven
    /// through its conf dir and commands.
    ExistingNginx,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Router => "router",
            Kind::Nginx | Kind::ExistingNginx => "nginx",
        }
    }

    /// Whether this machine can run it (under CI=true it must).
    fn available(self) -> bool {
        match self {
            Kind::Router => true,
            Kind::Nginx | Kind::ExistingNginx => common::require(&["nginx"]),
        }
    }
}

/// The command line of the site nginx under `site`.
fn site_nginx(site: &std::path::Path) -> String {
    let s = site.display();
    format!("nginx -p {s} -c {s}/nginx.conf -e {s}/logs/error.log")
}

/// Starts a "site" nginx under `WS/site` as an operator would have one:
/// its own server on `port` and `include conf.d/*.conf;` in its `http`
/// block. Returns the target's `nginx = {…}` line that points stella at
/// it.
fn start_site_nginx(ws: &std::path::Path, port: u16) -> String {
    let site = ws.join("site");
    for d in ["conf.d", "logs", "temp"] {
        std::fs::create_dir_all(site.join(d)).unwrap();
    }
    let s = site.display();
    std::fs::write(
        site.join("nginx.conf"),
        format!(
            "{user}pid {s}/nginx.pid;\nerror_log {s}/logs/error.log notice;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  client_body_temp_path {s}/temp/body;\n  proxy_temp_path {s}/temp/proxy;\n\
               fastcgi_temp_path {s}/temp/fastcgi;\n  uwsgi_temp_path {s}/temp/uwsgi;\n  scgi_temp_path {s}/temp/scgi;\n\
               access_log off;\n  types {{ text/html html; }}\n\
               server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"the site\\n\"; }} }}\n\
               include {s}/conf.d/*.conf;\n}}\n",
            // As root, workers would otherwise run as `nobody`.
            user = if is_root() { "user root;\n" } else { "" },
        ),
    )
    .unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(site_nginx(&site))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    format!(
        "nginx = {{ conf_dir = \"site/conf.d\", test = \"{c} -t\", reload = \"{c} -s reload\", error_log = \"site/logs/error.log\" }}\n",
        c = site_nginx(&site)
    )
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Points `dev` of the workspace at a `router` target `dev-web` on a free
/// port: `env` is added to `[environments.dev]` (after its targets),
/// `target` to the target. Returns the port.
fn route_dev(ws: &std::path::Path, env: &str, target: &str) -> u16 {
    route_dev_as(Kind::Router, ws, env, target)
}

/// `route_dev` with a target of `kind`.
fn route_dev_as(kind: Kind, ws: &std::path::Path, env: &str, target: &str) -> u16 {
    let port = common::free_port();
    let target = match kind {
        Kind::ExistingNginx => format!("{target}{}", start_site_nginx(ws, common::free_port())),
        _ => target.to_owned(),
    };
    let toml = std::fs::read_to_string(ws.join("stella.toml")).unwrap();
    let toml = toml.replace(
        "[environments.dev]\ntargets = [\"dev-local\"]",
        &format!("[environments.dev]\ntargets = [\"dev-web\"]\n{env}"),
    ) + &format!(
        "\n[targets.dev-web]\nkind = \"{}\"\nlisten = \"127.0.0.1:{port}\"\npath = \"deploy/dev-web\"\n{target}",
        kind.name()
    );
    std::fs::write(ws.join("stella.toml"), toml).unwrap();
    port
}

/// The runtime the load generators run on.
fn load_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A GET as browsers send it: nginx closes its old workers' idle
/// keep-alive connections on a reload, and a request written to one at
/// that instant fails before any answer; a client then retries an
/// idempotent request once (RFC 9110 §9.2.2). Retries are counted, so a
/// test can show the built-in router never needs one.
async fn get(
    c: &reqwest::Client,
    url: &str,
    retried: &AtomicUsize,
) -> reqwest::Result<reqwest::Response> {
    match c.get(url).send().await {
        Err(e) if e.is_request() && !e.is_connect() && !e.is_timeout() => {
            retried.fetch_add(1, Ordering::Relaxed);
            c.get(url).send().await
        }
        r => r,
    }
}

/// How many requests `get` retried in a test: none through the built-in
/// router, which swaps routes inside one process.
fn check_retries(kind: Kind, retried: &AtomicUsize) {
    let n = retried.load(Ordering::Relaxed);
    if matches!(kind, Kind::Router) {
        assert_eq!(
            n, 0,
            "the built-in router closed a connection under a request"
        );
    }
    eprintln!("{}: {n} requests retried", kind.name());
}

/// The version of `dev-web`'s routes file.
fn routes_version(ws: &std::path::Path) -> u64 {
    let routes = std::fs::read(ws.join(".stella/router/dev-web/routes.json")).unwrap();
    serde_json::from_slice::<serde_json::Value>(&routes).unwrap()["version"]
        .as_u64()
        .unwrap()
}

fn body(url: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}

#[test]
fn blue_green_through_the_built_in_router_drops_no_request() {
    blue_green_drops_no_request(Kind::Router);
}

#[test]
fn blue_green_through_nginx_drops_no_request() {
    blue_green_drops_no_request(Kind::Nginx);
}

fn blue_green_drops_no_request(kind: Kind) {
    if !kind.available() {
        return;
    }
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    common::app_image(&ws, "1.0", "v1");
    common::app_image(&ws, "2.0", "v2");
    let port = route_dev_as(kind, &ws, "strategy = \"bluegreen\"", "");
    let _stop = StopRouter(ws.clone());
    let url = format!("http://127.0.0.1:{port}/index.html");

    // The first release goes straight to stable, starting the router.
    stella(&ws)
        .args(["release", "promote", "api-gateway:1.0", "--to", "dev"])
        .assert()
        .success();
    assert_eq!(body(&url), "v1");

    // v2 under continuous load: every answer is v1 or v2, none fails, and
    // once the promotion is done, only v2.
    let rt = load_runtime();
    let (ok, failed, v2, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let retried = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (url, ok, failed, v2, stop, retried) = (
                url.clone(),
                ok.clone(),
                failed.clone(),
                v2.clone(),
                stop.clone(),
                retried.clone(),
            );
            rt.spawn(async move {
                let c = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    match get(&c, &url, &retried).await {
                        Ok(r) if r.status().is_success() => match r.text().await.as_deref() {
                            Ok("v1") => ok.fetch_add(1, Ordering::Relaxed),
                            Ok("v2") => v2.fetch_add(1, Ordering::Relaxed),
                            _ => failed.fetch_add(1, Ordering::Relaxed),
                        },
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let out = stella(&ws)
        .args(["release", "promote", "api-gateway:2.0", "--to", "dev"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stdout(&out));
    assert!(
        common::stdout(&out).contains("blue/green"),
        "{}",
        common::stdout(&out)
    );
    let before = v2.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for l in load {
        rt.block_on(l).unwrap();
    }
    let (ok, failed, v2) = (
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        v2.load(Ordering::Relaxed),
    );
    assert_eq!(failed, 0, "{failed} failed requests ({ok} v1, {v2} v2)");
    check_retries(kind, &retried);
    assert!(ok > 50 && v2 > before, "{ok} v1, {v2} v2");
    assert_eq!(body(&url), "v2");

    // Rollback switches the router back.
    stella(&ws)
        .args(["release", "rollback", "api-gateway", "--env", "dev"])
        .assert()
        .success();
    assert_eq!(body(&url), "v1");
    // An operator's `rollout rollback` returns to the release kept warm
    // (v2 now), sealed as a rollback; then back to v1 again.
    let out = stella(&ws)
        .args(["rollout", "rollback", "dev", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["app"], "api-gateway", "{v}");
    assert_eq!(body(&url), "v2");
    assert_eq!(capsule_actions(&ws).last().unwrap(), "rollback");
    stella(&ws)
        .args(["release", "rollback", "api-gateway", "--env", "dev"])
        .assert()
        .success();
    assert_eq!(body(&url), "v1");
    // The rollback pinned the lane; lift it to promote again.
    stella(&ws)
        .args(["release", "unpin", "api-gateway", "--env", "dev"])
        .assert()
        .success();

    // A release whose health check fails never takes traffic: 3.0 has no
    // index.html, so the forced probe of the candidate gets a 404.
    stella::registry::layout::LayoutWriter::create(&ws.join("images/api-gateway"))
        .unwrap()
        .add_image(
            "3.0",
            &[stella::registry::layout::LayerFile {
                path: "other.txt",
                mode: 0o644,
                contents: b"v3",
            }],
        )
        .unwrap();
    let out = stella(&ws)
        .args([
            "release",
            "promote",
            "api-gateway:3.0",
            "--to",
            "dev",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", common::stdout(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "deploy-failed");
    assert_eq!(body(&url), "v1", "the stable release kept serving");

    let status = stella(&ws)
        .args(["router", "status", "dev-web", "--json"])
        .output()
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(s["running"], true, "{s}");
    assert!(s["routes"]["candidate"].is_null(), "{s}");
}

/// A target's controller outlives the command that started it, by
/// design; it does not outlive its workspace.
#[test]
fn a_controller_stops_when_its_workspace_is_removed() {
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    common::app_image(&ws, "1.0", "v1");
    route_dev(&ws, "", "");
    let _stop = StopRouter(ws.clone());
    stella(&ws)
        .args(["release", "promote", "api-gateway:1.0", "--to", "dev"])
        .assert()
        .success();
    let pid: i64 = std::fs::read_to_string(ws.join(".stella/router/dev-web/pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(stella::store::process_alive(pid));
    drop(dir);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while stella::store::process_alive(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "the controller outlived its workspace"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn process_backends_start_before_traffic_and_stop_when_retired() {
    if !common::require(&["python3"]) {
        return;
    }
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    common::app_image(&ws, "1.0", "v1");
    common::app_image(&ws, "2.0", "v2");
    let port = route_dev(
        &ws,
        "",
        "command = \"exec python3 -u -m http.server {port} --bind 127.0.0.1\"\n",
    );
    let _stop = StopRouter(ws.clone());
    let url = format!("http://127.0.0.1:{port}/index.html");
    stella(&ws)
        .args(["release", "promote", "api-gateway:1.0", "--to", "dev"])
        .assert()
        .success();
    assert_eq!(body(&url), "v1");
    // The ports the release processes listen on, in the order started.
    let ports = |ws: &std::path::Path| -> Vec<u16> {
        std::fs::read_to_string(ws.join(".stella/router/dev-web/router.log"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split("port ").nth(1)?.split(' ').next()?.parse().ok())
            .collect()
    };
    let listening = |p: u16| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok();
    let wait_closed = |p: u16, what: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while listening(p) {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(ports(&ws).len(), 1);
    stella(&ws)
        .args(["release", "promote", "api-gateway:2.0", "--to", "dev"])
        .assert()
        .success();
    assert_eq!(body(&url), "v2");
    let started = ports(&ws);
    assert_eq!(started.len(), 2, "v2 got a process of its own");
    // v1 stays warm as the candidate, for an instant rollback…
    assert!(listening(started[0]));
    // …until a third release takes the slot: then v1's process is retired.
    common::app_image(&ws, "3.0", "v3");
    stella(&ws)
        .args(["release", "promote", "api-gateway:3.0", "--to", "dev"])
        .assert()
        .success();
    assert_eq!(body(&url), "v3");
    wait_closed(started[0], "the retired release's process kept running");
    assert!(listening(started[1]), "v2 is the warm one now");
    // Stopping the router stops its backends.
    stella(&ws)
        .args(["router", "stop", "dev-web"])
        .assert()
        .success();
    for p in ports(&ws) {
        wait_closed(p, "a backend outlived its router");
    }
}

/// A release whose server answers 500 to every second request (after a
/// healthy first one, so it passes the health check), or always 200.
fn server_image(ws: &std::path::Path, tag: &str, body: &str, flaky: bool) {
    let script = format!(
        "import http.server, sys\n\
         n = [0]\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       n[0] += 1\n\
         \x20       bad = {flaky} and n[0] % 2 == 0\n\
         \x20       self.send_response(500 if bad else 200)\n\
         \x20       self.end_headers()\n\
         \x20       self.wfile.write(b'{body}')\n\
         \x20   def log_message(self, *a):\n\
         \x20       pass\n\
         http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n",
        flaky = if flaky { "True" } else { "False" },
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

#[test]
fn a_canary_that_fails_its_analysis_is_rolled_back_automatically() {
    canary_rolled_back_on_failed_analysis(Kind::Router);
}

#[test]
fn a_canary_through_nginx_that_fails_its_analysis_is_rolled_back_automatically() {
    canary_rolled_back_on_failed_analysis(Kind::Nginx);
}

fn canary_rolled_back_on_failed_analysis(kind: Kind) {
    if !common::require(&["python3"]) || !kind.available() {
        return;
    }
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    server_image(&ws, "1.0", "v1", false);
    server_image(&ws, "2.0", "v2", true);
    server_image(&ws, "3.0", "v3", false);
    let port = route_dev_as(
        kind,
        &ws,
        "strategy = \"canary\"\n\n\
         [environments.dev.rollout]\nsteps = [50, 100]\npause = \"4s\"\n\
         analysis = { interval = \"1s\", max_error_rate = 0.1, min_requests = 5, failure_limit = 1 }",
        "command = \"exec python3 -u server.py {port}\"\n",
    );
    stella(&ws).args(["config", "check"]).assert().success();
    let _stop = StopRouter(ws.clone());
    let url = format!("http://127.0.0.1:{port}/");
    stella(&ws)
        .args(["release", "promote", "api-gateway:1.0", "--to", "dev"])
        .assert()
        .success();
    assert_eq!(body(&url), "v1");

    // Load throughout; stable's answers must all succeed.
    let rt = load_runtime();
    let (stable_bad, candidate_seen, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let retried = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (url, stable_bad, candidate_seen, stop, retried) = (
                url.clone(),
                stable_bad.clone(),
                candidate_seen.clone(),
                stop.clone(),
                retried.clone(),
            );
            rt.spawn(async move {
                let c = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    match get(&c, &url, &retried).await {
                        Ok(r) if r.headers()["x-stella-slot"] == "stable" => {
                            if !r.status().is_success() {
                                stable_bad.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(_) => {
                            candidate_seen.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            stable_bad.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    let started = std::time::Instant::now();
    let out = stella(&ws)
        .args([
            "release",
            "promote",
            "api-gateway:2.0",
            "--to",
            "dev",
            "--json",
        ])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", common::stdout(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Named for what happened: its analysis rolled it back.
    assert_eq!(v["outcome"], "rolled-back");
    // Rolled back before its 4 s pause could run out (the samples below
    // show it took failure_limit + 1 intervals).
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert_eq!(body(&url), "v1");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for l in load {
        rt.block_on(l).unwrap();
    }
    assert_eq!(stable_bad.load(Ordering::Relaxed), 0, "stable kept serving");
    check_retries(kind, &retried);
    assert!(candidate_seen.load(Ordering::Relaxed) > 5);
    // The capsule names the failed analysis with its samples.
    let reason = latest_reason(&ws);
    assert!(
        reason.contains("canary analysis failed at 50%") && reason.contains("error rate"),
        "{reason}"
    );
    // failure_limit = 1: the second failed sample rolled it back, and no
    // sample came after it.
    let samples = reason.matches("requests, error rate").count();
    let failed = reason.matches("— FAIL").count();
    assert_eq!((failed, samples), (2, 2), "{reason}");
    assert!(reason.contains("all traffic is back on"), "{reason}");

    // A healthy canary walks to 100%.
    let out = stella(&ws)
        .args(["release", "promote", "api-gateway:3.0", "--to", "dev"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stdout(&out));
    assert!(
        common::stdout(&out).contains("canary 50%"),
        "{}",
        common::stdout(&out)
    );
    assert_eq!(body(&url), "v3");
}

/// A static release; with `healthy`, it serves `healthz` saying "ok".
fn probed_image(ws: &std::path::Path, tag: &str, healthy: bool) {
    use stella::registry::layout::{LayerFile, LayoutWriter};
    let mut files = vec![LayerFile {
        path: "index.html",
        mode: 0o644,
        contents: tag.as_bytes(),
    }];
    if healthy {
        files.push(LayerFile {
            path: "healthz",
            mode: 0o644,
            contents: b"ok\n",
        });
    }
    LayoutWriter::create(&ws.join("images/api-gateway"))
        .unwrap()
        .add_image(tag, &files)
        .unwrap();
}

/// The analysis's HTTP probe reaches the candidate through the router
/// and decides even with no traffic at all: a candidate without a
/// health endpoint is rolled back at its first sample, one with it walks
/// to 100 %.
#[test]
fn a_canary_whose_probe_fails_is_rolled_back_without_any_traffic() {
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    probed_image(&ws, "1.0", true);
    probed_image(&ws, "2.0", false);
    probed_image(&ws, "3.0", true);
    let port = route_dev(
        &ws,
        "strategy = \"canary\"\n\n\
         [environments.dev.rollout]\nsteps = [50, 100]\npause = \"3s\"\n\
         analysis = { interval = \"1s\", min_requests = 5, probe = { path = \"/healthz\", body = \"ok\", timeout = \"1s\" } }",
        "",
    );
    stella(&ws).args(["config", "check"]).assert().success();
    let _stop = StopRouter(ws.clone());
    let url = format!("http://127.0.0.1:{port}/index.html");
    stella(&ws)
        .args(["release", "promote", "api-gateway:1.0", "--to", "dev"])
        .assert()
        .success();

    promote_fails(&ws, "api-gateway:2.0", "rolled-back");
    assert_eq!(body(&url), "1.0");
    let reason = latest_reason(&ws);
    assert!(
        reason.contains("probe /healthz: 404, not 200 — FAIL"),
        "{reason}"
    );
    assert_eq!(reason.matches("— FAIL").count(), 1, "{reason}");

    let out = stella(&ws)
        .args(["release", "promote", "api-gateway:3.0", "--to", "dev"])
        .output()
        .unwrap();
    let text = common::stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("probe /healthz 200 — inconclusive"), "{text}");
    assert_eq!(body(&url), "3.0");
}

/// Verification after a blue/green switch: a workflow's `analysis` step
/// watches the new stable release under real traffic; when it fails, the
/// run fails and the previous release is put back.
#[test]
fn an_analysis_step_after_a_switch_puts_the_previous_release_back() {
    if !common::require(&["python3"]) {
        return;
    }
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    server_image(&ws, "1.0", "v1", false);
    server_image(&ws, "2.0", "v2", true);
    let port = route_dev(
        &ws,
        "workflow = \"workflows/dev.toml\"\n",
        "command = \"exec python3 -u server.py {port}\"\n",
    );
    std::fs::write(
        ws.join("workflows/dev.toml"),
        "[[steps]]\nid = \"deploy\"\nuses = \"deploy\"\n\n\
         [[steps]]\nid = \"verify\"\nuses = \"analysis\"\nneeds = [\"deploy\"]\n\
         with = { duration = \"6s\", interval = \"1s\", max_error_rate = 0.1, min_requests = 5 }\n",
    )
    .unwrap();
    stella(&ws).args(["config", "check"]).assert().success();
    let _stop = StopRouter(ws.clone());
    let url = format!("http://127.0.0.1:{port}/");
    // 1.0 holds up: the step passes after its six seconds of samples.
    let rt = load_runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (url, stop) = (url.clone(), stop.clone());
        rt.spawn(async move {
            let c = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let _ = c.get(&url).send().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let out = stella(&ws)
        .args(["release", "promote", "api-gateway:1.0", "--to", "dev"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stdout(&out));
    // 2.0 answers 500 to every second request once it serves: the
    // analysis fails, and 1.0 serves again.
    let v = promote_fails(&ws, "api-gateway:2.0", "deploy-failed");
    assert_eq!(body(&url), "v1");
    stop.store(true, Ordering::Relaxed);
    rt.block_on(load).unwrap();
    // The step's log, sealed as evidence, holds the failing sample.
    let id = v["promotion_id"].as_i64().unwrap().to_string();
    let show = common::stdout(
        &stella(&ws)
            .args(["promotion", "show", &id])
            .output()
            .unwrap(),
    );
    assert!(show.contains("— FAIL"), "{show}");
    assert!(
        show.contains("analysis failed: 1 failed samples, limit 0"),
        "{show}"
    );
}

#[test]
fn operators_pause_promote_and_abort_a_running_canary_from_another_process() {
    if !common::require(&["python3"]) {
        return;
    }
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    for (tag, body) in [("1.0", "v1"), ("2.0", "v2"), ("3.0", "v3")] {
        server_image(&ws, tag, body, false);
    }
    let port = route_dev(
        &ws,
        "strategy = \"canary\"\n\n\
         [environments.dev.rollout]\nsteps = [25, 100]\npause = \"60s\"\n",
        "command = \"exec python3 -u server.py {port}\"\n",
    );
    let _stop = StopRouter(ws.clone());
    let url = format!("http://127.0.0.1:{port}/");
    stella(&ws)
        .args(["release", "promote", "api-gateway:1.0", "--to", "dev"])
        .assert()
        .success();
    let status = |ws: &std::path::Path| -> serde_json::Value {
        let out = stella(ws)
            .args(["rollout", "status", "dev", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
    };
    let wait_state = |ws: &std::path::Path, want: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let s = status(ws);
            if s["canary"]["state"] == want {
                return s;
            }
            assert!(std::time::Instant::now() < deadline, "never {want}: {s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let spawn = |tag: &str| {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("stella"))
            .args([
                "release",
                "promote",
                &format!("api-gateway:{tag}"),
                "--to",
                "dev",
                "--json",
            ])
            .current_dir(&ws)
            .env_remove("STELLA_WORKSPACE")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // Nothing to steer yet.
    let out = stella(&ws)
        .args(["rollout", "pause", "dev"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("no canary is running in dev"));

    // 2.0: held at 25 %, paused, then promoted by hand long before 60 s.
    let child = spawn("2.0");
    wait_state(&ws, "running");
    // Steerable from the start; then at its first weight.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while status(&ws)["weight"] != 25 {
        assert!(std::time::Instant::now() < deadline, "{}", status(&ws));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Status says what comes next and when (once the step's weight is
    // live and its pause has begun), and the traffic of now.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let s = loop {
        let s = status(&ws);
        if s["next"]["at"].is_string() {
            break s;
        }
        assert_eq!(s["next"]["weight"], 100, "{s}");
        assert!(std::time::Instant::now() < deadline, "no next step: {s}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(s["next"]["weight"], 100, "{s}");
    let at = chrono::DateTime::parse_from_rfc3339(s["next"]["at"].as_str().unwrap()).unwrap();
    let left = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(left.num_seconds() > 30 && left.num_seconds() <= 60, "{s}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        for _ in 0..20 {
            body(&url);
        }
        let s = status(&ws);
        let rps = |slot: &str| s["slots"][slot]["recent"]["rps"].as_f64().unwrap_or(0.0);
        if rps("stable") > 0.0 && rps("candidate") > 0.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no recent traffic: {s}"
        );
    }
    let text = common::stdout(
        &stella(&ws)
            .args(["rollout", "status", "dev"])
            .output()
            .unwrap(),
    );
    assert!(text.contains("  next: 100% at "), "{text}");
    assert!(text.contains(" req/s, error rate "), "{text}");
    stella(&ws)
        .args(["rollout", "pause", "dev"])
        .assert()
        .success();
    let s = wait_state(&ws, "paused");
    assert!(
        s["next"]["at"].is_null() && s["next"]["weight"] == 100,
        "{s}"
    );
    stella(&ws)
        .args(["rollout", "promote", "dev"])
        .assert()
        .success();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(body(&url), "v2");
    assert_eq!(status(&ws)["canary"]["state"], "promoted");

    // 3.0: aborted by hand; 2.0 keeps serving.
    let child = spawn("3.0");
    wait_state(&ws, "running");
    stella(&ws)
        .args(["rollout", "abort", "dev"])
        .assert()
        .success();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Named for what happened: an operator stopped it.
    assert_eq!(v["outcome"], "aborted");
    assert_eq!(body(&url), "v2");
    let s = status(&ws);
    assert_eq!(s["canary"]["state"], "aborted");
    assert!(s["candidate"].is_null() && s["weight"] == 0, "{s}");

    // 3.0 again, and `rollout rollback` while it runs: an abort.
    let child = spawn("3.0");
    wait_state(&ws, "running");
    stella(&ws)
        .args(["rollout", "rollback", "dev"])
        .assert()
        .success();
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(1));
    assert_eq!(body(&url), "v2");
    assert_eq!(status(&ws)["canary"]["state"], "aborted");
}

#[test]
fn a_canary_through_the_built_in_router_splits_as_weighted_and_aborts_cleanly() {
    canary_splits_as_weighted_and_aborts_cleanly(Kind::Router);
}

#[test]
fn a_canary_through_nginx_splits_as_weighted_and_aborts_cleanly() {
    canary_splits_as_weighted_and_aborts_cleanly(Kind::Nginx);
}

/// 0 → 10 → 50 → 100 under continuous load: no request fails, and the
/// share of answers from the candidate under each routes version is its
/// weight ± 5 points. Then a second canary is aborted at its first step:
/// again nothing fails, and stable serves everything after.
fn canary_splits_as_weighted_and_aborts_cleanly(kind: Kind) {
    use std::collections::HashMap;
    use std::sync::Mutex;
    if !kind.available() {
        return;
    }
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    for (tag, body) in [("1.0", "v1"), ("2.0", "v2"), ("3.0", "v3")] {
        common::app_image(&ws, tag, body);
    }
    let port = route_dev_as(
        kind,
        &ws,
        "strategy = \"canary\"\n\n[environments.dev.rollout]\nsteps = [10, 50, 100]\npause = \"2s\"\n",
        "",
    );
    let _stop = StopRouter(ws.clone());
    let url = format!("http://127.0.0.1:{port}/index.html");
    stella(&ws)
        .args(["release", "promote", "api-gateway:1.0", "--to", "dev"])
        .assert()
        .success();
    let first = routes_version(&ws);

    // Per routes version: (answers, answers from the candidate).
    type Seen = Arc<Mutex<HashMap<u64, (usize, usize)>>>;
    let rt = load_runtime();
    let (seen, failed, retried, stop): (Seen, _, _, _) = (
        Arc::default(),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let start_load = || -> Vec<tokio::task::JoinHandle<()>> {
        stop.store(false, Ordering::Relaxed);
        (0..4)
            .map(|_| {
                let (url, seen, failed, retried, stop) = (
                    url.clone(),
                    seen.clone(),
                    failed.clone(),
                    retried.clone(),
                    stop.clone(),
                );
                rt.spawn(async move {
                    let c = reqwest::Client::new();
                    while !stop.load(Ordering::Relaxed) {
                        let r = match get(&c, &url, &retried).await {
                            Ok(r) if r.status().is_success() => r,
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        };
                        let h = |n: &str| {
                            r.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned()
                        };
                        let (version, slot) = (
                            h("x-stella-routes").parse().unwrap_or(0),
                            h("x-stella-slot"),
                        );
                        let mut s = seen.lock().unwrap();
                        let e = s.entry(version).or_default();
                        e.0 += 1;
                        e.1 += usize::from(slot == "candidate");
                    }
                })
            })
            .collect()
    };
    let stop_load = |load: Vec<tokio::task::JoinHandle<()>>| {
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        for l in load {
            rt.block_on(l).unwrap();
        }
    };

    let load = start_load();
    std::thread::sleep(Duration::from_millis(300));
    let out = stella(&ws)
        .args(["release", "promote", "api-gateway:2.0", "--to", "dev"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stdout(&out));
    stop_load(load);
    assert_eq!(failed.load(Ordering::Relaxed), 0, "failed requests");
    // The versions the canary wrote: the candidate at 0 (health check),
    // at 10 and at 50, then the swap.
    let s = seen.lock().unwrap().clone();
    for (version, weight) in [(first + 2, 10.0), (first + 3, 50.0)] {
        let (n, c) = s.get(&version).copied().unwrap_or_default();
        assert!(n > 100, "only {n} answers at {weight}% ({s:?})");
        let share = 100.0 * c as f64 / n as f64;
        assert!(
            (share - weight).abs() <= 5.0,
            "{share:.1}% of {n} answers from the candidate at {weight}% ({s:?})"
        );
    }
    let (n, c) = s.get(&(first + 4)).copied().unwrap_or_default();
    assert_eq!(
        c, 0,
        "after the swap the new release is stable ({n} answers)"
    );
    assert_eq!(body(&url), "v2");

    // 3.0, aborted by an operator while it holds 10 %.
    seen.lock().unwrap().clear();
    let load = start_load();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("stella"))
        .args([
            "release",
            "promote",
            "api-gateway:3.0",
            "--to",
            "dev",
            "--json",
        ])
        .current_dir(&ws)
        .env_remove("STELLA_WORKSPACE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let at_ten = first + 6;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while seen
        .lock()
        .unwrap()
        .get(&at_ten)
        .is_none_or(|(_, c)| *c < 10)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "3.0 never took traffic"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stella(&ws)
        .args(["rollout", "abort", "dev"])
        .assert()
        .success();
    assert_eq!(
        child.wait().unwrap().code(),
        Some(1),
        "an aborted promotion exits 1"
    );
    stop_load(load);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests during the abort"
    );
    let s = seen.lock().unwrap().clone();
    let after: usize = s
        .iter()
        .filter(|(v, _)| **v > at_ten)
        .map(|(_, (_, c))| c)
        .sum();
    assert_eq!(after, 0, "the candidate answered after the abort ({s:?})");
    assert_eq!(body(&url), "v2");
    check_retries(kind, &retried);
}

#[test]
fn a_canary_through_an_existing_nginx_splits_as_weighted_and_aborts_cleanly() {
    canary_splits_as_weighted_and_aborts_cleanly(Kind::ExistingNginx);
}

/// An nginx stella does not run: stella writes only its own file into the
/// conf dir, tests and reloads with the operator's commands, leaves the
/// site's own server alone, puts the old file back when nginx cannot
/// take the new one, and takes the file out when its router stops.
#[test]
fn an_existing_nginx_is_driven_through_its_conf_dir_and_reload_command() {
    if !Kind::ExistingNginx.available() {
        return;
    }
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    common::app_image(&ws, "1.0", "v1");
    common::app_image(&ws, "2.0", "v2");
    let port = route_dev_as(Kind::ExistingNginx, &ws, "", "");
    let stop = StopRouter(ws.clone());
    let site_conf = std::fs::read_to_string(ws.join("site/nginx.conf")).unwrap();
    let site_port: u16 = site_conf
        .split("listen 127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    let site = format!("http://127.0.0.1:{site_port}/");
    assert_eq!(body(&site), "the site\n");
    stella(&ws)
        .args(["release", "promote", "api-gateway:1.0", "--to", "dev"])
        .assert()
        .success();
    let url = format!("http://127.0.0.1:{port}/index.html");
    assert_eq!(body(&url), "v1");
    assert_eq!(
        body(&site),
        "the site\n",
        "the site's own server is untouched"
    );
    let ours = ws.join("site/conf.d/stella-dev-web.conf");
    let before = std::fs::read_to_string(&ours).unwrap();
    assert!(before.contains("$stella_dev_web_slot"), "{before}");
    let mut files: Vec<String> = std::fs::read_dir(ws.join("site/conf.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["stella-dev-web.conf"],
        "nothing else left in conf.d"
    );
    assert!(
        !ws.join(".stella/nginx/dev-web/nginx.pid").exists(),
        "stella ran no nginx of its own"
    );

    // The target moves to a port something else holds: `-t` passes, the
    // reload cannot bind, and nginx's own message comes back.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let toml = std::fs::read_to_string(ws.join("stella.toml")).unwrap();
    std::fs::write(
        ws.join("stella.toml"),
        toml.replace(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:{busy}")),
    )
    .unwrap();
    let out = stella(&ws)
        .args(["release", "promote", "api-gateway:2.0", "--to", "dev"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", common::stdout(&out));
    let said = format!("{}{}", common::stdout(&out), common::stderr(&out));
    assert!(
        said.contains(&format!("bind() to 127.0.0.1:{busy} failed"))
            && said.contains("keeps serving the previous config"),
        "{said}"
    );
    assert_eq!(body(&url), "v1", "the old config kept serving");
    assert_eq!(body(&site), "the site\n");
    // Once the controller has answered the clean-up too, the file is the
    // one serving.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&ours).unwrap() != before {
        assert!(
            std::time::Instant::now() < deadline,
            "the file in conf.d is not the one serving"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Back on a free port, the same promotion goes through.
    drop(taken);
    std::fs::write(ws.join("stella.toml"), toml).unwrap();
    stella(&ws)
        .args(["release", "promote", "api-gateway:2.0", "--to", "dev"])
        .assert()
        .success();
    assert_eq!(body(&url), "v2");

    // Stopping the target's router takes its file out; the site serves on.
    stella(&ws)
        .args(["router", "stop", "dev-web"])
        .assert()
        .success();
    assert!(!ours.exists());
    assert_eq!(body(&site), "the site\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stop);
}

#[test]
fn a_config_nginx_cannot_apply_leaves_the_old_one_serving_and_says_why() {
    if !Kind::Nginx.available() {
        return;
    }
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    common::app_image(&ws, "1.0", "v1");
    common::app_image(&ws, "2.0", "v2");
    let port = route_dev_as(Kind::Nginx, &ws, "", "");
    let _stop = StopRouter(ws.clone());
    stella(&ws)
        .args(["release", "promote", "api-gateway:1.0", "--to", "dev"])
        .assert()
        .success();
    let url = format!("http://127.0.0.1:{port}/index.html");
    assert_eq!(body(&url), "v1");
    let conf = ws.join(".stella/nginx/dev-web/nginx.conf");
    let before = std::fs::read_to_string(&conf).unwrap();

    // The target moves to a port something else holds: nginx passes
    // `-t` but cannot bind on reload.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let toml = std::fs::read_to_string(ws.join("stella.toml")).unwrap();
    std::fs::write(
        ws.join("stella.toml"),
        toml.replace(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:{busy}")),
    )
    .unwrap();
    let out = stella(&ws)
        .args(["release", "promote", "api-gateway:2.0", "--to", "dev"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", common::stdout(&out));
    let said = format!("{}{}", common::stdout(&out), common::stderr(&out));
    assert!(
        said.contains(&format!("bind() to 127.0.0.1:{busy} failed"))
            && said.contains("Address already in use")
            && said.contains("keeps serving the previous config"),
        "{said}"
    );
    assert_eq!(body(&url), "v1", "the old config kept serving");
    // The promotion's clean-up (no candidate) is refused the same way;
    // once the controller has answered it, the file is the old one.
    let applied = ws.join(".stella/router/dev-web/applied.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let a: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&applied).unwrap()).unwrap();
        if a["version"].as_u64() == Some(routes_version(&ws)) {
            assert!(
                a["error"]
                    .as_str()
                    .unwrap()
                    .contains("Address already in use"),
                "{a}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{a}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        before,
        "the config on disk is the one serving; the controller said {}",
        std::fs::read_to_string(ws.join(".stella/router/dev-web/router.log")).unwrap()
    );

    // Back on a free port, the same promotion goes through.
    drop(taken);
    std::fs::write(ws.join("stella.toml"), toml).unwrap();
    stella(&ws)
        .args(["release", "promote", "api-gateway:2.0", "--to", "dev"])
        .assert()
        .success();
    assert_eq!(body(&url), "v2");
}

/// The actions of the capsules sealed in `dev`, oldest first.
/// The reason sealed in the newest capsule.
fn latest_reason(ws: &std::path::Path) -> String {
    let show: serde_json::Value = serde_json::from_slice(
        &stella(ws)
            .args(["capsule", "show", "latest", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    show["predicate"]["reason"].as_str().unwrap().to_owned()
}

/// `release promote REF --to dev --json` that must fail: exit 1 and
/// `outcome` (`deploy-failed`, or `rolled-back` when a canary's analysis
/// sent the traffic back). Returns the JSON.
fn promote_fails(ws: &std::path::Path, reference: &str, outcome: &str) -> serde_json::Value {
    let out = stella(ws)
        .args(["release", "promote", reference, "--to", "dev", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", common::stdout(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], outcome, "{v}");
    v
}

fn capsule_actions(ws: &std::path::Path) -> Vec<String> {
    let out = stella(ws)
        .args(["capsule", "list", "--env", "dev", "--json"])
        .output()
        .unwrap();
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        .unwrap()
        .iter()
        .map(|c| c["action"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_canary_whose_promotion_is_killed_holds_its_traffic_until_resumed_or_aborted() {
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    for (tag, body) in [("1.0", "v1"), ("2.0", "v2"), ("3.0", "v3")] {
        common::app_image(&ws, tag, body);
    }
    let port = route_dev(
        &ws,
        "strategy = \"canary\"\n\n[environments.dev.rollout]\nsteps = [50, 100]\npause = \"10m\"\n",
        "",
    );
    let _stop = StopRouter(ws.clone());
    let url = format!("http://127.0.0.1:{port}/index.html");
    stella(&ws)
        .args(["release", "promote", "api-gateway:1.0", "--to", "dev"])
        .assert()
        .success();
    let status = |ws: &std::path::Path| -> serde_json::Value {
        let out = stella(ws)
            .args(["rollout", "status", "dev", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
    };
    let answers = |n: usize| -> (usize, usize) {
        let rt = load_runtime();
        rt.block_on(async {
            let c = reqwest::Client::new();
            let mut seen = (0, 0);
            for _ in 0..n {
                match c
                    .get(&url)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap()
                    .as_str()
                {
                    "v1" => seen.0 += 1,
                    _ => seen.1 += 1,
                }
            }
            seen
        })
    };
    // Starts a canary and kills its promotion once it holds 50 %.
    let kill_mid_canary = |tag: &str| {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("stella"))
            .args([
                "release",
                "promote",
                &format!("api-gateway:{tag}"),
                "--to",
                "dev",
            ])
            .current_dir(&ws)
            .env_remove("STELLA_WORKSPACE")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !(status(&ws)["canary"]["state"] == "running" && status(&ws)["weight"] == 50) {
            assert!(std::time::Instant::now() < deadline, "{}", status(&ws));
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    };

    kill_mid_canary("2.0");
    // Traffic stays where it was: half on the candidate.
    let (v1, v2) = answers(200);
    assert!(v1 > 50 && v2 > 50, "{v1} v1, {v2} v2");
    // On the next start the promotion is found interrupted, and the
    // canary is shown held at its step — not rolled back.
    let out = stella(&ws).args(["recover"]).output().unwrap();
    assert!(
        common::stderr(&out).contains("its canary is held at 50%")
            || common::stdout(&out).contains("its canary is held at 50%"),
        "{}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
    let s = status(&ws);
    assert_eq!(
        (
            s["canary"]["state"].as_str(),
            s["canary"]["interrupted"].as_bool(),
            s["weight"].as_u64()
        ),
        (Some("paused"), Some(true), Some(50)),
        "{s}"
    );
    let (v1, v2) = answers(100);
    assert!(
        v1 > 20 && v2 > 20,
        "still split after recovery: {v1} v1, {v2} v2"
    );
    // Promoted from where it stood, by a new promotion of the same digest.
    let out = stella(&ws)
        .args(["rollout", "promote", "dev"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
    assert_eq!(body(&url), "v2");
    assert_eq!(status(&ws)["canary"]["state"], "promoted");

    // 3.0, killed the same way, then aborted: all traffic back on 2.0.
    kill_mid_canary("3.0");
    stella(&ws)
        .args(["rollout", "abort", "dev"])
        .assert()
        .success();
    let (old, new) = answers(50);
    assert_eq!((old, new), (0, 50), "2.0 serves everything after the abort");
    let s = status(&ws);
    assert!(s["candidate"].is_null() && s["weight"] == 0, "{s}");
    assert_eq!(s["canary"]["state"], "aborted");

    // Every step was sealed: each canary's 50 % step, the operator's
    // promote of the taken-over canary, the abort — in one verifiable chain.
    let actions = capsule_actions(&ws);
    for want in ["canary-step", "abort"] {
        assert!(
            actions.iter().any(|a| a == want),
            "no {want} capsule: {actions:?}"
        );
    }
    assert_eq!(
        actions.iter().filter(|a| *a == "canary-step").count(),
        3,
        "{actions:?}"
    );
    stella(&ws)
        .args(["audit", "verify-chain"])
        .assert()
        .success();
}

#[test]
fn manual_steps_hold_until_an_operator_resumes_each() {
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    common::app_image(&ws, "1.0", "v1");
    common::app_image(&ws, "2.0", "v2");
    let port = route_dev(
        &ws,
        "strategy = \"canary\"\n\n[environments.dev.rollout]\nsteps = [30, 60, 100]\npause = \"manual\"\n",
        "",
    );
    stella(&ws).args(["config", "check"]).assert().success();
    let _stop = StopRouter(ws.clone());
    stella(&ws)
        .args(["release", "promote", "api-gateway:1.0", "--to", "dev"])
        .assert()
        .success();
    let weight = |ws: &std::path::Path| -> u64 {
        let out = stella(ws)
            .args(["rollout", "status", "dev", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0]["weight"]
            .as_u64()
            .unwrap()
    };
    let wait_weight = |want: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while weight(&ws) != want {
            assert!(std::time::Instant::now() < deadline, "never at {want}%");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("stella"))
        .args(["release", "promote", "api-gateway:2.0", "--to", "dev"])
        .current_dir(&ws)
        .env_remove("STELLA_WORKSPACE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_weight(30);
    // `status --watch --json` streams a line of JSON a second.
    let mut watch = std::process::Command::new(assert_cmd::cargo::cargo_bin("stella"))
        .args(["rollout", "status", "dev", "--watch", "--json"])
        .current_dir(&ws)
        .env_remove("STELLA_WORKSPACE")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(watch.stdout.take().unwrap()));
    for _ in 0..2 {
        let line: serde_json::Value =
            serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(line[0]["weight"], 30, "{line}");
        assert_eq!(line[0]["canary"]["state"], "running", "{line}");
    }
    watch.kill().unwrap();
    watch.wait().unwrap();
    // Held: no clock moves a manual step on, and status says who will.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(weight(&ws), 30);
    let text = common::stdout(
        &stella(&ws)
            .args(["rollout", "status", "dev"])
            .output()
            .unwrap(),
    );
    assert!(
        text.contains("  next: 60% when an operator resumes"),
        "{text}"
    );
    stella(&ws)
        .args(["rollout", "resume", "dev"])
        .assert()
        .success();
    wait_weight(60);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(weight(&ws), 60);
    stella(&ws)
        .args(["rollout", "resume", "dev"])
        .assert()
        .success();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let url = format!("http://127.0.0.1:{port}/index.html");
    assert_eq!(body(&url), "v2");
    let steps = capsule_actions(&ws)
        .iter()
        .filter(|a| *a == "canary-step")
        .count();
    // One capsule per weight change, the operator's last one to 100
    // included: it is sealed before the candidate becomes stable.
    assert_eq!(steps, 3, "one capsule per weight change");
}

#[test]
fn an_ab_test_through_the_built_in_router_keeps_clients_on_their_variant_until_consolidated() {
    ab_test_until_consolidated(Kind::Router);
}

#[test]
fn an_ab_test_through_nginx_keeps_clients_on_their_variant_until_consolidated() {
    ab_test_until_consolidated(Kind::Nginx);
}

/// A/B at 30 %: new clients split 70/30 and are told their variant in a
/// cookie; a client that sends it back stays there; `consolidate
/// --winner b` moves everything to b, sealed with the comparison.
fn ab_test_until_consolidated(kind: Kind) {
    if !kind.available() {
        return;
    }
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    common::app_image(&ws, "1.0", "v1");
    common::app_image(&ws, "2.0", "v2");
    let port = route_dev_as(
        kind,
        &ws,
        "strategy = \"ab\"\n\n[environments.dev.rollout]\nsplit = 30\n",
        "",
    );
    stella(&ws).args(["config", "check"]).assert().success();
    let _stop = StopRouter(ws.clone());
    let url = format!("http://127.0.0.1:{port}/index.html");
    for tag in ["1.0", "2.0"] {
        let out = stella(&ws)
            .args([
                "release",
                "promote",
                &format!("api-gateway:{tag}"),
                "--to",
                "dev",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::stdout(&out));
    }
    let rt = load_runtime();
    let (new_clients, b, sticky_b) = rt.block_on(async {
        let c = reqwest::Client::new();
        let (mut n, mut b) = (0, 0);
        for _ in 0..400 {
            let r = c.get(&url).send().await.unwrap();
            let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
            let slot = r.headers()["x-stella-slot"].to_str().unwrap().to_owned();
            let body = r.text().await.unwrap();
            assert_eq!(
                cookie.starts_with("stella-variant=b"),
                body == "v2",
                "{cookie} for {slot}: {body}"
            );
            n += 1;
            b += usize::from(body == "v2");
        }
        let mut sticky = 0;
        for _ in 0..30 {
            let r = c
                .get(&url)
                .header("cookie", "stella-variant=b")
                .send()
                .await
                .unwrap();
            assert!(
                r.headers().get("set-cookie").is_none(),
                "a kept variant is not reassigned"
            );
            sticky += usize::from(r.text().await.unwrap() == "v2");
        }
        (n, b, sticky)
    });
    let share = 100.0 * b as f64 / new_clients as f64;
    assert!(
        (share - 30.0).abs() <= 8.0,
        "{share:.1}% of new clients on b"
    );
    assert_eq!(sticky_b, 30, "a client on b stays on b");
    let status: serde_json::Value = serde_json::from_slice(
        &stella(&ws)
            .args(["rollout", "status", "dev", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(status[0]["canary"]["state"], "experiment", "{status}");

    let out = stella(&ws)
        .args(["rollout", "consolidate", "dev", "--winner", "b"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
    assert!(
        common::stdout(&out).contains("everything on b"),
        "{}",
        common::stdout(&out)
    );
    let bodies: Vec<String> = (0..20).map(|_| body(&url)).collect();
    assert!(bodies.iter().all(|b| b == "v2"), "{bodies:?}");
    let show: serde_json::Value = serde_json::from_slice(
        &stella(&ws)
            .args(["capsule", "show", "latest", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(show["predicate"]["action"], "consolidate");
    let reason = show["predicate"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("b winning") && reason.contains("a: ") && reason.contains("requests"),
        "{reason}"
    );
    let exported = common::stdout(&out)
        .rsplit("capsule ")
        .next()
        .unwrap()
        .trim()
        .to_owned();
    stella(&ws)
        .args(["capsule", "replay", &exported])
        .assert()
        .success();
    stella(&ws)
        .args(["audit", "verify-chain"])
        .assert()
        .success();
    // Nothing left to consolidate.
    let out = stella(&ws)
        .args(["rollout", "consolidate", "dev", "--winner", "a"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("no A/B test is running in dev"));
}

#[test]
fn scale_down_delay_retires_the_warm_release_after_a_switch() {
    if !common::require(&["python3"]) {
        return;
    }
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    common::app_image(&ws, "1.0", "v1");
    common::app_image(&ws, "2.0", "v2");
    let port = route_dev(
        &ws,
        "strategy = \"bluegreen\"\n\n[environments.dev.rollout]\nscale_down_delay = \"1s\"\n",
        "command = \"exec python3 -u -m http.server {port} --bind 127.0.0.1\"\n",
    );
    stella(&ws).args(["config", "check"]).assert().success();
    let _stop = StopRouter(ws.clone());
    let url = format!("http://127.0.0.1:{port}/index.html");
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
    assert_eq!(body(&url), "v2");
    let first: u16 = std::fs::read_to_string(ws.join(".stella/router/dev-web/router.log"))
        .unwrap()
        .lines()
        .find_map(|l| l.split("port ").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap();
    // v1's process is retired once its delay has run out…
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", first)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "v1 stayed warm past its delay"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(body(&url), "v2");
    // …and a rollback still works: v1 starts again, is checked, swaps in.
    stella(&ws)
        .args(["release", "rollback", "api-gateway", "--env", "dev"])
        .assert()
        .success();
    assert_eq!(body(&url), "v1");
}

/// A release whose server answers with the flags stella sent it.
fn flags_echo_image(ws: &std::path::Path, tag: &str) {
    let script = "import http.server, sys\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       body = (self.headers.get('X-Stella-Flags') or '').encode()\n\
         \x20       self.send_response(200)\n\
         \x20       self.end_headers()\n\
         \x20       self.wfile.write(body)\n\
         \x20   def log_message(self, *a):\n\
         \x20       pass\n\
         http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n";
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

#[test]
fn feature_flags_through_the_built_in_router_reach_the_release_and_are_sealed() {
    flags_reach_the_release(Kind::Router);
}

#[test]
fn feature_flags_through_nginx_reach_the_release_and_are_sealed() {
    flags_reach_the_release(Kind::Nginx);
}

fn flags_reach_the_release(kind: Kind) {
    if !common::require(&["python3"]) || !kind.available() {
        return;
    }
    let dir = common::init_workspace();
    let ws = dir.path().to_owned();
    flags_echo_image(&ws, "1.0");
    let port = route_dev_as(
        kind,
        &ws,
        "",
        "command = \"exec python3 -u server.py {port}\"\n",
    );
    let _stop = StopRouter(ws.clone());
    let url = format!("http://127.0.0.1:{port}/");
    // Nothing to carry flags yet.
    let out = stella(&ws)
        .args(["flags", "set", "dev", "new-checkout=on"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", common::stderr(&out));
    stella(&ws)
        .args(["release", "promote", "api-gateway:1.0", "--to", "dev"])
        .assert()
        .success();
    assert_eq!(body(&url), "");
    stella(&ws)
        .args(["flags", "set", "dev", "new-checkout=on", "dark=0%"])
        .assert()
        .success();
    assert_eq!(body(&url), "dark=off; new-checkout=on");
    // A client cannot send flags of its own.
    let rt = load_runtime();
    let spoofed = rt.block_on(async {
        reqwest::Client::new()
            .get(&url)
            .header("X-Stella-Flags", "evil=on")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert_eq!(spoofed, "dark=off; new-checkout=on");
    stella(&ws)
        .args(["flags", "set", "dev", "dark=100%"])
        .assert()
        .success();
    assert_eq!(body(&url), "dark=on; new-checkout=on");
    let listed: serde_json::Value = serde_json::from_slice(
        &stella(&ws)
            .args(["flags", "list", "dev", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        listed,
        serde_json::json!({"dark": "100%", "new-checkout": "on"})
    );
    let delivered: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ws.join(".stella/router/dev-web/flags.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(delivered, listed, "the flags file the release reads");
    // Bad input names the value and the fix; nothing changes.
    let out = stella(&ws)
        .args(["flags", "set", "dev", "dark=maybe"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("`maybe` is not on, off or a percentage"));
    let actions = capsule_actions(&ws);
    assert_eq!(
        actions.iter().filter(|a| *a == "flags").count(),
        2,
        "{actions:?}"
    );
    stella(&ws)
        .args(["audit", "verify-chain"])
        .assert()
        .success();
}
