//! The conventions a new user reaches for first: shell completions and
//! manual pages generated from the command definitions, a JSON Schema of
//! `stella.toml` that agrees with the parser, a starter that tells the
//! truth, and an unpin with nothing to lift.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use common::{add_image, stderr, stdout, stella};
use serde_json::{Value, json};
use stella::cli::Cli;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn here() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The visible subcommands of `cmd`, without clap's `help`.
fn children(cmd: &clap::Command) -> Vec<clap::Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .cloned()
        .collect()
}

fn completions(shell: &str) -> String {
    let dir = here();
    let out = stella(dir.path())
        .args(["completions", shell])
        .output()
        .unwrap();
    assert!(out.status.success(), "{shell}: {}", stderr(&out));
    stdout(&out)
}

// --- completions --------------------------------------------------------

#[test]
fn the_command_definitions_are_consistent() {
    // What completions and pages are generated from: clap's own checks
    // (duplicate flags, bad defaults, conflicts naming nothing).
    Cli::command().debug_assert();
}

#[test]
fn bash_completion_parses_and_completes_every_command_of_the_tree() {
    let script = completions("bash");
    let dir = here();
    let file = dir.path().join("stella.bash");
    std::fs::write(&file, &script).unwrap();
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .unwrap();
    assert!(syntax.status.success(), "bash -n: {}", stderr(&syntax));

    // What bash offers after `stella ` and after `stella SUB `, asked of
    // the script the way bash's completion machinery asks it.
    let offered = |words: &[&str]| -> BTreeSet<String> {
        let mut line = words.join(" ");
        line.push(' ');
        let program = format!(
            "source {file}; COMP_WORDS=({words} ''); COMP_CWORD={cword}; \
             COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; \
             _stella stella '' {prev}; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file = file.display(),
            words = words.join(" "),
            cword = words.len(),
            prev = words.last().unwrap(),
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &program])
            .output()
            .unwrap();
        assert!(out.status.success(), "{words:?}: {}", stderr(&out));
        stdout(&out).lines().map(str::to_owned).collect()
    };
    let root = Cli::command();
    let top = offered(&["stella"]);
    let subcommands = children(&root);
    assert!(subcommands.len() >= 20, "{}", subcommands.len());
    for sub in &subcommands {
        assert!(
            top.contains(sub.get_name()),
            "`{}` not offered: {top:?}",
            sub.get_name()
        );
        let nested = children(sub);
        if nested.is_empty() {
            continue;
        }
        let got = offered(&["stella", sub.get_name()]);
        for n in nested {
            assert!(
                got.contains(n.get_name()),
                "`stella {} {}` not offered: {got:?}",
                sub.get_name(),
                n.get_name()
            );
        }
    }
    assert!(top.contains("--workspace"), "{top:?}");
}

#[test]
fn zsh_and_fish_completions_name_every_subcommand() {
    let zsh = completions("zsh");
    let fish = completions("fish");
    assert!(
        zsh.starts_with("#compdef stella"),
        "{}",
        &zsh[..80.min(zsh.len())]
    );
    assert!(fish.contains("complete -c stella"), "{fish}");
    let root = Cli::command();
    for sub in children(&root) {
        let name = sub.get_name();
        assert!(zsh.contains(&format!("'{name}:")), "zsh lacks `{name}`");
        assert!(
            fish.contains(&format!("-a \"{name}\"")),
            "fish lacks `{name}`"
        );
        for n in children(&sub) {
            assert!(
                zsh.contains(&format!("'{}:", n.get_name())),
                "zsh lacks `{name} {}`",
                n.get_name()
            );
        }
    }
    // A shell clap_complete does not know is a usage error.
    let dir = here();
    let out = stella(dir.path())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

// --- manual pages -------------------------------------------------------

/// `stella.1`, `stella-release.1`, `stella-release-promote.1`, … for the
/// whole visible command tree.
fn expected_pages() -> BTreeSet<String> {
    fn walk(cmd: &clap::Command, prefix: &str, into: &mut BTreeSet<String>) {
        into.insert(format!("{prefix}.1"));
        for sub in children(cmd) {
            walk(&sub, &format!("{prefix}-{}", sub.get_name()), into);
        }
    }
    let mut pages = BTreeSet::new();
    walk(&Cli::command(), "stella", &mut pages);
    pages
}

#[test]
fn man_writes_one_page_per_command_and_each_renders() {
    let dir = here();
    let out = stella(dir.path())
        .args(["man", "--dir", "man/man1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mandir = dir.path().join("man/man1");
    let written: BTreeSet<String> = std::fs::read_dir(&mandir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected = expected_pages();
    assert!(
        expected.contains("stella-release-promote.1"),
        "{expected:?}"
    );
    assert_eq!(written, expected);
    assert!(
        stdout(&out).contains(&format!("Wrote {} manual pages", expected.len())),
        "{}",
        stdout(&out)
    );

    let groff = common::on_path("groff");
    for page in &written {
        let path = mandir.join(page);
        let roff = std::fs::read_to_string(&path).unwrap();
        let title = page.trim_end_matches(".1");
        assert!(
            roff.contains(&format!(".TH {title} 1")),
            "{page} has no title header: {}",
            &roff[..200.min(roff.len())]
        );
        if groff {
            // As `man` reads it (-k: UTF-8 input through preconv), with
            // every warning (-ww), printing nothing (-z).
            let out = std::process::Command::new("groff")
                .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{page}: {}", stderr(&out));
            assert_eq!(stderr(&out), "", "{page} renders with warnings");
        }
    }
    let promote = std::fs::read_to_string(mandir.join("stella-release-promote.1")).unwrap();
    assert!(
        promote.contains("\\-\\-to") || promote.contains("--to"),
        "{promote}"
    );
    if groff {
        let out = std::process::Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-P-c", "-P-b", "-P-u"])
            .arg(mandir.join("stella.1"))
            .output()
            .unwrap();
        let text = stdout(&out);
        assert!(
            text.contains("NAME") && text.contains("SUBCOMMANDS"),
            "{text}"
        );
        assert!(text.contains("stella-release(1)"), "{text}");
    }
}

#[test]
fn man_into_an_unwritable_place_is_an_error_with_a_hint() {
    let dir = here();
    std::fs::write(dir.path().join("file"), "not a folder").unwrap();
    let out = stella(dir.path())
        .args(["man", "--dir", "file/man1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot create file/man1"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("hint: "), "{}", stderr(&out));
}

// --- the schema of stella.toml -----------------------------------------

struct Validator {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl Validator {
    fn new(schema: Value) -> Validator {
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler
            .add_resource("urn:stella:stella.toml", schema)
            .unwrap();
        let index = compiler
            .compile("urn:stella:stella.toml", &mut schemas)
            .unwrap_or_else(|e| panic!("the schema does not compile: {e:#}"));
        Validator { schemas, index }
    }

    /// The schema's verdict on a stella.toml text, converted to JSON.
    fn check(&self, toml_text: &str) -> Result<(), String> {
        let json: Value = toml::from_str(toml_text).map_err(|e| format!("not TOML: {e}"))?;
        self.schemas
            .validate(&json, self.index)
            .map_err(|e| format!("{e}"))
    }
}

fn schema() -> Value {
    let dir = here();
    let out = stella(dir.path())
        .args(["config", "schema"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every complete stella.toml a test writes from a constant
/// (`const X: &str = r#"[workspace] …"#`), by file and name.
fn test_configs() -> Vec<(String, String)> {
    let pattern =
        regex::Regex::new(r#"(?s)const (\w+): &str = r#"(\s*\[workspace\].*?)"\#;"#).unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(repo().join("tests")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for c in pattern.captures_iter(&source) {
            let name = format!("{}:{}", path.file_name().unwrap().to_string_lossy(), &c[1]);
            found.push((name, c[2].to_owned()));
        }
    }
    found.sort();
    found
}

#[test]
fn the_schema_is_generated_from_the_types_with_their_docs_and_closed_tables() {
    let s = schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(s["title"], "stella.toml");
    assert_eq!(s["required"], json!(["workspace"]));
    // Every table of the model refuses unknown keys, as the parser does.
    assert_eq!(s["additionalProperties"], false);
    let defs = s["$defs"].as_object().unwrap();
    let mut tables = 0;
    for (name, def) in defs {
        if def.get("properties").is_some() {
            tables += 1;
            assert_eq!(def["additionalProperties"], false, "{name} is open");
        }
    }
    assert!(tables >= 15, "{tables} tables");
    // Field docs are descriptions.
    assert!(
        defs["AppConfig"]["properties"]["image"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("oci-layout:PATH")),
        "{:#}",
        defs["AppConfig"]
    );
    assert!(
        defs["TargetConfig"]["properties"]["timeout"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("process group is killed")),
        "{:#}",
        defs["TargetConfig"]
    );
    // Enums are the words the parser takes, each described.
    let strategies: Vec<&str> = defs["Strategy"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["const"].as_str().unwrap())
        .collect();
    assert_eq!(strategies, ["direct", "bluegreen", "canary", "ab"]);
    // TOML has no null: an optional key is one left out.
    assert!(!s.to_string().contains("\"null\""), "{s:#}");
}

#[test]
fn the_schema_accepts_every_example_config_in_the_repo() {
    let v = Validator::new(schema());
    let mut checked = Vec::new();
    let mut accept = |name: String, text: &str| {
        if let Err(e) = v.check(text) {
            panic!("{name} is refused by the schema: {e}\n{text}");
        }
        checked.push(name);
    };

    // The starter `stella init` writes (and its example workflow's hint
    // taken: the lane uses it).
    let dir = here();
    stella(dir.path())
        .args(["init", "--name", "acme"])
        .assert()
        .success();
    let starter = std::fs::read_to_string(dir.path().join("stella.toml")).unwrap();
    accept("stella init".into(), &starter);

    // The demo's config, as `stella demo` writes it.
    let demo = here();
    let out = stella(demo.path())
        .args(["demo", "d", "--no-open", "--router", "builtin"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let written = std::fs::read_to_string(demo.path().join("d/stella.toml")).unwrap();
    accept("stella demo".into(), &written);

    // The configs kept in the repo (the demo's is a template, checked
    // above as written): the fuzz corpus's valid seeds, and every complete
    // config a test writes.
    for seed in ["starter.toml", "demo.toml"] {
        let path = repo().join("fuzz/corpus/config").join(seed);
        if let Ok(text) = std::fs::read_to_string(&path) {
            accept(format!("fuzz/corpus/config/{seed}"), &text);
        }
    }
    let consts = test_configs();
    assert!(consts.len() >= 8, "{consts:?}");
    for (name, text) in consts {
        accept(name, &text);
    }
    assert!(checked.len() >= 10, "{checked:?}");
}

#[test]
fn the_schema_refuses_unknown_keys_and_wrong_types_as_the_parser_does() {
    let v = Validator::new(schema());
    let starter = {
        let dir = here();
        stella(dir.path())
            .args(["init", "--name", "acme"])
            .assert()
            .success();
        std::fs::read_to_string(dir.path().join("stella.toml")).unwrap()
    };
    // Each broken config: refused by the schema AND by `config check`.
    let broken = [
        (
            "an unknown top-level key",
            format!("{starter}\n[notifications]\nslack = \"#deploys\"\n"),
        ),
        (
            "an unknown gate key",
            starter.replace("four_eyes = true", "four_eyes = true\nfour_eye = true"),
        ),
        (
            "a misspelt target key",
            starter.replace("path = \"deploy/dev\"", "paht = \"deploy/dev\""),
        ),
        (
            "a number where a list of names goes",
            starter.replace("windows = [\"weekend\"]", "windows = 7"),
        ),
        (
            "a string where a count goes",
            starter.replace("required = 2", "required = \"two\""),
        ),
        (
            "a strategy that is not one",
            starter.replace("strategy = \"direct\"", "strategy = \"rolling\""),
        ),
        (
            "a name the parser refuses",
            starter.replace("[apps.api-gateway]", "[apps.\"-api\"]"),
        ),
    ];
    for (what, text) in &broken {
        assert_ne!(text, &starter, "{what}: the edit did not apply");
        assert!(v.check(text).is_err(), "the schema accepts {what}:\n{text}");
        let ws = here();
        std::fs::write(ws.path().join("stella.toml"), text).unwrap();
        let out = stella(ws.path())
            .args(["config", "check"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "config check accepts {what}");
    }
    // The repo's invalid configs that are about shape, not meaning.
    for file in [
        "unknown_key.toml",
        "unknown_gate_key.toml",
        "wrong_type.toml",
        "bad_strategy.toml",
    ] {
        let text =
            std::fs::read_to_string(repo().join("tests/invalid_configs").join(file)).unwrap();
        assert!(v.check(&text).is_err(), "the schema accepts {file}");
    }
}

// --- the starter ----------------------------------------------------------

#[test]
fn the_starter_tells_the_truth_and_its_example_workflow_runs() {
    let dir = here();
    let ws = dir.path();
    let out = stella(ws)
        .args(["init", "--name", "acme"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("workflows/standard.toml"),
        "{}",
        stdout(&out)
    );
    let config = std::fs::read_to_string(ws.join("stella.toml")).unwrap();
    // A/B tests are built (docs/rollouts.md): the starter must not say
    // otherwise, and names every strategy.
    assert!(!config.contains("not built"), "{config}");
    for word in ["direct", "bluegreen", "canary", "ab"] {
        assert!(config.contains(word), "the starter does not name `{word}`");
    }

    // workflows/ holds an example that the workflow commands accept…
    let example = Path::new("workflows/standard.toml");
    assert!(ws.join(example).is_file(), "workflows/ is empty");
    for verb in ["check", "show"] {
        let out = stella(ws)
            .args(["workflow", verb])
            .arg(example)
            .output()
            .unwrap();
        assert!(out.status.success(), "workflow {verb}: {}", stderr(&out));
    }
    // …and that a lane runs once it is named, as its comment says.
    assert!(
        config.contains("# workflow = \"workflows/standard.toml\""),
        "{config}"
    );
    let config = config.replace(
        "[environments.dev]\n",
        "[environments.dev]\nworkflow = \"workflows/standard.toml\"\n",
    );
    std::fs::write(ws.join("stella.toml"), config).unwrap();
    let out = stella(ws).args(["config", "check"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    add_image(&ws.join("images/api-gateway"), "1.0", "v1");
    let out = stella(ws)
        .args([
            "release",
            "promote",
            "api-gateway:1.0",
            "--to",
            "dev",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "deployed", "{v:#}");
    let id = v["promotion_id"].as_i64().unwrap().to_string();
    let out = stella(ws)
        .args(["promotion", "show", &id, "--json"])
        .output()
        .unwrap();
    let shown = stdout(&out);
    for step in ["resolve", "check", "smoke", "deploy"] {
        assert!(
            shown.contains(&format!("\"{step}\"")),
            "step {step}: {shown}"
        );
    }
    assert!(
        shown.contains("smoke-testing api-gateway at sha256:"),
        "{shown}"
    );
}

#[test]
fn init_keeps_a_workflow_or_policy_already_there() {
    let dir = here();
    let ws = dir.path();
    std::fs::create_dir_all(ws.join("workflows")).unwrap();
    let mine = "[[steps]]\nid = \"deploy\"\nuses = \"deploy\"\n";
    std::fs::write(ws.join("workflows/standard.toml"), mine).unwrap();
    let out = stella(ws)
        .args(["init", "--name", "acme"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(ws.join("workflows/standard.toml")).unwrap(),
        mine
    );
    assert!(
        stdout(&out).contains("Kept the workflows/standard.toml already there"),
        "{}",
        stdout(&out)
    );
    assert!(ws.join("policies/staging.rego").is_file());
    // --force is the way to take the starter's.
    let out = stella(ws)
        .args(["init", "--name", "acme", "--force"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let now = std::fs::read_to_string(ws.join("workflows/standard.toml")).unwrap();
    assert!(now.contains("id = \"smoke\""), "{now}");
}

// --- unpin with nothing to lift ------------------------------------------

#[test]
fn unpin_of_an_app_that_is_not_pinned_is_a_no_op_that_says_so() {
    let dir = common::init_workspace();
    let ws = dir.path();
    let out = stella(ws)
        .args(["release", "unpin", "api-gateway", "--env", "dev"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("api-gateway is not pinned in dev: nothing to unpin, nothing sealed"),
        "{}",
        stdout(&out)
    );
    let out = stella(ws)
        .args(["release", "unpin", "api-gateway", "--env", "dev", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        json!({"app": "api-gateway", "environment": "dev", "pin": null, "changed": false})
    );
    // Nothing was sealed.
    let sealed = std::fs::read_dir(ws.join("capsules")).map_or(0, |d| d.count());
    assert_eq!(sealed, 0);
    // A dry run says what the real one would: exit 0.
    let out = stella(ws)
        .args([
            "release",
            "unpin",
            "api-gateway",
            "--env",
            "dev",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Naming what does not exist is still an error, with a hint.
    for (args, needle) in [
        (["api-gateway", "--env", "nowhere"], "nowhere"),
        (["no-such-app", "--env", "dev"], "no-such-app"),
    ] {
        let out = stella(ws)
            .args(["release", "unpin"])
            .args(args)
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert!(stderr(&out).contains(needle), "{}", stderr(&out));
        assert!(stderr(&out).contains("hint: "), "{}", stderr(&out));
    }
}
