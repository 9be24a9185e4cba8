//! Running a validated workflow on tokio: ready steps run in parallel up to
//! a limit, so a run's makespan tracks its critical path. Steps honour
//! `if`, `timeout` (a script that overruns is killed with its whole process
//! group), `retries` (with backoff) and `continue_on_error`; a run can be
//! cancelled, and paused between steps.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::validate::{Action, Condition, Step, Workflow, substitutions};

/// A step's state: one type with the store's (`domain::StepState`).
pub use crate::domain::StepState;

/// What one step produced.
#[derive(Debug, Clone, Default)]
pub struct StepResult {
    pub ok: bool,
    pub outputs: BTreeMap<String, String>,
    pub log: String,
    pub error: Option<String>,
    /// What the step changed outside stella, a line each (a target that
    /// now serves the release), reported after the step's end.
    pub changes: Vec<String>,
}

/// Events of a run, in the order they happen.
#[derive(Debug, Clone)]
pub enum ExecEvent {
    Started {
        step: String,
        attempt: u32,
    },
    /// One line of a step's output: streamed from scripts as they print,
    /// a builtin's when it ends. `Finished` still carries the whole log.
    Log {
        step: String,
        line: String,
    },
    Finished {
        step: String,
        state: StepState,
        attempts: u32,
        duration: Duration,
        log: String,
        error: Option<String>,
        changes: Vec<String>,
    },
}

/// Runs the builtins a workflow `uses` (resolve, gate, deploy, …); the
/// engine provides them. `wait` runs here.
pub trait Builtins: Send + Sync {
    fn run<'a>(
        &'a self,
        name: &'a str,
        with: &'a BTreeMap<String, String>,
        vars: &'a BTreeMap<String, String>,
    ) -> Pin<Box<dyn Future<Output = StepResult> + Send + 'a>>;
}

/// Controls for a running workflow.
#[derive(Clone)]
pub struct Control {
    cancel: watch::Sender<bool>,
    paused: watch::Sender<bool>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            cancel: watch::channel(false).0,
            paused: watch::channel(false).0,
        }
    }
}

impl Control {
    /// Stops the run: running steps are killed, pending ones cancelled.
    pub fn cancel(&self) {
        self.cancel.send_replace(true);
    }
    /// Holds new steps from starting; running ones finish.
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }
    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }
    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub ok: bool,
    pub states: BTreeMap<String, StepState>,
    pub outputs: BTreeMap<String, BTreeMap<String, String>>,
    pub makespan: Duration,
}

/// The value of one `${{ expr }}`: a context variable or a step output.
fn lookup(
    expr: &str,
    vars: &BTreeMap<String, String>,
    outputs: &BTreeMap<String, BTreeMap<String, String>>,
) -> String {
    let parts: Vec<&str> = expr.split('.').collect();
    let value = match parts.as_slice() {
        ["steps", id, "outputs", key] => outputs.get(*id).and_then(|o| o.get(*key)).cloned(),
        _ => vars.get(expr).cloned(),
    };
    value.unwrap_or_default()
}

/// Replaces each `${{ … }}` in `text` by what `with` makes of it, given
/// the text before it.
fn replace_each(text: &str, mut with: impl FnMut(&str, &str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    for (_, expr) in substitutions(text) {
        let Some(start) = rest.find("${{") else { break };
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        let replacement = with(&out, &expr);
        out.push_str(&replacement);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

/// Where the end of a bash text stands: outside quotes, in `'…'` or in
/// `"…"`. An approximation (no heredocs, no nesting in `$(…)`): it only
/// picks the quoting that keeps a value whole; a value is never code in
/// any of the three.
#[derive(Clone, Copy, PartialEq)]
enum Quoting {
    None,
    Single,
    Double,
}

fn quoting_at_end(text: &str) -> Quoting {
    let mut q = Quoting::None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        q = match (q, c) {
            (Quoting::None | Quoting::Double, '\\') => {
                chars.next();
                q
            }
            (Quoting::None, '\'') => Quoting::Single,
            (Quoting::None, '"') => Quoting::Double,
            (Quoting::Single, '\'') | (Quoting::Double, '"') => Quoting::None,
            (q, _) => q,
        };
    }
    q
}

/// `${{ … }}` replaced from `vars` (`release.digest`, …) and step outputs:
/// for the parameters of builtins, which are data.
pub fn substitute(
    text: &str,
    vars: &BTreeMap<String, String>,
    outputs: &BTreeMap<String, BTreeMap<String, String>>,
) -> String {
    replace_each(text, |_, expr| lookup(expr, vars, outputs))
}

/// The environment variable a script reads `${{ expr }}` from:
/// `STELLA_RELEASE_DIGEST` for `release.digest`, `STELLA_STEP_META_NOTE`
/// for `steps.meta.outputs.NOTE` (upper case, anything but a letter, digit
/// or `_` becomes `_`).
pub fn variable_name(expr: &str) -> String {
    let parts: Vec<&str> = expr.split('.').collect();
    let name = match parts.as_slice() {
        ["steps", id, "outputs", key] => format!("STELLA_STEP_{id}_{key}"),
        _ => format!("STELLA_{expr}"),
    };
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// A bash script with each `${{ … }}` replaced by a reference to an
/// environment variable, never by the value itself, and the variables to
/// set: a value is data to the script, never code, whatever it holds. The
/// reference is quoted for where it stands: `"${STELLA_X}"` outside quotes,
/// `${STELLA_X}` inside `"…"`, and inside `'…'` the reference `"${STELLA_X}"`
/// itself, for the shell that later reads that text (`bash -c '…'`). Two
/// expressions that would share a variable with different values are
/// refused.
pub fn substitute_script(
    script: &str,
    vars: &BTreeMap<String, String>,
    outputs: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<(String, BTreeMap<String, String>), String> {
    let mut env: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut clash = None;
    let text = replace_each(script, |before, expr| {
        let name = variable_name(expr);
        let value = lookup(expr, vars, outputs);
        match env.get(&name) {
            Some((other, v)) if *v != value && clash.is_none() => {
                clash = Some(format!(
                    "`${{{{ {other} }}}}` and `${{{{ {expr} }}}}` would share the variable {name}; rename a step or an output"
                ));
            }
            Some(_) => {}
            None => {
                env.insert(name.clone(), (expr.to_owned(), value));
            }
        }
        match quoting_at_end(before) {
            Quoting::None => format!("\"${{{name}}}\""),
            Quoting::Double => format!("${{{name}}}"),
            // Not `'"${X}"'`: text in single quotes is often code for
            // another shell (`bash -c '…'`, `ssh host '…'`), and closing the
            // quote would paste the value into it. The reference itself is
            // left for whichever shell reads that text.
            Quoting::Single => format!("\"${{{name}}}\""),
        }
    });
    match clash {
        Some(e) => Err(e),
        None => Ok((text, env.into_iter().map(|(k, (_, v))| (k, v)).collect())),
    }
}

/// Resolves once the run is cancelled (without holding the watch's lock
/// across an await).
async fn until_cancelled(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|c| *c).await;
}

async fn resumed(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|p| !*p).await;
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempt.min(5))).min(Duration::from_secs(5))
}

/// Runs `bash -c script` in its own process group, with the context as
/// `STELLA_*` variables and `STELLA_OUTPUT` a file of `KEY=VALUE` outputs.
#[allow(clippy::too_many_arguments)]
async fn run_script(
    script: &str,
    env: &BTreeMap<String, String>,
    refs: &BTreeMap<String, String>,
    vars: &BTreeMap<String, String>,
    workdir: Option<&std::path::Path>,
    timeout: Option<Duration>,
    mut cancel: watch::Receiver<bool>,
    lines: LineSink,
) -> StepResult {
    let out_file = std::env::temp_dir().join(format!(
        "stella-output-{}-{:x}",
        std::process::id(),
        rand_suffix()
    ));
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .env("STELLA_OUTPUT", &out_file);
    if let Some(dir) = workdir {
        cmd.current_dir(dir);
    }
    for (k, v) in vars {
        cmd.env(
            format!("STELLA_{}", k.replace('.', "_").to_ascii_uppercase()),
            v,
        );
    }
    cmd.envs(env);
    // The substituted values, set last: what the script's `${{ … }}` read.
    cmd.envs(refs);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return StepResult {
                ok: false,
                error: Some(format!("cannot start bash: {e}")),
                ..Default::default()
            };
        }
    };
    let pgid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    let (so, se) = (
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    let read_out = tokio::spawn(stream_lines(so, lines.clone()));
    let read_err = tokio::spawn(stream_lines(se, lines));
    let kill_group = || {
        if let Some(pg) = pgid {
            let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
        }
    };
    let limit = timeout.unwrap_or(Duration::from_secs(u64::MAX / 4));
    let status = tokio::select! {
        s = child.wait() => s.ok(),
        _ = tokio::time::sleep(limit) => {
            kill_group();
            let _ = child.wait().await;
            None
        }
        _ = until_cancelled(&mut cancel) => {
            kill_group();
            let _ = child.wait().await;
            None
        }
    };
    // The group may hold children that outlived bash; they go too.
    kill_group();
    let mut log = String::from_utf8_lossy(&read_out.await.unwrap_or_default()).into_owned();
    log.push_str(&String::from_utf8_lossy(
        &read_err.await.unwrap_or_default(),
    ));
    let outputs = std::fs::read_to_string(&out_file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        })
        .collect();
    let _ = std::fs::remove_file(&out_file);
    match status {
        Some(s) if s.success() => StepResult {
            ok: true,
            outputs,
            log,
            error: None,
            changes: Vec::new(),
        },
        Some(s) => StepResult {
            ok: false,
            outputs,
            log,
            error: Some(format!(
                "exited with {}",
                s.code()
                    .map_or("a signal".into(), |c| format!("status {c}"))
            )),
            ..Default::default()
        },
        None if *cancel.borrow() => StepResult {
            ok: false,
            outputs,
            log,
            error: Some("cancelled".into()),
            ..Default::default()
        },
        None => StepResult {
            ok: false,
            outputs,
            log,
            error: Some(format!(
                "timed out after {}s; its process group was killed",
                limit.as_secs()
            )),
            ..Default::default()
        },
    }
}

/// Where a running step's output lines go: the step's id and the run's
/// event channel.
#[derive(Clone)]
struct LineSink {
    step: String,
    events: mpsc::UnboundedSender<ExecEvent>,
}

impl LineSink {
    fn send(&self, line: &str) {
        let _ = self.events.send(ExecEvent::Log {
            step: self.step.clone(),
            line: line.to_owned(),
        });
    }
}

/// Reads a pipe to its end, sending each complete line as it arrives;
/// returns everything read.
async fn stream_lines(mut pipe: impl tokio::io::AsyncRead + Unpin, lines: LineSink) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    let mut start = 0;
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        all.extend_from_slice(&buf[..n]);
        while let Some(nl) = all[start..].iter().position(|&b| b == b'\n') {
            lines.send(&String::from_utf8_lossy(&all[start..start + nl]));
            start += nl + 1;
        }
    }
    if start < all.len() {
        lines.send(&String::from_utf8_lossy(&all[start..]));
    }
    all
}

/// Unique within the process; the pid beside it makes it unique on the
/// machine.
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Outputs of finished steps, shared with running ones (read only to
/// substitute, so the lock is never held across an await).
type Outputs = Arc<std::sync::Mutex<BTreeMap<String, BTreeMap<String, String>>>>;

#[allow(clippy::too_many_arguments)]
async fn run_step(
    index: usize,
    step: Step,
    vars: Arc<BTreeMap<String, String>>,
    outputs: Outputs,
    workdir: Option<std::path::PathBuf>,
    builtins: Arc<dyn Builtins>,
    cancel: watch::Receiver<bool>,
    events: mpsc::UnboundedSender<ExecEvent>,
) -> (usize, StepState, StepResult, u32, Duration) {
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let _ = events.send(ExecEvent::Started {
            step: step.id.clone(),
            attempt,
        });
        let lines = LineSink {
            step: step.id.clone(),
            events: events.clone(),
        };
        let result = match &step.action {
            Action::Run { script, env } => {
                let script =
                    substitute_script(script, &vars, &outputs.lock().expect("outputs lock"));
                match script {
                    Ok((script, refs)) => {
                        run_script(
                            &script,
                            env,
                            &refs,
                            &vars,
                            workdir.as_deref(),
                            step.timeout,
                            cancel.clone(),
                            lines,
                        )
                        .await
                    }
                    Err(e) => StepResult {
                        ok: false,
                        error: Some(e),
                        ..Default::default()
                    },
                }
            }
            Action::Builtin { name, with } => {
                // `script`'s command is bash: substituted like `run`.
                let command = if name == "script" {
                    let outputs = outputs.lock().expect("outputs lock");
                    Some(match with.get("command") {
                        Some(toml::Value::String(s)) => substitute_script(s, &vars, &outputs),
                        _ => Ok((String::new(), BTreeMap::new())),
                    })
                } else {
                    None
                };
                let with: BTreeMap<String, String> = {
                    let outputs = outputs.lock().expect("outputs lock");
                    with.iter()
                        .map(|(k, v)| {
                            let s = match v {
                                toml::Value::String(s) => substitute(s, &vars, &outputs),
                                other => other.to_string(),
                            };
                            (k.clone(), s)
                        })
                        .collect()
                };
                if let Some(command) = command {
                    match command {
                        Ok((command, refs)) => {
                            run_script(
                                &command,
                                &BTreeMap::new(),
                                &refs,
                                &vars,
                                workdir.as_deref(),
                                step.timeout,
                                cancel.clone(),
                                lines,
                            )
                            .await
                        }
                        Err(e) => StepResult {
                            ok: false,
                            error: Some(e),
                            ..Default::default()
                        },
                    }
                } else {
                    let fut = async {
                        if name == "wait" {
                            let d = with
                                .get("duration")
                                .and_then(|d| crate::domain::duration::parse_duration(d).ok())
                                .unwrap_or_default();
                            tokio::time::sleep(d).await;
                            StepResult {
                                ok: true,
                                ..Default::default()
                            }
                        } else {
                            builtins.run(name, &with, &vars).await
                        }
                    };
                    let mut c = cancel.clone();
                    let r = match step.timeout {
                        Some(t) => tokio::select! {
                            r = tokio::time::timeout(t, fut) => r.unwrap_or_else(|_| StepResult { ok: false, error: Some(format!("timed out after {}s", t.as_secs())), ..Default::default() }),
                            _ = until_cancelled(&mut c) => StepResult { ok: false, error: Some("cancelled".into()), ..Default::default() },
                        },
                        None => tokio::select! {
                            r = fut => r,
                            _ = until_cancelled(&mut c) => StepResult { ok: false, error: Some("cancelled".into()), ..Default::default() },
                        },
                    };
                    for line in r.log.lines() {
                        lines.send(line);
                    }
                    r
                }
            }
        };
        let cancelled = *cancel.borrow();
        if result.ok || cancelled || attempt > step.retries {
            let state = if result.ok {
                StepState::Succeeded
            } else if cancelled {
                StepState::Cancelled
            } else {
                StepState::Failed
            };
            return (index, state, result, attempt, started.elapsed());
        }
        tokio::time::sleep(backoff(attempt - 1)).await;
    }
}

/// Runs `workflow` to the end (or until cancelled). `run` steps start in
/// `workdir` (the workspace root, for promotions).
///
/// Scheduling is by index: each step keeps a count of unfinished needs and
/// becomes ready when it reaches zero, so the engine's own work per step is
/// constant, whatever the size of the DAG.
pub async fn execute(
    workflow: &Workflow,
    vars: BTreeMap<String, String>,
    workdir: Option<std::path::PathBuf>,
    builtins: Arc<dyn Builtins>,
    parallel: usize,
    control: Control,
    events: mpsc::UnboundedSender<ExecEvent>,
) -> RunOutcome {
    let started = Instant::now();
    let parallel = parallel.max(1);
    let n = workflow.steps.len();
    let index: std::collections::HashMap<&str, usize> = workflow
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let needs: Vec<Vec<usize>> = workflow
        .steps
        .iter()
        .map(|s| {
            s.needs
                .iter()
                .filter_map(|n| index.get(n.as_str()).copied())
                .collect()
        })
        .collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ns) in needs.iter().enumerate() {
        for &j in ns {
            dependents[j].push(i);
        }
    }
    let mut remaining: Vec<usize> = needs.iter().map(Vec::len).collect();
    let mut ready: std::collections::VecDeque<usize> =
        (0..n).filter(|&i| remaining[i] == 0).collect();
    let mut states = vec![StepState::Pending; n];
    // "good for dependents": succeeded, or failed with continue_on_error.
    let mut good = vec![false; n];
    let outputs: Outputs = Arc::default();
    let vars = Arc::new(vars);
    let mut running = JoinSet::new();
    let mut paused = control.paused.subscribe();
    let cancel = control.cancel.subscribe();
    let mut done = 0;

    // A finished (or skipped) step releases its dependents.
    fn release(
        i: usize,
        dependents: &[Vec<usize>],
        remaining: &mut [usize],
        ready: &mut std::collections::VecDeque<usize>,
    ) {
        for &d in &dependents[i] {
            remaining[d] -= 1;
            if remaining[d] == 0 {
                ready.push_back(d);
            }
        }
    }

    while done < n {
        let cancelled = *cancel.borrow();
        if cancelled && running.is_empty() {
            for (i, s) in states.iter_mut().enumerate() {
                if *s == StepState::Pending {
                    *s = StepState::Cancelled;
                    let _ = events.send(ExecEvent::Finished {
                        step: workflow.steps[i].id.clone(),
                        state: StepState::Cancelled,
                        attempts: 0,
                        duration: Duration::ZERO,
                        log: String::new(),
                        error: None,
                        changes: Vec::new(),
                    });
                }
            }
            break;
        }
        // Start what is ready, unless paused or cancelled.
        // Marking the pause state seen keeps `changed()` below from waking
        // again for a change already handled.
        let is_paused = *paused.borrow_and_update();
        while !cancelled && !is_paused && running.len() < parallel {
            let Some(i) = ready.pop_front() else { break };
            let step = &workflow.steps[i];
            let all_good = needs[i].iter().all(|&j| good[j]);
            let run = match step.condition {
                Condition::Success => all_good,
                Condition::Failure => !all_good,
                Condition::Always => true,
            };
            if !run {
                states[i] = StepState::Skipped;
                done += 1;
                let _ = events.send(ExecEvent::Finished {
                    step: step.id.clone(),
                    state: StepState::Skipped,
                    attempts: 0,
                    duration: Duration::ZERO,
                    log: String::new(),
                    error: None,
                    changes: Vec::new(),
                });
                release(i, &dependents, &mut remaining, &mut ready);
                continue;
            }
            states[i] = StepState::Running;
            running.spawn(run_step(
                i,
                step.clone(),
                vars.clone(),
                outputs.clone(),
                workdir.clone(),
                builtins.clone(),
                cancel.clone(),
                events.clone(),
            ));
        }
        if running.is_empty() {
            if done >= n || (ready.is_empty() && !is_paused) {
                break;
            }
            // Paused: wait for resume or cancel.
            let mut c = cancel.clone();
            tokio::select! {
                _ = resumed(&mut paused) => {}
                _ = until_cancelled(&mut c) => {}
            }
            continue;
        }
        let mut c = cancel.clone();
        let mut p = paused.clone();
        tokio::select! {
            joined = running.join_next() => {
                let Some(Ok((i, state, result, attempts, duration))) = joined else { continue };
                let step = &workflow.steps[i];
                good[i] = state == StepState::Succeeded || (state == StepState::Failed && step.continue_on_error);
                if !result.outputs.is_empty() {
                    outputs.lock().expect("outputs lock").insert(step.id.clone(), result.outputs.clone());
                }
                states[i] = state;
                done += 1;
                let _ = events.send(ExecEvent::Finished { step: step.id.clone(), state, attempts, duration, log: result.log, error: result.error, changes: result.changes });
                release(i, &dependents, &mut remaining, &mut ready);
            }
            _ = until_cancelled(&mut c), if !cancelled => {}
            _ = p.changed() => {}
        }
    }
    let ok = workflow.steps.iter().zip(&states).all(|(s, st)| match st {
        StepState::Succeeded | StepState::Skipped => true,
        StepState::Failed => s.continue_on_error,
        _ => false,
    });
    let outputs = outputs.lock().expect("outputs lock").clone();
    RunOutcome {
        ok,
        states: workflow
            .steps
            .iter()
            .zip(states)
            .map(|(s, st)| (s.id.clone(), st))
            .collect(),
        outputs,
        makespan: started.elapsed(),
    }
}
