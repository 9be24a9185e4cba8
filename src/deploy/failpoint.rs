//! Crash-test hooks. When `STELLA_FAILPOINT` names a point, the process
//! stops there (it writes the point's name to `STELLA_FAILPOINT_MARK`, if
//! set, then sleeps) so a test can `kill -9` it at exactly that moment.
//! Unset, a point costs one environment lookup.

use std::time::Duration;

/// Unpacked into the temporary folder, not yet renamed into `releases/`.
pub const UNPACKED: &str = "unpacked";
/// The new `current` link made under a temporary name, not yet renamed.
pub const SWITCH: &str = "switch";

pub fn hit(point: &str) {
    if std::env::var("STELLA_FAILPOINT").is_ok_and(|v| v == point) {
        if let Ok(mark) = std::env::var("STELLA_FAILPOINT_MARK") {
            let _ = std::fs::write(mark, point);
        }
        std::thread::sleep(Duration::from_secs(3600));
    }
}
