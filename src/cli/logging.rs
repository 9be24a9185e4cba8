//! Tracing to `.stella/logs/stella.log` (non-blocking, filter from
//! `STELLA_LOG`), and to stderr too with `-v`.

use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

/// Keeps the log writer alive; logs are flushed when it drops.
pub struct LogGuard {
    _file: Option<WorkerGuard>,
}

pub fn init(logs_dir: Option<&Path>, verbose: bool) -> LogGuard {
    let filter =
        || EnvFilter::try_from_env("STELLA_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let file = logs_dir.and_then(|dir| {
        std::fs::create_dir_all(dir).ok()?;
        let appender = tracing_appender::rolling::never(dir, "stella.log");
        Some(tracing_appender::non_blocking(appender))
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
