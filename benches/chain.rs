//! `stella audit verify-chain` over a 100,000-capsule store. Builds the
//! store once (cached under target/), then times the walk three times and
//! reports the median. Figures in docs/benchmarks.md.
//!
//!     cargo bench --bench chain

use std::path::Path;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use stella::capsule::audit::ChainWalker;
use stella::capsule::file::CapsuleFile;
use stella::capsule::seal;
use stella::capsule::statement::Statement;
use stella::capsule::verify::Trusted;
use stella::sign::PrivateKey;
use stella::store::{DecisionRecord, SealedRow, Store};

const N: usize = 100_000;
const ENVS: [&str; 3] = ["dev", "staging", "prod"];

fn build(path: &Path, key: &PrivateKey) {
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/staging-58b58f-2026-11-24.yaml");
    let file = CapsuleFile::parse(&std::fs::read(golden).unwrap()).unwrap();
    let template: Statement =
        serde_json::from_slice(&file.envelope.payload_bytes().unwrap()).unwrap();
    let mut store = Store::open(path).unwrap();
    let start = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
    let t = Instant::now();
    for i in 0..N {
        let env = ENVS[i % 3];
        let at = start + Duration::minutes(i as i64);
        let rec = DecisionRecord {
            app: "api".into(),
            digest: template.predicate.release.digest.clone(),
            tag: None,
            environment: env.into(),
            requested_by: "bench".into(),
            action: "promote".into(),
            decision: "deny".into(),
            outcome: "blocked".into(),
            at,
            goes_live: false,
        };
        store
            .record_decision(&rec, None, |previous, id| {
                let mut st = template.clone();
                st.predicate.to = env.into();
                st.predicate.previous = previous;
                st.predicate.promotion_id = Some(id);
                st.predicate.clock = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                let sealed = seal(st, key);
                serde_json::to_vec(&sealed.envelope).map(|envelope| SealedRow {
                    payload_digest: sealed.payload_digest,
                    envelope,
                })
            })
            .unwrap();
        if (i + 1) % 10_000 == 0 {
            eprintln!(
                "  built {} capsules ({:.1}s)",
                i + 1,
                t.elapsed().as_secs_f64()
            );
        }
    }
}

fn main() {
    // `cargo bench` passes --bench; any other invocation (cargo test) is a no-op.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let key = PrivateKey::from_seed(&[9; 32]);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-chain");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("store-{N}.db"));
    let fresh = !path.exists();
    if fresh {
        eprintln!("building a {N}-capsule store at {} (once)…", path.display());
        build(&path, &key);
    }
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
