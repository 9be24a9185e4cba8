//! Attaching decisions to the image: each sealed capsule (as its exported
//! JSON file) and its verification summary (its DSSE envelope) pushed as
//! OCI artifacts whose `subject` is the release's manifest, in the app's
//! registry or image layout. Runs after the decision is committed: a
//! registry that refuses leaves the decision standing and its attachment
//! pending, retried here a few times and then by every later push, and
//! reported each time — never dropped.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use super::EngineError;
use super::event::{EventKind, Sink};
use crate::capsule::file::Format;
use crate::capsule::summary::{
    CAPSULE_ARTIFACT_TYPE, CAPSULE_FILE_MEDIA_TYPE, DSSE_MEDIA_TYPE, SUMMARY_ARTIFACT_TYPE,
};
use crate::config::Config;
use crate::domain::{AttachState, Digest, ImageRef};
use crate::registry::referrers::{self, Artifact};
use crate::store::AttachmentRow;
use crate::workspace::Workspace;

/// Annotation keys on the attached manifests. They are hints for
/// listing (`oras discover` shows them); `stella verify` trusts only what
/// is signed.
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
pub const ANNOTATION_ENVIRONMENT: &str = "dev.stella.environment";
pub const ANNOTATION_CAPSULE: &str = "dev.stella.capsule";
pub const ANNOTATION_RESULT: &str = "dev.stella.verification-result";
pub const ANNOTATION_PREDICATE: &str = "in-toto.io/predicate-type";

/// How often one command tries a push before leaving it pending, and the
/// first pause between tries (doubled each time).
pub const TRIES: u32 = 3;
pub const FIRST_PAUSE: Duration = Duration::from_millis(200);

/// What became of one capsule's attachment.
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    pub capsule_id: i64,
    pub image: String,
    pub state: AttachState,
    /// Tries so far, over every command that made one.
    pub attempts: i64,
    pub capsule_manifest: Option<Digest>,
    pub summary_manifest: Option<Digest>,
    /// Why the last try failed, while pending.
    pub error: Option<String>,
}

impl Pushed {
    fn of(row: &AttachmentRow) -> Pushed {
        Pushed {
            capsule_id: row.capsule_id,
            image: row.target.image.clone(),
            state: row.state,
            attempts: row.attempts,
            capsule_manifest: row.capsule_manifest.clone(),
            summary_manifest: row.summary_manifest.clone(),
            error: row.last_error.clone(),
        }
    }
}

/// Pushes the capsule's attachment if it has a pending one (tried
/// `TRIES` times), then any other pending ones once each; reports each
/// on `sink`. A failure is recorded and reported, never returned: the
/// decision it belongs to stands.
pub fn after_seal(ws: &Workspace, config: &Config, capsule_id: i64, sink: &Sink) -> Option<Pushed> {
    let row = ws.open_store().ok()?.attachment(capsule_id).ok()??;
    if row.state == AttachState::Attached {
        return Some(Pushed::of(&row));
    }
    let mine = push_row(ws, config, &row, TRIES, sink);
    // Earlier decisions the same registry (or layout) refused: one more
    // try each, now that it answered. Others wait for their own.
    if mine.state == AttachState::Attached
        && let Ok(rows) = ws.open_store().and_then(|s| s.pending_attachments(20))
    {
        for other in rows
            .iter()
            .filter(|r| r.capsule_id != capsule_id && r.target == row.target)
        {
            push_row(ws, config, other, 1, sink);
        }
    }
    Some(mine)
}

/// What `stella capsule push` asks for.
#[derive(Debug, Clone)]
pub enum PushWhich {
    /// One capsule, attached again even if it was already.
    Capsule(i64),
    /// Every pending attachment.
    Pending,
}

/// `stella capsule push`: (re)attaches one capsule — making its summary
/// now if it was sealed before summaries existed — or every pending one.
pub fn push(
    ws: &Workspace,
    config: &Config,
    which: &PushWhich,
    sink: &Sink,
) -> Result<Vec<Pushed>, EngineError> {
    let rows = match which {
        PushWhich::Pending => ws.open_store()?.pending_attachments(i64::MAX)?,
        PushWhich::Capsule(id) => vec![prepare(ws, config, *id)?],
    };
    Ok(rows
        .iter()
        .map(|r| push_row(ws, config, r, TRIES, sink))
        .collect())
}

/// Makes capsule `id` ready to push: its summary (made and signed now for
/// a capsule sealed before summaries existed) and a pending attachment
/// row naming the app's image.
fn prepare(ws: &Workspace, config: &Config, id: i64) -> Result<AttachmentRow, EngineError> {
    let mut store = ws.open_store()?;
    let (row, envelope) = store.capsule(id)?.ok_or_else(|| {
        EngineError::error(format!("there is no capsule #{id}"))
            .hint("`stella capsule list` shows the capsules")
    })?;
    let (ctx, _) = super::seal::summary_context(config, &row.app, &row.environment);
    let Some(app) = config.apps.get(&row.app) else {
        return Err(EngineError::error(format!(
            "capsule #{id} is about app `{}`, which stella.toml no longer names",
            row.app
        ))
        .hint("add the app back to stella.toml to say where its image lives"));
    };
    if store.summary(id)?.is_none() {
        let env: crate::sign::Envelope = serde_json::from_slice(&envelope)
            .map_err(|e| EngineError::error(format!("capsule #{id}'s envelope: {e}")))?;
        let payload = env.payload_bytes().map_err(EngineError::error)?;
        let st: crate::capsule::Statement = serde_json::from_slice(&payload).map_err(|e| {
            EngineError::error(format!("capsule #{id} is not a decision statement: {e}"))
        })?;
        let Some(summary) = crate::capsule::summary::summarize(&st, &Digest::of(&payload), &ctx)
        else {
            if st.predicate.is_set() {
                return Err(EngineError::error(format!(
                    "capsule #{id} decides a release set; summaries are made per image, so a set's decision stays in its capsule"
                ))
                .hint("`stella capsule export ID` writes the capsule for others to verify and replay"));
            }
            return Err(EngineError::error(format!(
                "capsule #{id} is a {} decision, which verifies nothing about an image; \
                 only promotions and rollbacks are attached",
                st.predicate.action.as_str()
            ))
            .hint("`stella capsule list --app APP` shows the promotions"));
        };
        let key = super::keys::sealing_key(ws, &config.name)?;
        store.put_summary(id, &crate::capsule::seal::sealed_summary(&summary, &key))?;
    }
    store.request_attachment(
        id,
        &crate::store::AttachTarget {
            image: app.image.repository.to_string(),
            insecure: app.insecure,
        },
    )?;
    Ok(store
        .attachment(id)?
        .expect("the attachment row was just written"))
}

/// Tries one attachment up to `tries` times; records and reports the end.
fn push_row(
    ws: &Workspace,
    config: &Config,
    row: &AttachmentRow,
    tries: u32,
    sink: &Sink,
) -> Pushed {
    let mut pause = FIRST_PAUSE;
    let mut last = String::new();
    for n in 1..=tries.max(1) {
        match push_once(ws, config, row) {
            Ok((capsule, summary, via)) => {
                let recorded = ws.open_store().and_then(|mut s| {
                    s.attachment_done(row.capsule_id, n, &capsule, &summary, Utc::now())?;
                    s.attachment(row.capsule_id)
                });
                return match recorded {
                    Ok(Some(done)) => {
                        sink.emit(EventKind::CapsuleAttached {
                            capsule_id: row.capsule_id,
                            image: row.target.image.clone(),
                            capsule_manifest: capsule,
                            summary_manifest: summary,
                            via: via_word(via),
                        });
                        Pushed::of(&done)
                    }
                    Ok(None) | Err(_) => {
                        let error = "attached, but the store could not record it; \
                                     `stella capsule push` will attach it again"
                            .to_owned();
                        failed(ws, row, n, &error, sink)
                    }
                };
            }
            Err(e) => {
                last = e;
                if n < tries {
                    std::thread::sleep(pause);
                    pause *= 2;
                }
            }
        }
    }
    failed(ws, row, tries.max(1), &last, sink)
}

fn failed(ws: &Workspace, row: &AttachmentRow, tries: u32, error: &str, sink: &Sink) -> Pushed {
    let store = ws.open_store().and_then(|mut s| {
        s.attachment_failed(row.capsule_id, tries, error, Utc::now())?;
        Ok(s)
    });
    let (now, pending) = match &store {
        Ok(s) => (
            s.attachment(row.capsule_id).ok().flatten(),
            s.pending_attachment_count().unwrap_or(0),
        ),
        Err(_) => (None, 0),
    };
    let mut pushed = now.as_ref().map_or_else(|| Pushed::of(row), Pushed::of);
    pushed.error = Some(error.to_owned());
    sink.emit(EventKind::CapsuleAttachFailed {
        capsule_id: row.capsule_id,
        image: row.target.image.clone(),
        error: error.to_owned(),
        attempts: pushed.attempts,
        pending,
    });
    pushed
}

fn via_word(via: referrers::Via) -> &'static str {
    match via {
        referrers::Via::ReferrersApi => "referrers API",
        referrers::Via::TagSchema => "referrers tag",
        referrers::Via::Layout => "image layout",
    }
}

/// One push of both artifacts: the summary, then the capsule file.
fn push_once(
    ws: &Workspace,
    config: &Config,
    row: &AttachmentRow,
) -> Result<(Digest, Digest, referrers::Via), String> {
    let store = ws.open_store().map_err(|e| e.to_string())?;
    let (capsule, envelope) = store
        .capsule(row.capsule_id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("capsule #{} is not in the store", row.capsule_id))?;
    let summary = store
        .summary(row.capsule_id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("capsule #{} has no verification summary", row.capsule_id))?;
    drop(store);
    let file = super::seal::capsule_file(ws, &envelope).map_err(|e| e.to_string())?;
    let image = ImageRef::parse(&row.target.image).map_err(|e| e.to_string())?;
    let created = capsule.sealed_at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let annotations = |result: bool| {
        let mut a = BTreeMap::from([
            (ANNOTATION_CREATED.to_owned(), created.clone()),
            (
                ANNOTATION_ENVIRONMENT.to_owned(),
                capsule.environment.clone(),
            ),
            (
                ANNOTATION_CAPSULE.to_owned(),
                capsule.payload_digest.to_string(),
            ),
        ]);
        if result {
            a.insert(
                ANNOTATION_RESULT.to_owned(),
                if summary.passed { "PASSED" } else { "FAILED" }.to_owned(),
            );
            a.insert(
                ANNOTATION_PREDICATE.to_owned(),
                crate::capsule::summary::VSA_PREDICATE_TYPE.to_owned(),
            );
        }
        a
    };
    let vsa = Artifact {
        artifact_type: SUMMARY_ARTIFACT_TYPE.into(),
        layer_media_type: DSSE_MEDIA_TYPE.into(),
        bytes: summary.envelope.clone(),
        annotations: annotations(true),
    };
    let cap = Artifact {
        artifact_type: CAPSULE_ARTIFACT_TYPE.into(),
        layer_media_type: CAPSULE_FILE_MEDIA_TYPE.into(),
        bytes: file.to_bytes(Format::Json),
        annotations: annotations(false),
    };
    let base = config.root.clone();
    let insecure = row.target.insecure;
    let subject = capsule.digest.clone();
    super::resolve::block_on(async move {
        let s = referrers::attach(&image.repository, &subject, &vsa, insecure, &base)
            .await
            .map_err(|e| e.to_string())?;
        let c = referrers::attach(&image.repository, &subject, &cap, insecure, &base)
            .await
            .map_err(|e| e.to_string())?;
        Ok((c.manifest, s.manifest, c.via))
    })
    .map_err(|e| e.to_string())?
}
