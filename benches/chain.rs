//! `stella audit verify-chain` over a 100,000-capsule store. Builds the
//! store once (cached under target/), then times the walk three times and
//! reports the median. Figures in docs/benchmarks.md.
//!
//!     cargo bench --bench chain

use std::time::Instant;

use stella::capsule::audit::ChainWalker;
use stella::capsule::verify::Trusted;
use stella::store::Store;

#[path = "support/store100k.rs"]
mod store100k;
use store100k::N;

fn main() {
    // `cargo bench` passes --bench; any other invocation (cargo test) is a no-op.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let (path, key) = store100k::ensure();
    let store = Store::open(&path).unwrap();
    let trusted = [Trusted {
        name: "workspace".into(),
        key: key.public(),
    }];
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        // As `stella audit verify-chain` does it: chunks checked in parallel.
        let mut walker = ChainWalker::new(&trusted);
        let mut batch = Vec::with_capacity(2048);
        store
            .for_each_capsule(None, |row, env| {
                batch.push((row, env.to_vec()));
                if batch.len() == 2048 {
                    walker.visit_all(&batch);
                    batch.clear();
                }
            })
            .unwrap();
        walker.visit_all(&batch);
        walker.check_heads(&store.chain_heads().unwrap());
        let report = walker.finish();
        times.push(t.elapsed());
        assert!(
            report.valid,
            "{:?}",
            &report.problems[..report.problems.len().min(3)]
        );
        assert_eq!(report.capsules, N);
    }
    times.sort();
    let median = times[1];
    println!(
        "verify-chain over {N} capsules: median {:.2} s ({:.0} capsules/s); runs {:?}",
        median.as_secs_f64(),
        N as f64 / median.as_secs_f64(),
        times
            .iter()
            .map(|t| format!("{:.2}s", t.as_secs_f64()))
            .collect::<Vec<_>>()
    );
}
