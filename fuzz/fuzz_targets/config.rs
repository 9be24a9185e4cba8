#![no_main]
//! Any `stella.toml`: a config or an error naming file, line and column,
//! never a panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = stella::config::Config::parse(std::path::Path::new("fuzz/stella.toml"), text);
    }
});
