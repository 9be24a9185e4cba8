#![no_main]
//! Detection and parsing of any document: never a panic, only an error.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = stella::scan::read(data);
});
