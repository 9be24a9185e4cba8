//! The executor's own overhead: a generated 10,000-step DAG of no-op
//! builtin steps (each step needs up to three earlier ones), and the rate
//! at which its events stream out. Figures in docs/benchmarks.md.

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
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
