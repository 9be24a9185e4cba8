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

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

/// What one step produced.
#[derive(Debug, Clone, Default)]
pub struct StepResult {
    pub ok: bool,
    pub outputs: BTreeMap<String, String>,
    pub log: String,
    pub error: Option<String>,
}

/// Events of a run, in the order they happen.
#[derive(Debug, Clone)]
pub enum ExecEvent {
    Started {
        step: String,
        attempt: u32,
    },
    Finished {
        step: String,
        state: StepState,
        attempts: u32,
        duration: Duration,
        log: String,
        error: Option<String>,
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
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub ok: bool,
    pub states: BTreeMap<String, StepState>,
    pub outputs: BTreeMap<String, BTreeMap<String, String>>,
    pub makespan: Duration,
}

/// `${{ … }}` replaced from `vars` (`release.digest`, …) and step outputs.
pub fn substitute(
    text: &str,
    vars: &BTreeMap<String, String>,
    outputs: &BTreeMap<String, BTreeMap<String, String>>,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    for (_, expr) in substitutions(text) {
        let Some(start) = rest.find("${{") else { break };
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        let parts: Vec<&str> = expr.split('.').collect();
        let value = match parts.as_slice() {
            ["steps", id, "outputs", key] => outputs.get(*id).and_then(|o| o.get(*key)).cloned(),
            _ => vars.get(&expr).cloned(),
        };
        out.push_str(&value.unwrap_or_default());
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
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
async fn run_script(
    script: &str,
    env: &BTreeMap<String, String>,
    vars: &BTreeMap<String, String>,
    workdir: Option<&std::path::Path>,
    timeout: Option<Duration>,
    mut cancel: watch::Receiver<bool>,
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
    let (mut so, mut se) = (
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    let read_out = tokio::spawn(async move {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b).await;
        b
    });
    let read_err = tokio::spawn(async move {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b).await;
        b
    });
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
        },
        None if *cancel.borrow() => StepResult {
            ok: false,
            outputs,
            log,
            error: Some("cancelled".into()),
        },
        None => StepResult {
            ok: false,
            outputs,
            log,
            error: Some(format!(
                "timed out after {}s; its process group was killed",
                limit.as_secs()
            )),
        },
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) ^ (Instant::now().elapsed().subsec_nanos() as u64)
}

#[allow(clippy::too_many_arguments)]
async fn run_step(
    step: Step,
    vars: BTreeMap<String, String>,
    outputs: BTreeMap<String, BTreeMap<String, String>>,
    workdir: Option<std::path::PathBuf>,
    builtins: Arc<dyn Builtins>,
    cancel: watch::Receiver<bool>,
    events: mpsc::UnboundedSender<ExecEvent>,
) -> (String, StepState, StepResult, u32, Duration) {
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let _ = events.send(ExecEvent::Started {
            step: step.id.clone(),
            attempt,
        });
        let result = match &step.action {
            Action::Run { script, env } => {
                let script = substitute(script, &vars, &outputs);
                run_script(
                    &script,
                    env,
                    &vars,
                    workdir.as_deref(),
                    step.timeout,
                    cancel.clone(),
                )
                .await
            }
            Action::Builtin { name, with } => {
                let with: BTreeMap<String, String> = with
                    .iter()
                    .map(|(k, v)| {
                        let s = match v {
                            toml::Value::String(s) => substitute(s, &vars, &outputs),
                            other => other.to_string(),
                        };
                        (k.clone(), s)
                    })
                    .collect();
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
                match step.timeout {
                    Some(t) => tokio::select! {
                        r = tokio::time::timeout(t, fut) => r.unwrap_or_else(|_| StepResult { ok: false, error: Some(format!("timed out after {}s", t.as_secs())), ..Default::default() }),
                        _ = until_cancelled(&mut c) => StepResult { ok: false, error: Some("cancelled".into()), ..Default::default() },
                    },
                    None => tokio::select! {
                        r = fut => r,
                        _ = until_cancelled(&mut c) => StepResult { ok: false, error: Some("cancelled".into()), ..Default::default() },
                    },
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
            return (step.id.clone(), state, result, attempt, started.elapsed());
        }
        tokio::time::sleep(backoff(attempt - 1)).await;
    }
}

/// Runs `workflow` to the end (or until cancelled). `run` steps start in
/// `workdir` (the workspace root, for promotions).
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
    let mut states: BTreeMap<String, StepState> = workflow
        .steps
        .iter()
        .map(|s| (s.id.clone(), StepState::Pending))
        .collect();
    // "good for dependents": succeeded, or failed with continue_on_error.
    let mut good: BTreeMap<String, bool> = BTreeMap::new();
    let mut outputs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut running = JoinSet::new();
    let mut paused = control.paused.subscribe();
    let cancel = control.cancel.subscribe();
    loop {
        let cancelled = *cancel.borrow();
        // Start what is ready, unless paused or cancelled.
        if !cancelled && !*paused.borrow() {
            for step in &workflow.steps {
                if running.len() >= parallel {
                    break;
                }
                if states[&step.id] != StepState::Pending {
                    continue;
                }
                let needs: Vec<StepState> = step.needs.iter().map(|n| states[n]).collect();
                if needs
                    .iter()
                    .any(|s| matches!(s, StepState::Pending | StepState::Running))
                {
                    continue;
                }
                let all_good = step
                    .needs
                    .iter()
                    .all(|n| good.get(n).copied().unwrap_or(false));
                let run = match step.condition {
                    Condition::Success => all_good,
                    Condition::Failure => !all_good,
                    Condition::Always => true,
                };
                if !run {
                    states.insert(step.id.clone(), StepState::Skipped);
                    good.insert(step.id.clone(), false);
                    let _ = events.send(ExecEvent::Finished {
                        step: step.id.clone(),
                        state: StepState::Skipped,
                        attempts: 0,
                        duration: Duration::ZERO,
                        log: String::new(),
                        error: None,
                    });
                    continue;
                }
                states.insert(step.id.clone(), StepState::Running);
                running.spawn(run_step(
                    step.clone(),
                    vars.clone(),
                    outputs.clone(),
                    workdir.clone(),
                    builtins.clone(),
                    cancel.clone(),
                    events.clone(),
                ));
            }
        }
        if running.is_empty() {
            let pending = states.values().any(|s| *s == StepState::Pending);
            if !pending {
                break;
            }
            if cancelled {
                for (id, s) in states.iter_mut() {
                    if *s == StepState::Pending {
                        *s = StepState::Cancelled;
                        let _ = events.send(ExecEvent::Finished {
                            step: id.clone(),
                            state: StepState::Cancelled,
                            attempts: 0,
                            duration: Duration::ZERO,
                            log: String::new(),
                            error: None,
                        });
                    }
                }
                break;
            }
            // Paused with nothing running: wait for resume or cancel.
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
                let Some(Ok((id, state, result, attempts, duration))) = joined else { continue };
                let step = workflow.steps.iter().find(|s| s.id == id).expect("ran a known step");
                good.insert(id.clone(), state == StepState::Succeeded || (state == StepState::Failed && step.continue_on_error));
                outputs.insert(id.clone(), result.outputs.clone());
                states.insert(id.clone(), state);
                let _ = events.send(ExecEvent::Finished { step: id, state, attempts, duration, log: result.log, error: result.error });
            }
            _ = c.wait_for(|x| *x), if !cancelled => {}
            _ = p.changed() => {}
        }
    }
    let ok = workflow.steps.iter().all(|s| match states[&s.id] {
        StepState::Succeeded | StepState::Skipped => true,
        StepState::Failed => s.continue_on_error,
        _ => false,
    });
    RunOutcome {
        ok,
        states,
        outputs,
        makespan: started.elapsed(),
    }
}
