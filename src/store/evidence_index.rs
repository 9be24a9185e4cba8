//! Which evidence is attached to which release digest.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, digest_from_sql, time_from_sql, time_to_sql};
use crate::domain::Digest;

/// One evidence blob's entry in the index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EvidenceRecord {
    pub digest: Digest,
    pub media_type: String,
    pub kind: String,
    pub size: u64,
    #[serde(serialize_with = "crate::domain::release::rfc3339")]
    pub added_at: DateTime<Utc>,
}

impl Store {
    /// Indexes a blob (already in the CAS) and attaches it to `subject`.
    /// Returns false if it was attached already.
    pub fn attach_evidence(
        &mut self,
        subject: &Digest,
        rec: &EvidenceRecord,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO evidence (digest, media_type, kind, size, added_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![rec.digest.to_string(), rec.media_type, rec.kind, rec.size as i64, time_to_sql(&rec.added_at)],
            )?;
            let n = tx.execute(
                "INSERT OR IGNORE INTO evidence_links (subject_digest, evidence_digest) VALUES (?1, ?2)",
                params![subject.to_string(), rec.digest.to_string()],
            )?;
            Ok(n == 1)
        })
    }

    /// Evidence attached to `subject`, in the order it was attached.
    pub fn evidence_for(&self, subject: &Digest) -> Result<Vec<EvidenceRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.digest, e.media_type, e.kind, e.size, e.added_at
             FROM evidence_links l JOIN evidence e ON e.digest = l.evidence_digest
             WHERE l.subject_digest = ?1 ORDER BY l.rowid",
        )?;
        let rows = stmt.query_map([subject.to_string()], |r| {
            let d: String = r.get(0)?;
            let at: String = r.get(4)?;
            Ok(EvidenceRecord {
                digest: digest_from_sql(0, &d)?,
                media_type: r.get(1)?,
                kind: r.get(2)?,
                size: r.get::<_, i64>(3)? as u64,
                added_at: time_from_sql(4, &at)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The media type of an indexed blob.
    pub fn evidence_media_type(&self, digest: &Digest) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT media_type FROM evidence WHERE digest = ?1",
                [digest.to_string()],
                |r| r.get(0),
            )
            .optional()?)
    }
}
