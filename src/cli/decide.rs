//! Decisions that are sealed: `stella release promote` and `stella release
//! rollback`. Each records the decision and its capsule in one transaction,
//! then exports the capsule into `capsules/`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;

use super::gate::{decision_json, evaluate_release, print_verdicts, requester};
use super::key::{load_private, sealing_key};
use super::release::{AppRelease, app_release};
use super::{Context, Failure, exit, load_config, parse_at, print_json, unknown_environment};
use crate::capsule::environment::{self, EffectiveEnvironment};
use crate::capsule::file::{CapsuleFile, EmbeddedBlob, Format};
use crate::capsule::seal::{KEY_MEDIA_TYPE, NewBlob, POLICY_MEDIA_TYPE, inputs_of, seal};
use crate::capsule::statement::{
    Action, Engine, EvidenceRef, Inputs, Predicate, ReleaseRef, Restores, Statement,
};
use crate::config::Config;
use crate::domain::approval::{APPROVAL_MEDIA_TYPE, Purpose};
use crate::domain::{Decision, Digest};
use crate::engine::run::{default_workflow, seconds};
use crate::engine::{StellaBuiltins, run_promotion_workflow};
use crate::sign::Envelope;
use crate::store::{DecisionRecord, SealedRow};
use crate::workflow::Workflow;
use crate::workflow::executor::{ExecEvent, StepState};
use crate::workspace::Workspace;

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// APP:TAG or APP@sha256:HEX (`APP` alone: what is live upstream of ENV)
    pub reference: String,
    /// The environment to promote into
    #[arg(long)]
    pub to: String,
    /// Sign an approval with --key first
    #[arg(long, requires = "key")]
    pub approve: bool,
    /// Your key, for --approve
    #[arg(long)]
    pub key: Option<String>,
    /// Decide at this clock (RFC 3339) instead of now
    #[arg(long)]
    pub at: Option<String>,
    /// Who asks (four-eyes discards their own approval); default $STELLA_USER
    #[arg(long = "as", env = "STELLA_USER", value_name = "EMAIL")]
    pub requester: Option<String>,
    /// Break a freeze, with this reason (needs break-glass approvals)
    #[arg(long, value_name = "REASON")]
    pub break_glass: Option<String>,
    /// Print the decision as JSON, with promotion_id, outcome and capsule
    #[arg(long)]
    pub json: bool,
    /// Workflow steps run at once (default: the number of cores)
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The app to roll back
    pub app: String,
    /// The environment to roll back
    #[arg(long)]
    pub env: String,
    /// The digest to return to (default: the last known-good one before the current)
    #[arg(long, value_name = "sha256:HEX")]
    pub to: Option<String>,
    /// Why, for the record
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub at: Option<String>,
    #[arg(long = "as", env = "STELLA_USER", value_name = "EMAIL")]
    pub requester: Option<String>,
    #[arg(long)]
    pub json: bool,
}

fn put_blobs(ws: &Workspace, blobs: &[NewBlob]) -> Result<(), Failure> {
    let cas = ws.evidence();
    for b in blobs {
        cas.put(&b.bytes)?;
    }
    Ok(())
}

/// Records a decision and its capsule atomically; returns (promotion id,
/// capsule id, payload digest).
fn record(
    ws: &Workspace,
    config: &Config,
    rec: &DecisionRecord,
    existing: Option<i64>,
    predicate: impl FnOnce(Option<Digest>, i64) -> Predicate,
) -> Result<(i64, i64, Digest), Failure> {
    let key = sealing_key(ws, &config.name)?;
    let mut store = ws.open_store()?;
    Ok(
        store.record_decision(rec, existing, |previous, promotion_id| {
            let sealed = seal(Statement::new(predicate(previous, promotion_id)), &key);
            serde_json::to_vec(&sealed.envelope).map(|envelope| SealedRow {
                payload_digest: sealed.payload_digest,
                envelope,
            })
        })?,
    )
}

/// The media type of a blob a statement references.
fn media_type_of(st: &Statement, d: &Digest) -> String {
    let i = &st.predicate.inputs;
    if let Some(e) = i.evidence.iter().find(|e| e.digest == *d) {
        return e.media_type.clone();
    }
    if i.policies.iter().any(|p| p.digest == *d) {
        return POLICY_MEDIA_TYPE.into();
    }
    if i.keys.iter().any(|k| k.digest == *d) {
        return KEY_MEDIA_TYPE.into();
    }
    if i.environment.digest == *d {
        return i.environment.media_type.clone();
    }
    "application/octet-stream".into()
}

/// A capsule from the store as a self-contained file.
pub fn capsule_file(ws: &Workspace, envelope: &[u8]) -> Result<CapsuleFile, Failure> {
    let env: Envelope = serde_json::from_slice(envelope)
        .map_err(|e| Failure::error(format!("a stored envelope is not DSSE JSON: {e}")))?;
    let payload = env.payload_bytes().map_err(Failure::error)?;
    let st: Statement = serde_json::from_slice(&payload).map_err(|e| {
        Failure::error(format!("a stored capsule is not a decision statement: {e}"))
    })?;
    let cas = ws.evidence();
    let mut evidence = Vec::new();
    for d in st.referenced() {
        let bytes = cas.get(d)?;
        evidence.push(EmbeddedBlob::new(d.clone(), &media_type_of(&st, d), &bytes));
    }
    let store = ws.open_store()?;
    let keys = store.keys()?;
    let public_key_pem = keys
        .iter()
        .find(|k| env.keyids().any(|id| id == k.keyid))
        .map(|k| k.public_pem.clone())
        .unwrap_or_default();
    Ok(CapsuleFile {
        capsule_version: crate::capsule::file::CAPSULE_VERSION,
        envelope: env,
        evidence,
        public_key_pem,
    })
}

/// Writes the capsule to `capsules/ENV-SHORT6-DATE.yaml` (or `-2`, `-3`…
/// when that name is taken by another capsule).
pub fn export_default(
    ws: &Workspace,
    env: &str,
    digest: &Digest,
    at: &DateTime<Utc>,
    file: &CapsuleFile,
) -> Result<PathBuf, Failure> {
    let dir = ws.root().join("capsules");
    std::fs::create_dir_all(&dir)?;
    let base = format!("{env}-{}-{}", &digest.hex()[..6], at.format("%Y-%m-%d"));
    let bytes = file.to_bytes(Format::Yaml);
    for n in 1.. {
        let name = if n == 1 {
            format!("{base}.yaml")
        } else {
            format!("{base}-{n}.yaml")
        };
        let path = dir.join(&name);
        match std::fs::read(&path) {
            Ok(existing) if existing == bytes => return Ok(PathBuf::from("capsules").join(name)),
            Ok(_) => continue,
            Err(_) => {
                write_atomic(&path, &bytes)?;
                return Ok(PathBuf::from("capsules").join(name));
            }
        }
    }
    unreachable!("some suffix is free")
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .map_err(|e| Failure::error(format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| Failure::error(format!("cannot write {}: {e}", path.display())))
}

fn print_step(ev: &ExecEvent) {
    match ev {
        ExecEvent::Started { step, attempt: 1 } => println!("  ▶ {step}"),
        ExecEvent::Started { step, attempt } => println!("  ↻ {step} (attempt {attempt})"),
        ExecEvent::Finished {
            step,
            state,
            duration,
            error,
            ..
        } => match state {
            StepState::Succeeded => println!("  ✓ {step} ({})", seconds(*duration)),
            StepState::Skipped => println!("  – {step} skipped"),
            StepState::Failed => println!(
                "  ✗ {step} ({}): {}",
                seconds(*duration),
                error.clone().unwrap_or_default()
            ),
            other => println!("  ✗ {step}: {}", format!("{other:?}").to_lowercase()),
        },
    }
}

fn resolved_at(ws: &Workspace, release: &AppRelease) -> Option<String> {
    let store = ws.open_store().ok()?;
    store
        .resolutions(Some(&release.app))
        .ok()?
        .into_iter()
        .rev()
        .find(|r| r.digest == release.digest)
        .map(|r| r.resolved_at.to_rfc3339_opts(SecondsFormat::Secs, true))
}

pub fn promote(ctx: &Context, a: PromoteArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    let now = parse_at(a.at.as_deref())?;
    let Some(env) = config.environment(&a.to) else {
        return Err(unknown_environment(&a.to, &config));
    };
    for line in crate::engine::deploy::recover(ws, &config)? {
        eprintln!("note: {line}");
    }
    let release = app_release(ctx, ws, &config, &a.reference, Some(&a.to), &now, a.json)?;
    if !a.json {
        println!("Promoting {} ({}) to {}", release.app, release.digest, a.to);
    }
    if a.approve {
        let name = a
            .key
            .as_deref()
            .expect("clap requires --key with --approve");
        let (key, rec) = load_private(ws, name)?;
        super::approve::sign_approval(
            ws,
            &key,
            &rec.email,
            &release,
            &a.to,
            Purpose::Promote,
            None,
            &now,
        )?;
        if !a.json {
            println!("Approved as {}", rec.email);
        }
    }
    let requested_by = requester(a.requester);
    let (inputs, decision, verdicts) = evaluate_release(
        ws,
        &config,
        &release,
        &a.to,
        requested_by.clone(),
        a.break_glass.clone(),
        now,
    )?;
    if !a.json {
        print_verdicts(&verdicts);
    }
    let (mut statement_inputs, blobs) = inputs_of(&inputs);
    put_blobs(ws, &blobs)?;
    // An allowed promotion that changes targets holds the environment's
    // lock from before the first change until its capsule is sealed.
    let mut existing = None;
    let mut deploy_error = None;
    let outcome = match decision {
        Decision::Deny => "blocked",
        Decision::Allow if env.targets.is_empty() && env.workflow.is_none() => "live",
        Decision::Allow => {
            // Load the workflow before taking the lock: a bad template is
            // an error, not a half-begun promotion.
            let workflow = match &env.workflow {
                Some(w) => {
                    Workflow::load(&config.root.join(w.get_ref())).map_err(Failure::error)?
                }
                None => default_workflow(),
            };
            let id = ws
                .open_store()?
                .begin_promotion(
                    &release.app,
                    &release.digest,
                    release.tag.as_deref(),
                    &a.to,
                    &requested_by,
                )
                .map_err(|e| match e {
                    crate::store::BeginError::Locked(_) => Failure::error(e)
                        .hint("wait for it to finish, or check it with `stella promotion list`"),
                    other => Failure::error(other),
                })?;
            existing = Some(id);
            if !a.json {
                let names: Vec<&str> = env.targets.iter().map(|t| t.get_ref().as_str()).collect();
                println!("Deploying to {}…", names.join(", "));
            }
            let builtins = StellaBuiltins {
                workspace: ws.clone(),
                config: config.clone(),
                app: release.app.clone(),
                digest: release.digest.clone(),
                tag: release.tag.clone(),
                environment: a.to.clone(),
                requested_by: requested_by.clone(),
            };
            let before = crate::engine::deploy::snapshot(&config, env);
            let json = a.json;
            let parallel = a
                .parallel
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            let report = super::runtime()?
                .block_on(run_promotion_workflow(
                    builtins,
                    &workflow,
                    id,
                    parallel,
                    |ev| {
                        if !json {
                            print_step(ev);
                        }
                    },
                ))
                .map_err(Failure::error)?;
            statement_inputs
                .evidence
                .extend(report.logs.iter().map(|(_, d)| EvidenceRef {
                    digest: d.clone(),
                    media_type: "text/plain; charset=utf-8".into(),
                    kind: "log".into(),
                }));
            if report.ok {
                if !a.json {
                    println!("Deployed");
                }
                "deployed"
            } else {
                let e = report
                    .failure
                    .unwrap_or_else(|| "the workflow failed".into());
                // A step after the switch failed: the previous release serves again.
                let restored = crate::engine::deploy::restore(&config, &before);
                if !a.json {
                    println!("Deploy FAILED: {e}");
                    for l in restored {
                        println!("  {l}");
                    }
                }
                deploy_error = Some(e);
                "deploy-failed"
            }
        }
    };
    let rec = DecisionRecord {
        app: release.app.clone(),
        digest: release.digest.clone(),
        tag: release.tag.clone(),
        environment: a.to.clone(),
        requested_by: requested_by.clone(),
        action: Action::Promote.as_str().into(),
        decision: if decision == Decision::Allow {
            "allow"
        } else {
            "deny"
        }
        .into(),
        outcome: outcome.into(),
        at: now,
        goes_live: decision == Decision::Allow && deploy_error.is_none(),
    };
    let action = if a.break_glass.is_some() && decision == Decision::Allow {
        Action::BreakGlass
    } else {
        Action::Promote
    };
    let resolved = resolved_at(ws, &release);
    let (promotion_id, capsule_id, _) =
        record(ws, &config, &rec, existing, |previous, promotion_id| {
            Predicate {
                action,
                app: release.app.clone(),
                release: ReleaseRef {
                    digest: release.digest.clone(),
                    tag: release.tag.clone(),
                    resolved_at: resolved,
                },
                from: env.from.as_ref().map(|f| f.get_ref().clone()),
                to: a.to.clone(),
                requested_by,
                clock: now.to_rfc3339_opts(SecondsFormat::Secs, true),
                promotion_id: Some(promotion_id),
                inputs: statement_inputs,
                gates: verdicts.clone(),
                decision,
                outcome: outcome.into(),
                engine: Engine::current(),
                previous,
                restores: None,
                reason: deploy_error.clone().or(a.break_glass.clone()),
            }
        })?;
    let (_, envelope) = ws
        .open_store()?
        .capsule(capsule_id)?
        .expect("just recorded");
    let file = capsule_file(ws, &envelope)?;
    let path = export_default(ws, &a.to, &release.digest, &now, &file)?;

    if a.json {
        let mut v = decision_json(decision, &inputs.subject, &now, &verdicts);
        v["promotion_id"] = promotion_id.into();
        v["outcome"] = outcome.into();
        v["capsule"] = path.display().to_string().into();
        print_json(&v)?;
    } else {
        match decision {
            Decision::Allow if deploy_error.is_some() => {
                println!(
                    "Promotion #{promotion_id} allowed, but the deploy failed; the previous release keeps serving"
                )
            }
            Decision::Allow => println!("Live in {} (promotion #{promotion_id})", a.to),
            Decision::Deny => {
                super::gate::print_explanation(decision, &verdicts);
                println!("Not promoted (promotion #{promotion_id} blocked)");
            }
        }
        println!("Decision capsule exported: {}", path.display());
    }
    Ok(match decision {
        Decision::Allow if deploy_error.is_some() => exit::ERROR,
        Decision::Allow => exit::OK,
        Decision::Deny => exit::BLOCKED,
    })
}

pub fn rollback(ctx: &Context, a: RollbackArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    let now = parse_at(a.at.as_deref())?;
    let Some(env) = config.environment(&a.env) else {
        return Err(unknown_environment(&a.env, &config));
    };
    if !config.apps.contains_key(&a.app) {
        return Err(Failure::usage(format!("no app `{}` in stella.toml", a.app)));
    }
    let store = ws.open_store()?;
    let history = store.live_history(&a.env, &a.app)?;
    let Some(current) = history.iter().find(|l| l.since <= now) else {
        return Err(Failure::error(format!(
            "{} is not live in {}; there is nothing to roll back",
            a.app, a.env
        )));
    };
    let target = match &a.to {
        Some(t) => {
            let d: Digest = t.parse().map_err(Failure::usage)?;
            if !history.iter().any(|l| l.digest == d) {
                return Err(Failure::usage(format!(
                    "{d} was never live in {}; a rollback returns to an earlier release",
                    a.env
                ))
                .hint(format!(
                    "`stella capsule list --env {} --app {}` shows what was",
                    a.env, a.app
                )));
            }
            d
        }
        None => history
            .iter()
            .filter(|l| l.since <= now)
            .find(|l| l.digest != current.digest)
            .map(|l| l.digest.clone())
            .ok_or_else(|| {
                Failure::error(format!(
                    "{} has had only one release in {}; there is no earlier one",
                    a.app, a.env
                ))
            })?,
    };
    if target == current.digest {
        return Err(Failure::usage(format!(
            "{target} is already live in {}",
            a.env
        )));
    }

    // The capsule it was promoted under, kept as evidence with the evidence
    // it used: preserved, not fetched again.
    let original = store.promoted_under(&a.env, &target)?;
    let mut evidence = Vec::new();
    if let Some(o) = &original {
        let (_, env_bytes) = store.capsule(o.id)?.expect("listed capsules exist");
        let digest = ws.evidence().put(&env_bytes)?;
        evidence.push(EvidenceRef {
            digest,
            media_type: APPROVAL_MEDIA_TYPE.into(),
            kind: "capsule".into(),
        });
        let envelope: Envelope = serde_json::from_slice(&env_bytes).map_err(Failure::error)?;
        let st: Statement =
            serde_json::from_slice(&envelope.payload_bytes().map_err(Failure::error)?)
                .map_err(Failure::error)?;
        evidence.extend(st.predicate.inputs.evidence);
    }
    let effective = EffectiveEnvironment {
        name: a.env.clone(),
        from: env.from.as_ref().map(|f| f.get_ref().clone()),
        gates: env.gates.clone(),
        freeze: Default::default(),
    };
    let env_text = effective.to_toml().into_bytes();
    let env_digest = ws.evidence().put(&env_text)?;
    let requested_by = requester(a.requester);
    let mut existing = None;
    let mut deploy_error: Option<String> = None;
    if !env.targets.is_empty() {
        let id = ws
            .open_store()?
            .begin_promotion(&a.app, &target, None, &a.env, &requested_by)
            .map_err(Failure::error)?;
        existing = Some(id);
        let fetched = super::runtime()?
            .block_on(crate::engine::deploy::fetch_if_remote(
                &config, &a.app, &target,
            ))
            .map_err(Failure::error)?;
        match crate::engine::deploy::deploy_targets(
            &config,
            env,
            &a.app,
            &target,
            None,
            true,
            fetched
                .as_ref()
                .map(|f| f as &dyn crate::deploy::unpack::BlobSource),
        ) {
            Ok(lines) => {
                if !a.json {
                    for l in lines {
                        println!("  {l}");
                    }
                }
            }
            Err(e) => {
                if !a.json {
                    println!("Rollback deploy FAILED: {e}");
                }
                deploy_error = Some(e);
            }
        }
    }
    let outcome = if deploy_error.is_some() {
        "rollback-failed"
    } else {
        "rolled-back"
    };
    let rec = DecisionRecord {
        app: a.app.clone(),
        digest: target.clone(),
        tag: None,
        environment: a.env.clone(),
        requested_by: requested_by.clone(),
        action: Action::Rollback.as_str().into(),
        decision: "allow".into(),
        outcome: outcome.into(),
        at: now,
        goes_live: deploy_error.is_none(),
    };
    let from_digest = current.digest.clone();
    let (promotion_id, capsule_id, _) =
        record(ws, &config, &rec, existing, |previous, promotion_id| {
            Predicate {
                action: Action::Rollback,
                app: a.app.clone(),
                release: ReleaseRef {
                    digest: target.clone(),
                    tag: None,
                    resolved_at: None,
                },
                from: None,
                to: a.env.clone(),
                requested_by,
                clock: now.to_rfc3339_opts(SecondsFormat::Secs, true),
                promotion_id: Some(promotion_id),
                inputs: Inputs {
                    evidence,
                    policies: vec![],
                    environment: EvidenceRef {
                        digest: env_digest,
                        media_type: environment::MEDIA_TYPE.into(),
                        kind: "config".into(),
                    },
                    keys: vec![],
                    upstream: None,
                    break_glass: None,
                },
                gates: vec![],
                decision: Decision::Allow,
                outcome: outcome.into(),
                engine: Engine::current(),
                previous,
                restores: Some(Restores {
                    digest: target.clone(),
                    capsule: original.as_ref().map(|o| o.payload_digest.clone()),
                }),
                reason: deploy_error.clone().or(Some(
                    a.reason
                        .clone()
                        .unwrap_or_else(|| format!("roll back from {from_digest}")),
                )),
            }
        })?;
    let (_, envelope) = ws
        .open_store()?
        .capsule(capsule_id)?
        .expect("just recorded");
    let file = capsule_file(ws, &envelope)?;
    let path = export_default(ws, &a.env, &target, &now, &file)?;
    if a.json {
        print_json(&serde_json::json!({
            "app": a.app, "environment": a.env, "digest": target, "from": from_digest,
            "restores_capsule": original.map(|o| o.payload_digest),
            "promotion_id": promotion_id, "outcome": outcome, "capsule": path,
        }))?;
    } else {
        println!(
            "Rolled back {} in {}: {} → {}",
            a.app, a.env, from_digest, target
        );
        match &original {
            Some(o) => println!(
                "Restores the release promoted under capsule #{} ({})",
                o.id, o.payload_digest
            ),
            None => println!(
                "note: {target} was marked live outside stella; no promotion capsule to reference"
            ),
        }
        println!("Decision capsule exported: {}", path.display());
    }
    Ok(if deploy_error.is_some() {
        exit::ERROR
    } else {
        exit::OK
    })
}
