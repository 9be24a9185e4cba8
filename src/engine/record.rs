//! Changes to the record that move no traffic, as engine commands: marking
//! a release live by hand, attaching evidence to a release, creating and
//! importing keys (and `init`'s sealing key). The fronts reach them only
//! through `EngineHandle`.

use chrono::{DateTime, Utc};

use super::EngineError;
use super::keys::{create_key, refuse_existing, refuse_second_key};
use crate::config::Config;
use crate::domain::Digest;
use crate::sign::PublicKey;
use crate::store::{EvidenceRecord, KeyRecord, LiveRecord};
use crate::workspace::Workspace;

/// `stella release mark-live`: a release already serving in an
/// environment, recorded as live since `since` (the way into stella for a
/// lane it did not deploy).
#[derive(Debug, Clone)]
pub struct MarkLiveRequest {
    pub app: String,
    pub digest: Digest,
    pub env: String,
    pub since: DateTime<Utc>,
}

/// Records `req` live, refused while a promotion holds the environment's
/// lock (its seal would say otherwise a moment later).
pub fn mark_live(
    ws: &Workspace,
    config: &Config,
    req: &MarkLiveRequest,
) -> Result<(), EngineError> {
    if config.environment(&req.env).is_none() {
        return Err(super::unknown_environment(&req.env, config));
    }
    let mut store = ws.open_store()?;
    if let Some(lock) = store
        .locks()?
        .into_iter()
        .find(|l| l.environment == req.env)
    {
        return Err(EngineError::error(format!(
            "environment {} is locked by promotion #{} (started by {})",
            lock.environment, lock.promotion_id, lock.holder
        ))
        .hint("wait for it to end (`stella promotion list`), or `stella recover` if its process is gone"));
    }
    store.mark_live(
        &LiveRecord {
            environment: req.env.clone(),
            app: req.app.clone(),
            digest: req.digest.clone(),
            since: req.since,
            source: "mark-live".into(),
        },
        None,
    )?;
    Ok(())
}

/// The release a deciding command is about (`resolve::app_release_with`):
/// `APP` alone means what is live upstream; a tag is resolved, and its
/// resolution recorded when `record`.
#[derive(Debug, Clone)]
pub struct AppReleaseRequest {
    pub reference: String,
    pub env: Option<String>,
    pub now: DateTime<Utc>,
    pub record: bool,
}

/// A piece of evidence for a release: its bytes (already read within
/// bounds and classified by the front) and how it is recorded.
#[derive(Debug, Clone)]
pub struct AttachRequest {
    pub subject: Digest,
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub kind: String,
}

#[derive(Debug, Clone)]
pub struct Attached {
    pub record: EvidenceRecord,
    /// `false` when it was attached already.
    pub fresh: bool,
}

/// Stores the bytes in the CAS and links them to the release.
pub fn attach_evidence(ws: &Workspace, req: &AttachRequest) -> Result<Attached, EngineError> {
    ws.ensure_state_dirs()?;
    let digest = ws.evidence().put(&req.bytes)?;
    let record = EvidenceRecord {
        digest,
        media_type: req.media_type.clone(),
        kind: req.kind.clone(),
        size: req.bytes.len() as u64,
        added_at: Utc::now(),
    };
    let fresh = ws.open_store()?.attach_evidence(&req.subject, &record)?;
    Ok(Attached { record, fresh })
}

/// A new key, or a public key to import.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    pub name: String,
    pub email: String,
    /// `None`: generate a key pair here; `Some`: import this public key
    /// (SPKI PEM).
    pub import_pem: Option<String>,
    /// The email may hold more than one key (`--another-key`).
    pub another: bool,
}

#[derive(Debug, Clone)]
pub struct KeyAdded {
    pub keyid: String,
    /// The private half's file, for a generated key.
    pub private: Option<std::path::PathBuf>,
}

/// Generates or imports a key, refusing a taken name, a known key, and a
/// second key for an email unless `another`.
pub fn add_key(ws: &Workspace, req: &KeyRequest) -> Result<KeyAdded, EngineError> {
    match &req.import_pem {
        None => {
            // The name first (no key has an empty id): a taken name is the
            // clearer error.
            refuse_existing(ws, &req.name, "")?;
            refuse_second_key(ws, &req.email, req.another)?;
            let (public, path) = create_key(ws, &req.name, &req.email)?;
            Ok(KeyAdded {
                keyid: public.keyid().to_owned(),
                private: Some(path),
            })
        }
        Some(pem) => {
            let public = PublicKey::from_pem(pem).map_err(EngineError::error)?;
            refuse_existing(ws, &req.name, public.keyid())?;
            refuse_second_key(ws, &req.email, req.another)?;
            ws.open_store()?.add_key(&KeyRecord {
                name: req.name.clone(),
                email: req.email.clone(),
                keyid: public.keyid().to_owned(),
                public_pem: public.to_pem(),
                private: false,
                added_at: Utc::now(),
            })?;
            Ok(KeyAdded {
                keyid: public.keyid().to_owned(),
                private: None,
            })
        }
    }
}

/// The workspace's sealing key, made if there is none (`stella init`);
/// returns its key id.
pub fn ensure_sealing_key(ws: &Workspace, config: &Config) -> Result<String, EngineError> {
    let key = super::keys::sealing_key(ws, &config.name)?;
    Ok(key.public().keyid().to_owned())
}
