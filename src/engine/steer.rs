//! Steering a promotion's run from any process. An operator's pause,
//! resume or abort of a run this process does not own is written as a
//! request row (`store/requests.rs`); the process that owns the run polls
//! for it beside the executor (`run.rs`), acts within a second and answers
//! the row. When the owner is dead, the asker takes over: an abort takes
//! the dead holder's lock, puts the previous release back, seals the abort
//! under the interrupted promotion and answers the row `taken_over`; a
//! pause or resume of a dead run is refused, naming what to do instead.

use std::time::{Duration, Instant};

use chrono::Utc;

use super::EngineError;
use super::event::{EventKind, Sink};
use super::keys::{Asker, Prover, prove};
use super::seal::{Gateless, environment_digest, seal_step};
use crate::capsule::statement::{Action, EvidenceRef};
use crate::config::Config;
use crate::domain::{Digest, OperatorRequest, PromotionOutcome, PromotionState, RequestState};
use crate::store::{Answer, Lock, PromotionRow, RequestSubject, Store, process_alive};
use crate::workspace::Workspace;

/// How long the asker waits for the owner's answer. The owner looks every
/// `POLL` and acts at once; an abort's answer waits for its seal.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// How often a running promotion looks for requests.
pub const POLL: Duration = Duration::from_millis(200);

/// The media type of a take-over's record: whose run, from which dead
/// process, and what was put back.
pub const TAKEOVER_MEDIA_TYPE: &str = "application/vnd.stella.take-over+json";

/// An operator's hand on a run: pause, resume or abort.
#[derive(Debug, Clone)]
pub struct SteerRequest {
    pub promotion_id: i64,
    pub request: OperatorRequest,
    /// Who asks; recorded on the request row and, for a take-over, in the
    /// sealed abort.
    pub asker: Asker,
}

/// A request's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steered {
    /// The request row; `None` when this process owns the run and acted
    /// on it directly.
    pub request_id: Option<i64>,
    /// The capsule it sealed (an abort's).
    pub capsule_id: Option<i64>,
    /// The asker took the run over from its dead owner.
    pub taken_over: bool,
    /// What changed, a line each (a take-over's restores).
    pub lines: Vec<String>,
}

/// Which operator requests steer a run (promote-now is a rollout's).
fn check_request(r: OperatorRequest) -> Result<(), EngineError> {
    match r {
        OperatorRequest::Pause | OperatorRequest::Resume | OperatorRequest::Abort => Ok(()),
        OperatorRequest::PromoteNow => Err(EngineError::usage(
            "a workflow run is paused, resumed or aborted; promote-now is a canary's",
        )
        .hint("`stella rollout promote ENV` walks a canary to 100%")),
    }
}

fn running_promotion(store: &Store, id: i64) -> Result<PromotionRow, EngineError> {
    let Some(p) = store.promotion(id)? else {
        return Err(EngineError::usage(format!("no promotion #{id}"))
            .hint("`stella promotion list` shows them"));
    };
    if p.state != PromotionState::Running {
        return Err(EngineError::usage(format!(
            "promotion #{id} is not running (it is {}{})",
            p.state,
            p.outcome.map(|o| format!(", {o}")).unwrap_or_default()
        ))
        .hint(format!("`stella promotion show {id}` shows how it ended")));
    }
    if p.run_id.is_none() {
        return Err(EngineError::usage(format!(
            "promotion #{id} has no workflow run to steer (a rollback switches in one go)"
        ))
        .hint("`stella promotion list` shows the runs"));
    }
    Ok(p)
}

fn holder(store: &Store, id: i64) -> Result<Option<Lock>, EngineError> {
    Ok(store.locks()?.into_iter().find(|l| l.promotion_id == id))
}

fn dead_run(id: i64, what: OperatorRequest, pid: Option<i64>) -> EngineError {
    EngineError::error(format!(
        "promotion #{id}'s run cannot be {}: the process running it{} is gone",
        if what == OperatorRequest::Pause {
            "paused"
        } else {
            "resumed"
        },
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    ))
    .hint(format!(
        "`stella promotion abort {id}` puts the previous release back and seals the abort; `stella recover` marks it interrupted"
    ))
}

/// Steers a run owned by another process (or by none): writes the request
/// row and waits for its answer, or takes the run over when its owner is
/// dead.
pub fn steer(
    ws: &Workspace,
    config: &Config,
    req: &SteerRequest,
    sink: &Sink,
) -> Result<Steered, EngineError> {
    check_request(req.request)?;
    let id = req.promotion_id;
    let prover = prove(ws, &req.asker)?;
    let requested_by = prover.requested_by();
    let mut store = ws.open_store()?;
    let p = running_promotion(&store, id)?;
    let lock = holder(&store, id)?;
    let alive = lock.as_ref().is_some_and(|l| process_alive(l.pid));
    if !alive && req.request != OperatorRequest::Abort {
        return Err(dead_run(id, req.request, lock.map(|l| l.pid)));
    }
    let subject = RequestSubject::Run {
        environment: p.environment.clone(),
        promotion_id: id,
    };
    let owner = lock.as_ref().map(|l| l.pid);
    let rid = store.put_request(&subject, req.request, &requested_by, None)?;
    let deadline = Instant::now() + ANSWER_WITHIN;
    loop {
        let row = store
            .request(rid)?
            .ok_or_else(|| EngineError::error(format!("request #{rid} vanished")))?;
        match row.state {
            RequestState::Done => {
                // Committed by the owner: now it is shown.
                sink.emit(match req.request {
                    OperatorRequest::Pause => EventKind::Paused { promotion_id: id },
                    OperatorRequest::Resume => EventKind::Resumed { promotion_id: id },
                    _ => EventKind::Aborting { promotion_id: id },
                });
                return Ok(Steered {
                    request_id: Some(rid),
                    capsule_id: row.capsule_id,
                    taken_over: row.taken_over,
                    lines: vec![],
                });
            }
            RequestState::Failed => {
                return Err(EngineError::error(format!(
                    "promotion #{id}: {} refused: {}",
                    req.request,
                    row.error.unwrap_or_default()
                )));
            }
            RequestState::Pending => {}
        }
        let lock = holder(&store, id)?;
        if !lock.as_ref().is_some_and(|l| process_alive(l.pid)) {
            // The owner died (or finished) while we waited.
            let running = store
                .promotion(id)?
                .filter(|p| p.state == PromotionState::Running);
            match (req.request, lock, running) {
                (OperatorRequest::Abort, Some(lock), Some(p)) => {
                    return take_over_abort(ws, config, &mut store, p, &lock, rid, &prover, sink);
                }
                (what, lock, Some(_)) => {
                    let e = dead_run(id, what, lock.map(|l| l.pid));
                    store.answer_request(
                        rid,
                        &Answer::Failed {
                            error: e.message.clone(),
                        },
                        false,
                    )?;
                    return Err(e);
                }
                // It ended: its owner answers the requests it saw right
                // after sealing, so wait for that while the owner lives;
                // then say so.
                (_, _, None) => {
                    let answered = store
                        .request(rid)?
                        .is_some_and(|r| r.state != RequestState::Pending);
                    if answered || (owner.is_some_and(process_alive) && Instant::now() <= deadline)
                    {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    let e = EngineError::usage(format!(
                        "promotion #{id} ended before its run took the request"
                    ))
                    .hint(format!("`stella promotion show {id}` shows how it ended"));
                    store.answer_request(
                        rid,
                        &Answer::Failed {
                            error: e.message.clone(),
                        },
                        false,
                    )?;
                    return Err(e);
                }
            }
        }
        if Instant::now() > deadline {
            let e = EngineError::error(format!(
                "the process running promotion #{id} did not answer request #{rid} within {} s",
                ANSWER_WITHIN.as_secs()
            ))
            .hint("the request stays in the store; it is taken when that process next looks");
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The owner is dead: take its lock, seal the abort (what is put back,
/// and why) under the interrupted promotion, then put the previous
/// release back, then end the promotion `aborted` and release the lock;
/// the request is answered as taken over. Sealed before it acts: if the
/// seal fails, nothing is decided and the promotion is recovered as
/// `stella recover` would (`interrupted`, targets back).
#[allow(clippy::too_many_arguments)]
fn take_over_abort(
    ws: &Workspace,
    config: &Config,
    store: &mut Store,
    p: PromotionRow,
    dead: &Lock,
    rid: i64,
    prover: &Prover,
    sink: &Sink,
) -> Result<Steered, EngineError> {
    let id = p.id;
    let requested_by = prover.requested_by();
    if !store.take_over(dead, &requested_by)? {
        return Err(EngineError::error(format!(
            "promotion #{id} was taken over by another process first"
        ))
        .hint(format!("`stella promotion show {id}` shows how it ended")));
    }
    let sealed = (|| {
        let env = config
            .environment(&p.environment)
            .ok_or_else(|| super::unknown_environment(&p.environment, config))?;
        let digest: Digest = p.digest.parse().map_err(EngineError::error)?;
        let back_to = store
            .live_at(&p.environment, &p.app, &Utc::now())?
            .map(|l| l.digest.to_string());
        let record = serde_json::json!({
            "promotion": id,
            "taken_over_from_pid": dead.pid,
            "request": rid,
            "targets": env.targets.iter().map(|t| t.get_ref().clone()).collect::<Vec<_>>(),
            "back_to": back_to,
        });
        let record_digest = ws.evidence().put(record.to_string().as_bytes())?;
        let env_digest = environment_digest(ws, &p.environment, env)?;
        let decision = Gateless {
            action: Action::Abort,
            app: &p.app,
            digest: &digest,
            tag: p.tag.clone(),
            environment: &p.environment,
            requested_by: &requested_by,
            at: Utc::now(),
            record: EvidenceRef {
                digest: record_digest,
                media_type: TAKEOVER_MEDIA_TYPE.into(),
                kind: "take-over".into(),
            },
            env_digest: &env_digest,
            outcome: PromotionOutcome::Aborted,
            reason: format!(
                "aborted by an operator after the process running it (pid {}) died; the previous release is put back",
                dead.pid
            ),
            requester: None,
        }
        .signed_by(prover)?;
        seal_step(ws, config, &decision, id)
    })();
    let sealed = match sealed {
        Ok(s) => s,
        Err(e) => {
            // Nothing decided, so nothing sealed: recovered as `stella
            // recover` would, the request answered with why.
            let lines = super::deploy::put_back(store, config, &p, false)?;
            for l in lines {
                sink.emit(EventKind::Note(l));
            }
            store.finish_interrupted(id)?;
            let e = EngineError::error(format!(
                "the abort of promotion #{id} could not be sealed ({}); it was recovered as interrupted instead",
                e.message
            ));
            store.answer_request(
                rid,
                &Answer::Failed {
                    error: e.message.clone(),
                },
                true,
            )?;
            return Err(e);
        }
    };
    sink.emit(EventKind::CapsuleSealed {
        promotion_id: id,
        capsule_id: sealed.capsule_id,
        outcome: PromotionOutcome::Aborted,
        path: sealed.path.clone(),
    });
    // Sealed; now it acts, still under the lock.
    let lines = super::deploy::put_back(store, config, &p, true)?;
    for l in &lines {
        sink.emit(EventKind::Note(l.clone()));
    }
    store.finish_promotion(id, PromotionOutcome::Aborted)?;
    store.answer_request(
        rid,
        &Answer::Done {
            capsule_id: Some(sealed.capsule_id),
        },
        true,
    )?;
    Ok(Steered {
        request_id: Some(rid),
        capsule_id: Some(sealed.capsule_id),
        taken_over: true,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promote_now_is_not_a_run_request() {
        assert!(check_request(OperatorRequest::PromoteNow).is_err());
        for r in [
            OperatorRequest::Pause,
            OperatorRequest::Resume,
            OperatorRequest::Abort,
        ] {
            assert!(check_request(r).is_ok());
        }
    }
}
