//! Pins: a deliberate rollback holds its app in its environment on the
//! release it returned to until someone unpins it. The table follows the
//! capsules: `record_decision` writes a pin with a rollback that went live
//! and removes it with an unpin, in the same transaction.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, digest_from_sql, time_from_sql, time_to_sql};
use crate::domain::Digest;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pin {
    pub environment: String,
    pub app: String,
    /// The release the rollback returned to.
    pub digest: Digest,
    /// The rollback's capsule.
    pub capsule_id: i64,
    pub pinned_by: String,
    #[serde(serialize_with = "crate::domain::release::rfc3339")]
    pub pinned_at: DateTime<Utc>,
}

const COLUMNS: &str = "environment, app, digest, capsule_id, pinned_by, pinned_at";

fn row(r: &rusqlite::Row<'_>) -> Result<Pin, rusqlite::Error> {
    let d: String = r.get(2)?;
    let at: String = r.get(5)?;
    Ok(Pin {
        environment: r.get(0)?,
        app: r.get(1)?,
        digest: digest_from_sql(2, &d)?,
        capsule_id: r.get(3)?,
        pinned_by: r.get(4)?,
        pinned_at: time_from_sql(5, &at)?,
    })
}

impl Store {
    /// The pin on `app` in `environment`, if any.
    pub fn pin(&self, environment: &str, app: &str) -> Result<Option<Pin>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM pins WHERE environment = ?1 AND app = ?2"),
                params![environment, app],
                row,
            )
            .optional()?)
    }

    /// Every pin, by environment then app.
    pub fn pins(&self) -> Result<Vec<Pin>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM pins ORDER BY environment, app"
        ))?;
        let rows = stmt.query_map([], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// What a decision does to its app's pin, from its action.
pub(super) fn follow(
    tx: &rusqlite::Transaction<'_>,
    d: &super::DecisionRecord,
    capsule_id: i64,
) -> Result<(), StoreError> {
    match d.action.as_str() {
        "rollback" if d.goes_live => {
            tx.execute(
                "INSERT OR REPLACE INTO pins (environment, app, digest, capsule_id, pinned_by, pinned_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    d.environment,
                    d.app,
                    d.digest.to_string(),
                    capsule_id,
                    d.requested_by,
                    time_to_sql(&d.at)
                ],
            )?;
        }
        "unpin" => {
            // Two operators unpinning at once: the second finds nothing
            // to lift, and its capsule is not sealed.
            let lifted = tx.execute(
                "DELETE FROM pins WHERE environment = ?1 AND app = ?2",
                params![d.environment, d.app],
            )?;
            if lifted == 0 {
                return Err(StoreError::Seal(format!(
                    "{} is no longer pinned in {}",
                    d.app, d.environment
                )));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{DecisionRecord, SealedRow};
    use super::*;

    fn decide(store: &mut Store, action: &str, n: u8) -> Result<i64, StoreError> {
        let rec = DecisionRecord {
            app: "web".into(),
            digest: Digest::of(b"web 1.0"),
            tag: None,
            environment: "prod".into(),
            requested_by: "oncall@example.com".into(),
            action: action.into(),
            decision: "allow".into(),
            outcome: crate::domain::PromotionOutcome::Live,
            at: Utc::now(),
            goes_live: action == "rollback",
            also: Vec::new(),
        };
        store
            .record_decision(&rec, None, |_, _, _| {
                Ok::<_, String>(SealedRow {
                    payload_digest: Digest::of(&[n]),
                    envelope: vec![n],
                    head: vec![n],
                    summary: None,
                    attach: None,
                })
            })
            .map(|(_, capsule, _)| capsule)
    }

    #[test]
    fn a_rollback_pins_an_unpin_lifts_and_a_second_unpin_seals_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        let capsule = decide(&mut store, "rollback", 1).unwrap();
        let pin = store.pin("prod", "web").unwrap().expect("pinned");
        assert_eq!(
            (pin.capsule_id, pin.digest),
            (capsule, Digest::of(b"web 1.0"))
        );
        assert_eq!(store.pins().unwrap().len(), 1);
        // Other decisions leave it alone.
        decide(&mut store, "flags", 2).unwrap();
        assert!(store.pin("prod", "web").unwrap().is_some());
        decide(&mut store, "unpin", 3).unwrap();
        assert!(store.pin("prod", "web").unwrap().is_none());
        let before = store.capsule_count().unwrap();
        let e = decide(&mut store, "unpin", 4).unwrap_err().to_string();
        assert!(e.contains("web is no longer pinned in prod"), "{e}");
        assert_eq!(store.capsule_count().unwrap(), before, "rolled back whole");
    }
}
