//! The policy gate: Rego v1 modules in package `stella.gates`, evaluated
//! with regorus. Messages in the set `deny` fail the gate; messages in
//! `warn` warn. The input document is built here from the other gates'
//! facts and is documented in docs/policy.md.
//!
//! Determinism: `time.now_ns()` returns the decision clock (an extension
//! shadows the builtin); a module calling a builtin whose result is not a
//! function of the input (`rand.*`, `uuid.*`, `http.send`, `net.*`,
//! `opa.runtime`, …) is refused at load, with FILE:LINE:COL.
//!
//! Bounds: the stella binary evaluates in a child process (itself, with the
//! hidden argument [`CHILD_ARG`]) whose address space is capped at
//! [`MEMORY_LIMIT`] and which is killed at [`BUDGET`]: a builtin that loops
//! or allocates without end (`numbers.range(1, 1e12)`) stops there, the
//! gate fails closed with the reason, and stella itself never runs out of
//! memory. Without [`isolate_with`] (library use) evaluation is in-process
//! under regorus's cooperative timer only.

use std::io::{Read, Write};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, Value};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::approval::Checked;
use super::{GateInputs, rfc3339};
use crate::config::model::PolicyGateConfig;
use crate::domain::{Digest, GateKind, Outcome, Verdict};

/// How long a policy may run before the gate fails.
pub const BUDGET: Duration = Duration::from_secs(2);

/// How much memory (address space) the evaluator process may use.
pub const MEMORY_LIMIT: u64 = 512 << 20;

/// The hidden first argument that makes the stella binary a policy
/// evaluator: a request on stdin, a reply on stdout.
pub const CHILD_ARG: &str = "__policy-eval";

/// The largest request or reply passed between stella and its evaluator.
const MAX_MESSAGE: u64 = 64 << 20;

static EVALUATOR: OnceLock<PathBuf> = OnceLock::new();

/// Evaluates every policy from now on in a child process, `program
/// __policy-eval` (the stella binary itself). The binary calls this first.
pub fn isolate_with(program: impl Into<PathBuf>) {
    let _ = EVALUATOR.set(program.into());
}

/// What the policy sees of the other gates.
pub struct Facts<'a> {
    pub security: Option<&'a Verdict>,
    pub approvals: &'a Checked,
    pub frozen: bool,
}

/// The input document (see docs/policy.md).
pub fn input_document(inputs: &GateInputs, facts: &Facts<'_>) -> serde_json::Value {
    let s = &inputs.subject;
    let zero = json!({"critical": 0, "high": 0, "medium": 0, "low": 0, "unknown": 0});
    let (reachable, suppressed, scanned) = match facts.security {
        Some(v) => (
            v.measured["reachable"].clone(),
            v.measured["suppressed"].clone(),
            v.measured["reports"].as_u64().unwrap_or(0) > 0,
        ),
        None => (zero, json!(0), false),
    };
    let mut approvals: Vec<serde_json::Value> = facts
        .approvals
        .valid
        .iter()
        .map(|a| json!({"email": a.email, "signed_at": rfc3339(a.signed_at)}))
        .collect();
    approvals.sort_by_key(|a| a.to_string());
    let mut doc = json!({
        "release": {"app": s.app, "digest": s.digest.to_string(), "tag": s.tag},
        "environment": {"name": s.environment, "from": s.from},
        "requested_by": s.requested_by,
        "now": rfc3339(inputs.now),
        "security": {"scanned": scanned, "reachable": reachable, "suppressed": suppressed},
        "approvals": approvals,
        "freeze": {"active": facts.frozen},
        "upstream": inputs.upstream.as_ref().map(|u| json!({
            "environment": u.environment,
            "digest": u.digest.to_string(),
            "since": rfc3339(u.since),
        })),
    });
    drop_nulls(&mut doc);
    doc
}

/// Absent, not null: Rego's `not input.release.tag` is true only for an
/// undefined value, and that is the idiom policy authors reach for.
fn drop_nulls(v: &mut serde_json::Value) {
    if let serde_json::Value::Object(map) = v {
        map.retain(|_, x| !x.is_null());
        map.values_mut().for_each(drop_nulls);
    } else if let serde_json::Value::Array(items) = v {
        items.iter_mut().for_each(drop_nulls);
    }
}

/// Builtins whose result is not a function of the input: a decision that
/// used one could not be replayed. `time.now_ns` is not among them: it is
/// shadowed by the decision clock (see [`engine`]).
const NON_DETERMINISTIC: &[&str] = &[
    "rand.",
    "uuid.",
    "http.send",
    "net.",
    "opa.runtime",
    "io.jwt.decode_verify",
    "crypto.x509.parse_and_verify_certificates",
];

fn is_non_deterministic(name: &str) -> bool {
    name != "time.now_ns"
        && NON_DETERMINISTIC
            .iter()
            .any(|p| name == *p || (p.ends_with('.') && name.starts_with(p)))
}

/// Every call of a non-deterministic builtin in `modules` (already added
/// to `engine`, in order), as `FILE:LINE:COL: …`.
fn non_deterministic_calls(
    engine: &Engine,
    modules: &[super::PolicyModule],
) -> Result<Vec<String>, String> {
    // A call spells the builtin's dotted name in the text (Rego has no
    // other way to name one): most modules skip the AST walk.
    let mentions = |src: &str| NON_DETERMINISTIC.iter().any(|w| src.contains(w));
    if !modules.iter().any(|m| mentions(&m.source)) {
        return Ok(Vec::new());
    }
    let ast: serde_json::Value = engine
        .get_ast_as_json()
        .map_err(|e| e.to_string())
        .and_then(|j| serde_json::from_str(&j).map_err(|e| e.to_string()))?;
    let mut found = Vec::new();
    for (module, tree) in modules.iter().zip(ast.as_array().into_iter().flatten()) {
        let mut calls = Vec::new();
        collect_calls(&tree["ast"], &mut calls);
        for (start, end) in calls {
            let text = module.source.get(start..end).unwrap_or_default();
            // The location of the name (regorus's own points at the `(`).
            let before = module.source.get(..start).unwrap_or_default();
            let line = before.matches('\n').count() + 1;
            let col = before
                .rsplit('\n')
                .next()
                .unwrap_or_default()
                .chars()
                .count()
                + 1;
            let name: String = text
                .split('(')
                .next()
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            if is_non_deterministic(&name) {
                found.push(format!(
                    "{}:{line}:{col}: `{name}` is not allowed: a decision must be a function of its \
                     input (no randomness, network or wall clock; `time.now_ns()` is the decision clock)",
                    module.path
                ));
            }
        }
    }
    Ok(found)
}

/// The (start, end) byte offsets of every `Call` node under `v`.
fn collect_calls(v: &serde_json::Value, out: &mut Vec<(usize, usize)>) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(span) = map.get("Call").and_then(|c| c.get("span")) {
                let n = |k: &str| span[k].as_u64().unwrap_or(0) as usize;
                out.push((n("start"), n("end")));
            }
            map.values().for_each(|x| collect_calls(x, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|x| collect_calls(x, out)),
        _ => {}
    }
}

/// Loads the modules into a fresh engine with the decision clock, and
/// refuses a module that calls a non-deterministic builtin.
pub fn engine(modules: &[super::PolicyModule], now_ns: i64) -> Result<Engine, String> {
    let mut engine = Engine::new();
    engine.set_rego_v0(false);
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: BUDGET,
        check_interval: NonZeroU32::new(64).expect("non-zero"),
    });
    engine
        .add_extension(
            "time.now_ns".into(),
            0,
            Box::new(move |_: Vec<Value>| Ok(Value::from(now_ns))),
        )
        .map_err(|e| e.to_string())?;
    for m in modules {
        let package = engine
            .add_policy(m.path.clone(), m.source.clone())
            .map_err(|e| one_line(&e.to_string()))?;
        if package != "data.stella.gates" {
            return Err(format!(
                "{}: package is `{}`, expected `package stella.gates`",
                m.path,
                package.trim_start_matches("data.")
            ));
        }
    }
    let refused = non_deterministic_calls(&engine, modules)?;
    if !refused.is_empty() {
        return Err(refused.join("\n"));
    }
    Ok(engine)
}

fn messages(engine: &mut Engine, rule: &str) -> Result<Vec<String>, String> {
    // A query, not `eval_rule`: a module need not define both rules, and an
    // undefined one is simply empty.
    let results = engine
        .eval_query(format!("data.stella.gates.{rule}"), false)
        .map_err(|e| one_line(&e.to_string()))?;
    let Some(v) = results
        .result
        .into_iter()
        .next()
        .and_then(|r| r.expressions.into_iter().next())
        .map(|e| e.value)
    else {
        return Ok(Vec::new());
    };
    if v == Value::Undefined {
        return Ok(Vec::new());
    }
    let set = v.as_set().map_err(|_| {
        format!("`{rule}` must be a set of messages, e.g. `{rule} contains msg if {{ … }}`")
    })?;
    Ok(set
        .iter()
        .map(|m| match m.as_string() {
            Ok(s) => s.to_string(),
            Err(_) => m.to_string(),
        })
        .collect())
}

/// regorus reports `--> FILE:LINE:COL`, a source excerpt and `error: …`
/// on separate lines; this makes it `FILE:LINE:COL: …`.
pub fn one_line(err: &str) -> String {
    let location = err.lines().find_map(|l| l.trim().strip_prefix("--> "));
    let message = err
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or_else(|| err.trim());
    match location {
        Some(loc) => format!("{loc}: {message}"),
        None => message.to_owned(),
    }
}

#[derive(Serialize, Deserialize)]
struct Request {
    modules: Vec<(String, String)>,
    input: serde_json::Value,
    now_ns: i64,
}

/// What an evaluation came to.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Messages {
        deny: Vec<String>,
        warn: Vec<String>,
    },
    /// A module does not load (syntax, package, a refused builtin).
    Compile(String),
    /// Evaluation stopped with an error (the cooperative timer among them).
    Failed(String),
    /// The time bound, enforced from outside.
    TimedOut,
    /// The memory bound, enforced from outside.
    OutOfMemory,
}

fn evaluate_here(req: &Request) -> Reply {
    let modules: Vec<super::PolicyModule> = req
        .modules
        .iter()
        .map(|(path, source)| super::PolicyModule {
            path: path.clone(),
            source: source.clone(),
        })
        .collect();
    let mut engine = match engine(&modules, req.now_ns) {
        Ok(e) => e,
        Err(e) => return Reply::Compile(e),
    };
    match Value::from_json_str(&req.input.to_string()) {
        Ok(v) => engine.set_input(v),
        Err(e) => return Reply::Failed(format!("cannot build the policy input: {e}")),
    }
    match (messages(&mut engine, "deny"), messages(&mut engine, "warn")) {
        (Ok(deny), Ok(warn)) => Reply::Messages { deny, warn },
        (Err(e), _) | (_, Err(e)) => Reply::Failed(e),
    }
}

/// The evaluator process: caps its own address space and CPU time, reads
/// one request from stdin, writes the reply to stdout. An allocation over
/// the cap aborts this process only.
pub fn child_main() -> u8 {
    use nix::sys::resource::{Resource, setrlimit};
    let cpu = BUDGET.as_secs() + 1;
    if setrlimit(Resource::RLIMIT_AS, MEMORY_LIMIT, MEMORY_LIMIT).is_err()
        || setrlimit(Resource::RLIMIT_CPU, cpu, cpu).is_err()
    {
        eprintln!("error: cannot limit the policy evaluator");
        return 1;
    }
    let mut raw = Vec::new();
    if std::io::stdin()
        .take(MAX_MESSAGE)
        .read_to_end(&mut raw)
        .is_err()
    {
        return 1;
    }
    let reply = match serde_json::from_slice::<Request>(&raw) {
        Ok(req) => evaluate_here(&req),
        Err(e) => Reply::Failed(format!("bad evaluator request: {e}")),
    };
    let mut out = std::io::stdout().lock();
    match serde_json::to_writer(&mut out, &reply).map(|()| out.flush()) {
        Ok(Ok(())) => 0,
        _ => 1,
    }
}

/// An evaluator process started ahead of its request, so that its start
/// overlaps the other gates' work.
pub struct Evaluator {
    started: Result<std::process::Child, String>,
}

impl Drop for Evaluator {
    fn drop(&mut self) {
        // Never used (the gate had nothing to evaluate): stop it.
        if let Ok(child) = &mut self.started {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The program that evaluates: `stella-policy-eval` beside the stella
/// binary (small, so it starts fast), else the binary itself with
/// [`CHILD_ARG`].
fn evaluator_command(program: &std::path::Path) -> Command {
    let small = program.with_file_name("stella-policy-eval");
    let mut cmd = if program.file_name() != small.file_name() && small.is_file() {
        Command::new(small)
    } else {
        let mut c = Command::new(program);
        c.arg(CHILD_ARG);
        c
    };
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd
}

/// Starts the evaluator if policies are evaluated in a child process.
pub fn start() -> Option<Evaluator> {
    EVALUATOR.get().map(|program| Evaluator {
        started: evaluator_command(program).spawn().map_err(|e| {
            format!(
                "cannot start the policy evaluator for {}: {e}",
                program.display()
            )
        }),
    })
}

fn evaluate_in_child(mut evaluator: Evaluator, req: &Request) -> Reply {
    use std::os::unix::process::ExitStatusExt;
    let mut child = match std::mem::replace(&mut evaluator.started, Err(String::new())) {
        Ok(c) => c,
        Err(e) => return Reply::Failed(e),
    };
    let started = std::time::Instant::now();
    let body = match serde_json::to_vec(req) {
        Ok(b) => b,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Reply::Failed(format!("cannot encode the evaluator request: {e}"));
        }
    };
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Reply::Failed("the policy evaluator has no pipes".into());
    };
    // The reply is read on a thread so that the wait below can time out.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let read = stdout.take(MAX_MESSAGE).read_to_end(&mut out);
        let _ = tx.send(read.map(|_| out));
    });
    // A child that dies early closes the pipe: the write fails, the reply
    // read below says why.
    let _ = stdin.write_all(&body);
    drop(stdin);
    let remaining = BUDGET.saturating_sub(started.elapsed());
    let read = rx.recv_timeout(remaining);
    if read.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        return Reply::TimedOut;
    }
    let status = match child.wait() {
        Ok(s) => s,
        Err(e) => return Reply::Failed(format!("policy evaluator: {e}")),
    };
    match (read, status.signal()) {
        (_, Some(sig)) if sig == nix::sys::signal::Signal::SIGXCPU as i32 => Reply::TimedOut,
        // Rust aborts when an allocation fails, and allocations fail at
        // the address-space cap.
        (_, Some(sig)) if sig == nix::sys::signal::Signal::SIGABRT as i32 => Reply::OutOfMemory,
        (_, Some(sig)) => Reply::Failed(format!("the policy evaluator died (signal {sig})")),
        (Ok(Ok(out)), None) if status.success() => serde_json::from_slice(&out)
            .unwrap_or_else(|e| Reply::Failed(format!("unreadable evaluator reply: {e}"))),
        _ => Reply::Failed(format!("the policy evaluator failed ({status})")),
    }
}

fn run(req: &Request, evaluator: Option<Evaluator>) -> Reply {
    match evaluator {
        Some(e) => evaluate_in_child(e, req),
        None => evaluate_here(req),
    }
}

/// Evaluates the policy gate; see [`evaluate_started`].
pub fn evaluate(cfg: &PolicyGateConfig, inputs: &GateInputs, facts: &Facts<'_>) -> Verdict {
    evaluate_started(cfg, inputs, facts, start())
}

/// Evaluates the policy gate, in `evaluator` if one was started (see
/// [`start`]), in this process otherwise.
pub fn evaluate_started(
    cfg: &PolicyGateConfig,
    inputs: &GateInputs,
    facts: &Facts<'_>,
    evaluator: Option<Evaluator>,
) -> Verdict {
    let modules: Vec<serde_json::Value> = inputs
        .policies
        .iter()
        .map(|m| json!({"path": m.path, "digest": Digest::of(m.source.as_bytes()).to_string()}))
        .collect();
    let missing: Vec<&str> = cfg
        .modules
        .iter()
        .map(|m| m.get_ref().as_str())
        .filter(|m| !inputs.policies.iter().any(|p| p.path == *m))
        .collect();
    let fail = |summary: String, reasons: Vec<String>| {
        let mut v = Verdict::new(GateKind::Policy, Outcome::Fail, summary);
        v.reasons = reasons;
        v.measured = json!({"modules": modules, "deny": 0, "warn": 0});
        v
    };
    if !missing.is_empty() {
        return fail(
            format!("policy modules missing: {}", missing.join(", ")),
            vec![],
        );
    }
    let now_ns = inputs.now.timestamp_nanos_opt().unwrap_or(i64::MAX);
    let request = Request {
        modules: inputs
            .policies
            .iter()
            .map(|m| (m.path.clone(), m.source.clone()))
            .collect(),
        input: input_document(inputs, facts),
        now_ns,
    };
    let over_time = || {
        format!(
            "policy evaluation did not finish within {}s",
            BUDGET.as_secs()
        )
    };
    let (deny, warn) = match run(&request, evaluator) {
        Reply::Messages { deny, warn } => (deny, warn),
        Reply::Compile(e) => {
            return fail(
                "a policy module does not compile".into(),
                e.lines().map(String::from).collect(),
            );
        }
        Reply::TimedOut => {
            return fail(
                over_time(),
                vec![format!("stopped after {} s", BUDGET.as_secs())],
            );
        }
        Reply::OutOfMemory => {
            return fail(
                format!(
                    "policy evaluation exceeded the {} MiB memory limit",
                    MEMORY_LIMIT >> 20
                ),
                vec!["an allocation over the limit stopped the evaluator".into()],
            );
        }
        Reply::Failed(e) => {
            let summary = if e.contains("time limit")
                || e.contains("execution exceeded")
                || e.contains("timed out")
            {
                over_time()
            } else if e.contains("memory limit") {
                format!(
                    "policy evaluation exceeded the {} MiB memory limit",
                    MEMORY_LIMIT >> 20
                )
            } else {
                "policy evaluation failed".into()
            };
            return fail(summary, vec![e]);
        }
    };
    let n = inputs.policies.len();
    let (outcome, summary) = if let Some(first) = deny.first() {
        let more = if deny.len() > 1 {
            format!(" (+{} more)", deny.len() - 1)
        } else {
            String::new()
        };
        (Outcome::Fail, format!("{first}{more}"))
    } else if let Some(first) = warn.first() {
        (Outcome::Warn, first.clone())
    } else {
        (
            Outcome::Pass,
            if n == 1 {
                "1 module allows it".to_owned()
            } else {
                format!("{n} modules allow it")
            },
        )
    };
    let mut v = Verdict::new(GateKind::Policy, outcome, summary);
    v.reasons = deny
        .iter()
        .map(|d| format!("deny: {d}"))
        .chain(warn.iter().map(|w| format!("warn: {w}")))
        .collect();
    if !deny.is_empty() {
        v.unblock.push(
            "change what the deny rules object to (see reasons), or the policy itself".into(),
        );
    }
    v.measured = json!({"modules": modules, "deny": deny.len(), "warn": warn.len()});
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            modules: vec![(
                "p.rego".into(),
                "package stella.gates\ndeny contains \"x\" if true\n".into(),
            )],
            input: json!({}),
            now_ns: 0,
        }
    }

    fn spawn(program: &std::path::Path) -> Evaluator {
        Evaluator {
            started: evaluator_command(program)
                .spawn()
                .map_err(|e| e.to_string()),
        }
    }

    #[test]
    fn an_evaluator_that_never_answers_is_killed_at_the_budget() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("stuck");
        std::fs::write(&program, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let start = std::time::Instant::now();
        let reply = evaluate_in_child(spawn(&program), &request());
        assert!(matches!(reply, Reply::TimedOut), "{reply:?}");
        let took = start.elapsed();
        assert!(
            took >= BUDGET && took < BUDGET + Duration::from_secs(1),
            "{took:?}"
        );
    }

    #[test]
    fn an_evaluator_that_aborts_is_reported_as_over_the_memory_limit() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("abort");
        std::fs::write(&program, "#!/bin/sh\nkill -ABRT $$\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let reply = evaluate_in_child(spawn(&program), &request());
        assert!(matches!(reply, Reply::OutOfMemory), "{reply:?}");
    }

    #[test]
    fn in_process_evaluation_gives_the_messages() {
        match evaluate_here(&request()) {
            Reply::Messages { deny, warn } => {
                assert_eq!(deny, ["x"]);
                assert!(warn.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
}
