//! The executor's own overhead: a generated 10,000-step DAG of no-op
//! builtin steps (each step needs up to three earlier ones), and the rate
//! at which its events stream out; then the engine's whole path, where
//! every step transition is committed to SQLite before its event is sent.
//! Figures in docs/benchmarks.md.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use stella::workflow::Workflow;
use stella::workflow::executor::{Builtins, Control, StepResult, execute};

struct Noop;

impl Builtins for Noop {
    fn run<'a>(
        &'a self,
        _: &'a str,
        _: &'a BTreeMap<String, String>,
        _: &'a BTreeMap<String, String>,
    ) -> Pin<Box<dyn Future<Output = StepResult> + Send + 'a>> {
        Box::pin(async {
            StepResult {
                ok: true,
                ..Default::default()
            }
        })
    }
}

fn generated(n: usize) -> Workflow {
    let mut toml = String::new();
    for i in 0..n {
        toml.push_str(&format!("[[steps]]\nid = \"s{i}\"\nuses = \"resolve\"\n"));
        let needs: Vec<String> = [i / 2, i.saturating_sub(1), i * 7 / 10]
            .iter()
            .filter(|&&j| j < i)
            .map(|j| format!("\"s{j}\""))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !needs.is_empty() {
            toml.push_str(&format!("needs = [{}]\n", needs.join(", ")));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.toml");
    std::fs::write(&path, toml).unwrap();
    Workflow::load(&path).unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = Instant::now();
    let w = generated(10_000);
    println!("validated a 10,000-step template in {:?}", t.elapsed());
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    g.bench_function("execute a 10,000-step DAG of no-op steps", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let drain = tokio::spawn(async move {
                    let mut n = 0u64;
                    while rx.recv().await.is_some() {
                        n += 1;
                    }
                    n
                });
                let out = execute(
                    &w,
                    BTreeMap::new(),
                    None,
                    Arc::new(Noop),
                    8,
                    Control::default(),
                    tx,
                )
                .await;
                assert!(out.ok);
                assert_eq!(
                    drain.await.unwrap(),
                    20_000,
                    "a start and a finish per step"
                );
            })
        })
    });
    // The engine's stream: a promotion's workflow of 1,000 `resolve` steps
    // run through `run_promotion_workflow`, each start and finish an
    // IMMEDIATE transaction in a WAL store, each step's log line streamed.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stella.toml"),
        "[workspace]\nname = \"bench\"\n\n[apps.api]\nimage = \"oci-layout:images/api\"\n\n[environments.dev]\n",
    )
    .unwrap();
    let ws = stella::workspace::Workspace::at(dir.path().to_owned());
    ws.ensure_state_dirs().unwrap();
    let config = ws.load_config().unwrap();
    let wide = generated(1_000);
    let digest: stella::domain::Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
    g.bench_function("engine stream: 1,000 persisted steps (3,000 events)", |b| {
        b.iter(|| {
            let id = ws
                .open_store()
                .unwrap()
                .begin_promotion("api", &digest, None, &format!("dev-{}", rand()), "bench")
                .unwrap();
            let builtins = stella::engine::StellaBuiltins {
                workspace: ws.clone(),
                config: config.clone(),
                app: "api".into(),
                digest: digest.clone(),
                tag: None,
                environment: "dev".into(),
                requested_by: "bench".into(),
                clock: chrono::Utc::now(),
                promotion_id: id,
            };
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let sink = stella::engine::Sink::new(1, tx);
            let report = rt
                .block_on(stella::engine::run_promotion_workflow(
                    builtins,
                    &wide,
                    id,
                    8,
                    Control::default(),
                    &sink,
                ))
                .unwrap();
            assert!(report.ok);
            let mut n = 0;
            while rx.try_recv().is_ok() {
                n += 1;
            }
            assert_eq!(n, 3_000, "a start, a log line and a finish per step");
        })
    });
    g.finish();
}

/// A fresh environment name per iteration, so no lock is ever held.
fn rand() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

criterion_group!(benches, bench);
criterion_main!(benches);
