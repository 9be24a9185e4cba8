//! `stella completions SHELL` and `stella man --dir DIR`: shell completion
//! scripts and manual pages, generated from the command definitions
//! (`clap_complete`, `clap_mangen`), so they never drift from the parser.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, Context, Failure, exit};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Where to write the pages (created if missing): stella.1, stella-release.1, stella-release-promote.1, …
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

/// Prints the completion script for `shell` on stdout.
pub fn completions(args: CompletionsArgs) -> Result<u8, Failure> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "stella", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(exit::OK)
}

/// Writes one manual page per command and subcommand into `--dir`.
pub fn man(ctx: &Context, args: ManArgs) -> Result<u8, Failure> {
    let dir = if args.dir.is_absolute() {
        args.dir.clone()
    } else {
        ctx.cwd.join(&args.dir)
    };
    fs::create_dir_all(&dir).map_err(|e| {
        Failure::error(format!("cannot create {}: {e}", args.dir.display()))
            .hint("pass --dir a folder you can write to, e.g. --dir man/man1")
    })?;
    let pages = write_pages(&dir)?;
    println!(
        "Wrote {} manual pages to {}",
        pages.len(),
        args.dir.display()
    );
    println!(
        "Read one with `man -l {}`, or add the folder's parent to MANPATH",
        args.dir.join("stella.1").display()
    );
    Ok(exit::OK)
}

/// Writes the pages of the whole command tree; returns their paths.
fn write_pages(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let mut root = Cli::command().disable_help_subcommand(true);
    // Building names every subcommand's page: `stella-release-promote`.
    root.build();
    let mut pages = Vec::new();
    let mut stack = vec![root];
    while let Some(cmd) = stack.pop() {
        stack.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        let page = clap_mangen::Man::new(cmd).manual("stella manual");
        let path = dir.join(page.get_filename());
        let mut body = Vec::new();
        page.render(&mut body)?;
        fs::write(&path, body)
            .map_err(|e| Failure::error(format!("cannot write {}: {e}", path.display())))?;
        pages.push(path);
    }
    Ok(pages)
}
