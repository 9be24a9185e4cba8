#![no_main]
//! The OpenVex parser on arbitrary bytes: never a panic, only an error; and a
//! report it accepts can be judged by the security gate.

use libfuzzer_sys::fuzz_target;
use stella::scan::{self, Format};

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = scan::parse(Format::OpenVex, data) {
        for f in &report.findings {
            let _ = f.key_id();
        }
        for s in &report.statements {
            let _ = (s.says_unreachable(), s.says_not_applicable());
        }
    }
});
