#![no_main]
//! Any workflow template: a validated DAG or located errors, never a
//! panic. The template is written to a scratch file because templates
//! are loaded by path (their includes are relative to it).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("stella-fuzz-workflow-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("template.toml");
    if std::fs::write(&path, data).is_ok() {
        let _ = stella::workflow::Workflow::load(&path);
    }
});
