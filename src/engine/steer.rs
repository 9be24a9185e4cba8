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
use super::seal::{Gateless, environment_digest, seal_and_export};
use crate::capsule::statement::{Action, EvidenceRef};
use crate::config::Config;
use crate::domain::{Digest, OperatorRequest, PromotionState, RequestState};
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
    let Some(p) = store.promotions(None)?.into_iter().find(|p| p.id == id) else {
        return Err(EngineError::usage(format!("no promotion #{id}"))
            .hint("`stella promotion list` shows them"));
    };
    if p.state != PromotionState::Running.as_str() {
        return Err(EngineError::usage(format!(
            "promotion #{id} is not running (it is {}{})",
            p.state,
            p.outcome
                .as_deref()
                .map(|o| format!(", {o}"))
                .unwrap_or_default()
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
            let p = store.promotions(None)?.into_iter().find(|p| p.id == id);
            let still_running = p
                .as_ref()
                .is_some_and(|p| p.state == PromotionState::Running.as_str());
            match (req.request, lock, still_running) {
                (OperatorRequest::Abort, Some(lock), true) => {
                    return take_over_abort(
                        ws,
                        config,
                        &mut store,
                        p.expect("running"),
                        &lock,
                        rid,
                        &prover,
                        sink,
                    );
                }
                (what, lock, true) => {
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
                (_, _, false) => {
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

/// The owner is dead: take its lock, put the previous release back, seal
/// the abort under the interrupted promotion (the lock is released in
/// the sealing transaction), answer the request as taken over.
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
        let lines = super::deploy::put_back(store, config, &p, true)?;
        for l in &lines {
            sink.emit(EventKind::Note(l.clone()));
        }
        let env = config
            .environment(&p.environment)
            .ok_or_else(|| super::unknown_environment(&p.environment, config))?;
        let digest: Digest = p.digest.parse().map_err(EngineError::error)?;
        let record = serde_json::json!({
            "promotion": id,
            "taken_over_from_pid": dead.pid,
            "request": rid,
            "restored": lines,
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
            outcome: crate::domain::PromotionOutcome::Aborted.as_str(),
            reason: format!(
                "aborted by an operator after the process running it (pid {}) died; the previous release was put back",
                dead.pid
            ),
            requester: None,
        }
        .signed_by(prover)?;
        let sealed = seal_and_export(
            ws,
            config,
            &decision.decision(false),
            Some(id),
            |prev, id| decision.predicate(prev, id),
        )?;
        Ok::<_, EngineError>((sealed, lines))
    })();
    let (sealed, lines) = match sealed {
        Ok(s) => s,
        Err(e) => {
            // Not sealed: the promotion ends interrupted, the lock freed,
            // the request answered with why.
            store.finish_interrupted(id)?;
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
    store.answer_request(
        rid,
        &Answer::Done {
            capsule_id: Some(sealed.capsule_id),
        },
        true,
    )?;
    sink.emit(EventKind::CapsuleSealed {
        promotion_id: id,
        capsule_id: sealed.capsule_id,
        outcome: crate::domain::PromotionOutcome::Aborted.as_str().into(),
        path: sealed.path.clone(),
    });
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
