//! A capsule's DSSE envelope verified by an implementation no one here
//! wrote: Python's securesystemslib (>= 1.0), given only the PEM public key.
//! `.ci/run` installs it in a venv and sets STELLA_INTEROP_PYTHON.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use stella::capsule::CapsuleFile;
use stella::capsule::file::Format;

fn python() -> Option<String> {
    match std::env::var("STELLA_INTEROP_PYTHON") {
        Ok(p) => Some(p),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "CI=true but STELLA_INTEROP_PYTHON is not set; .ci/run must install securesystemslib"
            )
        }
        Err(_) => {
            eprintln!(
                "skipped: set STELLA_INTEROP_PYTHON to a python with securesystemslib[crypto] >= 1.0"
            );
            None
        }
    }
}

fn run(python: &str, capsule: &Path, key: &Path, extra: &[&str]) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/verify_dsse.py");
    let out = Command::new(python)
        .arg(script)
        .arg(capsule)
        .arg(key)
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn securesystemslib_verifies_capsules_and_rejects_a_tampered_one() {
    let Some(python) = python() else { return };
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let key = golden.join("workspace.pub");
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "staging-58b58f-2026-11-24.yaml",
        "dev-58b58f-2026-11-26.yaml",
    ] {
        let file = CapsuleFile::parse(&std::fs::read(golden.join(name)).unwrap()).unwrap();
        let json = dir.path().join("capsule.json");
        std::fs::write(&json, file.to_bytes(Format::Json)).unwrap();
        let (ok, text) = run(&python, &json, &key, &[]);
        assert!(ok, "{name}: {text}");
        assert!(text.starts_with("OK: "), "{text}");

        let mut tampered = file.clone();
        let mut payload = STANDARD.decode(&tampered.envelope.payload).unwrap();
        let i = payload.len() / 2;
        payload[i] ^= 0x01;
        tampered.envelope.payload = STANDARD.encode(&payload);
        std::fs::write(&json, tampered.to_bytes(Format::Json)).unwrap();
        let (ok, text) = run(&python, &json, &key, &["--expect-fail"]);
        assert!(ok, "{name} tampered: {text}");
    }
}
