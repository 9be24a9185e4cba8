//! A rollback is a decision too: it names an exact earlier digest (by
//! default the last one live before the current), keeps the evidence that
//! release was promoted under, deploys it, and seals its own capsule.

use std::path::PathBuf;

use chrono::SecondsFormat;

use super::EngineError;
use super::event::{EventKind, Sink};
use super::keys::{Asker, prove};
use super::resolve::block_on;
use super::seal::seal_and_export;
use crate::capsule::environment;
use crate::capsule::statement::{
    Action, Engine, EvidenceRef, Inputs, Predicate, ReleaseRef, Restores, Statement,
};
use crate::config::Config;
use crate::domain::Clock;
use crate::domain::approval::APPROVAL_MEDIA_TYPE;
use crate::domain::requester::Asked;
use crate::domain::state::PromotionOutcome;
use crate::domain::{Decision, Digest};
use crate::sign::Envelope;
use crate::store::DecisionRecord;
use crate::workspace::Workspace;

#[derive(Debug, Clone)]
pub struct RollbackRequest {
    pub app: String,
    pub env: String,
    /// The digest to return to; `None`: the last one live before the current.
    pub to: Option<Digest>,
    pub reason: Option<String>,
    /// Who asks; a rollback is decided at the real clock.
    pub asker: Asker,
    /// Only this app, even when it went live with others as one release
    /// set (which is otherwise rolled back whole).
    pub alone: bool,
}

#[derive(Debug, Clone)]
pub struct RollbackOutcome {
    pub promotion_id: i64,
    pub capsule_id: i64,
    pub from: Digest,
    pub to: Digest,
    /// The payload digest of the capsule `to` was promoted under, if any.
    pub restores_capsule: Option<Digest>,
    /// Its row id, for people.
    pub restores_capsule_id: Option<i64>,
    /// `rolled-back` or `rollback-failed`.
    pub outcome: crate::domain::PromotionOutcome,
    pub failure: Option<String>,
    pub capsule: PathBuf,
    /// The capsule and its summary attached to the image (or pending).
    pub attachment: Option<super::publish::Pushed>,
    /// A release set's other apps, rolled back with it.
    pub members: Vec<RolledBack>,
}

/// One more app of a release set rolled back together.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RolledBack {
    pub app: String,
    pub from: Digest,
    pub to: Digest,
    pub restores_capsule: Option<Digest>,
}

/// What a rollback of `app` in `env` at `now` would do: (the digest live
/// now, the digest it returns to). Reads only; `--dry-run` shows it.
pub fn plan(
    store: &crate::store::Store,
    app: &str,
    env: &str,
    to: Option<&Digest>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(Digest, Digest), EngineError> {
    let history = store.live_history(env, app)?;
    let Some(current) = history.iter().find(|l| l.since <= now) else {
        return Err(EngineError::error(format!(
            "{} is not live in {}; there is nothing to roll back",
            app, env
        )));
    };
    let target = match to {
        Some(d) => {
            if !history.iter().any(|l| l.digest == *d) {
                return Err(EngineError::usage(format!(
                    "{d} was never live in {}; a rollback returns to an earlier release",
                    env
                ))
                .hint(format!(
                    "`stella capsule list --env {} --app {}` shows what was",
                    env, app
                )));
            }
            d.clone()
        }
        // The newest earlier release, passing over those an earlier
        // rollback took out while any other is left (as the workbench's
        // picker orders them).
        None => super::rules::rollback_order(
            super::rules::rollback_choices(
                Some(&current.digest),
                &history
                    .iter()
                    .map(|l| (l.digest.clone(), l.since))
                    .collect::<Vec<_>>(),
                now,
            ),
            &super::rules::taken_out(
                &history
                    .iter()
                    .map(|l| (l.digest.clone(), l.since, l.source == "rollback"))
                    .collect::<Vec<_>>(),
            ),
            now,
        )
        .into_iter()
        .next()
        .map(|(d, _, _)| d)
        .ok_or_else(|| {
            EngineError::error(format!(
                "{} has had only one release in {}; there is no earlier one",
                app, env
            ))
        })?,
    };
    if target == current.digest {
        return Err(EngineError::usage(format!(
            "{target} is already live in {}",
            env
        )));
    }
    Ok((current.digest.clone(), target))
}

pub fn rollback(
    ws: &Workspace,
    config: &Config,
    req: &RollbackRequest,
    sink: &Sink,
) -> Result<RollbackOutcome, EngineError> {
    let now = Clock::Real.now();
    let Some(env) = config.environment(&req.env) else {
        return Err(super::unknown_environment(&req.env, config));
    };
    if !config.apps.contains_key(&req.app) {
        return Err(super::resolve::unknown_app(&req.app, config));
    }
    let prover = prove(ws, &req.asker)?;
    let requested_by = prover.requested_by();
    // A process that acts recovers what dead ones left, under their locks.
    for line in super::deploy::recover(ws, config)? {
        sink.emit(EventKind::Note(line));
    }
    let store = ws.open_store()?;
    let (current, target) = plan(&store, &req.app, &req.env, req.to.as_ref(), now)?;
    let together = if req.alone {
        Vec::new()
    } else {
        store.released_with(&req.env, &req.app, &now)?
    };
    if !together.is_empty() {
        if req.to.is_some() {
            return Err(EngineError::usage(format!(
                "{} went live in {} with {} as one release set; --to names one app's release",
                req.app,
                req.env,
                together.join(", ")
            ))
            .hint(format!(
                "drop --to to roll the set back to what ran before it, or add --alone to move only {}",
                req.app
            )));
        }
        drop(store);
        return rollback_set(ws, config, req, &prover, together, now, sink);
    }
    sink.emit(EventKind::Resolved {
        app: req.app.clone(),
        digest: target.clone(),
        tag: None,
        environment: req.env.clone(),
    });

    let (original, evidence) = restored_evidence(ws, &store, &req.env, &target)?;
    let env_digest = super::seal::environment_digest(ws, &req.env, env)?;
    // A routed environment that keeps the release warm goes back in one
    // swap; any other deploys it.
    let warm = super::swap::warm(config, &req.env, env, &current, &target);
    let mut existing = None;
    let mut failure: Option<String> = None;
    let mut swap_after_seal = None;
    if !env.targets.is_empty() {
        let id =
            ws.open_store()?
                .begin_promotion(&req.app, &target, None, &req.env, &requested_by)?;
        existing = Some(id);
        sink.emit(EventKind::PromotionCreated {
            promotion_id: id,
            app: req.app.clone(),
            digest: target.clone(),
            environment: req.env.clone(),
            targets: env.targets.iter().map(|t| t.get_ref().clone()).collect(),
            steps: vec![],
            critical_path: vec![],
        });
        match warm {
            // Checked, then sealed (below), then swapped.
            Some(warm) => match block_on(warm.check())? {
                Ok(()) => swap_after_seal = Some(warm),
                Err(e) => failure = Some(e),
            },
            None => {
                let deployed = deploy_back(config, env, &req.app, &target)?;
                match deployed {
                    Ok(lines) => {
                        for detail in lines {
                            sink.emit(EventKind::TargetSwitched {
                                promotion_id: id,
                                detail,
                            });
                        }
                    }
                    Err(e) => failure = Some(e),
                }
            }
        }
        if swap_after_seal.is_none() {
            sink.emit(EventKind::RunFinished {
                promotion_id: id,
                ok: failure.is_none(),
                failure: failure.clone(),
            });
        }
    }
    let outcome = if failure.is_some() {
        crate::domain::PromotionOutcome::RollbackFailed
    } else {
        crate::domain::PromotionOutcome::RolledBack
    };
    let rec = DecisionRecord {
        app: req.app.clone(),
        digest: target.clone(),
        tag: None,
        environment: req.env.clone(),
        requested_by: requested_by.clone(),
        action: Action::Rollback.as_str().into(),
        decision: "allow".into(),
        outcome,
        at: now,
        goes_live: failure.is_none(),
        also: Vec::new(),
    };
    let from_digest = current.clone();
    let clock = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let requester = prover.sign(&Asked {
        action: Action::Rollback.as_str(),
        app: &req.app,
        digest: &target,
        environment: &req.env,
        clock: &clock,
        also: &[],
    })?;
    let sealed = seal_and_export(ws, config, &rec, existing, |previous, promotion_id| {
        Predicate {
            action: Action::Rollback,
            app: req.app.clone(),
            release: ReleaseRef {
                digest: target.clone(),
                tag: None,
                resolved_at: None,
            },
            from: None,
            to: req.env.clone(),
            requested_by: requested_by.clone(),
            requester: Some(requester),
            clock,
            promotion_id: Some(promotion_id),
            inputs: rollback_inputs(evidence, &env_digest),
            gates: vec![],
            decision: Decision::Allow,
            outcome,
            engine: Engine::current(),
            previous,
            restores: Some(Restores {
                digest: target.clone(),
                capsule: original.as_ref().map(|o| o.payload_digest.clone()),
            }),
            reason: failure.clone().or(Some(
                req.reason
                    .clone()
                    .unwrap_or_else(|| format!("roll back from {from_digest}")),
            )),
            members: Vec::new(),
        }
    })?;
    sink.emit(EventKind::CapsuleSealed {
        promotion_id: sealed.promotion_id,
        capsule_id: sealed.capsule_id,
        outcome,
        path: sealed.path.clone(),
    });
    if let Some(warm) = swap_after_seal {
        let swapped = block_on(warm.swap())?;
        sink.emit(EventKind::RunFinished {
            promotion_id: sealed.promotion_id,
            ok: swapped.is_ok(),
            failure: swapped.as_ref().err().cloned(),
        });
        match swapped {
            Ok(lines) => {
                for detail in lines {
                    sink.emit(EventKind::TargetSwitched {
                        promotion_id: sealed.promotion_id,
                        detail,
                    });
                }
            }
            Err(e) => {
                let sealed = SwapFailed {
                    req,
                    prover: &prover,
                    current: &current,
                    target: &target,
                    error: e.clone(),
                }
                .seal(ws, config, sink)?;
                let attachment = super::publish::after_seal(ws, config, sealed.capsule_id, sink);
                return Ok(RollbackOutcome {
                    promotion_id: sealed.promotion_id,
                    capsule_id: sealed.capsule_id,
                    from: current,
                    to: target,
                    restores_capsule: original.as_ref().map(|o| o.payload_digest.clone()),
                    restores_capsule_id: original.as_ref().map(|o| o.id),
                    outcome: PromotionOutcome::RollbackFailed,
                    failure: Some(e),
                    capsule: sealed.path,
                    attachment,
                    members: Vec::new(),
                });
            }
        }
    }
    let attachment = super::publish::after_seal(ws, config, sealed.capsule_id, sink);
    Ok(RollbackOutcome {
        attachment,
        promotion_id: sealed.promotion_id,
        capsule_id: sealed.capsule_id,
        from: from_digest,
        to: target,
        restores_capsule: original.as_ref().map(|o| o.payload_digest.clone()),
        restores_capsule_id: original.as_ref().map(|o| o.id),
        outcome,
        failure,
        capsule: sealed.path,
        members: Vec::new(),
    })
}

/// Deploys `target` of `app` back to `env`'s targets, as a rollback (a
/// script target's `rollback` hook), fetching it first from a registry.
fn deploy_back(
    config: &Config,
    env: &crate::config::Environment,
    app: &str,
    target: &Digest,
) -> Result<Result<Vec<String>, String>, EngineError> {
    block_on(async {
        let fetched = super::deploy::fetch_if_remote(config, app, target).await?;
        let opts = super::deploy::DeployOptions {
            rollback: true,
            fetched: fetched
                .as_ref()
                .map(|f| f as &(dyn crate::deploy::unpack::BlobSource + Sync)),
            ..Default::default()
        };
        super::deploy::deploy_targets(config, env, app, target, opts).await
    })
}

/// A rollback's inputs: the evidence its release was promoted under and
/// the effective environment; it records no gates.
fn rollback_inputs(evidence: Vec<EvidenceRef>, env_digest: &Digest) -> Inputs {
    Inputs {
        evidence,
        policies: vec![],
        environment: EvidenceRef {
            digest: env_digest.clone(),
            media_type: environment::MEDIA_TYPE.into(),
            kind: "config".into(),
        },
        keys: vec![],
        upstream: None,
        break_glass: None,
    }
}

/// The capsule `target` was promoted under in `env`, kept as evidence
/// with the evidence it used: preserved, not fetched again.
#[allow(clippy::type_complexity)]
fn restored_evidence(
    ws: &Workspace,
    store: &crate::store::Store,
    env: &str,
    target: &Digest,
) -> Result<(Option<crate::store::CapsuleRow>, Vec<EvidenceRef>), EngineError> {
    let original = store.promoted_under(env, target)?;
    let mut evidence = Vec::new();
    if let Some(o) = &original {
        let (_, env_bytes) = store
            .capsule(o.id)?
            .ok_or_else(|| EngineError::error(format!("capsule #{} is listed but absent", o.id)))?;
        let digest = ws.evidence().put(&env_bytes)?;
        evidence.push(EvidenceRef {
            digest,
            media_type: APPROVAL_MEDIA_TYPE.into(),
            kind: "capsule".into(),
        });
        let envelope: Envelope = serde_json::from_slice(&env_bytes).map_err(EngineError::error)?;
        let st: Statement =
            serde_json::from_slice(&envelope.payload_bytes().map_err(EngineError::error)?)
                .map_err(EngineError::error)?;
        // The app's own evidence: a set's capsule holds every member's.
        let each = st.predicate.each();
        let own = each
            .iter()
            .find(|p| p.release.digest == *target)
            .unwrap_or(&each[0]);
        evidence.extend(own.inputs.evidence.clone());
    }
    Ok((original, evidence))
}

/// Rolls back a release set together: every app to what ran before it,
/// all or none, sealed in one capsule with a subject per app.
fn rollback_set(
    ws: &Workspace,
    config: &Config,
    req: &RollbackRequest,
    prover: &super::keys::Prover,
    together: Vec<String>,
    now: chrono::DateTime<chrono::Utc>,
    sink: &Sink,
) -> Result<RollbackOutcome, EngineError> {
    let env = config
        .environment(&req.env)
        .ok_or_else(|| super::unknown_environment(&req.env, config))?;
    let requested_by = prover.requested_by();
    sink.emit(EventKind::Note(format!(
        "{} went live in {} with {} as one release set: rolling back all of them (--alone for only {})",
        req.app,
        req.env,
        together.join(", "),
        req.app
    )));
    struct Plan {
        app: String,
        current: Digest,
        target: Digest,
        original: Option<crate::store::CapsuleRow>,
        evidence: Vec<EvidenceRef>,
    }
    let store = ws.open_store()?;
    let mut plans = Vec::new();
    for app in std::iter::once(&req.app).chain(&together) {
        let (current, target) = plan(&store, app, &req.env, None, now).map_err(|e| {
            e.hint(format!(
                "{app} is in the release set; `--alone` rolls back only {}",
                req.app
            ))
        })?;
        let (original, evidence) = restored_evidence(ws, &store, &req.env, &target)?;
        sink.emit(EventKind::Resolved {
            app: app.clone(),
            digest: target.clone(),
            tag: None,
            environment: req.env.clone(),
        });
        plans.push(Plan {
            app: app.clone(),
            current,
            target,
            original,
            evidence,
        });
    }
    drop(store);
    let env_digest = super::seal::environment_digest(ws, &req.env, env)?;
    let mut existing = None;
    let mut failure: Option<String> = None;
    if !env.targets.is_empty() {
        let lead = &plans[0];
        let others: Vec<(String, Digest)> = plans[1..]
            .iter()
            .map(|p| (p.app.clone(), p.target.clone()))
            .collect();
        let id = ws.open_store()?.begin_set_promotion(
            &lead.app,
            &lead.target,
            None,
            &req.env,
            &requested_by,
            &others,
        )?;
        existing = Some(id);
        let before: Vec<_> = plans
            .iter()
            .map(|p| super::deploy::snapshot(config, env, &p.app))
            .collect();
        let mut ran = 0;
        for p in &plans {
            sink.emit(EventKind::PromotionCreated {
                promotion_id: id,
                app: p.app.clone(),
                digest: p.target.clone(),
                environment: req.env.clone(),
                targets: env.targets.iter().map(|t| t.get_ref().clone()).collect(),
                steps: vec![],
                critical_path: vec![],
            });
            ran += 1;
            let deployed = deploy_back(config, env, &p.app, &p.target)?;
            match deployed {
                Ok(lines) => {
                    for detail in lines {
                        sink.emit(EventKind::TargetSwitched {
                            promotion_id: id,
                            detail,
                        });
                    }
                }
                Err(e) => {
                    failure = Some(format!(
                        "{}: {e} (the release set is put back whole)",
                        p.app
                    ));
                    break;
                }
            }
        }
        if failure.is_some() {
            // All or none: every app moved so far goes back.
            for (p, before) in plans.iter().zip(&before).take(ran) {
                let mut lines = super::deploy::restore(config, &p.app, before);
                lines.extend(super::deploy::restore_scripts(ws, config, &req.env, &p.app));
                sink.emit(EventKind::TargetsRestored {
                    promotion_id: id,
                    lines,
                });
            }
        }
        sink.emit(EventKind::RunFinished {
            promotion_id: id,
            ok: failure.is_none(),
            failure: failure.clone(),
        });
    }
    let outcome = if failure.is_some() {
        PromotionOutcome::RollbackFailed
    } else {
        PromotionOutcome::RolledBack
    };
    let also: Vec<(String, Digest)> = plans[1..]
        .iter()
        .map(|p| (p.app.clone(), p.target.clone()))
        .collect();
    let lead = &plans[0];
    let rec = DecisionRecord {
        app: lead.app.clone(),
        digest: lead.target.clone(),
        tag: None,
        environment: req.env.clone(),
        requested_by: requested_by.clone(),
        action: Action::Rollback.as_str().into(),
        decision: "allow".into(),
        outcome,
        at: now,
        goes_live: failure.is_none(),
        also: also.clone(),
    };
    let clock = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let requester = prover.sign(&Asked {
        action: Action::Rollback.as_str(),
        app: &lead.app,
        digest: &lead.target,
        environment: &req.env,
        clock: &clock,
        also: &also,
    })?;
    let restores = |p: &Plan| Restores {
        digest: p.target.clone(),
        capsule: p.original.as_ref().map(|o| o.payload_digest.clone()),
    };
    let members: Vec<crate::capsule::statement::Member> = plans[1..]
        .iter()
        .map(|p| crate::capsule::statement::Member {
            app: p.app.clone(),
            release: ReleaseRef {
                digest: p.target.clone(),
                tag: None,
                resolved_at: None,
            },
            inputs: rollback_inputs(p.evidence.clone(), &env_digest),
            gates: vec![],
            decision: Decision::Allow,
            restores: Some(restores(p)),
        })
        .collect();
    let froms: Vec<String> = plans
        .iter()
        .map(|p| format!("{} {}", p.app, p.current))
        .collect();
    let sealed = seal_and_export(ws, config, &rec, existing, |previous, promotion_id| {
        Predicate {
            action: Action::Rollback,
            app: lead.app.clone(),
            release: ReleaseRef {
                digest: lead.target.clone(),
                tag: None,
                resolved_at: None,
            },
            from: None,
            to: req.env.clone(),
            requested_by: requested_by.clone(),
            requester: Some(requester),
            clock,
            promotion_id: Some(promotion_id),
            inputs: rollback_inputs(lead.evidence.clone(), &env_digest),
            gates: vec![],
            decision: Decision::Allow,
            outcome,
            engine: Engine::current(),
            previous,
            restores: Some(restores(lead)),
            reason: failure
                .clone()
                .or(Some(req.reason.clone().unwrap_or_else(|| {
                    format!("roll back the release set from {}", froms.join(", "))
                }))),
            members,
        }
    })?;
    sink.emit(EventKind::CapsuleSealed {
        promotion_id: sealed.promotion_id,
        capsule_id: sealed.capsule_id,
        outcome,
        path: sealed.path.clone(),
    });
    let attachment = super::publish::after_seal(ws, config, sealed.capsule_id, sink);
    Ok(RollbackOutcome {
        attachment,
        promotion_id: sealed.promotion_id,
        capsule_id: sealed.capsule_id,
        from: lead.current.clone(),
        to: lead.target.clone(),
        restores_capsule: lead.original.as_ref().map(|o| o.payload_digest.clone()),
        restores_capsule_id: lead.original.as_ref().map(|o| o.id),
        outcome,
        failure,
        capsule: sealed.path,
        members: plans[1..]
            .iter()
            .map(|p| RolledBack {
                app: p.app.clone(),
                from: p.current.clone(),
                to: p.target.clone(),
                restores_capsule: p.original.as_ref().map(|o| o.payload_digest.clone()),
            })
            .collect(),
    })
}

/// A swap that failed after the rollback was sealed: a second capsule,
/// `rollback-failed`, says so (what failed, what serves) and is the
/// rollback's answer. The pin the first set stays: an operator looks
/// before the lane moves again.
struct SwapFailed<'a> {
    req: &'a RollbackRequest,
    prover: &'a super::keys::Prover,
    current: &'a Digest,
    target: &'a Digest,
    error: String,
}

impl SwapFailed<'_> {
    fn seal(
        &self,
        ws: &Workspace,
        config: &Config,
        sink: &Sink,
    ) -> Result<super::seal::Sealed, EngineError> {
        let req = self.req;
        let env = config
            .environment(&req.env)
            .ok_or_else(|| super::unknown_environment(&req.env, config))?;
        let outcome = PromotionOutcome::RollbackFailed;
        let record = serde_json::to_vec_pretty(&serde_json::json!({
            "environment": req.env, "app": req.app, "from": self.current, "to": self.target,
            "error": self.error,
        }))
        .expect("serializes");
        let requested_by = self.prover.requested_by();
        let env_digest = super::seal::environment_digest(ws, &req.env, env)?;
        let decision = super::seal::Gateless {
            action: Action::Rollback,
            app: &req.app,
            digest: self.target,
            tag: None,
            environment: &req.env,
            requested_by: &requested_by,
            at: Clock::Real.now(),
            record: EvidenceRef {
                digest: ws.evidence().put(&record)?,
                media_type: "application/json".into(),
                kind: "swap".into(),
            },
            env_digest: &env_digest,
            outcome,
            reason: format!(
                "the swap back to {} failed after it was sealed: {}",
                self.target, self.error
            ),
            requester: None,
        }
        .signed_by(self.prover)?;
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
            outcome,
            path: sealed.path.clone(),
        });
        Ok(sealed)
    }
}
