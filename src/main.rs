#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = stella::cli::Cli::parse();
    std::process::ExitCode::from(stella::cli::run(cli))
}
