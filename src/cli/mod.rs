//! The command line: one file per subcommand, all returning `Failure` on
//! error so exit codes live in one place (`exit.rs`).

mod approve;
mod attest;
mod audit;
mod capsule;
mod completions;
mod config_check;
mod decide;
mod demo;
mod evidence;
pub mod exit;
mod flags;
mod freeze;
pub mod gate;
mod init;
mod key;
mod logging;
mod promotion;
pub mod release;
mod rollout;
mod router;
mod status;
mod tui;
mod waiting;
mod workflow;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use exit::Failure;

use crate::workspace::Workspace;

#[derive(Debug, Parser)]
#[command(
    name = "stella",
    version,
    about = "Release orchestration that proves why each release was safe",
    long_about = "Release orchestration that proves why each release was safe.\n\n\
        Releases are identified by OCI digest; tags are resolved once and recorded.\n\n\
        Exit codes: 0 done, 1 error, 2 usage, 3 blocked by a gate or a rollback's pin."
)]
pub struct Cli {
    /// The workspace folder (holding stella.toml); default: search upward from here
    #[arg(long, global = true, env = "STELLA_WORKSPACE", value_name = "DIR")]
    pub workspace: Option<PathBuf>,

    /// Also log to stderr (the log file is .stella/logs/stella.log; filter with STELLA_LOG)
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// Without a command, inside a workspace: the workbench
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a starter workspace: stella.toml, policies/, workflows/, .stella/
    Init(init::InitArgs),
    /// Build a complete demo workspace (three apps, four lanes, history, a live canary) and open the workbench
    Demo(demo::DemoArgs),
    /// The workbench: lanes, promotions, gates, freezes, capsules, releases
    Tui(tui::TuiArgs),
    /// Inspect the workspace configuration
    #[command(subcommand)]
    Config(config_check::ConfigCommand),
    /// What runs where: every lane's live releases, health, last decision, freezes and pins
    Status(status::StatusArgs),
    /// Releases (an app at one digest): resolve, list, promote, roll back, unpin
    #[command(subcommand)]
    Release(release::ReleaseCommand),
    /// Attach and list evidence: scan reports, VEX, SBOMs
    #[command(subcommand)]
    Evidence(evidence::EvidenceCommand),
    /// Sign an approval for a release into an environment
    Approve(approve::ApproveArgs),
    /// Evaluate gates
    #[command(subcommand)]
    Gate(gate::GateCommand),
    /// Freeze calendars
    #[command(subcommand)]
    Freeze(freeze::FreezeCommand),
    /// Manage ed25519 keys (approvers', and the workspace's)
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Decision capsules: list, show, export, verify, replay; push to and pull from images
    #[command(subcommand)]
    Capsule(capsule::CapsuleCommand),
    /// Audit: verify chains, export and verify bundles
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Workflow templates: check and show
    #[command(subcommand)]
    Workflow(workflow::WorkflowCommand),
    /// Promotions: list, and show one's run, steps and logs
    #[command(subcommand)]
    Promotion(promotion::PromotionCommand),
    /// Recover what dead processes left: their promotions marked interrupted, targets back to what is live, each under its environment's lock
    Recover(promotion::RecoverArgs),
    /// The controller of `router` and `nginx` targets: serve, stop, status
    #[command(subcommand)]
    Router(router::RouterCommand),
    /// Rollouts through router and nginx targets: status, and pause, resume, abort or promote a canary, consolidate an A/B test
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// Feature flags of an environment: set (sealed) and list
    #[command(subcommand)]
    Flags(flags::FlagsCommand),
    /// May this image run in this environment? Checks the decisions
    /// attached to it with trusted keys only; no workspace needed
    ///
    /// Exit 0 allowed, 3 not (its newest decision failed, or none is
    /// attached), 1 the registry could not be read (or answered too
    /// slowly), 2 usage (a tag instead of a digest, a key that is not a
    /// public key). `--workspace` plays no part.
    Verify(attest::VerifyArgs),
    /// Print a shell completion script: `stella completions bash > ~/.local/share/bash-completion/completions/stella`
    Completions(completions::CompletionsArgs),
    /// Write the manual pages, one per command and subcommand, into a folder
    Man(completions::ManArgs),
}

/// Parses the command line `args` (the program's name first). `Err` is
/// the exit code of a line that does not parse, already reported: clap's
/// message on stderr and, when `--json` is among the arguments (before any
/// `--`), also `{"error": {"kind": "usage", …, "exit": 2}}` on stdout, so a
/// script asking for JSON always gets one document. `--help` and
/// `--version` print as always. `Ok` carries, when the parsed command
/// asked for `--json`, its name (`stella release promote`).
pub fn parse<I, T>(args: I) -> Result<(Cli, Option<String>), u8>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{CommandFactory, FromArgMatches};
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let matches = Cli::command().try_get_matches_from(&args).and_then(|m| {
        let json = json_asked(&m);
        Cli::from_arg_matches(&m).map(|cli| (cli, json))
    });
    let err = match matches {
        Ok(parsed) => return Ok(parsed),
        Err(e) => e,
    };
    let code = u8::try_from(err.exit_code()).unwrap_or(exit::USAGE);
    let _ = err.print();
    let wants_json = args
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json");
    use clap::error::ErrorKind as K;
    if wants_json && !matches!(err.kind(), K::DisplayHelp | K::DisplayVersion) {
        // clap's first line, without its `error: ` (and its colours).
        let rendered = err.render().to_string();
        let message = rendered
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_owned();
        let f = Failure::usage(message)
            .hint("`stella COMMAND --help` lists its arguments")
            .at(std::iter::once("stella".to_owned())
                .chain(
                    args.iter()
                        .skip(1)
                        .map(|a| a.to_string_lossy().into_owned()),
                )
                .collect::<Vec<_>>()
                .join(" "));
        let f = Failure { code, ..f };
        use std::io::Write;
        // Nobody reading is no reason to panic: the code says it all.
        let _ = writeln!(std::io::stdout(), "{:#}", f.to_json());
    }
    Err(code)
}

/// The name of the subcommand that runs, if it was given `--json`.
fn json_asked(m: &clap::ArgMatches) -> Option<String> {
    let mut m = m;
    let mut name = String::from("stella");
    while let Some((sub_name, sub)) = m.subcommand() {
        name.push(' ');
        name.push_str(sub_name);
        m = sub;
    }
    matches!(m.try_get_one::<bool>("json"), Ok(Some(true))).then_some(name)
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    run_with(cli, None)
}

/// `run`; with `json` (the command's name) every failure is also one
/// `{"error": …}` document on stdout (`Failure::to_json`), its `where` the
/// command unless the command named a finer place.
pub fn run_with(cli: Cli, json: Option<String>) -> u8 {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let found = Workspace::find(cli.workspace.as_deref(), &cwd);
    let logs = match (&cli.command, &found) {
        (
            Some(Command::Init(_) | Command::Demo(_) | Command::Completions(_) | Command::Man(_)),
            _,
        )
        | (_, Err(_)) => None,
        (_, Ok(ws)) => Some(ws.logs_dir()),
    };
    // The workbench owns the screen: its logs go to the file only.
    let owns_screen = matches!(cli.command, None | Some(Command::Tui(_) | Command::Demo(_)));
    let _guard = logging::init(logs.as_deref(), cli.verbose && !owns_screen);
    tracing::debug!(command = ?cli.command, "start");

    let ctx = Context {
        cwd,
        workspace: found,
    };
    let Some(command) = cli.command else {
        if ctx.workspace.is_err() {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            return exit::USAGE;
        }
        return finish(tui::run(&ctx, tui::TuiArgs::default()), None);
    };
    finish(
        match command {
            Command::Init(args) => init::run(&ctx, args),
            Command::Demo(args) => demo::run(&ctx, args),
            Command::Tui(args) => tui::run(&ctx, args),
            Command::Config(cmd) => config_check::run(&ctx, cmd),
            Command::Status(args) => status::run(&ctx, args),
            Command::Release(cmd) => release::run(&ctx, cmd),
            Command::Evidence(cmd) => evidence::run(&ctx, cmd),
            Command::Approve(args) => approve::run(&ctx, args),
            Command::Gate(cmd) => gate::run(&ctx, cmd),
            Command::Freeze(cmd) => freeze::run(&ctx, cmd),
            Command::Key(cmd) => key::run(&ctx, cmd),
            Command::Capsule(cmd) => capsule::run(&ctx, cmd),
            Command::Audit(cmd) => audit::run(&ctx, cmd),
            Command::Workflow(cmd) => workflow::run(&ctx, cmd),
            Command::Promotion(cmd) => promotion::run(&ctx, cmd),
            Command::Recover(args) => promotion::recover(&ctx, args),
            Command::Router(cmd) => router::run(&ctx, cmd),
            Command::Rollout(cmd) => rollout::run(&ctx, cmd),
            Command::Flags(cmd) => flags::run(&ctx, cmd),
            Command::Verify(a) => attest::verify(&ctx, a),
            Command::Completions(args) => completions::completions(args),
            Command::Man(args) => completions::man(&ctx, args),
        },
        json,
    )
}

/// The one place a failure is reported: stderr always, and with `--json`
/// one `{"error": …}` document on stdout.
fn finish(result: Result<u8, Failure>, json: Option<String>) -> u8 {
    match result {
        Ok(code) => code,
        // Nobody is reading any more: nothing to say, and no verdict.
        Err(f) if f.code == exit::BROKEN_PIPE => f.code,
        Err(f) => {
            tracing::error!(code = f.code, "{}", f.message);
            eprintln!("error: {}", f.message);
            if let Some(h) = &f.hint {
                eprintln!("hint: {h}");
            }
            if let Some(command) = json {
                let f = match f.place {
                    Some(_) => f,
                    None => f.at(command),
                };
                use std::io::Write;
                // stdout may be closed: the code says what happened.
                let _ = writeln!(std::io::stdout(), "{:#}", f.to_json());
                return f.code;
            }
            f.code
        }
    }
}

/// What every command may need: where it runs and the workspace, if any.
pub struct Context {
    pub cwd: PathBuf,
    pub workspace: Result<Workspace, crate::workspace::WorkspaceError>,
}

impl Context {
    /// The workspace, or a failure saying how to get one.
    pub fn workspace(&self) -> Result<&Workspace, Failure> {
        self.workspace.as_ref().map_err(|e| match e {
            crate::workspace::WorkspaceError::NotFound { searched } => {
                Failure::from(crate::workspace::WorkspaceError::NotFound {
                    searched: searched.clone(),
                })
            }
            crate::workspace::WorkspaceError::NoConfig { dir } => {
                Failure::from(crate::workspace::WorkspaceError::NoConfig { dir: dir.clone() })
            }
            other => Failure::error(other),
        })
    }
}

/// Loads the workspace's config; errors name the file relative to here.
pub fn load_config(
    ctx: &Context,
    ws: &Workspace,
) -> Result<crate::config::Config, crate::config::ConfigError> {
    let cwd = ctx.cwd.canonicalize().unwrap_or_else(|_| ctx.cwd.clone());
    ws.load_config().map_err(|e| e.relative_to(&cwd))
}

/// "no environment X", with the ones there are.
pub fn unknown_environment(name: &str, config: &crate::config::Config) -> Failure {
    crate::engine::unknown_environment(name, config).into()
}

/// The clock of a command that can act: the real clock, or with
/// `--dry-run` the `--at` a what-if asks about. `--at` without
/// `--dry-run` is refused: a command that acts decides at the real clock.
pub fn acting_clock(
    at: Option<&str>,
    dry_run: bool,
    command: &str,
) -> Result<crate::domain::Clock, Failure> {
    match (at, dry_run) {
        (None, _) => Ok(crate::domain::Clock::Real),
        (Some(_), false) => Err(Failure::usage(format!(
            "`{command}` acts at the real clock; --at is for what-ifs"
        ))
        .hint(format!(
            "add --dry-run to see what `{command}` would do at that time without doing it, or use `stella gate check REF --env ENV --at T`"
        ))),
        (Some(s), true) => Ok(crate::domain::Clock::WhatIf(parse_at(Some(s))?)),
    }
}

/// The decision clock: `--at RFC3339`, or now.
pub fn parse_at(at: Option<&str>) -> Result<chrono::DateTime<chrono::Utc>, Failure> {
    match at {
        None => Ok(chrono::Utc::now()),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| {
                Failure::usage(format!("--at `{s}` is not an RFC 3339 time ({e})"))
                    .hint("write it like 2026-11-27T18:30:00Z or 2026-11-27T19:30:00+01:00")
            }),
    }
}

/// The runtime the engine runs on for a command: two workers, so steps
/// keep running while a promotion's thread does synchronous work.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::error(format!("cannot start the async runtime: {e}")))
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(value).map_err(Failure::error)?;
    println!("{s}");
    Ok(())
}
