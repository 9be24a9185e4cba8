//! Rollouts on routed targets as rows: the state machine of each canary or
//! A/B test (JSON, its deadlines as times), its phase and its owner's pid.
//! The owner writes it after each change; any process reads it, and one
//! takes it over (compare-and-set on the owner) when the owner is dead.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Lock, Store, StoreError, time_from_sql, time_to_sql};
use crate::domain::{CanaryPhase, Digest, PromotionOutcome};

/// What kind of rollout a row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutKind {
    Canary,
    Ab,
}

impl RolloutKind {
    fn as_str(self) -> &'static str {
        match self {
            RolloutKind::Canary => "canary",
            RolloutKind::Ab => "ab",
        }
    }
}

/// One target's rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRow {
    pub environment: String,
    pub target: String,
    pub promotion_id: Option<i64>,
    pub app: String,
    pub digest: Digest,
    pub kind: RolloutKind,
    pub phase: CanaryPhase,
    pub owner_pid: Option<i64>,
    /// How many times it was taken over from a dead owner.
    pub taken_over: i64,
    /// The state machine, as JSON.
    pub state: String,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "environment, target, promotion_id, app, digest, kind, phase, owner_pid, taken_over, state, updated_at";

fn row(r: &rusqlite::Row<'_>) -> Result<RolloutRow, rusqlite::Error> {
    let bad = |col: usize, s: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            col,
            rusqlite::types::Type::Text,
            format!("unknown word `{s}`").into(),
        )
    };
    let digest: String = r.get(4)?;
    let kind: String = r.get(5)?;
    let phase: String = r.get(6)?;
    let at: String = r.get(10)?;
    Ok(RolloutRow {
        environment: r.get(0)?,
        target: r.get(1)?,
        promotion_id: r.get(2)?,
        app: r.get(3)?,
        digest: digest.parse().map_err(|_| bad(4, &digest))?,
        kind: match kind.as_str() {
            "canary" => RolloutKind::Canary,
            "ab" => RolloutKind::Ab,
            _ => return Err(bad(5, &kind)),
        },
        phase: phase.parse().map_err(|_| bad(6, &phase))?,
        owner_pid: r.get(7)?,
        taken_over: r.get(8)?,
        state: r.get(9)?,
        updated_at: time_from_sql(10, &at)?,
    })
}

fn me() -> i64 {
    i64::from(std::process::id())
}

impl Store {
    /// Starts (or replaces) a target's rollout, owned by this process.
    pub fn put_rollout(&mut self, r: &RolloutRow) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO rollouts (environment, target, promotion_id, app, digest, kind, phase, owner_pid, taken_over, state, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    r.environment,
                    r.target,
                    r.promotion_id,
                    r.app,
                    r.digest.to_string(),
                    r.kind.as_str(),
                    r.phase.as_str(),
                    r.owner_pid,
                    r.taken_over,
                    r.state,
                    time_to_sql(&Utc::now()),
                ],
            )?;
            Ok(())
        })
    }

    /// Writes the owner's new state; `false` when this process no longer
    /// owns it (another took it over). `release` gives it up (it is over).
    pub fn save_rollout(
        &mut self,
        environment: &str,
        target: &str,
        phase: CanaryPhase,
        state: &str,
        release: bool,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE rollouts SET phase = ?3, state = ?4, updated_at = ?5,
                        owner_pid = CASE WHEN ?6 THEN NULL ELSE owner_pid END
                 WHERE environment = ?1 AND target = ?2 AND owner_pid = ?7",
                params![
                    environment,
                    target,
                    phase.as_str(),
                    state,
                    time_to_sql(&Utc::now()),
                    release,
                    me(),
                ],
            )?;
            Ok(n == 1)
        })
    }

    /// Makes this process the rollout's owner if its owner is still
    /// `was` (a dead pid, or none); `false` if another got there first.
    pub fn take_over_rollout(
        &mut self,
        environment: &str,
        target: &str,
        was: Option<i64>,
        promotion_id: Option<i64>,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE rollouts SET owner_pid = ?4, taken_over = taken_over + 1, updated_at = ?5,
                        promotion_id = COALESCE(?6, promotion_id)
                 WHERE environment = ?1 AND target = ?2 AND owner_pid IS ?3",
                params![
                    environment,
                    target,
                    was,
                    me(),
                    time_to_sql(&Utc::now()),
                    promotion_id
                ],
            )?;
            Ok(n == 1)
        })
    }

    pub fn rollout(
        &self,
        environment: &str,
        target: &str,
    ) -> Result<Option<RolloutRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM rollouts WHERE environment = ?1 AND target = ?2");
        Ok(self
            .conn
            .query_row(&sql, params![environment, target], row)
            .optional()?)
    }

    /// The rollouts of an environment, by target.
    pub fn rollouts(&self, environment: &str) -> Result<Vec<RolloutRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM rollouts WHERE environment = ?1 ORDER BY target");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([environment], row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Who holds an environment's lock, if anyone.
    pub fn lock_of(&self, environment: &str) -> Result<Option<Lock>, StoreError> {
        Ok(self
            .conn
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
            .optional()?)
    }

    /// Ends a promotion whose decisions were sealed step by step (an
    /// operator's action on a taken-over rollout): decided with `outcome`,
    /// its lock released.
    pub fn end_promotion(&mut self, id: i64, outcome: PromotionOutcome) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE promotions SET state = 'decided', outcome = ?2, finished_at = ?3 WHERE id = ?1",
                params![id, outcome.as_str(), time_to_sql(&Utc::now())],
            )?;
            tx.execute("DELETE FROM locks WHERE promotion_id = ?1", [id])?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_writes_and_one_process_takes_a_dead_owner_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("stella.db")).unwrap();
        let dead = 999_999_999;
        let r = RolloutRow {
            environment: "dev".into(),
            target: "edge".into(),
            promotion_id: None,
            app: "web".into(),
            digest: format!("sha256:{}", "a".repeat(64)).parse().unwrap(),
            kind: RolloutKind::Canary,
            phase: CanaryPhase::Running,
            owner_pid: Some(dead),
            taken_over: 0,
            state: "{}".into(),
            updated_at: Utc::now(),
        };
        s.put_rollout(&r).unwrap();
        // Not the owner: the write is refused.
        assert!(
            !s.save_rollout("dev", "edge", CanaryPhase::Paused, "{}", false)
                .unwrap()
        );
        assert!(
            s.take_over_rollout("dev", "edge", Some(dead), None)
                .unwrap()
        );
        // The second taker loses.
        assert!(
            !s.take_over_rollout("dev", "edge", Some(dead), None)
                .unwrap()
        );
        assert!(
            s.save_rollout("dev", "edge", CanaryPhase::Paused, "{\"x\":1}", true)
                .unwrap()
        );
        let got = s.rollout("dev", "edge").unwrap().unwrap();
        assert_eq!(
            (got.phase, got.owner_pid, got.taken_over, got.state.as_str()),
            (CanaryPhase::Paused, None, 1, "{\"x\":1}")
        );
        assert_eq!(s.rollouts("dev").unwrap().len(), 1);
        assert!(s.rollouts("prod").unwrap().is_empty());
    }
}
