//! A promotion, end to end: resolve the release at promotion time, sign
//! the requester's approval if asked, evaluate the gates, run the
//! environment's workflow under its lock (which deploys), then seal the
//! decision and its outcome — allowed, blocked, failed or aborted — in a
//! capsule exported to `capsules/`.

use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};

use super::EngineError;
use super::evaluate::evaluate_release;
use super::event::{EventKind, Sink};
use super::keys::{Asker, prove};
use super::resolve::app_release;
use super::run::{default_workflow, run_promotion_workflow};
use super::runs::Runs;
use super::seal::{put_blobs, resolved_at, seal_and_export};
use super::{StellaBuiltins, resolve::block_on};
use crate::capsule::seal::inputs_of;
use crate::capsule::statement::{Action, Engine, EvidenceRef, Predicate, ReleaseRef};
use crate::config::Config;
use crate::domain::Clock;
use crate::domain::requester::Asked;
use crate::domain::{CanaryPhase, Decision, PromotionOutcome, Verdict};
use crate::gates::Subject;
use crate::store::DecisionRecord;
use crate::workflow::Workflow;
use crate::workspace::Workspace;

/// What to promote, where, and as whom.
#[derive(Debug, Clone)]
pub struct PromoteRequest {
    /// `APP:TAG`, `APP@sha256:HEX`, or `APP` (what is live upstream).
    pub reference: String,
    /// More references: a release set, promoted with `reference` as one
    /// decision — every app's gates evaluated, one capsule with a subject
    /// per app, deployed all or none. Empty for one app.
    pub also: Vec<String>,
    pub to: String,
    /// Sign an approval with this key of the workspace first (for every
    /// app of a set).
    pub approve_with: Option<String>,
    /// Who asks. There is no clock here: a promotion is decided at the
    /// real clock, always (a what-if is `gate check`, which seals nothing).
    pub asker: Asker,
    pub break_glass: Option<String>,
    /// Workflow steps run at once.
    pub parallel: usize,
    /// The digest the requester reviewed: if the tag now names another,
    /// the promotion is refused rather than promoting something unseen.
    /// (For the first reference; a set's others are named by digest to
    /// pin them.)
    pub expect: Option<crate::domain::Digest>,
}

/// How a promotion ended; a blocked one is an outcome, not an error.
#[derive(Debug, Clone)]
pub struct PromoteOutcome {
    pub promotion_id: i64,
    pub capsule_id: i64,
    pub subject: Subject,
    pub at: DateTime<Utc>,
    /// The decision: for a set, allowed only when every app is.
    pub decision: Decision,
    /// The first app's verdicts.
    pub verdicts: Vec<Verdict>,
    /// A release set's other apps, each with its own decision.
    pub members: Vec<MemberOutcome>,
    /// `deployed`, `live` (no targets), `blocked`, `deploy-failed`,
    /// `rolled-back` (a canary's analysis sent traffic back), `aborted`.
    pub outcome: PromotionOutcome,
    /// Why the deploy failed, when it did.
    pub failure: Option<String>,
    /// The exported capsule, relative to the workspace.
    pub capsule: PathBuf,
    /// The capsule and its summary attached to the image (or pending).
    pub attachment: Option<super::publish::Pushed>,
}

/// One more app of a release set, as it was decided.
#[derive(Debug, Clone)]
pub struct MemberOutcome {
    pub subject: Subject,
    pub decision: Decision,
    pub verdicts: Vec<Verdict>,
}

/// One app of the promotion: its release, and its gates' inputs and
/// verdicts.
struct Member {
    release: super::resolve::AppRelease,
    subject: Subject,
    decision: Decision,
    verdicts: Vec<Verdict>,
    inputs: crate::capsule::statement::Inputs,
}

pub fn promote(
    ws: &Workspace,
    config: &Config,
    req: &PromoteRequest,
    runs: &Runs,
    sink: &Sink,
) -> Result<PromoteOutcome, EngineError> {
    let now = Clock::Real.now();
    let Some(env) = config.environment(&req.to) else {
        return Err(super::unknown_environment(&req.to, config));
    };
    // Who asks is proven (or found unverifiable) before anything happens.
    let prover = prove(ws, &req.asker)?;
    let requested_by = prover.requested_by();
    for line in super::deploy::recover(ws, config)? {
        sink.emit(EventKind::Note(line));
    }
    let mut releases = Vec::with_capacity(1 + req.also.len());
    for reference in std::iter::once(&req.reference).chain(&req.also) {
        let (release, notes) = app_release(ws, config, reference, Some(&req.to), &now)?;
        if releases
            .iter()
            .any(|(r, _): &(super::resolve::AppRelease, _)| r.app == release.app)
        {
            return Err(EngineError::usage(format!(
                "`{}` is named twice in the release set",
                release.app
            ))
            .hint("a set promotes each app once: name every app at one reference"));
        }
        releases.push((release, notes));
    }
    if let Some(expected) = &req.expect
        && *expected != releases[0].0.digest
    {
        return Err(EngineError::error(format!(
            "{} now names {}, not the {} you reviewed",
            req.reference, releases[0].0.digest, expected
        ))
        .hint("look at the new release's gates before promoting it"));
    }
    // A rollback's pin holds the lane: refused before anything is signed
    // or sealed — for every app of a set.
    for (release, _) in &releases {
        super::pin::ensure_unpinned(ws, &req.to, &release.app)?;
    }
    for (release, notes) in &releases {
        for n in notes {
            sink.emit(EventKind::Note(n.clone()));
        }
        sink.emit(EventKind::Resolved {
            app: release.app.clone(),
            digest: release.digest.clone(),
            tag: release.tag.clone(),
            environment: req.to.clone(),
        });
    }
    if let Some(name) = &req.approve_with {
        for (release, _) in &releases {
            let a = super::approve::approve_at(
                ws,
                &super::approve::ApproveRequest {
                    app: release.app.clone(),
                    digest: release.digest.clone(),
                    env: req.to.clone(),
                    key: Some(name.clone()),
                    comment: None,
                    purpose: crate::domain::approval::Purpose::Promote,
                },
                now,
            )?;
            sink.emit(EventKind::Approved {
                signer: a.signer,
                approval: a.evidence.digest,
            });
        }
    }
    let mut members = Vec::with_capacity(releases.len());
    for (release, _) in releases {
        let (inputs, decision, verdicts) = evaluate_release(
            ws,
            config,
            &release,
            &req.to,
            requested_by.clone(),
            req.break_glass.clone(),
            now,
        )?;
        sink.emit(EventKind::GatesEvaluated {
            app: release.app.clone(),
            digest: release.digest.clone(),
            environment: req.to.clone(),
            at: now,
            decision,
            verdicts: verdicts.clone(),
        });
        let (statement_inputs, blobs) = inputs_of(&inputs);
        put_blobs(ws, &blobs)?;
        members.push(Member {
            release,
            subject: inputs.subject,
            decision,
            verdicts,
            inputs: statement_inputs,
        });
    }
    // A set goes in only if every app may.
    let decision = if members.iter().all(|m| m.decision == Decision::Allow) {
        Decision::Allow
    } else {
        Decision::Deny
    };
    // An allowed promotion that changes targets holds the environment's
    // lock from before the first change until its capsule is sealed.
    let mut existing = None;
    let mut failure = None;
    let mut abort_request = None;
    let outcome = match decision {
        Decision::Deny => PromotionOutcome::Blocked,
        Decision::Allow if env.targets.is_empty() && env.workflow.is_none() => {
            PromotionOutcome::Live
        }
        Decision::Allow => {
            // Load the workflow before taking the lock: a bad template is
            // an error, not a half-begun promotion.
            let workflow = match &env.workflow {
                Some(w) => {
                    Workflow::load(&config.root.join(w.get_ref())).map_err(EngineError::error)?
                }
                None => default_workflow(),
            };
            let lead = &members[0].release;
            let others: Vec<(String, crate::domain::Digest)> = members[1..]
                .iter()
                .map(|m| (m.release.app.clone(), m.release.digest.clone()))
                .collect();
            let id = ws.open_store()?.begin_set_promotion(
                &lead.app,
                &lead.digest,
                lead.tag.as_deref(),
                &req.to,
                &requested_by,
                &others,
            )?;
            existing = Some(id);
            // What every app's targets serve now: all of them go back if
            // any app's workflow fails.
            let before: Vec<_> = members
                .iter()
                .map(|m| super::deploy::snapshot(config, env, &m.release.app))
                .collect();
            let control = runs.register(id);
            let set = members.len() > 1;
            let mut ran = 0;
            let mut ok = true;
            let mut run_failure = None;
            for m in members.iter_mut() {
                let release = &m.release;
                sink.emit(EventKind::PromotionCreated {
                    promotion_id: id,
                    app: release.app.clone(),
                    digest: release.digest.clone(),
                    environment: req.to.clone(),
                    targets: env.targets.iter().map(|t| t.get_ref().clone()).collect(),
                    steps: workflow
                        .steps
                        .iter()
                        .map(|s| (s.id.clone(), s.needs.clone()))
                        .collect(),
                    critical_path: workflow.critical_path.clone(),
                });
                let builtins = StellaBuiltins {
                    workspace: ws.clone(),
                    config: config.clone(),
                    app: release.app.clone(),
                    digest: release.digest.clone(),
                    tag: release.tag.clone(),
                    environment: req.to.clone(),
                    requested_by: requested_by.clone(),
                    clock: now,
                    promotion_id: id,
                };
                ran += 1;
                let report = block_on(run_promotion_workflow(
                    builtins,
                    &workflow,
                    id,
                    req.parallel.max(1),
                    control.clone(),
                    sink,
                ));
                // A run that could not be recorded is a failed deploy,
                // sealed like one: the lock is never left behind in a live
                // process.
                let (app_ok, app_failure, logs) = match report {
                    Ok(Ok(r)) => {
                        abort_request = abort_request.or(r.abort_request);
                        (r.ok, r.failure, r.logs)
                    }
                    Ok(Err(e)) => (
                        false,
                        Some(format!("the run could not be recorded: {e}")),
                        vec![],
                    ),
                    Err(e) => (false, Some(format!("the run could not start: {e}")), vec![]),
                };
                m.inputs
                    .evidence
                    .extend(logs.iter().map(|(_, d)| EvidenceRef {
                        digest: d.clone(),
                        media_type: "text/plain; charset=utf-8".into(),
                        kind: "log".into(),
                    }));
                if !app_ok {
                    ok = false;
                    let f = app_failure.unwrap_or_else(|| "the workflow failed".into());
                    run_failure = Some(if set {
                        format!("{}: {f}", release.app)
                    } else {
                        f
                    });
                    break;
                }
            }
            runs.remove(id);
            let run_failure = run_failure.map(|f| {
                if set {
                    format!("{f} (the release set is put back whole)")
                } else {
                    f
                }
            });
            sink.emit(EventKind::RunFinished {
                promotion_id: id,
                ok,
                failure: run_failure.clone(),
            });
            if ok {
                PromotionOutcome::Deployed
            } else {
                let aborted = control.is_cancelled();
                let e = if aborted {
                    "aborted by an operator".to_owned()
                } else {
                    run_failure.unwrap_or_else(|| "the workflow failed".into())
                };
                // A step after the switch failed: the previous releases
                // serve again — of every app of a set that ran.
                for (m, before) in members.iter().zip(&before).take(ran) {
                    let mut lines = super::deploy::restore(config, &m.release.app, before);
                    if set {
                        // Script targets keep no state to switch back: their
                        // hooks run again with the release live before.
                        lines.extend(super::deploy::restore_scripts(
                            ws,
                            config,
                            &req.to,
                            &m.release.app,
                        ));
                    }
                    sink.emit(EventKind::TargetsRestored {
                        promotion_id: id,
                        lines,
                    });
                }
                failure = Some(e);
                if aborted {
                    PromotionOutcome::Aborted
                } else if let Some(stopped) = canary_stopped(ws, &req.to, env, id) {
                    // Its analysis (or an operator) sent all traffic back:
                    // that is what happened, not a deploy that could not
                    // be done.
                    stopped
                } else {
                    PromotionOutcome::DeployFailed
                }
            }
        }
    };
    let mut members = members.into_iter();
    let lead = members.next().expect("a promotion names one app or more");
    let others: Vec<Member> = members.collect();
    let also: Vec<(String, crate::domain::Digest)> = others
        .iter()
        .map(|m| (m.release.app.clone(), m.release.digest.clone()))
        .collect();
    let release = &lead.release;
    let rec = DecisionRecord {
        app: release.app.clone(),
        digest: release.digest.clone(),
        tag: release.tag.clone(),
        environment: req.to.clone(),
        requested_by: requested_by.clone(),
        action: Action::Promote.as_str().into(),
        decision: if decision == Decision::Allow {
            "allow"
        } else {
            "deny"
        }
        .into(),
        outcome,
        at: now,
        goes_live: decision == Decision::Allow && failure.is_none(),
        also: also.clone(),
    };
    let action = if req.break_glass.is_some() && decision == Decision::Allow {
        Action::BreakGlass
    } else {
        Action::Promote
    };
    let clock = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let requester = prover.sign(&Asked {
        action: action.as_str(),
        app: &release.app,
        digest: &release.digest,
        environment: &req.to,
        clock: &clock,
        also: &also,
    })?;
    let statement_members: Vec<crate::capsule::statement::Member> = others
        .iter()
        .map(|m| crate::capsule::statement::Member {
            app: m.release.app.clone(),
            release: ReleaseRef {
                digest: m.release.digest.clone(),
                tag: m.release.tag.clone(),
                resolved_at: resolved_at(ws, &m.release),
            },
            inputs: m.inputs.clone(),
            gates: m.verdicts.clone(),
            decision: m.decision,
            restores: None,
        })
        .collect();
    let resolved = resolved_at(ws, release);
    let sealed = seal_and_export(ws, config, &rec, existing, |previous, promotion_id| {
        Predicate {
            action,
            app: release.app.clone(),
            release: ReleaseRef {
                digest: release.digest.clone(),
                tag: release.tag.clone(),
                resolved_at: resolved,
            },
            from: env.from.as_ref().map(|f| f.get_ref().clone()),
            to: req.to.clone(),
            requested_by: requested_by.clone(),
            requester: Some(requester),
            clock,
            promotion_id: Some(promotion_id),
            inputs: lead.inputs.clone(),
            gates: lead.verdicts.clone(),
            decision,
            outcome,
            engine: Engine::current(),
            previous,
            restores: None,
            reason: failure.clone().or(req.break_glass.clone()),
            members: statement_members,
        }
    })?;
    if existing.is_some() {
        // Requests from other processes: the abort that stopped the run
        // gets its capsule, any other its refusal.
        if let Err(e) = super::run::answer_left(
            ws,
            &req.to,
            sealed.promotion_id,
            abort_request,
            Some(sealed.capsule_id),
        ) {
            sink.emit(EventKind::Note(format!(
                "the requests on promotion #{} could not be answered: {e}",
                sealed.promotion_id
            )));
        }
    }
    sink.emit(EventKind::CapsuleSealed {
        promotion_id: sealed.promotion_id,
        capsule_id: sealed.capsule_id,
        outcome,
        path: sealed.path.clone(),
    });
    let attachment = super::publish::after_seal(ws, config, sealed.capsule_id, sink);
    Ok(PromoteOutcome {
        attachment,
        promotion_id: sealed.promotion_id,
        capsule_id: sealed.capsule_id,
        subject: lead.subject,
        at: now,
        decision,
        verdicts: lead.verdicts,
        members: others
            .into_iter()
            .map(|m| MemberOutcome {
                subject: m.subject,
                decision: m.decision,
                verdicts: m.verdicts,
            })
            .collect(),
        outcome,
        failure,
        capsule: sealed.path,
    })
}

/// How a canary of promotion `id` on one of `env`'s routed targets
/// ended, when its analysis or an operator stopped it.
fn canary_stopped(
    ws: &Workspace,
    env_name: &str,
    env: &crate::config::Environment,
    id: i64,
) -> Option<PromotionOutcome> {
    let store = ws.open_store().ok()?;
    env.targets.iter().find_map(|t| {
        let progress = super::canary::progress(&store, env_name, t.get_ref());
        if progress.promotion != Some(id) {
            return None;
        }
        match progress.state? {
            CanaryPhase::RolledBack => Some(PromotionOutcome::RolledBack),
            CanaryPhase::Aborted => Some(PromotionOutcome::Aborted),
            _ => None,
        }
    })
}
