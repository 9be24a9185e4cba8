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

#[test]
fn commands_without_json_and_lines_that_do_not_parse_fail_as_usage_in_json() {
    let here = tempfile::tempdir().unwrap();
    for words in [
        vec!["key", "gen", "me", "--json"],
        vec!["gate", "check", "--no-such-flag", "--json"],
        vec!["no-such-command", "--json"],
        vec!["status", "--json", "--json"],
    ] {
        let out = stella(here.path()).args(&words).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{words:?}: {}", stderr(&out));
        let v = error_doc(&format!("{words:?}"), &out);
        assert!(
            v["error"]["where"]
                .as_str()
                .is_some_and(|w| w.starts_with("stella ")),
            "{v}"
        );
    }
    // Without --json, a line that does not parse says so on stderr only.
    let out = stella(here.path())
        .args(["gate", "check", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    // A value that is `--json` is not the flag.
    let out = stella(here.path())
        .args(["completions", "--", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    // --help with --json is still help.
    let out = stella(here.path())
        .args(["status", "--help", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("Usage"), "{}", stdout(&out));
}

/// Runs `stella ARGS` in `ws` and returns the error document.
fn fails(ws: &Path, args: &[&str], code: i32) -> Value {
    let out = stella(ws).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
    error_doc(&format!("{args:?}"), &out)
}

#[test]
fn failures_in_a_workspace_print_their_error_document() {
    let dir = init_workspace();
    let ws = dir.path();
    common::app_image(ws, "1.0", "v1");
    common::app_image(ws, "2.0", "v2");

    // Unknown environment: usage, the environments in the hint.
    let v = fails(
        ws,
        &[
            "gate",
            "check",
            "api-gateway:1.0",
            "--env",
            "nope",
            "--json",
        ],
        2,
    );
    assert!(
        v["error"]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("dev")),
        "{v}"
    );
    // A reference that is not one.
    fails(
        ws,
        &["gate", "check", "api-gateway@@x", "--env", "dev", "--json"],
        2,
    );
    // An app that does not exist.
    fails(ws, &["release", "resolve", "nope:1.0", "--json"], 2);
    // A tag that does not exist.
    fails(ws, &["release", "resolve", "api-gateway:9.9", "--json"], 1);

    // A promotion refused by a rollback's pin: exit 3, and its JSON.
    for tag in ["1.0", "2.0"] {
        stella(ws)
            .args([
                "release",
                "promote",
                &format!("api-gateway:{tag}"),
                "--to",
                "dev",
            ])
            .assert()
            .success();
    }
    stella(ws)
        .args(["release", "rollback", "api-gateway", "--env", "dev"])
        .assert()
        .success();
    let v = fails(
        ws,
        &[
            "release",
            "promote",
            "api-gateway:2.0",
            "--to",
            "dev",
            "--json",
        ],
        3,
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("pinned")),
        "{v}"
    );
    assert!(
        v["error"]["where"]
            .as_str()
            .is_some_and(|w| w.contains("release promote")),
        "{v}"
    );

    // A broken stella.toml: every command says so in JSON.
    std::fs::write(ws.join("stella.toml"), "[workspace\nname = 1").unwrap();
    for args in [
        &["status", "--json"][..],
        &["gate", "check", "api-gateway:1.0", "--env", "dev", "--json"],
    ] {
        let out = stella(ws).args(args).output().unwrap();
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        error_doc(&format!("{args:?}"), &out);
    }
    // `config check` answers with its own report: a verdict, not a failure.
    let out = stella(ws)
        .args(["config", "check", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false, "{v}");
}

/// `gate check APP@sha256:…` reads no registry: the registry that holds
/// the image is stopped, and the check still answers.
#[test]
fn a_digest_needs_no_registry_for_reading_commands() {
    let Some(mut reg) = Registry::start() else {
        return;
    };
    let dir = init_workspace();
    let ws = dir.path();
    let layout = ws.join("build");
    let digest = add_image(&layout, "1.0", "first");
    reg.push(&layout, "1.0", "acme/api-gateway", "1.0");
    let path = ws.join("stella.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "image = \"oci-layout:images/api-gateway\"",
        &format!("image = \"{}/acme/api-gateway\"", reg.addr),
    );
    std::fs::write(&path, text).unwrap();
    let reference = format!("api-gateway@{digest}");
    reg.stop();

    let out = stella(ws)
        .args(["gate", "check", &reference, "--env", "dev", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["digest"], digest.as_str(), "{v}");
    assert_eq!(v["decision"], "allow", "{v}");

    // Nor does listing its evidence.
    let out = stella(ws)
        .args(["evidence", "list", &reference, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );

    // A what-if promotion reads no registry either.
    let out = stella(ws)
        .args(["release", "promote", &reference, "--to", "dev", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // A promotion, about to pull the image, asks the registry first: down,
    // it is an error (exit 1) and nothing is deployed.
    let v = fails(
        ws,
        &["release", "promote", &reference, "--to", "dev", "--json"],
        1,
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&reg.addr)),
        "{v}"
    );
    assert!(!ws.join("deploy/dev/current").exists());
}
