//! One promotion's workflow run, persisted step by step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::builtins::StellaBuiltins;
use super::event::{EventKind, Sink};
use crate::domain::Digest;
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
    let exec = execute(
        workflow,
        vars,
        Some(b.config.root.clone()),
        Arc::new(b.clone()),
        parallel,
        control,
        tx,
    );
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
    let (outcome, ()) = tokio::join!(exec, persist);
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
    })
}

/// `1.2s`
pub fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
