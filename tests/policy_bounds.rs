//! The policy gate is bounded in time and memory, inside one builtin too,
//! and refuses builtins whose result is not a function of the input. All
//! through the real binary: `stella gate check` and `stella config check`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{add_image, stderr, stella};

const CONFIG: &str = r#"
[workspace]
name = "bounds"

[apps.api]
image = "oci-layout:images/api"

[environments.dev]

[environments.dev.gates.policy]
modules = ["policies/dev.rego"]
"#;

fn workspace(policy: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    std::fs::write(ws.join("stella.toml"), CONFIG).unwrap();
    std::fs::create_dir_all(ws.join("policies")).unwrap();
    std::fs::write(ws.join("policies/dev.rego"), policy).unwrap();
    add_image(&ws.join("images/api"), "1.0", "api 1.0");
    dir
}

/// Exit code, the policy verdict, and how long the check took.
fn gate_check(ws: &Path) -> (Option<i32>, serde_json::Value, Duration, String) {
    let start = Instant::now();
    let out = stella(ws)
        .args([
            "gate",
            "check",
            "api:1.0",
            "--env",
            "dev",
            "--at",
            "2026-11-20T12:00:00Z",
            "--json",
        ])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let took = start.elapsed();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let policy = v["gates"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["gate"] == "policy")
        .cloned()
        .unwrap_or_default();
    (out.status.code(), policy, took, stderr(&out))
}

#[test]
fn a_range_of_1e8_fails_closed_on_the_memory_limit_at_once() {
    // Old behaviour: 2.4 GB and 4 s (12 s in a debug build), then "pass".
    let ws = workspace(
        "package stella.gates\n\ndeny contains \"never\" if count(numbers.range(1, 1e8)) < 0\n",
    );
    let (code, policy, took, err) = gate_check(ws.path());
    assert_eq!(code, Some(3), "{policy} {err}");
    assert_eq!(policy["verdict"], "fail", "{policy}");
    let summary = policy["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("512 MiB memory limit"), "{summary}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn an_allocation_larger_than_the_machine_does_not_abort_stella() {
    // Old behaviour: the process aborts on the allocation (no verdict).
    let ws = workspace(
        "package stella.gates\n\ndeny contains \"never\" if count(numbers.range(1, 1e12)) < 0\n",
    );
    let (code, policy, _, err) = gate_check(ws.path());
    assert_eq!(code, Some(3), "{policy} {err}");
    assert_eq!(policy["verdict"], "fail", "{policy}");
    assert!(
        policy["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("memory limit"),
        "{policy}"
    );
}

#[test]
fn a_policy_that_runs_long_fails_within_the_budget() {
    let ws = workspace(
        "package stella.gates\n\ndeny contains \"never\" if {\n  some i in numbers.range(1, 100000)\n  some j in numbers.range(1, 100000)\n  i * j < 0\n}\n",
    );
    let (code, policy, took, err) = gate_check(ws.path());
    assert_eq!(code, Some(3), "{policy} {err}");
    let summary = policy["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("did not finish within 2s"), "{summary}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn an_ordinary_policy_still_decides_through_the_evaluator() {
    let ws = workspace(
        "package stella.gates\n\ndeny contains sprintf(\"%s is not welcome\", [input.release.app]) if input.release.app == \"api\"\nwarn contains \"late\" if time.clock([time.now_ns(), \"UTC\"])[0] >= 12\n",
    );
    let (code, policy, _, err) = gate_check(ws.path());
    assert_eq!(code, Some(3), "{policy} {err}");
    assert_eq!(policy["summary"], "FAIL — api is not welcome", "{policy}");
    assert_eq!(
        policy["reasons"],
        serde_json::json!(["deny: api is not welcome", "warn: late"])
    );
}

const RANDOM: &str = "package stella.gates\n\n# a coin toss\ndeny contains \"unlucky\" if {\n  rand.intn(\"coin\", 2) == 0\n}\n";

#[test]
fn config_check_refuses_a_random_builtin_with_its_location() {
    // Old behaviour: "stella.toml is valid".
    let ws = workspace(RANDOM);
    let out = stella(ws.path())
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", common::stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("policies/dev.rego:5:3: `rand.intn` is not allowed"),
        "{err}"
    );
}

#[test]
fn a_random_policy_fails_the_gate_the_same_way_every_time() {
    // Old behaviour: deny or pass, by a coin toss, at the same --at.
    let ws = workspace(RANDOM);
    for _ in 0..4 {
        let (code, policy, _, err) = gate_check(ws.path());
        assert_eq!(code, Some(3), "{policy} {err}");
        assert_eq!(
            policy["summary"], "FAIL — a policy module does not compile",
            "{policy}"
        );
        assert!(
            policy["reasons"][0]
                .as_str()
                .unwrap_or_default()
                .starts_with("policies/dev.rego:5:3: `rand.intn` is not allowed"),
            "{policy}"
        );
    }
}

#[test]
fn other_non_deterministic_builtins_are_refused_by_name() {
    for (call, name) in [
        ("uuid.rfc4122(\"x\")", "uuid.rfc4122"),
        (
            "http.send({\"method\": \"get\", \"url\": \"http://x\"})",
            "http.send",
        ),
        ("net.lookup_ip_addr(\"example.com\")", "net.lookup_ip_addr"),
        ("opa.runtime()", "opa.runtime"),
    ] {
        let ws = workspace(&format!(
            "package stella.gates\n\ndeny contains \"x\" if {{\n  x := {call}\n  x == 1\n}}\n"
        ));
        let out = stella(ws.path())
            .args(["config", "check"])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{call}: {err}");
        assert!(
            err.contains(&format!("policies/dev.rego:4:8: `{name}` is not allowed")),
            "{call}: {err}"
        );
    }
}
