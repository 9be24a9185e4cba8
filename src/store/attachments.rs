//! Verification summaries sealed beside capsules, and their attachment to
//! the image: a row per capsule to push, `pending` until the registry (or
//! layout) holds both artifacts. A failed push leaves the row pending with
//! its error and attempt count, to be retried; nothing sealed is lost.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, digest_from_sql, time_from_sql, time_to_sql, word_from_sql};
use crate::domain::{AttachState, Digest};

/// A capsule's summary as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    pub capsule_id: i64,
    pub payload_digest: Digest,
    /// `PASSED` or `FAILED`.
    pub passed: bool,
    pub envelope: Vec<u8>,
}

/// Where a capsule is to be attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachTarget {
    /// `REGISTRY/REPOSITORY` or `oci-layout:PATH`, as configured.
    pub image: String,
    pub insecure: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRow {
    pub capsule_id: i64,
    pub target: AttachTarget,
    pub state: AttachState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub attached_at: Option<DateTime<Utc>>,
    pub capsule_manifest: Option<Digest>,
    pub summary_manifest: Option<Digest>,
}

const COLUMNS: &str = "capsule_id, image, insecure, state, attempts, last_error, last_attempt_at, attached_at, capsule_manifest, summary_manifest";

fn row(r: &rusqlite::Row<'_>) -> Result<AttachmentRow, rusqlite::Error> {
    let state: String = r.get(3)?;
    let time = |col: usize| -> Result<Option<DateTime<Utc>>, rusqlite::Error> {
        r.get::<_, Option<String>>(col)?
            .map(|s| time_from_sql(col, &s))
            .transpose()
    };
    let digest = |col: usize| -> Result<Option<Digest>, rusqlite::Error> {
        r.get::<_, Option<String>>(col)?
            .map(|s| digest_from_sql(col, &s))
            .transpose()
    };
    Ok(AttachmentRow {
        capsule_id: r.get(0)?,
        target: AttachTarget {
            image: r.get(1)?,
            insecure: r.get::<_, i64>(2)? != 0,
        },
        state: word_from_sql(3, &state)?,
        attempts: r.get(4)?,
        last_error: r.get(5)?,
        last_attempt_at: time(6)?,
        attached_at: time(7)?,
        capsule_manifest: digest(8)?,
        summary_manifest: digest(9)?,
    })
}

/// Written with the capsule, in its transaction.
pub(super) fn insert(
    tx: &rusqlite::Transaction<'_>,
    capsule_id: i64,
    summary: Option<&super::capsules::SealedSummary>,
    attach: Option<&AttachTarget>,
) -> Result<(), StoreError> {
    if let Some(s) = summary {
        tx.execute(
            "INSERT INTO summaries (capsule_id, payload_digest, result, envelope) VALUES (?1, ?2, ?3, ?4)",
            params![
                capsule_id,
                s.payload_digest.to_string(),
                if s.passed { "PASSED" } else { "FAILED" },
                s.envelope
            ],
        )?;
        if let Some(a) = attach {
            tx.execute(
                "INSERT INTO attachments (capsule_id, image, insecure, state) VALUES (?1, ?2, ?3, ?4)",
                params![
                    capsule_id,
                    a.image,
                    i64::from(a.insecure),
                    AttachState::Pending.as_str()
                ],
            )?;
        }
    }
    Ok(())
}

impl Store {
    pub fn summary(&self, capsule_id: i64) -> Result<Option<SummaryRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT capsule_id, payload_digest, result, envelope FROM summaries WHERE capsule_id = ?1",
                [capsule_id],
                |r| {
                    let d: String = r.get(1)?;
                    let result: String = r.get(2)?;
                    Ok(SummaryRow {
                        capsule_id: r.get(0)?,
                        payload_digest: digest_from_sql(1, &d)?,
                        passed: result == "PASSED",
                        envelope: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Keeps a summary made after the fact for a capsule sealed without
    /// one (before summaries existed).
    pub fn put_summary(
        &mut self,
        capsule_id: i64,
        summary: &super::capsules::SealedSummary,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        insert(&tx, capsule_id, Some(summary), None)?;
        tx.commit()?;
        Ok(())
    }

    pub fn attachment(&self, capsule_id: i64) -> Result<Option<AttachmentRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM attachments WHERE capsule_id = ?1"),
                [capsule_id],
                row,
            )
            .optional()?)
    }

    /// The capsules still to attach, oldest first, at most `limit`.
    pub fn pending_attachments(&self, limit: i64) -> Result<Vec<AttachmentRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM attachments WHERE state = 'pending' ORDER BY capsule_id LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many capsules are still to attach.
    pub fn pending_attachment_count(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM attachments WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?)
    }

    /// Asks for a capsule to be (re)attached: a new pending row, or an
    /// attached one made pending again (`stella capsule push` of a capsule
    /// whose artifacts were deleted from the registry).
    pub fn request_attachment(
        &mut self,
        capsule_id: i64,
        target: &AttachTarget,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO attachments (capsule_id, image, insecure, state) VALUES (?1, ?2, ?3, 'pending')
             ON CONFLICT (capsule_id) DO UPDATE SET image = excluded.image, insecure = excluded.insecure, state = 'pending'",
            params![capsule_id, target.image, i64::from(target.insecure)],
        )?;
        Ok(())
    }

    /// `tries` pushes tried and failed: the row stays pending.
    pub fn attachment_failed(
        &mut self,
        capsule_id: i64,
        tries: u32,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE attachments SET attempts = attempts + ?4, last_error = ?2, last_attempt_at = ?3 WHERE capsule_id = ?1",
            params![capsule_id, error, time_to_sql(&at), tries],
        )?;
        Ok(())
    }

    /// Both artifacts are in the registry (or layout), on the `tries`-th
    /// try of this push.
    pub fn attachment_done(
        &mut self,
        capsule_id: i64,
        tries: u32,
        capsule_manifest: &Digest,
        summary_manifest: &Digest,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE attachments SET state = 'attached', attempts = attempts + ?5, last_error = NULL,
                 last_attempt_at = ?2, attached_at = ?2, capsule_manifest = ?3, summary_manifest = ?4
             WHERE capsule_id = ?1",
            params![
                capsule_id,
                time_to_sql(&at),
                capsule_manifest.to_string(),
                summary_manifest.to_string(),
                tries
            ],
        )?;
        Ok(())
    }
}
