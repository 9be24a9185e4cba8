//! Faults end cleanly: a log or workspace that cannot be written, and a
//! reader that closes stdout early, never make stella panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{add_image, init_workspace, stderr, stella};

/// `stella ARGS` with stdout a pipe whose reading end is already closed:
/// the first line written meets a broken pipe.
fn with_closed_stdout(ws: &Path, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    std::process::Command::new(env!("CARGO_BIN_EXE_stella"))
        .current_dir(ws)
        .env_remove("STELLA_WORKSPACE")
        .env_remove("STELLA_LOG")
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    // Old behaviour: "failed printing to stdout: Broken pipe", exit 101.
    // Not 0 either: a verdict cut short must not read as success under
    // `pipefail`; 141 is what a shell reports for a command ended by SIGPIPE.
    let ws = init_workspace();
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["capsule", "list", "--json"],
        &["config", "check", "--json"],
    ] {
        let out = with_closed_stdout(ws.path(), args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
    }
    // Help carries no verdict; clap ends it quietly.
    let out = with_closed_stdout(ws.path(), &["--help"]);
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn a_closed_stdout_never_turns_a_failing_verdict_into_success() {
    // Seen: `stella capsule verify forged.yaml | head -1` exited 0 under
    // `pipefail` once stdout closed, though the capsule does not verify.
    let ws = init_workspace();
    let forged = ws.path().join("forged.yaml");
    std::fs::write(&forged, "not: a capsule\n").unwrap();
    for args in [
        &["capsule", "verify", "forged.yaml"][..],
        &["capsule", "list", "--json"],
    ] {
        let out = with_closed_stdout(ws.path(), args);
        let err = stderr(&out);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn a_log_that_cannot_be_written_is_one_warning_not_a_panic() {
    // Old behaviour: the log appender panics (exit 101) on every command.
    let ws = init_workspace();
    let log = ws.path().join(".stella/logs/stella.log");
    let _ = std::fs::remove_file(&log);
    std::fs::create_dir_all(&log).unwrap();
    let out = stella(ws.path()).arg("status").output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        common::stdout(&out).contains("dev"),
        "{}",
        common::stdout(&out)
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with(&format!("warning: cannot write the log {}", log.display())),
        "{err}"
    );
}

/// Makes a tree immutable (`chattr +i`: not even root may write it) for
/// the guard's life. `None` where the file system has no such attribute.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Option<Immutable> {
        let ok = std::process::Command::new("chattr")
            .args(["-R", "+i"])
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let guard = Immutable(path.to_owned());
        // Proof that writes really fail here (as root too).
        (ok && std::fs::write(path.join("probe"), "x").is_err()).then_some(guard)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .args(["-R", "-i"])
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_read_only_workspace_still_reads_and_a_write_names_the_path() {
    let ws = init_workspace();
    add_image(&ws.path().join("images/api-gateway"), "1.0", "api 1.0");
    let dot = ws.path().join(".stella");
    let Some(_guard) = Immutable::set(&dot) else {
        eprintln!("skipped: `chattr +i` is not available on this file system");
        return;
    };
    // Old behaviour: every command panics in the log appender.
    let out = stella(ws.path()).arg("status").output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.starts_with("warning: cannot write the log"), "{err}");
    let out = stella(ws.path())
        .args(["capsule", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = stella(ws.path())
        .args(["release", "resolve", "api-gateway:1.0"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("error: store: cannot write .stella/stella.db"),
        "{err}"
    );
}
