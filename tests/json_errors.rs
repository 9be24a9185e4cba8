//! `--json` on failures: every command that prints JSON prints exactly one
//! `{"error": {"kind", "message", "hint", "exit", …}}` document on stdout
//! when it fails, with the same exit code as without `--json`; a command
//! line that does not parse, with `--json` on it, too. The commands are
//! enumerated from the clap tree, so a new command cannot miss it.

mod common;

use std::path::Path;

use clap::CommandFactory;
use common::{Registry, add_image, init_workspace, stderr, stdout, stella};
use serde_json::Value;
use stella::cli::Cli;

/// Commands with no `--json`, and why (docs/cli.md says the same). Given
/// `--json` anyway, they fail as a usage error in JSON (checked below).
const WITHOUT_JSON: &[&str] = &[
    // A screen, or files and a screen.
    "stella init",
    "stella demo",
    "stella tui",
    // Their output is the document itself: a shell script, manual pages,
    // a JSON Schema, a capsule, an envelope, a bundle, key material.
    "stella completions",
    "stella man",
    "stella config schema",
    "stella capsule export",
    "stella capsule envelope",
    "stella audit export",
    "stella key gen",
    "stella key export",
    "stella key import",
    // Runs until stopped, or stops what runs.
    "stella router serve",
    "stella router stop",
];

/// Every command that runs (the leaves of the tree), with its name.
fn leaves(cmd: &clap::Command, name: &str, out: &mut Vec<(String, clap::Command)>) {
    let subs: Vec<_> = cmd
        .get_subcommands()
        .filter(|c| c.get_name() != "help")
        .collect();
    if subs.is_empty() {
        out.push((name.to_owned(), cmd.clone()));
    }
    for s in subs {
        leaves(s, &format!("{name} {}", s.get_name()), out);
    }
}

/// The arguments a command needs to parse: each required one, given a
/// value that names nothing that exists.
fn required_args(cmd: &clap::Command) -> Vec<String> {
    let mut args = Vec::new();
    for a in cmd.get_arguments().filter(|a| a.is_required_set()) {
        let value = a
            .get_possible_values()
            .first()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_else(|| "no-such-thing".to_owned());
        if a.is_positional() {
            args.push(value);
        } else if let Some(long) = a.get_long() {
            args.push(format!("--{long}"));
            args.push(value);
        }
    }
    args
}

/// The one `{"error": …}` document on stdout; checks its fields against
/// the exit code.
fn error_doc(what: &str, out: &std::process::Output) -> Value {
    let code = out.status.code().expect("exited");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not one JSON document ({e}): {:?}\nstderr: {}",
            stdout(out),
            stderr(out)
        )
    });
    let e = &v["error"];
    assert!(e.is_object(), "{what}: {v}");
    assert_eq!(e["exit"], code, "{what}: {v}");
    let kind = match code {
        2 => "usage",
        3 => "blocked",
        _ => "failed",
    };
    assert_eq!(e["kind"], kind, "{what}: {v}");
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {v}"
    );
    assert!(e["hint"].is_string() || e["hint"].is_null(), "{what}: {v}");
    assert!(
        !stderr(out).is_empty(),
        "{what}: stderr keeps the human text"
    );
    v
}

#[test]
fn every_command_with_json_fails_as_one_error_document() {
    let here = tempfile::tempdir().unwrap();
    let missing = here.path().join("no-workspace-here");
    let mut all = Vec::new();
    leaves(&Cli::command(), "stella", &mut all);
    assert!(all.len() >= 50, "{}", all.len());
    let mut with_json = 0;
    let lacking: Vec<&str> = all
        .iter()
        .filter(|(name, cmd)| {
            !cmd.get_arguments().any(|a| a.get_id() == "json")
                && !WITHOUT_JSON.contains(&name.as_str())
        })
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(
        lacking.is_empty(),
        "no --json: {lacking:?}; add it, or say in WITHOUT_JSON why not"
    );
    for (name, cmd) in &all {
        if !cmd.get_arguments().any(|a| a.get_id() == "json") {
            continue;
        }
        with_json += 1;
        let words: Vec<&str> = name.split(' ').skip(1).collect();
        let out = stella(here.path())
            .arg("--workspace")
            .arg(&missing)
            .args(&words)
            .args(required_args(cmd))
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "`{name}` succeeded on nothing: {}",
            stdout(&out)
        );
        error_doc(name, &out);
    }
    assert!(with_json >= 40, "{with_json}");
}
