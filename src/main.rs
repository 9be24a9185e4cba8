#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    // The policy evaluator: stella itself, in a bounded child process.
    if std::env::args_os().nth(1).as_deref() == Some(stella::gates::policy::CHILD_ARG.as_ref()) {
        return std::process::ExitCode::from(stella::gates::policy::child_main());
    }
    if let Ok(me) = std::env::current_exe() {
        stella::gates::policy::isolate_with(me);
    }
    let cli = stella::cli::Cli::parse();
    std::process::ExitCode::from(stella::cli::run(cli))
}
