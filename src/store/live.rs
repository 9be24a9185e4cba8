//! What is live in each environment, over time.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, digest_from_sql, time_from_sql, time_to_sql};
use crate::domain::Digest;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LiveRecord {
    pub environment: String,
    pub app: String,
    pub digest: Digest,
    #[serde(serialize_with = "crate::domain::release::rfc3339")]
    pub since: DateTime<Utc>,
    /// `promotion`, or `mark-live` for releases deployed outside stella.
    pub source: String,
}

impl Store {
    pub fn mark_live(
        &mut self,
        rec: &LiveRecord,
        promotion_id: Option<i64>,
    ) -> Result<i64, StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO live (environment, app, digest, since, promotion_id, source) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![rec.environment, rec.app, rec.digest.to_string(), time_to_sql(&rec.since), promotion_id, rec.source],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// The other apps that went live in `environment` by the same
    /// decision as `app`'s release live at `at` — a release set — and are
    /// still live from it then. Empty for a release decided alone.
    pub fn released_with(
        &self,
        environment: &str,
        app: &str,
        at: &DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "WITH cur AS (
                 SELECT app, promotion_id,
                        ROW_NUMBER() OVER (PARTITION BY app ORDER BY since DESC, id DESC) AS rn
                 FROM live WHERE environment = ?1 AND since <= ?2)
             SELECT app FROM cur
             WHERE rn = 1 AND app != ?3 AND promotion_id IS NOT NULL
               AND promotion_id = (SELECT promotion_id FROM cur WHERE app = ?3 AND rn = 1)
             ORDER BY app",
        )?;
        let rows = stmt.query_map(params![environment, time_to_sql(at), app], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What was live for `app` in `environment` at `at`.
    pub fn live_at(
        &self,
        environment: &str,
        app: &str,
        at: &DateTime<Utc>,
    ) -> Result<Option<LiveRecord>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT environment, app, digest, since, source FROM live
                 WHERE environment = ?1 AND app = ?2 AND since <= ?3
                 ORDER BY since DESC, id DESC LIMIT 1",
                params![environment, app, time_to_sql(at)],
                |r| {
                    let d: String = r.get(2)?;
                    let s: String = r.get(3)?;
                    Ok(LiveRecord {
                        environment: r.get(0)?,
                        app: r.get(1)?,
                        digest: digest_from_sql(2, &d)?,
                        since: time_from_sql(3, &s)?,
                        source: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }
}
