//! Running the reducers' effects: each goes to the engine's handle or to a
//! blocking thread, and its answer comes back as a message. Nothing here
//! runs on the view's path.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::mpsc::UnboundedSender;

use super::Inbound;
use super::state::{
    App, CapsuleDetail, Effect, FindingView, GateRequest, GateResult, Msg, ReplayState,
    Verification,
};
use crate::config::Config;
use crate::engine::approve::ApproveRequest;
use crate::engine::resolve::AppRelease;
use crate::engine::{EngineHandle, PromoteRequest, RollbackRequest, UnpinRequest};
use crate::gates::security::Status;
use crate::workspace::Workspace;

/// What effects need: the workspace, the engine, who is asking.
#[derive(Clone)]
pub struct Context {
    pub ws: Workspace,
    pub config: Arc<Config>,
    pub engine: EngineHandle,
    /// Who the workbench acts as, as shown: the key owner's email, or
    /// `unverified: uid NAME`. Its what-ifs (the gates view) ask as it.
    pub requested_by: String,
    /// What signs every request it sends.
    pub asker: crate::engine::keys::Asker,
    /// The key `a` approves with; `None`: the first private key that is
    /// not the workspace's sealing key.
    pub key: Option<String>,
    pub tx: UnboundedSender<Inbound>,
}

impl Context {
    fn send(&self, m: Msg) {
        let _ = self.tx.send(Inbound::Msg(m));
    }

    /// Runs `f` on a blocking thread and sends what it returns.
    fn blocking(&self, f: impl FnOnce(&Context) -> Msg + Send + 'static) {
        let ctx = self.clone();
        tokio::task::spawn_blocking(move || {
            let m = f(&ctx);
            ctx.send(m);
        });
    }
}

fn gates(ctx: &Context, r: GateRequest) -> Msg {
    let at = r.at.unwrap_or_else(Utc::now);
    let release = AppRelease {
        app: r.app.clone(),
        digest: r.digest.clone(),
        tag: r.tag.clone(),
    };
    let evaluated = crate::engine::evaluate::evaluate_release(
        &ctx.ws,
        &ctx.config,
        &release,
        &r.env,
        ctx.requested_by.clone(),
        None,
        at,
    );
    let findings = match &evaluated {
        Ok((inputs, _, _)) => crate::gates::security::judge(&inputs.scans, &inputs.subject)
            .into_iter()
            .map(|j| FindingView {
                id: j.finding.id.clone(),
                package: j.finding.package.clone(),
                version: j.finding.version.clone(),
                severity: format!("{:?}", j.finding.severity).to_lowercase(),
                excused: match &j.status {
                    Status::Reachable { .. } => None,
                    Status::Suppressed { by } => Some(format!("suppressed: unreachable per {by}")),
                    Status::NotApplicable { by } => Some(format!("not applicable per {by}")),
                },
            })
            .collect(),
        Err(_) => vec![],
    };
    // A rollback's pin holds the lane whatever the gates say, as the
    // command line's gate check and a promotion say.
    let pin = ctx
        .ws
        .read_store()
        .and_then(|s| s.pin(&r.env, &r.app))
        .ok()
        .flatten();
    Msg::Gates(Box::new(GateResult {
        request: r,
        evaluated_at: at,
        outcome: evaluated
            .map(|(_, d, v)| (crate::engine::rules::held(d, pin.as_ref()), v))
            .map_err(|e| e.to_string()),
        findings,
    }))
}

fn capsule_file(ctx: &Context, id: i64) -> Result<crate::capsule::file::CapsuleFile, String> {
    let (_, envelope) = ctx
        .ws
        .read_store()
        .and_then(|s| s.capsule(id))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("capsule #{id} is not in the store"))?;
    crate::engine::seal::capsule_file(&ctx.ws, &envelope).map_err(|e| e.to_string())
}

pub fn run(ctx: &Context, app: &mut App, effect: Effect) {
    match effect {
        Effect::Promote {
            app: a,
            digest,
            tag,
            to,
        } => {
            // By tag when there is one, so the tag is resolved now and
            // recorded; refused if it no longer names what was reviewed.
            let reference = match &tag {
                Some(t) => format!("{a}:{t}"),
                None => format!("{a}@{digest}"),
            };
            let pending = ctx.engine.promote(PromoteRequest {
                reference,
                also: Vec::new(),
                expect: Some(digest.clone()),
                to: to.clone(),
                approve_with: None,
                asker: ctx.asker.clone(),
                break_glass: None,
                parallel: std::thread::available_parallelism().map_or(2, |n| n.get()),
            });
            // Recorded before any of its events can be reduced: they come
            // through the same inbound channel, after this effect.
            app.asked.insert(pending.ticket, format!("{a} → {to}"));
            app.say(format!("promoting {a} sha256:{} to {to}…", digest.short()));
        }
        Effect::Rollback { app: a, env, to } => {
            let pending = ctx.engine.rollback(RollbackRequest {
                app: a.clone(),
                env: env.clone(),
                to: Some(to),
                reason: Some("rolled back from the workbench".into()),
                asker: ctx.asker.clone(),
                alone: false,
            });
            let c = ctx.clone();
            tokio::spawn(async move {
                c.send(match pending.wait().await {
                    Ok(o)
                        if o.failure.is_some()
                            || o.outcome == crate::domain::PromotionOutcome::RollbackFailed =>
                    {
                        Msg::Error(format!(
                            "rollback of {a} in {env} to sha256:{} FAILED ({}): {}; capsule {}",
                            o.to.short(),
                            o.outcome,
                            o.failure.as_deref().unwrap_or("see the capsule"),
                            o.capsule.display()
                        ))
                    }
                    Ok(o) => Msg::Status(format!(
                        "rolled back {a} in {env} to sha256:{}; capsule {}",
                        o.to.short(),
                        o.capsule.display()
                    )),
                    Err(e) => Msg::Error(format!("rollback of {a} in {env} failed: {e}")),
                });
            });
        }
        Effect::Unpin { app: a, env } => {
            let pending = ctx.engine.unpin(UnpinRequest {
                app: a.clone(),
                env: env.clone(),
                reason: Some("unpinned from the workbench".into()),
                asker: ctx.asker.clone(),
            });
            let c = ctx.clone();
            tokio::spawn(async move {
                c.send(match pending.wait().await {
                    Ok(o) => Msg::Status(format!(
                        "unpinned {a} in {env}; capsule {}",
                        o.sealed.path.display()
                    )),
                    Err(e) => Msg::Error(format!("unpin of {a} in {env} failed: {e}")),
                });
            });
        }
        Effect::Approve {
            app: a,
            digest,
            env,
        } => {
            let pending = ctx.engine.approve(ApproveRequest {
                app: a.clone(),
                digest: digest.clone(),
                env: env.clone(),
                key: ctx.key.clone(),
                comment: Some("approved from the workbench".into()),
                purpose: crate::domain::approval::Purpose::Promote,
            });
            let c = ctx.clone();
            tokio::spawn(async move {
                match pending.wait().await {
                    Ok(done) => {
                        c.send(Msg::Status(format!(
                            "approved {a} sha256:{} for {env} as {}",
                            digest.short(),
                            done.signer
                        )));
                        // The gates change with an approval: evaluate again.
                        c.blocking(move |ctx| {
                            let tag = ctx
                                .ws
                                .read_store()
                                .ok()
                                .and_then(|s| s.resolutions(Some(&a)).ok())
                                .and_then(|rs| rs.into_iter().rev().find(|r| r.digest == digest))
                                .and_then(|r| r.tag);
                            gates(
                                ctx,
                                GateRequest {
                                    app: a,
                                    digest,
                                    tag,
                                    env,
                                    at: None,
                                },
                            )
                        });
                    }
                    Err(e) => c.send(Msg::Error(format!(
                        "cannot approve: {e}{}",
                        e.hint.as_ref().map_or(String::new(), |h| format!(" — {h}"))
                    ))),
                }
            });
        }
        Effect::Gates(r) => ctx.blocking(move |ctx| gates(ctx, r)),
        Effect::LoadCapsule(id) => ctx.blocking(move |ctx| {
            let statement = ctx
                .ws
                .read_store()
                .map_err(|e| e.to_string())
                .and_then(|s| s.capsule(id).map_err(|e| e.to_string()))
                .and_then(|c| c.ok_or_else(|| format!("capsule #{id} is not in the store")))
                .and_then(|(_, envelope)| {
                    let env: crate::sign::Envelope =
                        serde_json::from_slice(&envelope).map_err(|e| e.to_string())?;
                    let payload = env.payload_bytes().map_err(|e| e.to_string())?;
                    serde_json::from_slice(&payload).map_err(|e| e.to_string())
                });
            Msg::Capsule(Box::new(CapsuleDetail { id, statement }))
        }),
        Effect::Verify(ids) => {
            let c = ctx.clone();
            tokio::task::spawn_blocking(move || {
                // Only the workspace's sealing keys validate a capsule.
                let trusted = match c.ws.read_store().map_err(|e| e.to_string()).and_then(|s| {
                    crate::capsule::trust::sealing_keys(&s).map_err(|e| e.to_string())
                }) {
                    Ok(t) => t,
                    Err(e) => return c.send(Msg::Error(format!("cannot verify capsules: {e}"))),
                };
                for id in ids {
                    let v = match capsule_file(&c, id) {
                        Ok(file) => {
                            let report = crate::capsule::verify::verify(&file, &trusted);
                            if report.valid {
                                Verification::Valid
                            } else {
                                Verification::Invalid(report.problems)
                            }
                        }
                        Err(e) => Verification::Invalid(vec![e]),
                    };
                    c.send(Msg::Verified(id, v));
                }
            });
        }
        Effect::Replay(id) => ctx.blocking(move |ctx| {
            let r = capsule_file(ctx, id)
                .and_then(|f| crate::capsule::replay::replay(&f).map_err(|e| e.to_string()));
            Msg::Replayed(
                id,
                match r {
                    Ok(o) if o.identical => ReplayState::Identical,
                    Ok(o) => ReplayState::Differs(
                        o.differences
                            .iter()
                            .map(|d| {
                                format!("{} {}: {} → {}", d.gate, d.field, d.recorded, d.replayed)
                            })
                            .collect(),
                    ),
                    Err(e) => ReplayState::Failed(e),
                },
            )
        }),
        Effect::Export(id) => ctx.blocking(move |ctx| {
            let r = ctx
                .ws
                .read_store()
                .map_err(|e| e.to_string())
                .and_then(|s| s.capsule(id).map_err(|e| e.to_string()))
                .and_then(|c| c.ok_or_else(|| format!("capsule #{id} is not in the store")))
                .and_then(|(row, _)| {
                    let file = capsule_file(ctx, id)?;
                    crate::engine::seal::export_default(
                        &ctx.ws,
                        &row.environment,
                        &row.digest,
                        &row.sealed_at,
                        &file,
                    )
                    .map_err(|e| e.to_string())
                });
            match r {
                Ok(p) => Msg::Status(format!("capsule #{id} exported to {}", p.display())),
                Err(e) => Msg::Error(format!("cannot export capsule #{id}: {e}")),
            }
        }),
        Effect::Pause(id) | Effect::Resume(id) | Effect::Abort(id) => {
            // The same road for a run of this process and of any other:
            // another's through a request row its owner answers, a dead
            // one's abort taken over and sealed.
            let request = match effect {
                Effect::Pause(_) => crate::domain::OperatorRequest::Pause,
                Effect::Resume(_) => crate::domain::OperatorRequest::Resume,
                _ => crate::domain::OperatorRequest::Abort,
            };
            let pending = ctx.engine.steer(crate::engine::SteerRequest {
                promotion_id: id,
                request,
                asker: ctx.asker.clone(),
            });
            let c = ctx.clone();
            tokio::spawn(async move {
                match pending.wait().await {
                    Ok(s) if s.taken_over => c.send(Msg::Status(format!(
                        "promotion #{id} aborted (taken over: its process had died){}",
                        s.capsule_id
                            .map(|c| format!("; capsule #{c}"))
                            .unwrap_or_default()
                    ))),
                    Ok(_) => {}
                    Err(e) => c.send(Msg::Error(e.to_string())),
                }
            });
        }
        Effect::LoadLog(d) => ctx.blocking(move |ctx| match ctx.ws.evidence().get(&d) {
            Ok(bytes) => Msg::Log(d, String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) => Msg::Error(format!("cannot read the log: {e}")),
        }),
        Effect::SetTheme(name) => match super::load_theme(Some(&name), &ctx.ws) {
            Ok(t) => {
                app.say(format!("theme {}", t.name));
                app.theme = t;
            }
            Err(e) => app.complain(e),
        },
        Effect::Reload => super::reload(ctx),
        Effect::Quit => app.quit = true,
        Effect::LoadRollouts => {
            ctx.blocking(|ctx| Msg::Rollouts(super::data::load_rollouts(&ctx.config)))
        }
        Effect::LoadWaiting => ctx.blocking(|ctx| {
            Msg::Waiting(
                ctx.ws
                    .read_store()
                    .map_err(crate::engine::EngineError::from)
                    .and_then(|store| {
                        crate::engine::waiting::overview(
                            &ctx.ws,
                            &store,
                            &ctx.config,
                            None,
                            None,
                            Utc::now(),
                        )
                    })
                    .map_err(|e| e.to_string()),
            )
        }),
        Effect::Consolidate { env, winner_b } => {
            let pending = ctx.engine.consolidate(crate::engine::ConsolidateRequest {
                env: env.clone(),
                winner: if winner_b {
                    crate::domain::AbWinner::B
                } else {
                    crate::domain::AbWinner::A
                },
                asker: ctx.asker.clone(),
            });
            let c = ctx.clone();
            tokio::spawn(async move {
                c.send(match pending.wait().await {
                    Ok(lines) => Msg::Status(lines.join("; ")),
                    Err(e) => Msg::Error(format!("cannot end the A/B test in {env}: {e}")),
                })
            });
        }
        Effect::RolloutControl { target, change } => {
            let env = ctx.config.environments.iter().find_map(|(name, e)| {
                e.targets
                    .iter()
                    .any(|t| *t.get_ref() == target)
                    .then(|| name.clone())
            });
            let Some(env) = env else {
                app.complain(format!(
                    "cannot steer the canary on {target}: no environment deploys to it"
                ));
                return;
            };
            // Through the engine: it asks the canary's owner, or takes
            // the canary over when the owner is dead.
            let pending = ctx.engine.rollout(crate::engine::RolloutRequest {
                env: env.clone(),
                request: change,
                asker: ctx.asker.clone(),
            });
            let c = ctx.clone();
            tokio::spawn(async move {
                c.send(match pending.wait().await {
                    Ok(ack) => Msg::Status(format!(
                        "{change} on {}: sealed{}{}",
                        ack.target,
                        ack.capsule_path
                            .map(|p| format!(" in {}", p.display()))
                            .unwrap_or_default(),
                        if ack.taken_over { " (taken over)" } else { "" }
                    )),
                    Err(e) => Msg::Error(format!("cannot {change} the rollout in {env}: {e}")),
                })
            });
        }
    }
}
