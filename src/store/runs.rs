//! Workflow runs and their steps. Every transition is committed before it
//! is shown, so what a person sees was already durable.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::Serialize;

use super::{Store, StoreError, time_from_sql, time_to_sql, word_from_sql};
use crate::domain::{PromotionOutcome, PromotionState, RunState, StepState};

#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    pub step: String,
    pub state: StepState,
    pub attempt: i64,
    #[serde(serialize_with = "opt_time")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "opt_time")]
    pub finished_at: Option<DateTime<Utc>>,
    pub log_digest: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromotionRow {
    pub id: i64,
    pub app: String,
    pub digest: String,
    pub tag: Option<String>,
    pub environment: String,
    pub requested_by: String,
    pub state: PromotionState,
    pub outcome: Option<PromotionOutcome>,
    #[serde(serialize_with = "crate::domain::release::rfc3339")]
    pub created_at: DateTime<Utc>,
    pub run_id: Option<i64>,
    pub run_state: Option<RunState>,
}

fn opt_time<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => crate::domain::release::rfc3339(t, s),
        None => s.serialize_none(),
    }
}

impl Store {
    pub fn create_run(&mut self, promotion_id: i64) -> Result<i64, StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO runs (promotion_id, state, pid, started_at) VALUES (?1, 'running', ?2, ?3)",
                params![promotion_id, std::process::id() as i64, time_to_sql(&Utc::now())],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    pub fn step_started(
        &mut self,
        run_id: i64,
        step: &str,
        attempt: u32,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO steps (run_id, step, state, attempt, started_at) VALUES (?1, ?2, 'running', ?3, ?4)
                 ON CONFLICT (run_id, step, attempt) DO UPDATE SET state = 'running', started_at = excluded.started_at",
                params![run_id, step, attempt, time_to_sql(&Utc::now())],
            )?;
            Ok(())
        })
    }

    pub fn step_finished(
        &mut self,
        run_id: i64,
        step: &str,
        attempt: u32,
        state: StepState,
        log_digest: Option<&str>,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let now = time_to_sql(&Utc::now());
            let n = tx.execute(
                "UPDATE steps SET state = ?4, finished_at = ?5, log_digest = ?6 WHERE run_id = ?1 AND step = ?2 AND attempt = ?3",
                params![run_id, step, attempt.max(1), state.as_str(), now, log_digest],
            )?;
            if n == 0 {
                // Skipped or cancelled before it started.
                tx.execute(
                    "INSERT INTO steps (run_id, step, state, attempt, finished_at, log_digest) VALUES (?1, ?2, ?3, 1, ?4, ?5)",
                    params![run_id, step, state.as_str(), now, log_digest],
                )?;
            }
            Ok(())
        })
    }

    pub fn finish_run(&mut self, run_id: i64, state: RunState) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE runs SET state = ?2, finished_at = ?3 WHERE id = ?1",
                params![run_id, state.as_str(), time_to_sql(&Utc::now())],
            )?;
            Ok(())
        })
    }

    /// Marks promotion `id`'s running run `paused` (or `running` again).
    pub fn set_run_paused(&mut self, promotion_id: i64, paused: bool) -> Result<(), StoreError> {
        let (from, to) = if paused {
            (RunState::Running, RunState::Paused)
        } else {
            (RunState::Paused, RunState::Running)
        };
        self.write(|tx| {
            tx.execute(
                "UPDATE runs SET state = ?3 WHERE promotion_id = ?1 AND state = ?2",
                params![promotion_id, from.as_str(), to.as_str()],
            )?;
            Ok(())
        })
    }

    pub fn promotions(&self, environment: Option<&str>) -> Result<Vec<PromotionRow>, StoreError> {
        self.promotions_where(environment, None, i64::MAX, false)
    }

    /// The newest `limit` promotions (of `app` in `environment`, if given),
    /// newest first.
    pub fn recent_promotions(
        &self,
        environment: Option<&str>,
        app: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PromotionRow>, StoreError> {
        self.promotions_where(environment, app, limit as i64, true)
    }

    fn promotions_where(
        &self,
        environment: Option<&str>,
        app: Option<&str>,
        limit: i64,
        newest_first: bool,
    ) -> Result<Vec<PromotionRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {PROMOTION_COLUMNS}
             FROM promotions p WHERE (?1 IS NULL OR p.environment = ?1) AND (?2 IS NULL OR p.app = ?2)
             ORDER BY p.id {} LIMIT ?3",
            if newest_first { "DESC" } else { "ASC" }
        ))?;
        let rows = stmt.query_map(params![environment, app, limit], promotion_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Promotion `id`, if there is one.
    pub fn promotion(&self, id: i64) -> Result<Option<PromotionRow>, StoreError> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {PROMOTION_COLUMNS} FROM promotions p WHERE p.id = ?1"),
                [id],
                promotion_row,
            )
            .optional()?)
    }

    /// Promotions oldest first, one row at a time (memory does not grow
    /// with the store): of one environment, created at or after `since`,
    /// with an id above `after`, at most `limit`.
    pub fn for_each_promotion<E: From<StoreError>>(
        &self,
        filter: &PromotionFilter,
        mut each: impl FnMut(PromotionRow) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {PROMOTION_COLUMNS}
                 FROM promotions p WHERE (?1 IS NULL OR p.environment = ?1)
                   AND (?2 IS NULL OR p.created_at >= ?2) AND p.id > ?3
                 ORDER BY p.id ASC LIMIT ?4"
            ))
            .map_err(StoreError::from)?;
        let limit = filter
            .limit
            .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let mut rows = stmt
            .query(params![
                filter.environment,
                filter.since.as_ref().map(time_to_sql),
                filter.after.unwrap_or(i64::MIN),
                limit
            ])
            .map_err(StoreError::from)?;
        while let Some(r) = rows.next().map_err(StoreError::from)? {
            each(promotion_row(r).map_err(StoreError::from)?)?;
        }
        Ok(())
    }

    pub fn steps(&self, run_id: i64) -> Result<Vec<StepRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT step, state, attempt, started_at, finished_at, log_digest FROM steps WHERE run_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([run_id], |r| {
            let s: Option<String> = r.get(3)?;
            let f: Option<String> = r.get(4)?;
            let state: String = r.get(1)?;
            Ok(StepRow {
                step: r.get(0)?,
                state: word_from_sql(1, &state)?,
                attempt: r.get(2)?,
                started_at: s.map(|s| time_from_sql(3, &s)).transpose()?,
                finished_at: f.map(|f| time_from_sql(4, &f)).transpose()?,
                log_digest: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Which promotions `for_each_promotion` walks.
#[derive(Debug, Clone, Default)]
pub struct PromotionFilter {
    pub environment: Option<String>,
    /// Only those created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only those with a greater id (the next page after that one).
    pub after: Option<i64>,
    /// At most this many (the oldest of those that match).
    pub limit: Option<usize>,
}

const PROMOTION_COLUMNS: &str =
    "p.id, p.app, p.digest, p.tag, p.environment, p.requested_by, p.state, p.outcome, p.created_at,
     (SELECT r.id FROM runs r WHERE r.promotion_id = p.id ORDER BY r.id DESC LIMIT 1),
     (SELECT r.state FROM runs r WHERE r.promotion_id = p.id ORDER BY r.id DESC LIMIT 1)";

fn promotion_row(r: &rusqlite::Row<'_>) -> Result<PromotionRow, rusqlite::Error> {
    let at: String = r.get(8)?;
    let state: String = r.get(6)?;
    let outcome: Option<String> = r.get(7)?;
    let run_state: Option<String> = r.get(10)?;
    Ok(PromotionRow {
        id: r.get(0)?,
        app: r.get(1)?,
        digest: r.get(2)?,
        tag: r.get(3)?,
        environment: r.get(4)?,
        requested_by: r.get(5)?,
        state: word_from_sql(6, &state)?,
        outcome: outcome.map(|o| word_from_sql(7, &o)).transpose()?,
        created_at: time_from_sql(8, &at)?,
        run_id: r.get(9)?,
        run_state: run_state.map(|s| word_from_sql(10, &s)).transpose()?,
    })
}
