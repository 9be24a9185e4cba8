//! Sealing decisions: the capsule recorded in the same transaction as the
//! decision, then exported as one self-contained file into `capsules/`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

use super::EngineError;
use super::keys::sealing_key;
use super::resolve::AppRelease;
use crate::capsule::file::{CapsuleFile, EmbeddedBlob, Format};
use crate::capsule::seal::{
    KEY_MEDIA_TYPE, NewBlob, POLICY_MEDIA_TYPE, sealed_decision, sealed_row,
};
use crate::capsule::statement::{Predicate, Statement};
use crate::config::Config;
use crate::domain::Digest;
use crate::sign::Envelope;
use crate::store::DecisionRecord;
use crate::workspace::Workspace;

pub fn put_blobs(ws: &Workspace, blobs: &[NewBlob]) -> Result<(), EngineError> {
    let cas = ws.evidence();
    for b in blobs {
        cas.put(&b.bytes)?;
    }
    Ok(())
}

/// Records a decision and its capsule atomically; returns (promotion id,
/// capsule id, payload digest).
pub fn record(
    ws: &Workspace,
    config: &Config,
    rec: &DecisionRecord,
    existing: Option<i64>,
    predicate: impl FnOnce(Option<Digest>, i64) -> Predicate,
) -> Result<(i64, i64, Digest), EngineError> {
    let key = sealing_key(ws, &config.name)?;
    let (ctx, attach) = summary_context(config, &rec.app, &rec.environment);
    let mut store = ws.open_store()?;
    Ok(
        store.record_decision(rec, existing, |previous, head, promotion_id| {
            let st = Statement::new(predicate(previous.clone(), promotion_id));
            sealed_decision(st, previous.as_ref(), head, &key, &ctx, attach)
        })?,
    )
}

/// What a decision's verification summary needs from the config: where
/// the app's image lives, how many approvers the environment names, and
/// whether capsule and summary are attached to the image.
pub fn summary_context(
    config: &Config,
    app: &str,
    environment: &str,
) -> (
    crate::capsule::summary::Context,
    Option<crate::store::AttachTarget>,
) {
    let found = config.apps.get(app);
    let image = found.map_or_else(|| app.to_owned(), |a| a.image.repository.to_string());
    let approvers = config
        .environment(environment)
        .and_then(|e| e.gates.approval.as_ref())
        .map(|a| a.get_ref().approvers.len());
    let attach = found
        .filter(|a| a.attach)
        .map(|a| crate::store::AttachTarget {
            image: image.clone(),
            insecure: a.insecure,
        });
    (
        crate::capsule::summary::Context { image, approvers },
        attach,
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
pub fn capsule_file(ws: &Workspace, envelope: &[u8]) -> Result<CapsuleFile, EngineError> {
    let env: Envelope = serde_json::from_slice(envelope)
        .map_err(|e| EngineError::error(format!("a stored envelope is not DSSE JSON: {e}")))?;
    let payload = env.payload_bytes().map_err(EngineError::error)?;
    let st: Statement = serde_json::from_slice(&payload).map_err(|e| {
        EngineError::error(format!("a stored capsule is not a decision statement: {e}"))
    })?;
    let cas = ws.evidence();
    let mut evidence = Vec::new();
    for d in st.referenced() {
        let bytes = cas.get(d)?;
        evidence.push(EmbeddedBlob::new(d.clone(), &media_type_of(&st, d), &bytes));
    }
    let store = ws.open_store()?;
    let keys = store.keys()?;
    let summary = match store.capsule_by_payload(&Digest::of(&payload))? {
        Some((row, _)) => store
            .summary(row.id)?
            .map(|s| serde_json::from_slice::<Envelope>(&s.envelope))
            .transpose()
            .map_err(|e| EngineError::error(format!("a stored summary is not DSSE JSON: {e}")))?,
        None => None,
    };
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
        summary,
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
) -> Result<PathBuf, EngineError> {
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

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .map_err(|e| EngineError::error(format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| EngineError::error(format!("cannot write {}: {e}", path.display())))
}

pub fn resolved_at(ws: &Workspace, release: &AppRelease) -> Option<String> {
    let store = ws.open_store().ok()?;
    store
        .resolutions(Some(&release.app))
        .ok()?
        .into_iter()
        .rev()
        .find(|r| r.digest == release.digest)
        .map(|r| r.resolved_at.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// A sealed decision: its promotion, its capsule, and the exported file.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub promotion_id: i64,
    pub capsule_id: i64,
    /// Relative to the workspace.
    pub path: PathBuf,
}

/// Records the decision with its capsule in one transaction, then exports
/// the capsule as a self-contained file into `capsules/`.
pub fn seal_and_export(
    ws: &Workspace,
    config: &Config,
    rec: &DecisionRecord,
    existing: Option<i64>,
    predicate: impl FnOnce(Option<Digest>, i64) -> Predicate,
) -> Result<Sealed, EngineError> {
    let (promotion_id, capsule_id, _) = record(ws, config, rec, existing, predicate)?;
    let (_, envelope) = ws.open_store()?.capsule(capsule_id)?.ok_or_else(|| {
        EngineError::error(format!("capsule #{capsule_id} vanished from the store"))
    })?;
    let file = capsule_file(ws, &envelope)?;
    let path = export_default(ws, &rec.environment, &rec.digest, &rec.at, &file)?;
    Ok(Sealed {
        promotion_id,
        capsule_id,
        path,
    })
}

/// Stores the effective environment a gateless decision (a rollout step,
/// a consolidation, a flags change) was taken in; returns its digest.
pub fn environment_digest(
    ws: &Workspace,
    name: &str,
    env: &crate::config::Environment,
) -> Result<Digest, EngineError> {
    let effective = crate::capsule::environment::EffectiveEnvironment {
        name: name.to_owned(),
        from: env.from.as_ref().map(|f| f.get_ref().clone()),
        gates: env.gates.clone(),
        freeze: Default::default(),
    };
    Ok(ws.evidence().put(effective.to_toml().as_bytes())?)
}

/// A decision taken on a release already through its gates — a rollout
/// step, an operator's action, a consolidation, a flags change, an unpin:
/// one record of what happened as evidence, the effective environment,
/// no gates. One shape for all of them, so they seal and replay alike.
pub struct Gateless<'a> {
    pub action: crate::capsule::statement::Action,
    pub app: &'a str,
    pub digest: &'a Digest,
    pub tag: Option<String>,
    pub environment: &'a str,
    pub requested_by: &'a str,
    pub at: DateTime<Utc>,
    /// What happened, as evidence (`media_type`, `kind`).
    pub record: crate::capsule::statement::EvidenceRef,
    /// From `environment_digest`.
    pub env_digest: &'a Digest,
    pub outcome: crate::domain::PromotionOutcome,
    pub reason: String,
    /// Who asked, signed (`signed_by`); `None` for what a running
    /// promotion decides on its own (a canary's step).
    pub requester: Option<crate::domain::requester::Requester>,
}

impl Gateless<'_> {
    /// Has `prover` sign this decision's request and records it.
    pub fn signed_by(mut self, prover: &super::keys::Prover) -> Result<Self, EngineError> {
        let clock = self.at.to_rfc3339_opts(SecondsFormat::Secs, true);
        self.requester = Some(prover.sign(&crate::domain::requester::Asked {
            action: self.action.as_str(),
            app: self.app,
            digest: self.digest,
            environment: self.environment,
            clock: &clock,
            also: &[],
        })?);
        Ok(self)
    }

    /// Its row in the store; `goes_live` when it changes what serves.
    pub fn decision(&self, goes_live: bool) -> DecisionRecord {
        DecisionRecord {
            app: self.app.to_owned(),
            digest: self.digest.clone(),
            tag: self.tag.clone(),
            environment: self.environment.to_owned(),
            requested_by: self.requested_by.to_owned(),
            action: self.action.as_str().into(),
            decision: "allow".into(),
            outcome: self.outcome,
            at: self.at,
            goes_live,
            also: Vec::new(),
        }
    }

    pub fn predicate(&self, previous: Option<Digest>, promotion_id: i64) -> Predicate {
        use crate::capsule::environment;
        use crate::capsule::statement::{Engine, EvidenceRef, Inputs, ReleaseRef};
        Predicate {
            action: self.action,
            app: self.app.to_owned(),
            release: ReleaseRef {
                digest: self.digest.clone(),
                tag: self.tag.clone(),
                resolved_at: None,
            },
            from: None,
            to: self.environment.to_owned(),
            requested_by: self.requested_by.to_owned(),
            requester: self.requester.clone(),
            clock: self.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            promotion_id: Some(promotion_id),
            inputs: Inputs {
                evidence: vec![self.record.clone()],
                policies: vec![],
                environment: EvidenceRef {
                    digest: self.env_digest.clone(),
                    media_type: environment::MEDIA_TYPE.into(),
                    kind: "config".into(),
                },
                keys: vec![],
                upstream: None,
                break_glass: None,
            },
            gates: vec![],
            decision: crate::domain::Decision::Allow,
            outcome: self.outcome,
            engine: Engine::current(),
            previous,
            restores: None,
            reason: Some(self.reason.clone()),
            members: Vec::new(),
        }
    }
}

/// Seals a gateless decision taken inside a running promotion (its lock
/// held by the caller) as a capsule of its own in the environment's chain:
/// the promotion stays open and nothing goes live. Returns the capsule's
/// id and exported path.
pub fn seal_step(
    ws: &Workspace,
    config: &Config,
    decision: &Gateless<'_>,
    promotion_id: i64,
) -> Result<Sealed, EngineError> {
    let key = sealing_key(ws, &config.name)?;
    let mut store = ws.open_store()?;
    let (capsule_id, _) = store.record_step(
        &decision.decision(false),
        promotion_id,
        |previous, head, id| {
            let st = Statement::new(decision.predicate(previous.clone(), id));
            sealed_row(st, previous.as_ref(), head, &key)
        },
    )?;
    let (_, envelope) = store.capsule(capsule_id)?.ok_or_else(|| {
        EngineError::error(format!("capsule #{capsule_id} vanished from the store"))
    })?;
    let file = capsule_file(ws, &envelope)?;
    let path = export_default(
        ws,
        decision.environment,
        decision.digest,
        &decision.at,
        &file,
    )?;
    Ok(Sealed {
        promotion_id,
        capsule_id,
        path,
    })
}

/// The media type of a canary step's record: the weights, the analysis
/// samples and who or what caused it.
pub const CANARY_MEDIA_TYPE: &str = "application/vnd.stella.canary-step+json";

/// Seals the decisions a running promotion takes on its way — each
/// canary weight change, each operator's pause, resume, promote or abort,
/// an automatic rollback — as capsules of their own in the environment's
/// chain, with what the analysis saw as evidence.
#[derive(Clone)]
pub struct StepSealer {
    pub workspace: Workspace,
    pub config: Config,
    pub promotion_id: i64,
    pub app: String,
    pub digest: Digest,
    pub tag: Option<String>,
    pub environment: String,
    pub requested_by: String,
}

/// One step's record, sealed as evidence.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepRecord<'a> {
    pub target: &'a str,
    /// The candidate's weight before and after, in percent.
    pub from_weight: u8,
    pub to_weight: u8,
    /// `schedule`, `analysis` (an automatic rollback) or `operator`.
    pub cause: crate::domain::Cause,
    pub samples: &'a [String],
}

impl StepSealer {
    /// Seals `action` at the wall clock (a step happens when it happens;
    /// it evaluates no gate). Returns the exported capsule's path.
    pub fn seal(
        &self,
        action: crate::capsule::statement::Action,
        step: &StepRecord<'_>,
        reason: String,
    ) -> Result<PathBuf, EngineError> {
        self.seal_step(action, step, reason).map(|(_, path)| path)
    }

    /// `seal`, returning the capsule's id with its path.
    pub fn seal_step(
        &self,
        action: crate::capsule::statement::Action,
        step: &StepRecord<'_>,
        reason: String,
    ) -> Result<(i64, PathBuf), EngineError> {
        use crate::capsule::statement::EvidenceRef;
        let config = &self.config;
        let env = config
            .environment(&self.environment)
            .ok_or_else(|| super::unknown_environment(&self.environment, config))?;
        let now = Utc::now();
        let cas = self.workspace.evidence();
        let env_digest = environment_digest(&self.workspace, &self.environment, env)?;
        let record = serde_json::to_vec(step).expect("a step record serializes");
        let record_digest = cas.put(&record)?;
        let outcome = match action {
            crate::capsule::statement::Action::Abort => crate::domain::PromotionOutcome::Aborted,
            crate::capsule::statement::Action::Pause => crate::domain::PromotionOutcome::Paused,
            _ => crate::domain::PromotionOutcome::Live,
        };
        let decision = Gateless {
            action,
            app: &self.app,
            digest: &self.digest,
            tag: self.tag.clone(),
            environment: &self.environment,
            requested_by: &self.requested_by,
            at: now,
            record: EvidenceRef {
                digest: record_digest,
                media_type: CANARY_MEDIA_TYPE.into(),
                kind: "canary-step".into(),
            },
            env_digest: &env_digest,
            outcome,
            reason,
            requester: None,
        };
        let key = sealing_key(&self.workspace, &config.name)?;
        let mut store = self.workspace.open_store()?;
        let (capsule_id, _) = store.record_step(
            &decision.decision(false),
            self.promotion_id,
            |previous, head, id| {
                let st = Statement::new(decision.predicate(previous.clone(), id));
                sealed_row(st, previous.as_ref(), head, &key)
            },
        )?;
        let (_, envelope) = store.capsule(capsule_id)?.ok_or_else(|| {
            EngineError::error(format!("capsule #{capsule_id} vanished from the store"))
        })?;
        let file = capsule_file(&self.workspace, &envelope)?;
        export_default(
            &self.workspace,
            &self.environment,
            &self.digest,
            &now,
            &file,
        )
        .map(|path| (capsule_id, path))
    }
}
