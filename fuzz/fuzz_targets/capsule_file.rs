#![no_main]
//! A capsule file from anywhere — parsed, verified with no trusted key,
//! replayed: never a panic, only a report or an error. Anyone may hand
//! stella a capsule to verify years later.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = stella::capsule::file::CapsuleFile::parse(data) {
        let _ = stella::capsule::verify::verify(&file, &[]);
        let _ = stella::capsule::replay::replay(&file);
    }
});
