//! Tag → digest resolutions.

use rusqlite::params;

use super::{Store, StoreError};
use crate::domain::Resolution;

impl Store {
    /// Records a resolution; returns its row id.
    pub fn record_resolution(&mut self, r: &Resolution) -> Result<i64, StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO releases (app, reference, tag, digest, resolved_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    r.app,
                    r.reference,
                    r.tag,
                    r.digest.to_string(),
                    super::time_to_sql(&r.resolved_at)
                ],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Resolutions, oldest first, optionally of one app.
    pub fn resolutions(&self, app: Option<&str>) -> Result<Vec<Resolution>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT app, reference, tag, digest, resolved_at FROM releases
             WHERE ?1 IS NULL OR app = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([app], |row| {
            let digest: String = row.get(3)?;
            let at: String = row.get(4)?;
            Ok(Resolution {
                app: row.get(0)?,
                reference: row.get(1)?,
                tag: row.get(2)?,
                digest: super::digest_from_sql(3, &digest)?,
                resolved_at: super::time_from_sql(4, &at)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Digest;
    use chrono::Utc;

    #[test]
    fn records_and_lists_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        let at = Utc::now();
        for (app, tag, body) in [("a", "v1", "1"), ("b", "v1", "2"), ("a", "v1", "3")] {
            store
                .record_resolution(&Resolution {
                    app: Some(app.into()),
                    reference: format!("oci-layout:x:{tag}"),
                    tag: Some(tag.into()),
                    digest: Digest::of(body.as_bytes()),
                    resolved_at: at,
                })
                .unwrap();
        }
        let a = store.resolutions(Some("a")).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].digest, Digest::of(b"1"));
        assert_eq!(a[1].digest, Digest::of(b"3"));
        assert_eq!(store.resolutions(None).unwrap().len(), 3);
    }
}
