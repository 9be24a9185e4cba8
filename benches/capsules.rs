//! Sealing and verifying one capsule (the golden staging capsule: five
//! gates, three reports, VEX, an approval, a policy). Figures in
//! docs/benchmarks.md.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stella::capsule::file::CapsuleFile;
use stella::capsule::statement::Statement;
use stella::capsule::verify::{Trusted, verify};
use stella::capsule::{replay, seal};
use stella::sign::{PrivateKey, PublicKey};

fn golden() -> (CapsuleFile, PublicKey) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let file =
        CapsuleFile::parse(&std::fs::read(dir.join("staging-58b58f-2026-11-24.yaml")).unwrap())
            .unwrap();
    let key =
        PublicKey::from_pem(&std::fs::read_to_string(dir.join("workspace.pub")).unwrap()).unwrap();
    (file, key)
}

fn bench(c: &mut Criterion) {
    let (file, public) = golden();
    let statement: Statement =
        serde_json::from_slice(&file.envelope.payload_bytes().unwrap()).unwrap();
    let key = PrivateKey::from_seed(&[3; 32]);
    println!(
        "statement: {} bytes of canonical JSON",
        statement.canonical().len()
    );

    c.bench_function("seal a capsule (canonical JSON + DSSE ed25519)", |b| {
        b.iter(|| seal(black_box(statement.clone()), &key))
    });

    // What the store keeps per decision: the capsule and the chain head,
    // and with a promotion or rollback its verification summary (a SLSA
    // VSA statement, canonical JSON, a second DSSE signature).
    c.bench_function("seal a decision row (capsule + chain head)", |b| {
        b.iter(|| seal::sealed_row(black_box(statement.clone()), None, None, &key).unwrap())
    });
    let ctx = stella::capsule::summary::Context {
        image: "registry.example.com/acme/api-gateway".into(),
        approvers: Some(2),
    };
    assert!(
        seal::sealed_decision(statement.clone(), None, None, &key, &ctx, None)
            .unwrap()
            .summary
            .is_some()
    );
    c.bench_function(
        "seal a decision row with its verification summary (capsule + VSA + chain head)",
        |b| {
            b.iter(|| {
                seal::sealed_decision(black_box(statement.clone()), None, None, &key, &ctx, None)
                    .unwrap()
            })
        },
    );

    let trusted = [Trusted {
        name: "workspace".into(),
        key: public,
    }];
    assert!(verify(&file, &trusted).valid);
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    g.bench_function(
        "verify a capsule file (signature, every blob, shape)",
        |b| b.iter(|| verify(black_box(&file), &trusted)),
    );
    g.finish();

    c.bench_function(
        "replay a capsule (rebuild inputs, evaluate, compare)",
        |b| b.iter(|| replay::replay(black_box(&file)).unwrap()),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
