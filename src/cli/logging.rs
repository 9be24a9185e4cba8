//! Tracing to `.stella/logs/stella.log` (non-blocking, filter from
//! `STELLA_LOG`), and to stderr too with `-v`.
//!
//! A log that cannot be written (a read-only or full `.stella/`, a
//! `stella.log` that is not a file) never stops a command: stella says so
//! in one line on stderr and goes on without the file (to stderr with
//! `-v`). Commands that must write to the workspace fail on their own
//! write, naming the path.

use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

/// Keeps the log writer alive; logs are flushed when it drops.
pub struct LogGuard {
    _file: Option<WorkerGuard>,
}

/// Opens `dir/stella.log` for appending, creating `dir` if needed.
fn open_log(dir: &Path) -> std::io::Result<std::fs::File> {
    std::fs::create_dir_all(dir)?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("stella.log"))
}

pub fn init(logs_dir: Option<&Path>, verbose: bool) -> LogGuard {
    let filter =
        || EnvFilter::try_from_env("STELLA_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let file = logs_dir.and_then(|dir| match open_log(dir) {
        Ok(f) => Some(tracing_appender::non_blocking(f)),
        Err(e) => {
            eprintln!(
                "warning: cannot write the log {}: {e}; going on without it",
                dir.join("stella.log").display()
            );
            None
        }
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter());
    let guard = match (file, verbose) {
        (Some((writer, guard)), true) => {
            let _ = builder
                .with_ansi(false)
                .with_writer(writer.and(std::io::stderr))
                .try_init();
            Some(guard)
        }
        (Some((writer, guard)), false) => {
            let _ = builder.with_ansi(false).with_writer(writer).try_init();
            Some(guard)
        }
        (None, true) => {
            let _ = builder.with_writer(std::io::stderr).try_init();
            None
        }
        (None, false) => None,
    };
    LogGuard { _file: guard }
}
