//! One promotion's workflow run, persisted step by step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::builtins::StellaBuiltins;
use super::event::{EventKind, Sink};
use crate::domain::graph::StepGraph;
use crate::domain::{Digest, OperatorRequest};
use crate::store::{Answer, RequestSubject};
use crate::workflow::executor::{Control, ExecEvent, StepState, execute};
use crate::workflow::validate::{Action, Condition, Step, Workflow};

/// What the run did, for the capsule.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: i64,
    pub ok: bool,
    /// The first failure, for the capsule's reason.
    pub failure: Option<String>,
    /// Each step's log as an evidence blob: (step, digest).
    pub logs: Vec<(String, Digest)>,
    pub states: BTreeMap<String, StepState>,
    /// The operator's abort request (from another process) that cancelled
    /// the run: answered with the abort's capsule once it is sealed
    /// (`answer_left`).
    pub abort_request: Option<i64>,
}

/// The workflow when an environment names none: deploy, and that is all.
pub fn default_workflow() -> Workflow {
    Workflow {
        steps: vec![Step {
            id: "deploy".into(),
            action: Action::Builtin {
                name: "deploy".into(),
                with: BTreeMap::new(),
            },
            needs: vec![],
            timeout: None,
            retries: 0,
            condition: Condition::Success,
            continue_on_error: false,
            source: "(default)".into(),
        }],
        layers: vec![vec!["deploy".into()]],
        critical_path: vec!["deploy".into()],
    }
}

/// A workflow's step graph and critical path, as a run records it; the
/// critical path is the one `workflow::validate` computed.
pub fn step_graph(workflow: &Workflow) -> StepGraph {
    StepGraph {
        steps: workflow
            .steps
            .iter()
            .map(|s| (s.id.clone(), s.needs.clone()))
            .collect(),
        critical_path: workflow.critical_path.clone(),
    }
}

/// Runs `workflow` for a begun promotion, writing each transition to the
/// store before sending its event to `sink`.
pub async fn run_promotion_workflow(
    b: StellaBuiltins,
    workflow: &Workflow,
    promotion_id: i64,
    parallel: usize,
    control: Control,
    sink: &Sink,
) -> Result<RunReport, crate::store::StoreError> {
    let mut store = b.workspace.open_store()?;
    let run_id = store.create_run(promotion_id)?;
    // The graph it runs, kept with the run: drawn later from this record,
    // not from a template that may have changed since.
    store.set_run_graph(run_id, &step_graph(workflow))?;
    let cas = b.workspace.evidence();
    let vars = BTreeMap::from([
        ("release.app".to_owned(), b.app.clone()),
        ("release.digest".to_owned(), b.digest.to_string()),
        ("release.tag".to_owned(), b.tag.clone().unwrap_or_default()),
        ("env.name".to_owned(), b.environment.clone()),
    ]);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut logs = Vec::new();
    let mut failure: Option<String> = None;
    let mut store_error = None;
    let subject = RequestSubject::Run {
        environment: b.environment.clone(),
        promotion_id,
    };
    let exec_control = control.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let exec = async {
        let o = execute(
            workflow,
            vars,
            Some(b.config.root.clone()),
            Arc::new(b.clone()),
            parallel,
            exec_control,
            tx,
        )
        .await;
        let _ = stop.send(());
        o
    };
    // Operators' requests from any process, taken beside the executor.
    let requests = take_requests(&b.workspace, &subject, &control, sink, stopped);
    let persist = async {
        while let Some(ev) = rx.recv().await {
            let written = match &ev {
                ExecEvent::Started { step, attempt } => store.step_started(run_id, step, *attempt),
                // Lines are durable with the whole log, when the step ends.
                ExecEvent::Log { .. } => Ok(()),
                ExecEvent::Finished {
                    step,
                    state,
                    attempts,
                    log,
                    error,
                    ..
                } => {
                    let digest = if log.is_empty() {
                        None
                    } else {
                        cas.put(log.as_bytes()).ok()
                    };
                    if let Some(d) = &digest {
                        logs.push((step.clone(), d.clone()));
                    }
                    if *state == StepState::Failed && failure.is_none() {
                        failure = Some(format!(
                            "step `{step}` failed: {}",
                            error.clone().unwrap_or_default()
                        ));
                    }
                    store.step_finished(
                        run_id,
                        step,
                        *attempts,
                        *state,
                        digest.as_ref().map(|d| d.to_string()).as_deref(),
                    )
                }
            };
            let changes = match &ev {
                ExecEvent::Finished { changes, .. } => changes.clone(),
                _ => Vec::new(),
            };
            match written {
                Ok(()) => sink.emit(match ev {
                    ExecEvent::Started { step, attempt } => EventKind::StepStarted {
                        promotion_id,
                        step,
                        attempt,
                    },
                    ExecEvent::Log { step, line } => EventKind::StepLog {
                        promotion_id,
                        step,
                        line,
                    },
                    ExecEvent::Finished {
                        step,
                        state,
                        attempts,
                        duration,
                        error,
                        ..
                    } => EventKind::StepFinished {
                        promotion_id,
                        step,
                        state,
                        attempts,
                        duration,
                        error,
                    },
                }),
                Err(e) => {
                    store_error = Some(e);
                    break;
                }
            }
            for detail in changes {
                sink.emit(EventKind::TargetSwitched {
                    promotion_id,
                    detail,
                });
            }
        }
    };
    let (outcome, (), abort_request) = tokio::join!(exec, persist, requests);
    if let Some(e) = store_error {
        return Err(e);
    }
    store.finish_run(
        run_id,
        if outcome.ok {
            crate::domain::RunState::Succeeded
        } else {
            crate::domain::RunState::Failed
        },
    )?;
    Ok(RunReport {
        run_id,
        ok: outcome.ok,
        failure,
        logs,
        states: outcome.states,
        abort_request,
    })
}

/// Takes the run's operator requests (written by any process) every
/// `steer::POLL` until the run ends: a pause or resume is written and
/// applied, answered and reported at once; an abort cancels the run
/// (running steps killed, targets restored, the abort sealed as today)
/// and is answered with its capsule by `answer_left`. Returns that
/// abort's request.
async fn take_requests(
    ws: &crate::workspace::Workspace,
    subject: &RequestSubject,
    control: &Control,
    sink: &Sink,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) -> Option<i64> {
    let RequestSubject::Run { promotion_id, .. } = subject else {
        return None;
    };
    let promotion_id = *promotion_id;
    let mut store = match ws.open_store() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("promotion #{promotion_id}: cannot look for requests: {e}");
            return None;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stopped => return None,
            () = tokio::time::sleep(super::steer::POLL) => {}
        }
        loop {
            let row = match store.next_request(subject) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("promotion #{promotion_id}: reading requests: {e}");
                    break;
                }
            };
            let (answer, event) = match row.request {
                OperatorRequest::Abort => {
                    control.cancel();
                    sink.emit(EventKind::Aborting { promotion_id });
                    return Some(row.id);
                }
                OperatorRequest::Pause | OperatorRequest::Resume => {
                    let pause = row.request == OperatorRequest::Pause;
                    match store.set_run_paused(promotion_id, pause) {
                        Ok(()) => {
                            if pause {
                                control.pause();
                            } else {
                                control.resume();
                            }
                            (
                                Answer::Done { capsule_id: None },
                                Some(if pause {
                                    EventKind::Paused { promotion_id }
                                } else {
                                    EventKind::Resumed { promotion_id }
                                }),
                            )
                        }
                        Err(e) => (Answer::Failed { error: e.to_string() }, None),
                    }
                }
                OperatorRequest::PromoteNow => (
                    Answer::Failed {
                        error: "a workflow run is paused, resumed or aborted; promote-now is a canary's".into(),
                    },
                    None,
                ),
            };
            if let Err(e) = store.answer_request(row.id, &answer, false) {
                tracing::warn!(
                    "promotion #{promotion_id}: answering request #{}: {e}",
                    row.id
                );
                break;
            }
            if let Some(ev) = event {
                sink.emit(ev);
            }
        }
    }
}

/// After a promotion's decision is sealed: answers the abort request that
/// stopped it with the capsule, and any request still waiting with why it
/// was not taken.
pub fn answer_left(
    ws: &crate::workspace::Workspace,
    environment: &str,
    promotion_id: i64,
    abort_request: Option<i64>,
    capsule_id: Option<i64>,
) -> Result<(), crate::store::StoreError> {
    let mut store = ws.open_store()?;
    let subject = RequestSubject::Run {
        environment: environment.to_owned(),
        promotion_id,
    };
    while let Some(row) = store.next_request(&subject)? {
        let answer = if Some(row.id) == abort_request {
            Answer::Done { capsule_id }
        } else {
            Answer::Failed {
                error: format!(
                    "promotion #{promotion_id} had ended; its run took no more requests"
                ),
            }
        };
        store.answer_request(row.id, &answer, false)?;
    }
    Ok(())
}

/// `1.2s`
pub fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
