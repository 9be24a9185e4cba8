//! One promotion per environment at a time. A promotion that deploys holds
//! its environment's lock from before the first change to a target until
//! its capsule is sealed. A lock whose process is gone is taken over by
//! the recovering process (`take_over`), which puts the targets back and
//! only then marks the promotion `interrupted` and releases it.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, time_from_sql, time_to_sql};
use crate::domain::{Digest, PromotionOutcome, PromotionState};

/// Who holds an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub environment: String,
    pub promotion_id: i64,
    pub holder: String,
    pub pid: i64,
    pub acquired_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum BeginError {
    #[error("environment {} is locked by promotion #{} (started by {}, {} ago)", .0.environment, .0.promotion_id, .0.holder, crate::gates::human_duration(Utc::now() - .0.acquired_at))]
    Locked(Lock),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether a process is alive (on this machine): a zombie (dead, not yet
/// reaped by its parent) is not.
pub fn process_alive(pid: i64) -> bool {
    if pid <= 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) STATE …`; comm may hold spaces and parentheses.
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat.get(i + 2..i + 3))
            .is_none_or(|state| state != "Z" && state != "X"),
        Err(_) => std::path::Path::new(&format!("/proc/{pid}")).exists(),
    }
}

fn lock_row(r: &rusqlite::Row<'_>) -> Result<Lock, rusqlite::Error> {
    let at: String = r.get(4)?;
    Ok(Lock {
        environment: r.get(0)?,
        promotion_id: r.get(1)?,
        holder: r.get(2)?,
        pid: r.get(3)?,
        acquired_at: time_from_sql(4, &at)?,
    })
}

/// A dead process's run and its running steps: `interrupted`.
fn mark_run_interrupted(
    tx: &rusqlite::Transaction<'_>,
    promotion_id: i64,
    now: &str,
) -> Result<(), rusqlite::Error> {
    tx.execute(
        "UPDATE runs SET state = 'interrupted', finished_at = ?2 WHERE promotion_id = ?1 AND state IN ('running', 'paused')",
        params![promotion_id, now],
    )?;
    tx.execute(
        "UPDATE steps SET state = 'interrupted', finished_at = ?2
         WHERE state = 'running' AND run_id IN (SELECT id FROM runs WHERE promotion_id = ?1)",
        params![promotion_id, now],
    )?;
    Ok(())
}

impl Store {
    /// The locks whose process is gone: promotions that died mid-way.
    /// Reads only; `take_over` claims one.
    pub fn dead_locks(&self) -> Result<Vec<Lock>, StoreError> {
        Ok(self
            .locks()?
            .into_iter()
            .filter(|l| !process_alive(l.pid))
            .collect())
    }

    /// Every lock held, with who holds it.
    pub fn locks(&self) -> Result<Vec<Lock>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT environment, promotion_id, holder, pid, acquired_at FROM locks ORDER BY environment",
        )?;
        let rows = stmt.query_map([], lock_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Claims a dead process's lock for this process, in one IMMEDIATE
    /// transaction: only if the lock is still held by `dead.pid` (another
    /// recovering process may have been first). The promotion stays
    /// `running`, held by us; its run and running steps are marked
    /// `interrupted`. `false` when someone else holds it now.
    pub fn take_over(&mut self, dead: &Lock, holder: &str) -> Result<bool, StoreError> {
        if process_alive(dead.pid) {
            return Ok(false);
        }
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE locks SET pid = ?3, holder = ?4 WHERE environment = ?1 AND promotion_id = ?2 AND pid = ?5",
                params![
                    dead.environment,
                    dead.promotion_id,
                    i64::from(std::process::id()),
                    holder,
                    dead.pid
                ],
            )?;
            if n == 1 {
                mark_run_interrupted(tx, dead.promotion_id, &time_to_sql(&Utc::now()))?;
            }
            Ok(n == 1)
        })
    }

    /// Ends a taken-over promotion whose decision was sealed before it
    /// acted (`record_step`): decided with `outcome`, its lock released.
    pub fn finish_promotion(
        &mut self,
        promotion_id: i64,
        outcome: crate::domain::PromotionOutcome,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE promotions SET state = 'decided', outcome = ?2, finished_at = ?3 WHERE id = ?1 AND state = 'running'",
                params![promotion_id, outcome.as_str(), time_to_sql(&Utc::now())],
            )?;
            tx.execute("DELETE FROM locks WHERE promotion_id = ?1", [promotion_id])?;
            Ok(())
        })
    }

    /// Ends a taken-over promotion without a decision: `interrupted`, its
    /// lock released.
    pub fn finish_interrupted(&mut self, promotion_id: i64) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE promotions SET state = 'interrupted', outcome = 'interrupted', finished_at = ?2 WHERE id = ?1 AND state = 'running'",
                params![promotion_id, time_to_sql(&Utc::now())],
            )?;
            tx.execute("DELETE FROM locks WHERE promotion_id = ?1", [promotion_id])?;
            Ok(())
        })
    }

    /// Starts a promotion that will change targets: records it as running
    /// and takes the environment's lock, or says who holds it.
    pub fn begin_promotion(
        &mut self,
        app: &str,
        digest: &Digest,
        tag: Option<&str>,
        environment: &str,
        requested_by: &str,
    ) -> Result<i64, BeginError> {
        self.begin_set_promotion(app, digest, tag, environment, requested_by, &[])
    }

    /// [`Store::begin_promotion`] of a release set: `also` are its other
    /// apps, recorded with it so recovery puts every one back.
    pub fn begin_set_promotion(
        &mut self,
        app: &str,
        digest: &Digest,
        tag: Option<&str>,
        environment: &str,
        requested_by: &str,
        also: &[(String, Digest)],
    ) -> Result<i64, BeginError> {
        // A dead holder's lock is not cleared here: recovery takes it over
        // and puts its targets back first (`engine::deploy::recover`, run
        // by every command that acts before it begins).
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let held: Option<Lock> = tx
            .query_row(
                "SELECT environment, promotion_id, holder, pid, acquired_at FROM locks WHERE environment = ?1",
                [environment],
                lock_row,
            )
            .optional()
            .map_err(StoreError::from)?;
        if let Some(lock) = held {
            return Err(BeginError::Locked(lock));
        }
        let now = time_to_sql(&Utc::now());
        tx.execute(
            "INSERT INTO promotions (app, digest, tag, environment, requested_by, state, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6)",
            params![app, digest.to_string(), tag, environment, requested_by, now],
        )
        .map_err(StoreError::from)?;
        let id = tx.last_insert_rowid();
        for (app, digest) in also {
            tx.execute(
                "INSERT INTO promotion_members (promotion_id, app, digest) VALUES (?1, ?2, ?3)",
                params![id, app, digest.to_string()],
            )
            .map_err(StoreError::from)?;
        }
        tx.execute(
            "INSERT INTO locks (environment, promotion_id, holder, pid, acquired_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![environment, id, requested_by, std::process::id() as i64, now],
        )
        .map_err(StoreError::from)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(id)
    }

    /// A release set's other apps, recorded when its promotion began.
    pub fn promotion_members(&self, id: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT app FROM promotion_members WHERE promotion_id = ?1 ORDER BY app",
        )?;
        let rows = stmt.query_map([id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The state of a promotion and its outcome, once decided.
    pub fn promotion_state(
        &self,
        id: i64,
    ) -> Result<Option<(PromotionState, Option<PromotionOutcome>)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT state, outcome FROM promotions WHERE id = ?1",
                [id],
                |r| {
                    let state: String = r.get(0)?;
                    let outcome: Option<String> = r.get(1)?;
                    Ok((
                        super::word_from_sql(0, &state)?,
                        outcome.map(|o| super::word_from_sql(1, &o)).transpose()?,
                    ))
                },
            )
            .optional()?)
    }
}
