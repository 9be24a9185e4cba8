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
//! Bounds: the stella binary evaluates in a long-lived worker process
//! (`stella-policy-eval`, or itself with the hidden argument
//! [`CHILD_ARG`]), started on first use and reused by later evaluations in
//! the same stella process (concurrent evaluations take one each). A
//! request is two length-prefixed JSON messages on its stdin, the modules
//! (sent by [`start_for`] while the other gates run) and then the input;
//! the answer is one on its stdout; each at most `MAX_MESSAGE` bytes. Each
//! request gets a fresh regorus engine, so nothing of one request reaches
//! the next. The worker's address space is capped at [`MEMORY_LIMIT`] and
//! its CPU time is re-armed to [`BUDGET`] (plus a second) before each
//! request, a bound that holds even with nobody left to enforce the wall
//! clock; a watchdog thread in stella kills it if an answer takes longer
//! than [`BUDGET`] (wall clock). A builtin
//! that loops or allocates without end (`numbers.range(1, 1e12)`) stops
//! there, the gate fails closed with the reason, the dead or killed worker
//! is reaped and the next evaluation starts a fresh one, and stella itself
//! never runs out of memory. A worker exits when its stdin closes, so it
//! never outlives stella. Without [`isolate_with`] (library use)
//! evaluation is in-process under regorus's cooperative timer only.

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

/// The first half of a request: the modules, loaded into a fresh engine
/// with the decision clock.
#[derive(Serialize, Deserialize)]
struct Load {
    modules: Vec<(String, String)>,
    now_ns: i64,
}

fn load(modules: &[(String, String)], now_ns: i64) -> Result<Engine, Reply> {
    let modules: Vec<super::PolicyModule> = modules
        .iter()
        .map(|(path, source)| super::PolicyModule {
            path: path.clone(),
            source: source.clone(),
        })
        .collect();
    engine(&modules, now_ns).map_err(Reply::Compile)
}

/// The second half: the input, and the messages.
fn decide_loaded(mut engine: Engine, input: Result<Value, String>) -> Reply {
    match input {
        Ok(v) => engine.set_input(v),
        Err(e) => return Reply::Failed(format!("cannot build the policy input: {e}")),
    }
    match (messages(&mut engine, "deny"), messages(&mut engine, "warn")) {
        (Ok(deny), Ok(warn)) => Reply::Messages { deny, warn },
        (Err(e), _) | (_, Err(e)) => Reply::Failed(e),
    }
}

fn evaluate_here(req: &Request) -> Reply {
    match load(&req.modules, req.now_ns) {
        Ok(engine) => decide_loaded(
            engine,
            Value::from_json_str(&req.input.to_string()).map_err(|e| e.to_string()),
        ),
        Err(reply) => reply,
    }
}

/// What the worker sends back for one request.
#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    reply: Reply,
    /// The worker's peak memory passed [`RETIRE_RSS`]: stella replaces it
    /// rather than send it another request.
    retire: bool,
}

/// A worker whose peak resident memory passed this is replaced after its
/// answer, so every request starts in a process that has not grown (and
/// fragmented its heap) far towards [`MEMORY_LIMIT`].
const RETIRE_RSS: u64 = 128 << 20;

/// Reads one length-prefixed message (a 4-byte big-endian length, then the
/// bytes). `Ok(None)` at a clean end of the stream.
fn read_frame(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u64::from(u32::from_be_bytes(len));
    if len > MAX_MESSAGE {
        return Err(std::io::Error::other(format!(
            "a {len}-byte message is over the {MAX_MESSAGE}-byte limit"
        )));
    }
    let mut body = Vec::new();
    r.take(len).read_to_end(&mut body)?;
    if body.len() as u64 != len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Some(body))
}

/// `body` as one length-prefixed message, or `None` over [`MAX_MESSAGE`].
fn frame(body: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|n| u64::from(*n) <= MAX_MESSAGE)?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Some(out)
}

/// Arms the CPU limit for one request: this process may use [`BUDGET`]
/// (rounded up, plus a second) more CPU time than it has used so far.
/// Re-armed before every request, so a long-lived worker gets the same
/// bound for each — and it holds even if stella is gone and nobody is
/// left to kill the worker at the wall-clock budget.
fn arm_cpu_limit() -> nix::Result<()> {
    use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};
    let usage = getrusage(UsageWho::RUSAGE_SELF)?;
    let used = usage.user_time().tv_sec() + usage.system_time().tv_sec();
    let (_, hard) = getrlimit(Resource::RLIMIT_CPU)?;
    let soft = (u64::try_from(used).unwrap_or(0) + BUDGET.as_secs() + 1).min(hard);
    setrlimit(Resource::RLIMIT_CPU, soft, hard)
}

/// Whether this process's peak resident memory passed [`RETIRE_RSS`].
fn grown() -> bool {
    use nix::sys::resource::{UsageWho, getrusage};
    // Linux reports the peak in KiB.
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| u64::try_from(u.max_rss()).unwrap_or(0) << 10 > RETIRE_RSS)
        .unwrap_or(true)
}

/// The evaluator process (a long-lived worker): caps its own address
/// space, then answers length-prefixed requests on stdin with
/// length-prefixed answers on stdout, one at a time, each in a fresh
/// engine, under a CPU limit armed per request. It exits when stdin
/// closes (stella is done, or gone). An allocation over the cap aborts
/// this process only.
pub fn child_main() -> u8 {
    use nix::sys::resource::{Resource, setrlimit};
    if setrlimit(Resource::RLIMIT_AS, MEMORY_LIMIT, MEMORY_LIMIT).is_err() {
        eprintln!("error: cannot limit the policy evaluator");
        return 1;
    }
    let mut input = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    loop {
        // A request is two messages: the modules (sent while stella still
        // computes the other gates, so loading overlaps that work), then
        // the input. The engine lives for this request only.
        let raw = match read_frame(&mut input) {
            Ok(Some(raw)) => raw,
            Ok(None) => return 0,
            Err(_) => return 1,
        };
        if arm_cpu_limit().is_err() {
            eprintln!("error: cannot limit the policy evaluator");
            return 1;
        }
        let loaded = match serde_json::from_slice::<Load>(&raw) {
            Ok(req) => load(&req.modules, req.now_ns),
            Err(e) => Err(Reply::Failed(format!("bad evaluator request: {e}"))),
        };
        drop(raw);
        let raw = match read_frame(&mut input) {
            Ok(Some(raw)) => raw,
            Ok(None) => return 0,
            Err(_) => return 1,
        };
        let reply = match loaded {
            Ok(engine) => decide_loaded(
                engine,
                std::str::from_utf8(&raw)
                    .map_err(|e| e.to_string())
                    .and_then(|text| Value::from_json_str(text).map_err(|e| e.to_string())),
            ),
            Err(reply) => reply,
        };
        drop(raw);
        let answer = Answer {
            reply,
            retire: grown(),
        };
        let Some(msg) = serde_json::to_vec(&answer).ok().and_then(|b| frame(&b)) else {
            return 1;
        };
        if out.write_all(&msg).and_then(|()| out.flush()).is_err() {
            return 1;
        }
    }
}

/// One running evaluator process. The caller writes the request and reads
/// the answer itself (no hand-off to other threads on the way); a watchdog
/// thread kills the process if that takes longer than [`BUDGET`], which
/// ends a blocked write or read at once.
struct Worker {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: std::process::ChildStdout,
    watch: std::sync::Arc<Watch>,
}

#[derive(Default)]
struct Watch {
    state: std::sync::Mutex<WatchState>,
    wake: std::sync::Condvar,
}

#[derive(Default)]
struct WatchState {
    /// The last deadline armed.
    deadline: Option<std::time::Instant>,
    /// The caller is writing or reading under that deadline.
    busy: bool,
    /// The watchdog waits without a timeout: arming must wake it. (Else it
    /// is asleep until a deadline, and needs no wake-up: a request that
    /// follows another does not pay for one.)
    parked: bool,
    /// The watchdog killed the process.
    fired: bool,
    /// The process is being reaped: its pid must not be signalled again.
    closed: bool,
}

impl Watch {
    fn lock(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn arm(&self) {
        let mut st = self.lock();
        st.deadline = Some(std::time::Instant::now() + BUDGET);
        st.busy = true;
        if std::mem::take(&mut st.parked) {
            drop(st);
            self.wake.notify_one();
        }
    }

    /// Whether the watchdog fired.
    fn disarm(&self) -> bool {
        let mut st = self.lock();
        st.busy = false;
        st.fired
    }

    fn watch(&self, pid: nix::unistd::Pid) {
        let mut st = self.lock();
        loop {
            if st.closed {
                return;
            }
            match st.deadline.filter(|_| st.busy) {
                None => {
                    st.parked = true;
                    st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                Some(d) => {
                    let now = std::time::Instant::now();
                    if now >= d {
                        // Under the lock, before `closed`: the pid is
                        // still this unreaped child.
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                        st.fired = true;
                        st.busy = false;
                    } else {
                        st = self
                            .wake
                            .wait_timeout(st, d - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                }
            }
        }
    }
}

impl Worker {
    fn spawn(program: &std::path::Path) -> Result<Worker, String> {
        let failed = |e: &dyn std::fmt::Display| {
            format!(
                "cannot start the policy evaluator for {}: {e}",
                program.display()
            )
        };
        let mut child = evaluator_command(program).spawn().map_err(|e| failed(&e))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(&"no pipes"));
        };
        let watch = std::sync::Arc::new(Watch::default());
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let watched = std::sync::Arc::clone(&watch);
        let thread = std::thread::Builder::new()
            .name("policy-eval-watch".into())
            .spawn(move || watched.watch(pid));
        let mut worker = Worker {
            child,
            stdin: Some(stdin),
            stdout,
            watch,
        };
        match thread {
            Ok(_) => Ok(worker),
            Err(e) => {
                worker.stop();
                Err(failed(&e))
            }
        }
    }

    /// Whether the process has ended (reaping it if so).
    fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process and reaps it: no zombie is left behind.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.watch.lock().closed = true;
        self.watch.wake.notify_one();
        self.stdin = None;
        // A process already exiting keeps the status it is exiting with.
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    /// Writes `value` as one message, under the watchdog. `Ok(false)`: the
    /// watchdog had to kill the worker.
    fn send(&mut self, value: &impl Serialize) -> Result<bool, Reply> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Reply::Failed(format!("cannot encode the evaluator request: {e}")))?;
        let msg = frame(&body).ok_or_else(|| {
            Reply::Failed(format!(
                "the policy request is over the {} MiB limit",
                MAX_MESSAGE >> 20
            ))
        })?;
        self.watch.arm();
        // A worker that died closes its pipes: the answer says why.
        if let Some(stdin) = &mut self.stdin {
            let _ = stdin.write_all(&msg).and_then(|()| stdin.flush());
        }
        Ok(!self.watch.disarm())
    }

    /// Sends the first half of a request. `Err`: nothing was sent, or the
    /// worker did not take it within the budget (and is stopped).
    fn load(&mut self, modules: &[(String, String)], now_ns: i64) -> Result<(), Reply> {
        let delivered = self.send(&Load {
            modules: modules.to_vec(),
            now_ns,
        })?;
        if !delivered {
            self.stop();
            return Err(Reply::TimedOut);
        }
        Ok(())
    }

    /// Sends the input (the modules are loaded) and waits at most
    /// [`BUDGET`] for the answer. The worker comes back only if it may
    /// serve another request.
    fn ask(mut self, input: &serde_json::Value) -> (Reply, Option<Worker>) {
        use std::os::unix::process::ExitStatusExt;
        let body = match serde_json::to_vec(input).map(|b| frame(&b)) {
            Ok(Some(m)) => m,
            // Half a request was sent: this worker cannot serve another.
            Ok(None) => {
                return (
                    Reply::Failed(format!(
                        "the policy input is over the {} MiB limit",
                        MAX_MESSAGE >> 20
                    )),
                    None,
                );
            }
            Err(e) => {
                return (
                    Reply::Failed(format!("cannot encode the policy input: {e}")),
                    None,
                );
            }
        };
        self.watch.arm();
        if let Some(stdin) = &mut self.stdin {
            let _ = stdin.write_all(&body).and_then(|()| stdin.flush());
        }
        let read = read_frame(&mut self.stdout);
        let fired = self.watch.disarm();
        let answer = match read {
            Ok(Some(bytes)) if !fired => bytes,
            _ => {
                let status = self.stop();
                let reply = if fired {
                    Reply::TimedOut
                } else {
                    match status {
                        Some(status) => match status.signal() {
                            Some(sig) if sig == nix::sys::signal::Signal::SIGXCPU as i32 => {
                                Reply::TimedOut
                            }
                            // Rust aborts when an allocation fails, and
                            // allocations fail at the address-space cap.
                            Some(sig) if sig == nix::sys::signal::Signal::SIGABRT as i32 => {
                                Reply::OutOfMemory
                            }
                            Some(sig) => {
                                Reply::Failed(format!("the policy evaluator died (signal {sig})"))
                            }
                            None => {
                                Reply::Failed(format!("the policy evaluator failed ({status})"))
                            }
                        },
                        None => Reply::Failed("the policy evaluator vanished".into()),
                    }
                };
                return (reply, None);
            }
        };
        match serde_json::from_slice::<Answer>(&answer) {
            Ok(Answer { reply, retire }) => (reply, (!retire).then_some(self)),
            Err(e) => {
                self.stop();
                (
                    Reply::Failed(format!("unreadable evaluator reply: {e}")),
                    None,
                )
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Workers waiting for a request. Evaluations take one (or start one) and
/// put it back when done, so one caller at a time (the CLI) always reuses
/// the same worker and concurrent callers (the engine's blocking tasks)
/// each get their own.
static IDLE: std::sync::Mutex<Vec<Worker>> = std::sync::Mutex::new(Vec::new());

/// The most workers kept waiting; more are stopped when put back.
const MAX_IDLE: usize = 2;

fn idle() -> std::sync::MutexGuard<'static, Vec<Worker>> {
    IDLE.lock().unwrap_or_else(|e| e.into_inner())
}

fn take_worker(program: &std::path::Path) -> Result<Worker, String> {
    loop {
        let Some(mut w) = idle().pop() else {
            return Worker::spawn(program);
        };
        // One that died while waiting (killed from outside) is reaped.
        if !w.has_exited() {
            return Ok(w);
        }
    }
}

fn put_back(mut w: Worker) {
    if w.has_exited() {
        return;
    }
    let mut idle = idle();
    if idle.len() < MAX_IDLE {
        idle.push(w);
    }
}

/// Stops every waiting worker and reaps it. The binary calls this before
/// it exits; a worker whose stella is gone without it exits anyway when
/// its stdin closes.
pub fn shutdown() {
    let workers = std::mem::take(&mut *idle());
    drop(workers);
}

/// The process ids of the waiting workers (for tests).
#[doc(hidden)]
pub fn idle_workers() -> Vec<u32> {
    idle().iter().map(|w| w.child.id()).collect()
}

/// A worker taken ahead of its request (started if none was waiting),
/// and, once [`start_for`] sent them, the modules it is loading: both
/// overlap the other gates' work. Unused, it goes back (or, loaded, is
/// stopped).
pub struct Evaluator {
    worker: Result<Worker, Reply>,
    loaded: Option<(Vec<(String, String)>, i64)>,
}

impl Drop for Evaluator {
    fn drop(&mut self) {
        if let Ok(w) = std::mem::replace(&mut self.worker, Err(Reply::TimedOut))
            && self.loaded.is_none()
        {
            put_back(w);
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

/// Takes a worker if policies are evaluated in a child process.
pub fn start() -> Option<Evaluator> {
    EVALUATOR.get().map(|program| Evaluator {
        worker: take_worker(program).map_err(Reply::Failed),
        loaded: None,
    })
}

/// Takes a worker and has it load `inputs`' policy modules while the
/// caller computes the other gates (see [`evaluate_started`]).
pub fn start_for(inputs: &GateInputs) -> Option<Evaluator> {
    let mut evaluator = start()?;
    if let Ok(w) = &mut evaluator.worker {
        let modules: Vec<(String, String)> = inputs
            .policies
            .iter()
            .map(|m| (m.path.clone(), m.source.clone()))
            .collect();
        let now_ns = inputs.now.timestamp_nanos_opt().unwrap_or(i64::MAX);
        match w.load(&modules, now_ns) {
            Ok(()) => evaluator.loaded = Some((modules, now_ns)),
            Err(reply @ Reply::TimedOut) => evaluator.worker = Err(reply),
            // Nothing sent (too large): sent again, and refused, later.
            Err(_) => {}
        }
    }
    Some(evaluator)
}

fn evaluate_in_child(mut evaluator: Evaluator, req: &Request) -> Reply {
    let loaded = evaluator.loaded.take();
    let mut worker = match std::mem::replace(&mut evaluator.worker, Err(Reply::TimedOut)) {
        Ok(w) => w,
        Err(reply) => return reply,
    };
    let ready = loaded
        .as_ref()
        .is_some_and(|(m, n)| *m == req.modules && *n == req.now_ns);
    if !ready {
        if loaded.is_some() {
            // Loaded with other modules: that worker is spent.
            drop(worker);
            worker = match EVALUATOR.get().map(|p| take_worker(p)) {
                Some(Ok(w)) => w,
                Some(Err(e)) => return Reply::Failed(e),
                None => return evaluate_here(req),
            };
        }
        if let Err(reply) = worker.load(&req.modules, req.now_ns) {
            // Unless it was stopped, the worker can serve another request.
            put_back(worker);
            return reply;
        }
    }
    let (reply, worker) = worker.ask(&req.input);
    if let Some(w) = worker {
        put_back(w);
    }
    reply
}

fn run(req: &Request, evaluator: Option<Evaluator>) -> Reply {
    match evaluator {
        Some(e) => evaluate_in_child(e, req),
        None => evaluate_here(req),
    }
}

/// The deny and the warn messages.
pub type Messages = (Vec<String>, Vec<String>);

/// The deny and warn messages of a reply, or the gate's summary and
/// reasons for failing closed.
fn judge(reply: Reply) -> Result<Messages, (String, Vec<String>)> {
    let over_time = || {
        format!(
            "policy evaluation did not finish within {}s",
            BUDGET.as_secs()
        )
    };
    let over_memory = || {
        format!(
            "policy evaluation exceeded the {} MiB memory limit",
            MEMORY_LIMIT >> 20
        )
    };
    match reply {
        Reply::Messages { deny, warn } => Ok((deny, warn)),
        Reply::Compile(e) => Err((
            "a policy module does not compile".into(),
            e.lines().map(String::from).collect(),
        )),
        Reply::TimedOut => Err((
            over_time(),
            vec![format!("stopped after {} s", BUDGET.as_secs())],
        )),
        Reply::OutOfMemory => Err((
            over_memory(),
            vec!["an allocation over the limit stopped the evaluator".into()],
        )),
        Reply::Failed(e) => {
            let summary = if e.contains("time limit")
                || e.contains("execution exceeded")
                || e.contains("timed out")
            {
                over_time()
            } else if e.contains("memory limit") {
                over_memory()
            } else {
                "policy evaluation failed".into()
            };
            Err((summary, vec![e]))
        }
    }
}

/// Evaluates `modules` against `input` exactly as the gate does (in a
/// worker if isolated, see [`isolate_with`]): the deny and warn messages,
/// or the summary the gate would fail with.
pub fn decide(
    modules: &[super::PolicyModule],
    input: serde_json::Value,
    now_ns: i64,
) -> Result<Messages, String> {
    let request = Request {
        modules: modules
            .iter()
            .map(|m| (m.path.clone(), m.source.clone()))
            .collect(),
        input,
        now_ns,
    };
    judge(run(&request, start())).map_err(|(summary, _)| summary)
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
    let (deny, warn) = match judge(run(&request, evaluator)) {
        Ok(messages) => messages,
        Err((summary, reasons)) => return fail(summary, reasons),
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
            worker: Worker::spawn(program).map_err(Reply::Failed),
            loaded: None,
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
    fn a_frame_reads_back_and_an_oversized_length_is_refused() {
        let msg = frame(b"hello").unwrap();
        let mut r = &msg[..];
        assert_eq!(read_frame(&mut r).unwrap().as_deref(), Some(&b"hello"[..]));
        assert!(read_frame(&mut r).unwrap().is_none(), "clean end");
        let huge = ((MAX_MESSAGE + 1) as u32).to_be_bytes();
        let err = read_frame(&mut &huge[..]).unwrap_err();
        assert!(err.to_string().contains("over the"), "{err}");
        // A message cut short is an error, not a clean end.
        let mut cut = &msg[..6];
        assert!(read_frame(&mut cut).is_err());
    }

    #[test]
    fn a_worker_that_closes_its_output_without_answering_is_reaped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("quits");
        std::fs::write(&program, "#!/bin/sh\nexit 7\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let worker = Worker::spawn(&program).unwrap();
        let pid = nix::unistd::Pid::from_raw(worker.child.id() as i32);
        let mut worker = worker;
        worker.load(&request().modules, 0).unwrap();
        let (reply, back) = worker.ask(&request().input);
        assert!(back.is_none(), "a dead worker is not reused");
        match reply {
            Reply::Failed(e) => assert!(e.contains("exit status: 7"), "{e}"),
            other => panic!("{other:?}"),
        }
        // Reaped: no such child any more (not a zombie).
        let waited = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        assert_eq!(waited, Err(nix::errno::Errno::ECHILD));
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
