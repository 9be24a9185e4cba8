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

    /// Resolutions oldest first, one at a time (memory does not grow with
    /// the store): of `app`, resolved at or after `since`, at most `limit`.
    pub fn for_each_resolution<E: From<StoreError>>(
        &self,
        app: Option<&str>,
        since: Option<&chrono::DateTime<chrono::Utc>>,
        limit: Option<usize>,
        mut each: impl FnMut(Resolution) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT app, reference, tag, digest, resolved_at FROM releases
                 WHERE (?1 IS NULL OR app = ?1) AND (?2 IS NULL OR resolved_at >= ?2)
                 ORDER BY id LIMIT ?3",
            )
            .map_err(StoreError::from)?;
        let limit = limit.map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let mut rows = stmt
            .query(rusqlite::params![app, since.map(super::time_to_sql), limit])
            .map_err(StoreError::from)?;
        while let Some(row) = rows.next().map_err(StoreError::from)? {
            let digest: String = row.get(3).map_err(StoreError::from)?;
            let at: String = row.get(4).map_err(StoreError::from)?;
            each(Resolution {
                app: row.get(0).map_err(StoreError::from)?,
                reference: row.get(1).map_err(StoreError::from)?,
                tag: row.get(2).map_err(StoreError::from)?,
                digest: super::digest_from_sql(3, &digest).map_err(StoreError::from)?,
                resolved_at: super::time_from_sql(4, &at).map_err(StoreError::from)?,
            })?;
        }
        Ok(())
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
