#![no_main]
//! Any bytes as an image layer (gzip or plain tar), unpacked the way a
//! target unpacks a release: never a panic, and when the unpack succeeds,
//! nothing under the release resolves outside it (every entry
//! canonicalized by the operating system, links followed).

use libfuzzer_sys::fuzz_target;
use stella::deploy::unpack::{Limits, first_escape, unpack_layer};
use stella::domain::Digest;

/// Small limits: a bomb is refused quickly, not written.
const LIMITS: Limits = Limits {
    max_ratio: 50,
    max_release_bytes: 64 << 20,
    max_entries: 10_000,
    max_depth: 64,
};

fuzz_target!(|data: &[u8]| {
    let root = std::env::temp_dir().join(format!("stella-fuzz-unpack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let release = root.join("release");
    std::fs::create_dir_all(&release).expect("a scratch folder");
    if unpack_layer(&Digest::of(data), data, &release, &LIMITS).is_ok() {
        let escape = first_escape(&release).expect("the release can be walked");
        assert_eq!(escape, None, "an entry resolves outside the release");
    }
    let _ = std::fs::remove_dir_all(&root);
});
