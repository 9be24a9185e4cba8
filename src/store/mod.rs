//! The SQLite store (`.stella/stella.db`) and the evidence CAS beside it.
//!
//! WAL mode so readers never block the writer; `foreign_keys` on; every
//! write in an `IMMEDIATE` transaction so two processes never interleave a
//! read-then-write.

mod attachments;
mod capsules;
mod evidence;
mod evidence_index;
mod graphs;
mod keys;
mod live;
mod locks;
mod pins;
mod releases;
mod requests;
mod rollouts;
mod runs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use rusqlite_migration::{M, Migrations};

pub use attachments::{AttachTarget, AttachmentRow, SummaryRow};
pub use capsules::{
    CapsuleFilter, CapsuleRow, ChainHeadRow, DecisionRecord, SealedRow, SealedSummary, SealingKey,
};
pub use evidence::{EvidenceError, EvidenceStore};
pub use evidence_index::EvidenceRecord;
pub use keys::KeyRecord;
pub use live::LiveRecord;
pub use locks::{BeginError, Lock, process_alive};
pub use pins::Pin;
pub use requests::{Answer, RequestRow, RequestSubject};
pub use rollouts::{RolloutKind, RolloutRow};
pub use runs::{PromotionFilter, PromotionRow, StepRow};

/// The schema, one migration per step; never edit a released one.
const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("migrations/0001_init.sql")),
    M::up(include_str!("migrations/0002_keys_live.sql")),
    M::up(include_str!("migrations/0003_views.sql")),
    M::up(include_str!("migrations/0004_pins.sql")),
    M::up(include_str!("migrations/0005_sealing_heads.sql")),
    M::up(include_str!("migrations/0006_operator_requests.sql")),
    M::up(include_str!("migrations/0007_rollouts.sql")),
    M::up(include_str!("migrations/0008_state_checks.sql")),
    M::up(include_str!("migrations/0009_run_graph.sql")),
    M::up(include_str!("migrations/0010_capsule_outcome.sql")),
    M::up(include_str!("migrations/0011_summaries_attachments.sql")),
    M::up(include_str!("migrations/0012_promotion_members.sql")),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the store {path} was written by a newer stella (schema {found}, this one knows up to {supported}); upgrade stella to use it"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("cannot migrate the store {path}: {message}")]
    Migrate { path: PathBuf, message: String },
    #[error("store: {}", sql_message(.0))]
    Sql(#[from] rusqlite::Error),
    #[error("cannot seal the decision: {0}")]
    Seal(String),
}

/// A write refused by the disk names the store and the fix.
fn sql_message(e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode::{DiskFull, ReadOnly};
    match e.sqlite_error_code() {
        Some(ReadOnly) => format!(
            "cannot write .stella/stella.db ({e}): the workspace's .stella/ is read-only; make it writable and run the command again"
        ),
        Some(DiskFull) => format!(
            "cannot write .stella/stella.db ({e}): the disk is full; free some space and run the command again"
        ),
        _ => e.to_string(),
    }
}

/// An open connection to a workspace's store.
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the store at `path` and brings its schema
    /// up to date. A store from a newer schema is refused, never downgraded.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        match Store::open_read_write(path) {
            // A store on a read-only (or full) disk still reads: commands
            // that only read work, and a write fails on its own.
            Err(e @ StoreError::Open { .. }) if path.is_file() => {
                Store::open_read_only(path).map_err(|_| e)
            }
            other => other,
        }
    }

    /// Opens an up-to-date store for reading only, without the locks and
    /// shared-memory file a write needs (SQLite's `immutable`).
    fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let uri = format!("file:{}?immutable=1", path.display());
        let conn = Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        let found: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(open_err)?;
        if found != MIGRATIONS.len() as i64 {
            return Err(StoreError::Migrate {
                path: path.to_owned(),
                message: "the store is read-only and needs a schema update".into(),
            });
        }
        Ok(Store { conn })
    }

    /// Opens an existing store for reading only (`SQLITE_OPEN_READ_ONLY`):
    /// SQLite itself refuses any write through it. A store whose schema is
    /// not this build's is refused; `Workspace::read_store` brings it up to
    /// date first.
    pub fn open_reader(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        let found: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(open_err)?;
        if found != MIGRATIONS.len() as i64 {
            return Err(StoreError::Migrate {
                path: path.to_owned(),
                message: format!(
                    "schema version {found}, this build reads {}",
                    MIGRATIONS.len()
                ),
            });
        }
        Ok(Store { conn })
    }

    fn open_read_write(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;

        let found: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(open_err)?;
        let supported = MIGRATIONS.len() as i64;
        if found > supported {
            return Err(StoreError::TooNew {
                path: path.to_owned(),
                found,
                supported,
            });
        }
        if found < supported {
            Migrations::from_slice(MIGRATIONS)
                .to_latest(&mut conn)
                .map_err(|e| StoreError::Migrate {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
        }
        Ok(Store { conn })
    }

    /// The schema version this build writes.
    pub fn schema_version() -> i64 {
        MIGRATIONS.len() as i64
    }

    /// Runs `f` in an `IMMEDIATE` transaction, committing only if it succeeds.
    pub fn write<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }
}

/// Times are stored as RFC 3339 UTC with microseconds, which sort as text.
pub(crate) fn time_to_sql(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(crate) fn time_from_sql(
    col: usize,
    s: &str,
) -> Result<chrono::DateTime<chrono::Utc>, rusqlite::Error> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, e.into())
        })
}

pub(crate) fn digest_from_sql(
    col: usize,
    s: &str,
) -> Result<crate::domain::Digest, rusqlite::Error> {
    s.parse().map_err(|e: crate::domain::DigestError| {
        rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, e.into())
    })
}

/// A vocabulary word read back from column `col`; a word the vocabulary
/// does not know is a clear error naming it and the known ones.
pub(crate) fn word_from_sql<T>(col: usize, s: &str) -> Result<T, rusqlite::Error>
where
    T: std::str::FromStr + strum::VariantArray + Into<&'static str> + Copy,
{
    s.parse().map_err(|_| {
        let known: Vec<&'static str> = T::VARIANTS.iter().map(|v| (*v).into()).collect();
        rusqlite::Error::FromSqlConversionFailure(
            col,
            rusqlite::types::Type::Text,
            format!(
                "unknown word `{s}` in the store (known: {}); was it written by a newer stella?",
                known.join(", ")
            )
            .into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_in_wal_with_foreign_keys_and_refuses_newer_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stella.db");
        let store = Store::open(&path).unwrap();
        let mode: String = store
            .conn()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = store
            .conn()
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        drop(store);

        // Reopening is idempotent.
        Store::open(&path).unwrap();

        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", Store::schema_version() + 1)
            .unwrap();
        drop(conn);
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(err.contains("written by a newer stella"), "{err}");
    }

    #[test]
    fn foreign_keys_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        let r = store.write(|tx| {
            tx.execute(
                "INSERT INTO evidence_links (subject_digest, evidence_digest) VALUES ('a', 'b')",
                [],
            )
        });
        assert!(r.is_err());
    }

    /// Every word each guarded column may hold, from the vocabularies.
    fn words() -> [(&'static str, Vec<&'static str>); 4] {
        use crate::domain::{PromotionOutcome, PromotionState, RunState, StepState};
        [
            ("promotions.state", PromotionState::words()),
            ("promotions.outcome", PromotionOutcome::words()),
            ("runs.state", RunState::words()),
            ("steps.state", StepState::words()),
        ]
    }

    fn insert(conn: &Connection, column: &str, word: &str) -> rusqlite::Result<usize> {
        let p = "INSERT INTO promotions (app, digest, environment, requested_by, state, outcome, created_at)
                 VALUES ('web', 'sha256:x', 'prod', 'me', ?1, ?2, '2026-12-04T10:00:00Z')";
        match column {
            "promotions.state" => conn.execute(p, rusqlite::params![word, None::<String>]),
            "promotions.outcome" => conn.execute(p, rusqlite::params!["decided", word]),
            "runs.state" => {
                conn.execute(p, rusqlite::params!["decided", "live"])?;
                conn.execute(
                    "INSERT INTO runs (promotion_id, state, started_at) VALUES (last_insert_rowid(), ?1, 'now')",
                    [word],
                )
            }
            _ => {
                conn.execute(p, rusqlite::params!["decided", "live"])?;
                conn.execute(
                    "INSERT INTO runs (promotion_id, state, started_at) VALUES (last_insert_rowid(), 'succeeded', 'now')",
                    [],
                )?;
                conn.execute(
                    "INSERT INTO steps (run_id, step, state) VALUES (last_insert_rowid(), 'deploy', ?1)",
                    [word],
                )
            }
        }
    }

    #[test]
    fn the_store_refuses_a_state_outside_its_vocabulary() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        for (column, words) in words() {
            for w in words {
                insert(store.conn(), column, w).unwrap_or_else(|e| panic!("{column} {w}: {e}"));
            }
            let err = insert(store.conn(), column, "done")
                .unwrap_err()
                .to_string();
            assert!(err.contains("unknown state"), "{column}: {err}");
        }
        // An update to an unknown word is refused too.
        let err = store
            .write(|tx| tx.execute("UPDATE promotions SET outcome = 'shipped'", []))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown state or outcome"), "{err}");
        let err = store
            .write(|tx| tx.execute("UPDATE steps SET state = 'ok'", []))
            .unwrap_err()
            .to_string();
        assert!(err.contains("steps: unknown state"), "{err}");
    }

    #[test]
    fn a_store_of_the_previous_schema_with_every_word_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let before = MIGRATIONS
            .iter()
            .position(|m| format!("{m:?}").contains("promotions_state_insert"))
            .unwrap();
        {
            let mut conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "foreign_keys", "ON").unwrap();
            Migrations::from_slice(&MIGRATIONS[..before])
                .to_latest(&mut conn)
                .unwrap();
            for (column, words) in words() {
                for w in words {
                    insert(&conn, column, w).unwrap();
                }
            }
        }
        let store = Store::open(&path).unwrap();
        let promotions = store.promotions(None).unwrap();
        assert!(
            promotions
                .iter()
                .any(|p| p.outcome == Some(crate::domain::PromotionOutcome::FlagsSet))
        );
        for p in &promotions {
            if let Some(run) = p.run_id {
                store.steps(run).unwrap();
            }
        }
        // And the new guard holds on the migrated store.
        assert!(insert(store.conn(), "runs.state", "done").is_err());
    }

    #[test]
    fn an_unknown_word_left_by_an_older_store_is_a_clear_error_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let before = MIGRATIONS
            .iter()
            .position(|m| format!("{m:?}").contains("promotions_state_insert"))
            .unwrap();
        {
            let mut conn = Connection::open(&path).unwrap();
            Migrations::from_slice(&MIGRATIONS[..before])
                .to_latest(&mut conn)
                .unwrap();
            insert(&conn, "promotions.outcome", "shipped").unwrap();
        }
        let store = Store::open(&path).unwrap();
        let err = store.promotions(None).unwrap_err().to_string();
        assert!(err.contains("unknown word `shipped`"), "{err}");
        assert!(err.contains("deploy-failed"), "{err}");
    }
}
