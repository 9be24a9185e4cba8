//! Keys the workspace knows: name, owner's email, key id, public PEM.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, time_from_sql, time_to_sql};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyRecord {
    pub name: String,
    pub email: String,
    pub keyid: String,
    pub public_pem: String,
    /// Whether the private half is in this workspace's keys folder.
    pub private: bool,
    #[serde(serialize_with = "crate::domain::release::rfc3339")]
    pub added_at: DateTime<Utc>,
}

impl Store {
    pub fn add_key(&mut self, k: &KeyRecord) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO keys (name, email, keyid, public_pem, private, added_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![k.name, k.email, k.keyid, k.public_pem, k.private, time_to_sql(&k.added_at)],
            )?;
            Ok(())
        })
    }

    pub fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, email, keyid, public_pem, private, added_at FROM keys ORDER BY name",
        )?;
        let rows = stmt.query_map([], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn key(&self, name: &str) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT name, email, keyid, public_pem, private, added_at FROM keys WHERE name = ?1",
                [name],
                row,
            )
            .optional()?)
    }
}

fn row(r: &rusqlite::Row<'_>) -> Result<KeyRecord, rusqlite::Error> {
    let at: String = r.get(5)?;
    Ok(KeyRecord {
        name: r.get(0)?,
        email: r.get(1)?,
        keyid: r.get(2)?,
        public_pem: r.get(3)?,
        private: r.get(4)?,
        added_at: time_from_sql(5, &at)?,
    })
}
