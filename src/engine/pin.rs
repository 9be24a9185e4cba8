//! Pins. A deliberate rollback pins its app in its environment to the
//! release it returned to (DESIGN §4): nothing promotes over it until
//! someone unpins it, and the unpin is a decision with a capsule of its
//! own, naming the rollback it lifts.

use chrono::SecondsFormat;

use super::EngineError;
use super::event::{EventKind, Sink};
use super::seal::{Gateless, Sealed, environment_digest, seal_and_export};
use crate::capsule::statement::{Action, EvidenceRef};
use crate::config::Config;
use crate::store::Pin;
use crate::workspace::Workspace;

/// The media type of the pin record an unpin capsule holds.
pub const PIN_MEDIA_TYPE: &str = "application/vnd.stella.pin+json";

#[derive(Debug, Clone)]
pub struct UnpinRequest {
    pub app: String,
    pub env: String,
    pub reason: Option<String>,
    /// Who asks; an unpin is decided at the real clock.
    pub asker: super::keys::Asker,
}

#[derive(Debug, Clone)]
pub struct UnpinOutcome {
    /// The pin lifted.
    pub pin: Pin,
    pub sealed: Sealed,
}

/// The error a promotion over a pin gets: what holds it, since when, by
/// whom, and the command that lifts it.
pub fn pinned_error(pin: &Pin) -> EngineError {
    EngineError::blocked(format!(
        "{} is pinned in {} to {} by a rollback (capsule #{}, by {} at {})",
        pin.app,
        pin.environment,
        pin.digest,
        pin.capsule_id,
        pin.pinned_by,
        pin.pinned_at.to_rfc3339_opts(SecondsFormat::Secs, true),
    ))
    .hint(format!(
        "a rollback holds the lane until someone decides it may move again: `stella release unpin {} --env {} --reason TEXT`",
        pin.app, pin.environment
    ))
}

/// Refuses when `app` is pinned in `env`.
pub fn ensure_unpinned(ws: &Workspace, env: &str, app: &str) -> Result<(), EngineError> {
    match ws.open_store()?.pin(env, app)? {
        Some(pin) => Err(pinned_error(&pin)),
        None => Ok(()),
    }
}

/// Lifts the pin on `app` in `env`, sealed with the pin record as
/// evidence.
pub fn unpin(
    ws: &Workspace,
    config: &Config,
    req: &UnpinRequest,
    sink: &Sink,
) -> Result<UnpinOutcome, EngineError> {
    let Some(env) = config.environment(&req.env) else {
        return Err(super::unknown_environment(&req.env, config));
    };
    if !config.apps.contains_key(&req.app) {
        return Err(super::resolve::unknown_app(&req.app, config));
    }
    let Some(pin) = ws.open_store()?.pin(&req.env, &req.app)? else {
        return Err(
            EngineError::error(format!("{} is not pinned in {}", req.app, req.env))
                .hint("`stella release pins` lists what is"),
        );
    };
    let at = crate::domain::Clock::Real.now();
    let prover = super::keys::prove(ws, &req.asker)?;
    let requested_by = prover.requested_by();
    let record = serde_json::to_vec_pretty(&pin).expect("a pin serializes");
    let record_digest = ws.evidence().put(&record)?;
    let env_digest = environment_digest(ws, &req.env, env)?;
    let reason = req.reason.clone().unwrap_or_else(|| {
        format!(
            "unpin {} in {} (pinned by the rollback in capsule #{})",
            req.app, req.env, pin.capsule_id
        )
    });
    let decision = Gateless {
        action: Action::Unpin,
        app: &req.app,
        digest: &pin.digest,
        tag: None,
        environment: &req.env,
        requested_by: &requested_by,
        at,
        record: EvidenceRef {
            digest: record_digest,
            media_type: PIN_MEDIA_TYPE.into(),
            kind: "pin".into(),
        },
        env_digest: &env_digest,
        outcome: crate::domain::PromotionOutcome::Unpinned,
        reason,
        requester: None,
    }
    .signed_by(&prover)?;
    let sealed = seal_and_export(
        ws,
        config,
        &decision.decision(false),
        None,
        |previous, id| decision.predicate(previous, id),
    )?;
    sink.emit(EventKind::CapsuleSealed {
        promotion_id: sealed.promotion_id,
        capsule_id: sealed.capsule_id,
        outcome: crate::domain::PromotionOutcome::Unpinned,
        path: sealed.path.clone(),
    });
    Ok(UnpinOutcome { pin, sealed })
}
