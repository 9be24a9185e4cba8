//! The built-in router under continuous load on loopback: weights shifted
//! 0 → 10 → 50 → 100 and back with no failed request, each split within
//! five points of its weight; forcing by header and cookie; per-slot
//! counters that see a failing backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use stella::deploy::router::{Backend, Router, Routes, Slot};

fn release(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("index.html"), name).unwrap();
    d
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn shifting_weights_under_load_fails_no_request_and_splits_as_weighted() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (release(dir.path(), "v1"), release(dir.path(), "v2"));
    rt().block_on(async {
        // The candidate is served through a second router, so both the
        // static and the proxied paths carry the load.
        let backend = Router::start(
            "127.0.0.1:0".parse().unwrap(),
            Routes {
                stable: Some(Backend::Static(v2)),
                candidate: None,
                weight: 0,
                version: 1,
                sticky: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let router = Router::start(
            "127.0.0.1:0".parse().unwrap(),
            Routes {
                stable: Some(Backend::Static(v1)),
                candidate: Some(Backend::Http(backend.addr())),
                weight: 0,
                version: 1,
                sticky: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let url = format!("http://{}/", router.addr());
        let client = reqwest::Client::new();
        let phase = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let weights = [0u8, 10, 50, 100, 0];
        // Per phase: [stable, candidate, failed] counts.
        let counts = Arc::new(
            (0..weights.len())
                .map(|_| {
                    [
                        AtomicUsize::new(0),
                        AtomicUsize::new(0),
                        AtomicUsize::new(0),
                    ]
                })
                .collect::<Vec<_>>(),
        );
        let mut clients = Vec::new();
        for _ in 0..8 {
            let (client, url, phase, stop, counts) = (
                client.clone(),
                url.clone(),
                phase.clone(),
                stop.clone(),
                counts.clone(),
            );
            clients.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let p = phase.load(Ordering::SeqCst);
                    let r = client.get(&url).send().await;
                    let i = match r {
                        Ok(r) if r.status().is_success() => {
                            let slot = r.headers()["x-stella-slot"].to_str().unwrap().to_owned();
                            let body = r.text().await.unwrap_or_default();
                            match (slot.as_str(), body.as_str()) {
                                ("stable", "v1") => 0,
                                ("candidate", "v2") => 1,
                                _ => 2,
                            }
                        }
                        _ => 2,
                    };
                    // A request that straddled a shift is not counted.
                    if phase.load(Ordering::SeqCst) == p {
                        counts[p][i].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for (p, w) in weights.iter().enumerate() {
            router.set_routes(Routes {
                weight: *w,
                ..router.routes()
            });
            phase.store(p, Ordering::SeqCst);
            // At least 1,000 requests a phase, at most three seconds.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            while counts[p]
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum::<usize>()
                < 1_000
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.await.unwrap();
        }
        for (p, w) in weights.iter().enumerate() {
            let [s, c, f] = &counts[p];
            let (s, c, f) = (
                s.load(Ordering::Relaxed),
                c.load(Ordering::Relaxed),
                f.load(Ordering::Relaxed),
            );
            assert_eq!(f, 0, "phase {p} (weight {w}): {f} failed requests");
            assert!(s + c >= 200, "phase {p}: only {} requests", s + c);
            let share = 100.0 * c as f64 / (s + c) as f64;
            assert!(
                (share - f64::from(*w)).abs() <= 5.0,
                "phase {p}: weight {w}, measured {share:.1}% of {} requests",
                s + c
            );
        }
        let stats = router.stats(Slot::Candidate);
        assert!(stats.requests > 0 && stats.errors == 0, "{stats:?}");
        router.stop();
        backend.stop();
    });
}

#[test]
fn a_forced_variant_wins_and_a_failing_backend_shows_in_its_counters() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = release(dir.path(), "v1");
    rt().block_on(async {
        // The candidate points at a port nothing listens on.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let router = Router::start(
            "127.0.0.1:0".parse().unwrap(),
            Routes {
                stable: Some(Backend::Static(v1)),
                candidate: Some(Backend::Http(dead)),
                weight: 0,
                version: 1,
                sticky: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let url = format!("http://{}/", router.addr());
        let c = reqwest::Client::new();
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.headers()["x-stella-slot"], "stable");
        let r = c
            .get(&url)
            .header("X-Stella-Variant", "b")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-stella-slot"], "candidate");
        assert_eq!(r.status(), 502);
        let r = c
            .get(&url)
            .header("Cookie", "theme=dark; stella-variant=candidate")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-stella-slot"], "candidate");
        let r = c
            .get(&url)
            .header("X-Stella-Variant", "stable")
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "v1");
        // Paths never leave the release folder.
        let r = c
            .get(format!("{url}../../etc/passwd"))
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 200);
        let cand = router.stats(Slot::Candidate);
        assert_eq!((cand.requests, cand.errors), (2, 2));
        assert!((cand.error_rate() - 1.0).abs() < 1e-9);
        let stable = router.stats(Slot::Stable);
        assert_eq!(stable.errors, 0);
        // No candidate: its traffic goes to stable, and nothing serving is a 503.
        router.set_routes(Routes {
            stable: None,
            candidate: None,
            weight: 50,
            version: 1,
            sticky: false,
            ..Default::default()
        });
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 503);
        router.stop();
    });
}
