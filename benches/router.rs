//! The built-in router: throughput and added latency against the same
//! backend reached directly (and through nginx, where it is installed),
//! side by side in one run, and how long a weight decision takes to be
//! live — in process, and end to end through a target's controller for
//! both kinds (the routes file written, the split seen by a client). A
//! bench binary.
//!
//!     cargo bench --bench router

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use stella::deploy::router::{Backend, Router, Routes, Slot};

const CONCURRENCY: usize = 8;
const REQUESTS: u64 = 20_000;

/// `REQUESTS` GETs of `url` from `CONCURRENCY` clients: (requests/s, mean ms).
async fn load(url: &str) -> (f64, f64) {
    let client = reqwest::Client::new();
    let left = Arc::new(AtomicU64::new(REQUESTS));
    let busy = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, url, left, busy) =
            (client.clone(), url.to_owned(), left.clone(), busy.clone());
        tasks.push(tokio::spawn(async move {
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let t = Instant::now();
                let r = client.get(&url).send().await.expect("request");
                assert!(r.status().is_success());
                r.bytes().await.expect("body");
                busy.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    (
        REQUESTS as f64 / secs,
        busy.load(Ordering::Relaxed) as f64 / REQUESTS as f64 / 1000.0,
    )
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        "<h1>release</h1>\n".repeat(20),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let backend = Router::start(
            "127.0.0.1:0".parse().unwrap(),
            Routes {
                stable: Some(Backend::Static(dir.path().to_owned())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let router = Router::start(
            "127.0.0.1:0".parse().unwrap(),
            Routes {
                stable: Some(Backend::Http(backend.addr())),
                candidate: Some(Backend::Http(backend.addr())),
                weight: 50,
                version: 1,
                sticky: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let direct = format!("http://{}/", backend.addr());
        let via = format!("http://{}/", router.addr());
        load(&direct).await; // warm up both paths
        load(&via).await;
        let (d_rps, d_ms) = load(&direct).await;
        let (v_rps, v_ms) = load(&via).await;
        println!(
            "direct: {d_rps:.0} req/s, mean {d_ms:.3} ms | through the router: {v_rps:.0} req/s, mean {v_ms:.3} ms | added {:.3} ms per request ({REQUESTS} requests, {CONCURRENCY} clients)",
            v_ms - d_ms
        );
        // A weight decision is live for the next request routed.
        let client = reqwest::Client::new();
        let mut worst = Duration::ZERO;
        for w in [0u8, 100, 0, 100, 0, 100] {
            let t = Instant::now();
            router.set_routes(Routes {
                weight: w,
                ..router.routes()
            });
            let want = if w == 100 { "candidate" } else { "stable" };
            loop {
                let r = client.get(&via).send().await.unwrap();
                if r.headers()["x-stella-slot"] == want {
                    break;
                }
            }
            worst = worst.max(t.elapsed());
        }
        println!(
            "weight decision to the new split live (the next request): worst {:.3} ms",
            worst.as_secs_f64() * 1e3
        );
        let s = router.stats(Slot::Stable);
        println!("router counters: stable {} requests, p95 ≤ {} ms", s.requests, s.p95_ms);
    });
    rt.block_on(through_controllers(dir.path()));
}

/// Runs a target's controller (`stella router serve TARGET`) until dropped.
struct Controller {
    ws: std::path::PathBuf,
    target: String,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = std::process::Command::new(env!("CARGO_BIN_EXE_stella"))
            .arg("--workspace")
            .arg(&self.ws)
            .args(["router", "stop", &self.target])
            .output();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A weight decision end to end: the routes file written (what a canary
/// step does), until a client's unforced request lands on the new slot.
/// Also nginx's throughput beside the direct path, on the same release.
async fn through_controllers(release: &std::path::Path) {
    use stella::deploy::routed::{self, RouterState, SlotState};
    let ws = tempfile::tempdir().unwrap();
    let exe = env!("CARGO_BIN_EXE_stella");
    assert!(
        std::process::Command::new(exe)
            .current_dir(ws.path())
            .args(["init", "--name", "bench"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let nginx = stella::deploy::nginx::find_binary().is_ok();
    let kinds: Vec<&str> = if nginx {
        vec!["router", "nginx"]
    } else {
        println!("nginx is not installed: its figures are skipped");
        vec!["router"]
    };
    let mut toml = std::fs::read_to_string(ws.path().join("stella.toml")).unwrap();
    let mut ports = Vec::new();
    for kind in &kinds {
        let port = free_port();
        ports.push(port);
        toml.push_str(&format!(
            "\n[targets.b-{kind}]\nkind = \"{kind}\"\nlisten = \"127.0.0.1:{port}\"\npath = \"deploy/{kind}\"\n"
        ));
    }
    std::fs::write(ws.path().join("stella.toml"), toml).unwrap();
    let digest = |c: char| {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse::<stella::domain::Digest>()
            .unwrap()
    };
    let mut controllers = Vec::new();
    for (kind, port) in kinds.iter().zip(&ports) {
        let target = format!("b-{kind}");
        let sdir = routed::state_dir(ws.path(), &target);
        let mut st = RouterState {
            stable: Some(SlotState {
                digest: digest('a'),
                dir: release.to_owned(),
                command: None,
            }),
            candidate: Some(SlotState {
                digest: digest('b'),
                dir: release.to_owned(),
                command: None,
            }),
            ..Default::default()
        };
        routed::write_state(&sdir, &mut st).unwrap();
        let listen: std::net::SocketAddr = ([127, 0, 0, 1], *port).into();
        routed::ensure_running_with(ws.path(), &target, listen, exe.as_ref())
            .await
            .unwrap();
        controllers.push(Controller {
            ws: ws.path().to_owned(),
            target: target.clone(),
        });
        routed::wait_live(listen, st.version, Duration::from_secs(10), Some(&sdir))
            .await
            .unwrap();
        let client = reqwest::Client::new();
        let url = format!("http://{listen}/");
        let mut took = Vec::new();
        for w in [100u8, 0].repeat(5) {
            st.weight = w;
            let t = Instant::now();
            let version = routed::write_state(&sdir, &mut st).unwrap();
            let want = if w == 100 { "candidate" } else { "stable" };
            loop {
                // A reload closes nginx's idle keep-alive connections: a
                // request caught by one is sent again.
                let Ok(r) = client.get(&url).send().await else {
                    continue;
                };
                let v: u64 = r.headers()["x-stella-routes"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                if v >= version && r.headers()["x-stella-slot"] == want {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            took.push(t.elapsed());
        }
        took.sort();
        println!(
            "{kind} target: a weight decision to the new split live (routes file → client): median {:.0} ms, worst {:.0} ms ({} changes)",
            took[took.len() / 2].as_secs_f64() * 1e3,
            took[took.len() - 1].as_secs_f64() * 1e3,
            took.len()
        );
        if *kind == "nginx" {
            load(&url).await;
            let (rps, ms) = load(&url).await;
            println!(
                "through nginx (stella's config, weighted 0/100): {rps:.0} req/s, mean {ms:.3} ms"
            );
        }
    }
    drop(controllers);
}
