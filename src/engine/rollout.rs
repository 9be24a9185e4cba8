//! Operators' hands on a rollout, from any process: `request` writes a
//! signed request row and waits for the canary's owner to enact and seal
//! it — or, when the owner is dead, takes the environment's lock and the
//! rollout over and enacts it here. `consolidate` ends an A/B test on its
//! winner, under the environment's lock, sealed before traffic moves.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Config;
use crate::deploy::routed;
use crate::domain::RequestState;
use crate::domain::rollout::{AbEffect, AbInput, AbTest, Canary, Effect, Input, Reply};
use crate::domain::{AbWinner, CanaryPhase, OperatorRequest, PromotionOutcome};
use crate::store::{Answer, RequestSubject, RolloutKind, RolloutRow};
use crate::workspace::Workspace;

use super::EngineError;
use super::event::Sink;
use super::runs::Runs;
use super::seal::StepSealer;

/// An operator's request, answered.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ack {
    pub request_id: i64,
    pub request: OperatorRequest,
    pub target: String,
    /// The capsule that sealed it.
    pub capsule_id: Option<i64>,
    /// The exported capsule, relative to the workspace.
    pub capsule_path: Option<PathBuf>,
    /// This process enacted it, taking the rollout over from a dead owner.
    pub taken_over: bool,
}

/// `EngineHandle::rollout`: an operator's request on `env`'s rollout.
#[derive(Debug, Clone)]
pub struct RolloutRequest {
    pub env: String,
    pub request: OperatorRequest,
    pub asker: super::keys::Asker,
}

/// `EngineHandle::consolidate`: end `env`'s A/B test on `winner`.
#[derive(Debug, Clone)]
pub struct ConsolidateRequest {
    pub env: String,
    pub winner: AbWinner,
    pub asker: super::keys::Asker,
}

/// How long the owner has to answer before it is presumed stuck; a live
/// owner answers within its poll (250 ms) unless a weight change is under
/// way.
const OWNER_ANSWERS_WITHIN: Duration = Duration::from_secs(15);

/// Where each routed target's rollout of `env` is, from the store.
pub fn progress(ws: &Workspace, env: &str, target: &str) -> routed::Progress {
    match ws.read_store() {
        Ok(s) => super::canary::progress(&s, env, target),
        Err(_) => routed::Progress::default(),
    }
}

/// Asks the rollout under way in `env` to pause, resume, promote now or
/// abort; see the module's comment.
pub fn request(
    ws: &Workspace,
    config: &Config,
    env: &str,
    req: OperatorRequest,
    asker: &super::keys::Asker,
) -> Result<Ack, EngineError> {
    request_with(
        ws,
        config,
        env,
        req,
        asker,
        &Runs::default(),
        &Sink::discard(),
    )
}

pub(super) fn request_with(
    ws: &Workspace,
    config: &Config,
    env_name: &str,
    req: OperatorRequest,
    asker: &super::keys::Asker,
    runs: &Runs,
    sink: &Sink,
) -> Result<Ack, EngineError> {
    config
        .environment(env_name)
        .ok_or_else(|| super::unknown_environment(env_name, config))?;
    let prover = super::keys::prove(ws, asker)?;
    let requested_by = prover.requested_by();
    let mut store = ws.open_store()?;
    let Some(row) = store
        .rollouts(env_name)?
        .into_iter()
        .find(|r| r.phase.is_active())
    else {
        return Err(
            EngineError::usage(format!("no canary is running in {env_name}")).hint(format!(
                "`stella rollout status {env_name}` shows what its targets serve"
            )),
        );
    };
    let clock = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let signed = prover.sign(&crate::domain::requester::Asked {
        action: req.as_str(),
        app: &row.app,
        digest: &row.digest,
        environment: env_name,
        clock: &clock,
        also: &[],
    })?;
    let envelope = serde_json::to_vec(&signed).expect("a requester serializes");
    let subject = RequestSubject::Rollout {
        environment: env_name.to_owned(),
    };
    let id = store.put_request(&subject, req, &requested_by, Some(&envelope))?;
    let started = std::time::Instant::now();
    loop {
        if let Some(r) = store.request(id)?
            && r.state != RequestState::Pending
        {
            return ack(ws, &row, r);
        }
        let owner = store
            .rollout(env_name, &row.target)?
            .and_then(|r| r.owner_pid)
            .filter(|pid| crate::store::process_alive(*pid));
        if owner.is_none() {
            break;
        }
        if started.elapsed() > OWNER_ANSWERS_WITHIN {
            return Err(EngineError::error(format!(
                "the canary's process (pid {}) did not answer request #{id} within {}s; it stays pending",
                owner.unwrap_or_default(),
                OWNER_ANSWERS_WITHIN.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    // The owner is dead (or there is none): enact it here.
    let row = store.rollout(env_name, &row.target)?.unwrap_or(row);
    drop(store);
    match row.kind {
        RolloutKind::Ab => {
            let winner = match req {
                OperatorRequest::Abort => Some(AbWinner::A),
                _ => None,
            };
            let ab: AbTest = serde_json::from_str(&row.state).map_err(|e| {
                EngineError::error(format!("the stored A/B test is unreadable: {e}"))
            })?;
            let (_, fx) = ab.step(AbInput::Request {
                id,
                request: req,
                who: requested_by.clone(),
                now: chrono::Utc::now(),
            });
            if let (Some(w), false) = (winner, refused(&fx)) {
                let sealed = consolidate_target(ws, config, env_name, &row, w, &prover, true)?;
                ws.open_store()?.answer_request(
                    id,
                    &Answer::Done {
                        capsule_id: Some(sealed.1),
                    },
                    true,
                )?;
            } else {
                answer_refusal(ws, id, &fx)?;
            }
        }
        RolloutKind::Canary => take_over(
            ws,
            config,
            env_name,
            &row,
            id,
            req,
            &requested_by,
            asker,
            runs,
            sink,
        )?,
    }
    let r = ws
        .open_store()?
        .request(id)?
        .ok_or_else(|| EngineError::error(format!("request #{id} vanished from the store")))?;
    if r.state == RequestState::Pending {
        let error = "the rollout was taken over but did not reach this request (its promotion stopped first)".to_owned();
        ws.open_store()?.answer_request(
            id,
            &Answer::Failed {
                error: error.clone(),
            },
            true,
        )?;
        return Err(EngineError::error(error));
    }
    ack(ws, &row, r)
}

fn refused(fx: &[AbEffect]) -> bool {
    fx.iter().any(|e| {
        matches!(
            e,
            AbEffect::AnswerRequest {
                reply: Reply::Refused(_),
                ..
            } | AbEffect::Refuse(_)
        )
    })
}

fn answer_refusal(ws: &Workspace, id: i64, fx: &[AbEffect]) -> Result<(), EngineError> {
    let error = fx
        .iter()
        .find_map(|e| match e {
            AbEffect::AnswerRequest {
                reply: Reply::Refused(why),
                ..
            }
            | AbEffect::Refuse(why) => Some(why.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "refused".into());
    ws.open_store()?
        .answer_request(id, &Answer::Failed { error }, true)?;
    Ok(())
}

/// The answer as an `Ack`, or the refusal as an error.
fn ack(ws: &Workspace, row: &RolloutRow, r: crate::store::RequestRow) -> Result<Ack, EngineError> {
    if r.state == RequestState::Failed {
        return Err(EngineError::error(format!(
            "{} refused: {}",
            r.request,
            r.error.unwrap_or_default()
        ))
        .hint(format!(
            "`stella rollout status {}` shows where the rollout is",
            row.environment
        )));
    }
    let capsule_path = match r.capsule_id {
        Some(cid) => capsule_path(ws, cid).ok(),
        None => None,
    };
    Ok(Ack {
        request_id: r.id,
        request: r.request,
        target: row.target.clone(),
        capsule_id: r.capsule_id,
        capsule_path,
        taken_over: r.taken_over,
    })
}

/// Where capsule `id` was exported (exporting it again finds its file).
fn capsule_path(ws: &Workspace, id: i64) -> Result<PathBuf, EngineError> {
    let (_, envelope) = ws
        .open_store()?
        .capsule(id)?
        .ok_or_else(|| EngineError::error(format!("no capsule #{id}")))?;
    let file = super::seal::capsule_file(ws, &envelope)?;
    let payload = file.envelope.payload_bytes().map_err(EngineError::error)?;
    let st: crate::capsule::statement::Statement =
        serde_json::from_slice(&payload).map_err(EngineError::error)?;
    let at = chrono::DateTime::parse_from_rfc3339(&st.predicate.clock)
        .map_err(EngineError::error)?
        .with_timezone(&chrono::Utc);
    super::seal::export_default(
        ws,
        &st.predicate.to,
        &st.predicate.release.digest,
        &at,
        &file,
    )
}

/// Enacts `req` on a canary whose owner is dead. Pause and abort: this
/// process takes the environment's lock and the rollout, seals, and (an
/// abort) sends all traffic to stable. Resume and promote: a promotion of
/// the same digest picks the canary up where it stood and walks it on in
/// this process until it ends, answering the request on its way.
#[allow(clippy::too_many_arguments)]
fn take_over(
    ws: &Workspace,
    config: &Config,
    env_name: &str,
    row: &RolloutRow,
    id: i64,
    req: OperatorRequest,
    requested_by: &str,
    asker: &super::keys::Asker,
    runs: &Runs,
    sink: &Sink,
) -> Result<(), EngineError> {
    let stored: Canary = serde_json::from_str(&row.state)
        .map_err(|e| EngineError::error(format!("the stored canary is unreadable: {e}")))?;
    let now = chrono::Utc::now();
    let (held, _) = stored.clone().step(Input::TakenOver(now));
    let (_, fx) = held.step(Input::Request {
        id,
        request: req,
        who: requested_by.to_owned(),
        now,
    });
    if let Some(why) = fx.iter().find_map(|e| match e {
        Effect::AnswerRequest {
            reply: Reply::Refused(why),
            ..
        } => Some(why.clone()),
        _ => None,
    }) {
        ws.open_store()?
            .answer_request(id, &Answer::Failed { error: why }, true)?;
        return Ok(());
    }
    if matches!(req, OperatorRequest::Resume | OperatorRequest::PromoteNow) {
        let out = super::promote::promote(
            ws,
            config,
            &super::promote::PromoteRequest {
                reference: format!("{}@{}", row.app, row.digest),
                also: Vec::new(),
                to: env_name.to_owned(),
                approve_with: None,
                asker: asker.clone(),
                break_glass: None,
                parallel: 1,
                expect: Some(row.digest.clone()),
            },
            runs,
            sink,
        )?;
        if let Some(f) = out.failure {
            let _ = ws.open_store()?.answer_request(
                id,
                &Answer::Failed {
                    error: format!("the promotion picking the canary up failed: {f}"),
                },
                true,
            );
        }
        return Ok(());
    }
    // Pause or abort: under the environment's lock, sealed first. The dead
    // owner's promotion is recovered first (its lock released, the canary
    // left held where it was), as every acting command does.
    super::deploy::recover(ws, config)?;
    let mut store = ws.open_store()?;
    let promotion_id = store
        .begin_promotion(&row.app, &row.digest, None, env_name, requested_by)
        .map_err(|e| match e {
            crate::store::BeginError::Locked(l) => EngineError::usage(format!(
                "environment {env_name} is locked by promotion #{} (pid {}); cannot take its canary over",
                l.promotion_id, l.pid
            )),
            crate::store::BeginError::Store(e) => e.into(),
        })?;
    if !store.take_over_rollout(env_name, &row.target, row.owner_pid, Some(promotion_id))? {
        store.end_promotion(promotion_id, PromotionOutcome::Interrupted)?;
        return Err(EngineError::error(format!(
            "another process took the canary on {} over first",
            row.target
        )));
    }
    drop(store);
    let sealer = StepSealer {
        workspace: ws.clone(),
        config: config.clone(),
        promotion_id,
        app: row.app.clone(),
        digest: row.digest.clone(),
        tag: None,
        environment: env_name.to_owned(),
        requested_by: requested_by.to_owned(),
    };
    let sdir = routed::state_dir(&config.root, &row.target);
    let listen = routed::read_state(&sdir).ok().and_then(|s| s.listen);
    let mut runner = super::canary::Runner {
        ws: ws.clone(),
        environment: env_name,
        target: &row.target,
        sdir: &sdir,
        listen,
        sealer: Some(&sealer),
        probe: None,
        taken_over: true,
        canary: stored,
        before: Default::default(),
        // The weight it holds stays; only an abort moves traffic.
        apply_weights: false,
    };
    let r = super::resolve::block_on(async {
        runner.feed(Input::TakenOver(now)).await?;
        runner
            .feed(Input::Request {
                id,
                request: req,
                who: requested_by.to_owned(),
                now,
            })
            .await
    })?;
    let mut store = ws.open_store()?;
    // Held, it has no owner until someone walks it on.
    let json = serde_json::to_string(&runner.canary).expect("a canary serializes");
    store.save_rollout(env_name, &row.target, runner.canary.phase, &json, true)?;
    let outcome = match (&r, runner.canary.phase) {
        (Err(_), _) => PromotionOutcome::Interrupted,
        (Ok(_), CanaryPhase::Aborted) => PromotionOutcome::Aborted,
        (Ok(_), _) => PromotionOutcome::Paused,
    };
    store.end_promotion(promotion_id, outcome)?;
    r.map(|_| ()).map_err(EngineError::error)
}

/// The media type of an A/B test's comparison, sealed when it ends.
pub const AB_MEDIA_TYPE: &str = "application/vnd.stella.ab-comparison+json";

/// Ends the A/B tests of `env`: everything to the winning variant (`a`,
/// the release that was stable, or `b`, the new one), the comparison of
/// both over the test's window sealed as evidence of the decision, under
/// the environment's lock and before traffic moves. Returns a line per
/// target.
pub fn consolidate(
    ws: &Workspace,
    config: &Config,
    env_name: &str,
    winner: AbWinner,
    asker: &super::keys::Asker,
) -> Result<Vec<String>, EngineError> {
    config
        .environment(env_name)
        .ok_or_else(|| super::unknown_environment(env_name, config))?;
    let prover = super::keys::prove(ws, asker)?;
    let rows: Vec<RolloutRow> = ws
        .open_store()?
        .rollouts(env_name)?
        .into_iter()
        .filter(|r| r.kind == RolloutKind::Ab && r.phase == CanaryPhase::Experiment)
        .collect();
    if rows.is_empty() {
        return Err(
            EngineError::usage(format!("no A/B test is running in {env_name}")).hint(format!(
                "`stella rollout status {env_name}` shows what its targets serve"
            )),
        );
    }
    let mut lines = Vec::new();
    for row in &rows {
        lines.push(consolidate_target(ws, config, env_name, row, winner, &prover, false)?.0);
    }
    Ok(lines)
}

/// Ends one target's A/B test on `winner`; returns its line and capsule id.
fn consolidate_target(
    ws: &Workspace,
    config: &Config,
    env_name: &str,
    row: &RolloutRow,
    winner: AbWinner,
    prover: &super::keys::Prover,
    aborted: bool,
) -> Result<(String, i64), EngineError> {
    use crate::capsule::statement::{Action, EvidenceRef};
    let env = config
        .environment(env_name)
        .ok_or_else(|| super::unknown_environment(env_name, config))?;
    let requested_by = prover.requested_by();
    let name = row.target.as_str();
    let sdir = routed::state_dir(&config.root, name);
    let test = routed::read_ab(&sdir).ok_or_else(|| {
        EngineError::error(format!(
            "{name}: the A/B test's baseline (ab.json) is missing"
        ))
    })?;
    let ab: AbTest = serde_json::from_str(&row.state)
        .map_err(|e| EngineError::error(format!("the stored A/B test is unreadable: {e}")))?;
    let now = crate::domain::Clock::Real.now();
    let (ab, effects) = ab.step(AbInput::Consolidate {
        winner,
        who: requested_by.clone(),
        now,
    });
    if let Some(why) = effects.iter().find_map(|e| match e {
        AbEffect::Refuse(why) => Some(why.clone()),
        _ => None,
    }) {
        return Err(EngineError::usage(format!("{name}: {why}")));
    }
    let winner_digest = match winner {
        AbWinner::A => &test.a,
        AbWinner::B => &test.b,
    };
    // The environment's lock, held from the decision until it is sealed.
    let promotion_id = ws
        .open_store()?
        .begin_promotion(&row.app, winner_digest, None, env_name, &requested_by)
        .map_err(|e| match e {
            crate::store::BeginError::Locked(l) => EngineError::usage(format!(
                "environment {env_name} is locked by promotion #{} (started by {}); the A/B test ends once it is done",
                l.promotion_id, l.holder
            )),
            crate::store::BeginError::Store(e) => e.into(),
        })?;
    let now_stats = routed::read_stats(&sdir);
    let variant = |s: &crate::deploy::router::SlotStats| {
        serde_json::json!({
            "requests": s.requests, "errors": s.errors,
            "error_rate": format!("{:.4}", s.error_rate()),
            "p50_ms": format!("{}", s.p50_ms), "p95_ms": format!("{}", s.p95_ms),
        })
    };
    // Each variant's own counters, by its release: a swap does not move
    // them between variants.
    let (a, b) = (
        now_stats
            .release(&test.a)
            .since(&test.baseline.release(&test.a)),
        now_stats
            .release(&test.b)
            .since(&test.baseline.release(&test.b)),
    );
    let said = |v: &str, s: &crate::deploy::router::SlotStats| {
        format!(
            "{v}: {} requests, error rate {:.3}, p95 ≤ {} ms",
            s.requests,
            s.error_rate(),
            s.p95_ms
        )
    };
    let comparison = serde_json::json!({
        "target": name, "started": test.started, "winner": winner.as_str(),
        "a": { "digest": test.a, "stats": variant(&a) },
        "b": { "digest": test.b, "stats": variant(&b) },
    });
    let mut sealed = None;
    for e in effects {
        match e {
            AbEffect::Seal { .. } => {
                let cas = ws.evidence();
                let blob = serde_json::to_vec_pretty(&comparison).expect("serializes");
                let comparison_digest = cas.put(&blob)?;
                let env_digest = super::seal::environment_digest(ws, env_name, env)?;
                let reason = format!(
                    "{name}: A/B since {} ends with {winner} winning (sha256:{}){}; {}; {}",
                    test.started,
                    winner_digest.short(),
                    if aborted {
                        ", aborted by an operator"
                    } else {
                        ""
                    },
                    said("a", &a),
                    said("b", &b)
                );
                let decision = super::seal::Gateless {
                    action: Action::Consolidate,
                    app: &row.app,
                    digest: winner_digest,
                    tag: None,
                    environment: env_name,
                    requested_by: &requested_by,
                    at: now,
                    record: EvidenceRef {
                        digest: comparison_digest.clone(),
                        media_type: AB_MEDIA_TYPE.into(),
                        kind: "ab-comparison".into(),
                    },
                    env_digest: &env_digest,
                    outcome: PromotionOutcome::Live,
                    reason,
                    requester: None,
                }
                .signed_by(prover);
                let decision = match decision {
                    Ok(d) => d,
                    Err(e) => {
                        ws.open_store()?
                            .end_promotion(promotion_id, PromotionOutcome::Interrupted)?;
                        return Err(e);
                    }
                };
                // Sealed (and the lock released) in one transaction;
                // traffic moves only once it is.
                sealed = Some(super::seal::seal_and_export(
                    ws,
                    config,
                    &decision.decision(true),
                    Some(promotion_id),
                    |previous, id| decision.predicate(previous, id),
                )?);
            }
            AbEffect::ConsolidateOn(w) => {
                // Everything to the winner; the loser's slot is retired (b
                // winning keeps a warm, for an instant rollback).
                // On the routes as they are (flags stay), under their lock.
                let configured = config.targets.get(name).and_then(|t| t.listen());
                let mut listen = None;
                let version = routed::update_state(&sdir, |st| {
                    if w == AbWinner::B {
                        let old = st.stable.take();
                        st.stable = st.candidate.take();
                        st.candidate = old;
                    } else {
                        st.candidate = None;
                    }
                    st.weight = 0;
                    st.sticky = false;
                    if st.listen.is_none() {
                        st.listen = configured;
                    }
                    listen = st.listen;
                    Ok(())
                })
                .map_err(EngineError::error)?;
                if let Some(listen) = listen.filter(|_| routed::running_pid(&sdir).is_some()) {
                    super::resolve::block_on(routed::wait_live(
                        listen,
                        version,
                        Duration::from_secs(10),
                        Some(&sdir),
                    ))?
                    .map_err(EngineError::error)?;
                }
            }
            _ => {}
        }
    }
    let sealed = sealed.ok_or_else(|| EngineError::error("the consolidation was not sealed"))?;
    let mut store = ws.open_store()?;
    store.put_rollout(&RolloutRow {
        phase: ab.phase,
        state: serde_json::to_string(&ab).expect("an A/B test serializes"),
        owner_pid: None,
        ..row.clone()
    })?;
    let _ = std::fs::remove_file(sdir.join("ab.json"));
    Ok((
        format!(
            "{name}: everything on {winner} (sha256:{}); {}; {}; capsule {}",
            winner_digest.short(),
            said("a", &a),
            said("b", &b),
            sealed.path.display()
        ),
        sealed.capsule_id,
    ))
}
