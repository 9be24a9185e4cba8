//! A 100,000-capsule store shared by the benches that need one: built
//! once under target/bench-chain/ (about a minute), then reused.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use stella::capsule::file::CapsuleFile;
use stella::capsule::seal;
use stella::capsule::statement::Statement;
use stella::sign::PrivateKey;
use stella::store::{DecisionRecord, Store};

pub const N: usize = 100_000;
pub const ENVS: [&str; 3] = ["dev", "staging", "prod"];

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
            outcome: stella::domain::PromotionOutcome::Blocked,
            at,
            goes_live: false,
            also: Vec::new(),
        };
        store
            .record_decision(&rec, None, |previous, head, id| {
                let mut st = template.clone();
                st.predicate.to = env.into();
                st.predicate.previous = previous.clone();
                st.predicate.promotion_id = Some(id);
                st.predicate.clock = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                // The index and the signed statement agree, as the
                // chain audit checks.
                st.predicate.app = "api".into();
                st.predicate.action = stella::capsule::Action::Promote;
                st.predicate.decision = stella::domain::Decision::Deny;
                seal::sealed_row(st, previous.as_ref(), head, key)
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

/// The store's path (built now if missing) and the key that sealed it.
pub fn ensure() -> (PathBuf, PrivateKey) {
    let key = PrivateKey::from_seed(&[9; 32]);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-chain");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("store-{N}-v6.db"));
    if !path.exists() {
        eprintln!("building a {N}-capsule store at {} (once)…", path.display());
        build(&path, &key);
    }
    (path, key)
}
