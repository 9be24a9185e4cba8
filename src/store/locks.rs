//! One promotion per environment at a time. A promotion that deploys holds
//! its environment's lock from before the first change to a target until
//! its capsule is sealed; a lock whose process is gone is released, and its
//! promotion marked `interrupted`.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, time_from_sql, time_to_sql};
use crate::domain::Digest;

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

impl Store {
    /// Marks promotions whose process died mid-way as `interrupted` and
    /// releases their locks; returns their ids.
    pub fn recover_interrupted(&mut self) -> Result<Vec<i64>, StoreError> {
        self.write(|tx| {
            let dead: Vec<(i64, i64)> = {
                let mut stmt = tx.prepare("SELECT promotion_id, pid FROM locks")?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .filter(|(_, pid)| !process_alive(*pid))
                    .collect()
            };
            let now = time_to_sql(&Utc::now());
            for (id, _) in &dead {
                tx.execute(
                    "UPDATE promotions SET state = 'interrupted', outcome = 'interrupted', finished_at = ?2 WHERE id = ?1 AND state = 'running'",
                    params![id, now],
                )?;
                tx.execute("DELETE FROM locks WHERE promotion_id = ?1", [id])?;
                tx.execute(
                    "UPDATE runs SET state = 'interrupted', finished_at = ?2 WHERE promotion_id = ?1 AND state IN ('running', 'paused')",
                    params![id, now],
                )?;
                tx.execute(
                    "UPDATE steps SET state = 'interrupted', finished_at = ?2
                     WHERE state = 'running' AND run_id IN (SELECT id FROM runs WHERE promotion_id = ?1)",
                    params![id, now],
                )?;
            }
            Ok(dead.into_iter().map(|(id, _)| id).collect())
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
        self.recover_interrupted()?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let held: Option<Lock> = tx
            .query_row(
                "SELECT environment, promotion_id, holder, pid, acquired_at FROM locks WHERE environment = ?1",
                [environment],
                |r| {
                    let at: String = r.get(4)?;
                    Ok(Lock {
                        environment: r.get(0)?,
                        promotion_id: r.get(1)?,
                        holder: r.get(2)?,
                        pid: r.get(3)?,
                        acquired_at: time_from_sql(4, &at)?,
                    })
                },
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
        tx.execute(
            "INSERT INTO locks (environment, promotion_id, holder, pid, acquired_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![environment, id, requested_by, std::process::id() as i64, now],
        )
        .map_err(StoreError::from)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(id)
    }

    /// The state of a promotion (`running`, `decided`, `interrupted`).
    pub fn promotion_state(&self, id: i64) -> Result<Option<(String, Option<String>)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT state, outcome FROM promotions WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }
}
