//! The built-in router: throughput and added latency against the same
//! backend reached directly, side by side in one run, and how long a
//! weight change takes to be live. A bench binary.
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
}
