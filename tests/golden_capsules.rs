//! Capsules sealed by earlier versions of stella must keep verifying and
//! replaying identically. If this fails, a change altered what a past
//! decision means: keep the old semantics reachable instead.

mod common;

use std::path::Path;

use common::{stderr, stdout, stella};

#[test]
fn golden_capsules_verify_and_replay_identically() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for entry in std::fs::read_dir(&golden).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        n += 1;
        let out = stella(dir.path())
            .args(["capsule", "verify", "--json", "--trust"])
            .arg(golden.join("workspace.pub"))
            .arg(&path)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["valid"], true, "{}: {v:#}", path.display());

        assert!(
            v["signed_by"]
                .as_str()
                .unwrap()
                .contains("trusted by --trust"),
            "{v:#}"
        );

        // Replay verifies first: without the key they were sealed with
        // trusted, nothing is called identical.
        let out = stella(dir.path())
            .args(["capsule", "replay", "--json"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["identical"], false);
        assert_eq!(r["verified"], false);

        let out = stella(dir.path())
            .args(["capsule", "replay", "--json", "--trust"])
            .arg(golden.join("workspace.pub"))
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}{}",
            path.display(),
            stdout(&out),
            stderr(&out)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["identical"], true, "{}: {r:#}", path.display());
    }
    assert_eq!(n, 4);
}
