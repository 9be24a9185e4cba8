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

mod worker {
    //! The evaluator is one long-lived worker per stella process: these
    //! drive it through the library, as the engine and the workbench do.

    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use serde_json::json;
    use stella::gates::PolicyModule;
    use stella::gates::policy;

    type Decided = Result<(Vec<String>, Vec<String>), String>;

    fn decide(source: &str, input: serde_json::Value) -> Decided {
        let modules = [PolicyModule {
            path: "policies/p.rego".into(),
            source: source.into(),
        }];
        policy::decide(&modules, input, 0)
    }

    fn messages(deny: &[&str], warn: &[&str]) -> Decided {
        let v = |m: &[&str]| m.iter().map(|s| s.to_string()).collect();
        Ok((v(deny), v(warn)))
    }

    /// CPU seconds the process has used, from /proc (USER_HZ is 100).
    fn cpu_seconds(pid: u32) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<u64> = after
            .split(' ')
            .skip(11)
            .take(2)
            .map(|x| x.parse().unwrap())
            .collect();
        (f[0] + f[1]) as f64 / 100.0
    }

    fn gone(pid: u32) -> bool {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn one_worker_serves_every_evaluation_until_a_bound_stops_it() {
        policy::isolate_with(env!("CARGO_BIN_EXE_stella"));

        // A first request: a rule, a constant, an input.
        let first = "package stella.gates\n\ndeny contains \"first\" if input.n == 1\nlimit := 5\n";
        assert_eq!(decide(first, json!({"n": 1})), messages(&["first"], &[]));
        let workers = policy::idle_workers();
        assert_eq!(workers.len(), 1, "{workers:?}");
        let pid = workers[0];

        // The same worker answers the next request, and nothing of the
        // first is left in it: not its rules, not its constant, not its
        // input.
        let second = "package stella.gates\n\ndeny contains \"a rule from before\" if data.stella.gates.limit\nwarn contains \"second\" if input.n == 1\n";
        assert_eq!(decide(second, json!({"n": 1})), messages(&[], &["second"]));
        assert_eq!(decide(first, json!({})), messages(&[], &[]));
        assert_eq!(decide(first, json!({"n": 1})), messages(&["first"], &[]));
        assert_eq!(policy::idle_workers(), [pid], "reused, not restarted");

        // The CPU bound is per request: requests adding up to more CPU
        // than one budget plus a second all succeed in the same worker.
        let busy = "package stella.gates\n\nwarn contains sprintf(\"%d\", [n]) if n := count([x | some x in numbers.range(1, 300000); x % 7 == 0])\n";
        let mut served = 0;
        while cpu_seconds(pid) < 4.0 {
            assert_eq!(decide(busy, json!({})), messages(&[], &["42857"]));
            served += 1;
            assert!(served < 200, "the busy policy uses too little CPU");
        }
        assert_eq!(
            policy::idle_workers(),
            [pid],
            "after {served} busy requests"
        );

        // Over the time budget: the worker is killed and reaped, the
        // reason given, and the next evaluation has a fresh worker.
        let start = Instant::now();
        let slow = "package stella.gates\n\ndeny contains \"never\" if {\n  some i in numbers.range(1, 100000)\n  some j in numbers.range(1, 100000)\n  i * j < 0\n}\n";
        let verdict = decide(slow, json!({}));
        assert_eq!(
            verdict,
            Err("policy evaluation did not finish within 2s".into())
        );
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        assert!(policy::idle_workers().is_empty());
        assert!(gone(pid), "the worker {pid} is killed and reaped");
        assert_eq!(decide(first, json!({"n": 1})), messages(&["first"], &[]));
        let fresh = policy::idle_workers();
        assert_eq!(fresh.len(), 1);
        assert_ne!(fresh[0], pid);

        // Over the memory limit: the same, and the worker is replaced.
        let big =
            "package stella.gates\n\ndeny contains \"never\" if count(numbers.range(1, 1e8)) < 0\n";
        let verdict = decide(big, json!({}));
        assert_eq!(
            verdict,
            Err("policy evaluation exceeded the 512 MiB memory limit".into())
        );
        assert!(gone(fresh[0]), "the worker {} is reaped", fresh[0]);
        assert_eq!(decide(second, json!({"n": 1})), messages(&[], &["second"]));
        let after = policy::idle_workers();
        assert_eq!(after.len(), 1);
        assert!(!after.contains(&fresh[0]));

        // Stopped and reaped on shutdown (the binary's exit).
        policy::shutdown();
        assert!(policy::idle_workers().is_empty());
        assert!(gone(after[0]));
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn the_worker_answers_framed_requests_and_exits_when_its_stdin_closes() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stella"))
            .arg(policy::CHILD_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        for n in [1, 2] {
            // The modules, then the input.
            let load = json!({
                "modules": [["p.rego", "package stella.gates\n\ndeny contains sprintf(\"n=%d\", [input.n]) if true\n"]],
                "now_ns": 0,
            });
            stdin
                .write_all(&frame(load.to_string().as_bytes()))
                .unwrap();
            let input = json!({"n": n});
            stdin
                .write_all(&frame(input.to_string().as_bytes()))
                .unwrap();
            stdin.flush().unwrap();
            let mut len = [0u8; 4];
            stdout.read_exact(&mut len).unwrap();
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            stdout.read_exact(&mut body).unwrap();
            let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                answer["reply"]["Messages"]["deny"],
                json!([format!("n={n}")]),
                "{answer}"
            );
        }
        // stella gone: the worker's stdin closes and it exits on its own.
        drop(stdin);
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "{status}");
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "still running");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
