//! A deterministic taste of what the fuzz targets do: every parser, fed
//! truncated and byte-flipped versions of the seed corpus, returns a
//! result — never a panic.

use std::path::Path;

use stella::scan::{self, Format};

const FORMATS: [Format; 5] = [
    Format::Trivy,
    Format::Grype,
    Format::Sarif,
    Format::CycloneDx,
    Format::OpenVex,
];

#[test]
fn mangled_reports_are_errors_not_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scan");
    let mut inputs = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let seed = std::fs::read(entry.unwrap().path()).unwrap();
        let mut variants: Vec<Vec<u8>> = (0..seed.len())
            .step_by(7)
            .map(|n| seed[..n].to_vec())
            .collect();
        for i in (0..seed.len()).step_by(13) {
            let mut v = seed.clone();
            v[i] = v[i].wrapping_add(1 + (i % 5) as u8);
            variants.push(v);
        }
        for v in &variants {
            let _ = scan::read(v);
            for f in FORMATS {
                let _ = scan::parse(f, v);
            }
            inputs += 1;
        }
    }
    assert!(inputs > 1000, "only {inputs} inputs");
}
