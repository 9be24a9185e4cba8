//! `stella tui` (and `stella` alone inside a workspace): the workbench.

use clap::Args;

use super::{Context, Failure, exit, load_config};
use crate::workspace::Workspace;

#[derive(Debug, Args, Default)]
pub struct TuiArgs {
    /// A theme: dark, light, high-contrast, or a theme file (default dark; NO_COLOR is respected)
    #[arg(long, env = "STELLA_THEME")]
    pub theme: Option<String>,
    /// Your key: it signs every action the workbench seals, and `a`
    /// approves with it (default: `key` in config.toml; without one you act
    /// as your operating-system account, unverified, and approve with your
    /// first private key)
    #[arg(long)]
    pub key: Option<String>,
}

pub fn run(ctx: &Context, a: TuiArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    open(ctx, ws, a)
}

pub fn open(ctx: &Context, ws: &Workspace, a: TuiArgs) -> Result<u8, Failure> {
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(Failure::usage("the workbench needs a terminal")
            .hint("every screen's action is also a command: `stella --help` lists them"));
    }
    let config = load_config(ctx, ws)?;
    crate::tui::run(
        ws.clone(),
        config,
        crate::tui::Options {
            // `stella` alone and `stella demo` come here without parsing
            // the flags, so their environment defaults are read here too.
            theme: a.theme.or_else(|| std::env::var("STELLA_THEME").ok()),
            key: a.key,
        },
    )?;
    println!("logs: {}", ws.logs_dir().join("stella.log").display());
    Ok(exit::OK)
}
