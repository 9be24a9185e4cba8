//! Capsules and the decisions they seal. A decision and its capsule are
//! written in one `IMMEDIATE` transaction: no decision without a capsule,
//! no capsule without its decision, and the chain's `previous` is read
//! inside the same transaction, so two writers cannot fork it.

use chrono::{DateTime, Utc};

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError, digest_from_sql, time_from_sql, time_to_sql};
use crate::domain::{Digest, PromotionOutcome};

/// A decision about to be recorded.
pub struct DecisionRecord {
    pub app: String,
    pub digest: Digest,
    pub tag: Option<String>,
    pub environment: String,
    pub requested_by: String,
    pub action: String,
    pub decision: String,
    pub outcome: PromotionOutcome,
    pub at: DateTime<Utc>,
    /// Make the release live in the environment (an allowed promotion or a
    /// rollback).
    pub goes_live: bool,
    /// A release set's other apps with their digests: they go live (or
    /// are pinned by a rollback) with the first, under the same promotion.
    pub also: Vec<(String, Digest)>,
}

/// What `seal` hands back for the store to keep.
pub struct SealedRow {
    pub payload_digest: Digest,
    pub envelope: Vec<u8>,
    /// The environment's new chain head (a signed statement naming this
    /// capsule as the newest), written in the same transaction.
    pub head: Vec<u8>,
    /// The decision's verification summary, for a decision about whether
    /// a release may run (promotions and rollbacks).
    pub summary: Option<SealedSummary>,
    /// Where to attach capsule and summary; the row is written pending.
    pub attach: Option<super::AttachTarget>,
}

/// A signed verification summary, as sealed with its capsule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSummary {
    pub payload_digest: Digest,
    pub passed: bool,
    pub envelope: Vec<u8>,
}

/// A key that may seal capsules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SealingKey {
    pub keyid: String,
    pub name: String,
    pub public_pem: String,
    /// Set once a newer sealing key replaced it.
    pub retired_at: Option<String>,
}

/// An environment's signed chain head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHeadRow {
    pub environment: String,
    pub payload_digest: Digest,
    pub envelope: Vec<u8>,
}

/// A capsule's index entry (the envelope is fetched separately).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapsuleRow {
    pub id: i64,
    pub environment: String,
    pub app: String,
    pub digest: Digest,
    pub action: String,
    pub decision: String,
    pub promotion_id: Option<i64>,
    pub payload_digest: Digest,
    pub previous: Option<Digest>,
    #[serde(serialize_with = "crate::domain::release::rfc3339")]
    pub sealed_at: DateTime<Utc>,
    /// How the decision ended, as its signed statement says; read from
    /// the envelope by the listings that fetch it (`None` elsewhere, or
    /// when the envelope says none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<PromotionOutcome>,
}

/// Filters for listing capsules.
#[derive(Debug, Clone, Default)]
pub struct CapsuleFilter {
    pub environment: Option<String>,
    pub app: Option<String>,
    pub decision: Option<String>,
    pub digest: Option<String>,
    /// Only capsules whose signed outcome is this one.
    pub outcome: Option<PromotionOutcome>,
    /// Only capsules sealed at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only capsules with a greater id (the next page after that one).
    pub after: Option<i64>,
    /// At most this many (the oldest of those that match).
    pub limit: Option<usize>,
}

impl CapsuleFilter {
    /// Does a row (with its outcome read) pass the outcome, time and id
    /// filters?
    fn keeps(&self, r: &CapsuleRow) -> bool {
        self.outcome.is_none_or(|want| r.outcome == Some(want))
            && self.since.is_none_or(|s| r.sealed_at >= s)
            && self.after.is_none_or(|a| r.id > a)
    }

    fn full(&self, n: usize) -> bool {
        self.limit.is_some_and(|l| n >= l)
    }
}

/// The outcome a capsule's signed statement records, if its envelope
/// decodes to one. Reads only what it needs: the payload is borrowed from
/// the envelope, and everything in the statement but the outcome is
/// skipped unparsed.
pub fn signed_outcome(envelope: &[u8]) -> Option<PromotionOutcome> {
    use base64::Engine as _;
    #[derive(serde::Deserialize)]
    struct Env<'a> {
        #[serde(borrow)]
        payload: std::borrow::Cow<'a, str>,
    }
    #[derive(serde::Deserialize)]
    struct View {
        predicate: Predicate,
    }
    #[derive(serde::Deserialize)]
    struct Predicate {
        outcome: PromotionOutcome,
    }
    let env: Env<'_> = serde_json::from_slice(envelope).ok()?;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env.payload.as_bytes())
        .ok()?;
    serde_json::from_slice::<View>(&payload)
        .ok()
        .map(|v| v.predicate.outcome)
}

const COLUMNS: &str = "id, environment, app, digest, action, decision, promotion_id, payload_digest, previous, sealed_at";

fn row(r: &rusqlite::Row<'_>) -> Result<CapsuleRow, rusqlite::Error> {
    let digest: String = r.get(3)?;
    let payload: String = r.get(7)?;
    let previous: Option<String> = r.get(8)?;
    let at: String = r.get(9)?;
    Ok(CapsuleRow {
        id: r.get(0)?,
        environment: r.get(1)?,
        app: r.get(2)?,
        digest: digest_from_sql(3, &digest)?,
        action: r.get(4)?,
        decision: r.get(5)?,
        promotion_id: r.get(6)?,
        payload_digest: digest_from_sql(7, &payload)?,
        previous: previous.map(|p| digest_from_sql(8, &p)).transpose()?,
        sealed_at: time_from_sql(9, &at)?,
        outcome: None,
    })
}

/// A row selected with its stored outcome (column 10) and, only where
/// that is empty (a capsule sealed before the column existed), its
/// envelope (column 11) to read the outcome from.
fn row_with_stored_outcome(r: &rusqlite::Row<'_>) -> Result<CapsuleRow, rusqlite::Error> {
    let mut c = row(r)?;
    let stored: Option<String> = r.get(10)?;
    c.outcome = match stored {
        Some(word) => Some(crate::store::word_from_sql(10, &word)?),
        None => r
            .get::<_, Option<Vec<u8>>>(11)?
            .and_then(|e| signed_outcome(&e)),
    };
    Ok(c)
}

/// A row selected with its envelope (column 10), its outcome read.
fn row_with_outcome(r: &rusqlite::Row<'_>) -> Result<(CapsuleRow, Vec<u8>), rusqlite::Error> {
    let mut c = row(r)?;
    let envelope: Vec<u8> = r.get(10)?;
    c.outcome = signed_outcome(&envelope);
    Ok((c, envelope))
}

impl Store {
    /// Records a decision and seals its capsule atomically. `seal` receives
    /// the environment's previous capsule digest and the new promotion id.
    /// With `existing`, the promotion begun by `begin_promotion` is
    /// finished (and its lock released) instead of a new one inserted.
    pub fn record_decision<E: std::fmt::Display>(
        &mut self,
        d: &DecisionRecord,
        existing: Option<i64>,
        seal: impl FnOnce(Option<Digest>, Option<&[u8]>, i64) -> Result<SealedRow, E>,
    ) -> Result<(i64, i64, Digest), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let at = time_to_sql(&d.at);
        let now = time_to_sql(&Utc::now());
        let promotion_id = match existing {
            Some(id) => {
                tx.execute(
                    "UPDATE promotions SET state = 'decided', outcome = ?2, finished_at = ?3 WHERE id = ?1",
                    params![id, d.outcome.as_str(), now],
                )?;
                tx.execute("DELETE FROM locks WHERE promotion_id = ?1", [id])?;
                id
            }
            None => {
                tx.execute(
                    "INSERT INTO promotions (app, digest, tag, environment, requested_by, state, outcome, created_at, finished_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'decided', ?6, ?7, ?7)",
                    params![d.app, d.digest.to_string(), d.tag, d.environment, d.requested_by, d.outcome.as_str(), at],
                )?;
                tx.last_insert_rowid()
            }
        };
        let (capsule_id, sealed) = insert_capsule(&tx, d, promotion_id, seal)?;
        let apps = std::iter::once((&d.app, &d.digest)).chain(d.also.iter().map(|(a, g)| (a, g)));
        for (app, digest) in apps {
            let member = DecisionRecord {
                app: app.clone(),
                digest: digest.clone(),
                tag: None,
                environment: d.environment.clone(),
                requested_by: d.requested_by.clone(),
                action: d.action.clone(),
                decision: d.decision.clone(),
                outcome: d.outcome,
                at: d.at,
                goes_live: d.goes_live,
                also: Vec::new(),
            };
            super::pins::follow(&tx, &member, capsule_id)?;
            if d.goes_live {
                tx.execute(
                    "INSERT INTO live (environment, app, digest, since, promotion_id, source) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![d.environment, app, digest.to_string(), at, promotion_id, d.action],
                )?;
            }
        }
        tx.commit()?;
        Ok((promotion_id, capsule_id, sealed.payload_digest))
    }

    /// Seals a decision taken inside a running promotion (a canary's
    /// weight change, an operator's pause): its capsule joins the
    /// environment's chain; the promotion stays open and nothing goes live.
    pub fn record_step<E: std::fmt::Display>(
        &mut self,
        d: &DecisionRecord,
        promotion_id: i64,
        seal: impl FnOnce(Option<Digest>, Option<&[u8]>, i64) -> Result<SealedRow, E>,
    ) -> Result<(i64, Digest), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (capsule_id, sealed) = insert_capsule(&tx, d, promotion_id, seal)?;
        tx.commit()?;
        Ok((capsule_id, sealed.payload_digest))
    }

    pub fn capsules(&self, f: &CapsuleFilter) -> Result<Vec<CapsuleRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS}, outcome, CASE WHEN outcome IS NULL THEN envelope END FROM capsules
             WHERE (?1 IS NULL OR environment = ?1) AND (?2 IS NULL OR app = ?2)
               AND (?3 IS NULL OR decision = ?3) AND (?4 IS NULL OR digest LIKE ?4 || '%')
               AND (?5 IS NULL OR outcome IS NULL OR outcome = ?5)
             ORDER BY id"
        ))?;
        let mut rows = stmt.query(params![
            f.environment,
            f.app,
            f.decision,
            f.digest,
            f.outcome.map(|o| o.as_str())
        ])?;
        let mut out = Vec::new();
        while !f.full(out.len())
            && let Some(r) = rows.next()?
        {
            let c = row_with_stored_outcome(r)?;
            if f.keeps(&c) {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// The newest `limit` capsules matching `f`, newest first, each with
    /// its signed outcome: one page of history, however long the history
    /// is.
    pub fn capsules_page(
        &self,
        f: &CapsuleFilter,
        limit: usize,
    ) -> Result<Vec<CapsuleRow>, StoreError> {
        // Older capsules keep their outcome only in the signed envelope:
        // filtering on it reads rows until the page is full instead of
        // limiting in SQL.
        let sql_limit = if f.outcome.is_some() || f.since.is_some() || f.after.is_some() {
            -1
        } else {
            limit as i64
        };
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS}, outcome, CASE WHEN outcome IS NULL THEN envelope END FROM capsules
             WHERE (?1 IS NULL OR environment = ?1) AND (?2 IS NULL OR app = ?2)
               AND (?3 IS NULL OR decision = ?3) AND (?4 IS NULL OR digest LIKE ?4 || '%')
               AND (?6 IS NULL OR outcome IS NULL OR outcome = ?6)
             ORDER BY id DESC LIMIT ?5"
        ))?;
        let mut rows = stmt.query(params![
            f.environment,
            f.app,
            f.decision,
            f.digest,
            sql_limit,
            f.outcome.map(|o| o.as_str())
        ])?;
        let limit = f.limit.map_or(limit, |l| l.min(limit));
        let mut out = Vec::new();
        while out.len() < limit
            && let Some(r) = rows.next()?
        {
            let c = row_with_stored_outcome(r)?;
            if f.keeps(&c) {
                out.push(c);
            }
        }
        Ok(out)
    }

    pub fn capsule_count(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM capsules", [], |r| r.get(0))?)
    }

    /// The capsule a promotion was sealed under.
    pub fn capsule_of_promotion(
        &self,
        promotion_id: i64,
    ) -> Result<Option<CapsuleRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM capsules WHERE promotion_id = ?1"),
                [promotion_id],
                row,
            )
            .optional()?)
    }

    /// `PRAGMA data_version`: changes whenever another connection commits.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "data_version", |r| r.get(0))?)
    }

    pub fn capsule(&self, id: i64) -> Result<Option<(CapsuleRow, Vec<u8>)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS}, envelope FROM capsules WHERE id = ?1"),
                [id],
                |r| Ok((row(r)?, r.get(10)?)),
            )
            .optional()?)
    }

    pub fn capsule_by_payload(
        &self,
        digest: &Digest,
    ) -> Result<Option<(CapsuleRow, Vec<u8>)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS}, envelope FROM capsules WHERE payload_digest = ?1"),
                [digest.to_string()],
                |r| Ok((row(r)?, r.get(10)?)),
            )
            .optional()?)
    }

    /// The keys that may seal capsules here (retired ones included: they
    /// still verify what they sealed).
    pub fn sealing_keys(&self) -> Result<Vec<SealingKey>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT keyid, name, public_pem, retired_at FROM sealing_keys ORDER BY added_at, keyid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(SealingKey {
                keyid: r.get(0)?,
                name: r.get(1)?,
                public_pem: r.get(2)?,
                retired_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every environment's chain head, by environment.
    pub fn chain_heads(&self) -> Result<Vec<ChainHeadRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT environment, payload_digest, envelope FROM chain_heads ORDER BY environment",
        )?;
        let rows = stmt.query_map([], |r| {
            let d: String = r.get(1)?;
            Ok(ChainHeadRow {
                environment: r.get(0)?,
                payload_digest: digest_from_sql(1, &d)?,
                envelope: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Capsules matching `f` with their envelopes and signed outcomes,
    /// oldest first, one at a time (nothing is collected): for listing a
    /// long history.
    pub fn for_each_capsule_matching<E: From<StoreError>>(
        &self,
        f: &CapsuleFilter,
        mut each: impl FnMut(CapsuleRow, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut run = || -> Result<Result<(), E>, rusqlite::Error> {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {COLUMNS}, envelope FROM capsules
                 WHERE (?1 IS NULL OR environment = ?1) AND (?2 IS NULL OR app = ?2)
                   AND (?3 IS NULL OR decision = ?3) AND (?4 IS NULL OR digest LIKE ?4 || '%')
                   AND (?5 IS NULL OR id > ?5)
                 ORDER BY id"
            ))?;
            let mut rows =
                stmt.query(params![f.environment, f.app, f.decision, f.digest, f.after])?;
            let mut kept = 0usize;
            while let Some(r) = rows.next()? {
                if f.full(kept) {
                    break;
                }
                let (c, env) = row_with_outcome(r)?;
                if !f.keeps(&c) {
                    continue;
                }
                kept += 1;
                if let Err(e) = each(c, &env) {
                    return Ok(Err(e));
                }
            }
            Ok(Ok(()))
        };
        run().map_err(|e| E::from(StoreError::from(e)))?
    }

    /// Every capsule with its envelope, in order, for walking the chains.
    pub fn for_each_capsule(
        &self,
        environment: Option<&str>,
        mut f: impl FnMut(CapsuleRow, &[u8]),
    ) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS}, envelope, outcome FROM capsules WHERE ?1 IS NULL OR environment = ?1 ORDER BY id"
        ))?;
        let mut rows = stmt.query([environment])?;
        while let Some(r) = rows.next()? {
            let env: Vec<u8> = r.get(10)?;
            let mut c = row(r)?;
            // The index's own outcome, for the audit to hold against the
            // signed one (`None` for capsules sealed before it was kept).
            c.outcome = r
                .get::<_, Option<String>>(11)?
                .map(|w| crate::store::word_from_sql(11, &w))
                .transpose()?;
            f(c, &env);
        }
        Ok(())
    }

    /// The latest capsule under which `digest` was allowed into
    /// `environment`: alone, or as one app of a release set.
    pub fn promoted_under(
        &self,
        environment: &str,
        digest: &Digest,
    ) -> Result<Option<CapsuleRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM capsules WHERE environment = ?1
                     AND action = 'promote' AND decision = 'allow'
                     AND (digest = ?2 OR promotion_id IN (
                         SELECT promotion_id FROM live
                         WHERE environment = ?1 AND digest = ?2 AND promotion_id IS NOT NULL))
                     ORDER BY id DESC LIMIT 1"
                ),
                params![environment, digest.to_string()],
                row,
            )
            .optional()?)
    }

    /// What became live for `app` in `environment`, newest first.
    pub fn live_history(
        &self,
        environment: &str,
        app: &str,
    ) -> Result<Vec<super::LiveRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT environment, app, digest, since, source FROM live
             WHERE environment = ?1 AND app = ?2 ORDER BY since DESC, id DESC",
        )?;
        let rows = stmt.query_map(params![environment, app], |r| {
            let d: String = r.get(2)?;
            let s: String = r.get(3)?;
            Ok(super::LiveRecord {
                environment: r.get(0)?,
                app: r.get(1)?,
                digest: digest_from_sql(2, &d)?,
                since: time_from_sql(3, &s)?,
                source: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// When a capsule joins its chain: now, inside the sealing transaction —
/// never before its decision (`decided`, the statement's clock) and never
/// before the capsule it follows. A decision taken earlier than the
/// capsules sealed while it acted (a canary's promotion, decided before
/// its steps) is sealed after them, so `sealed_at` never decreases along a
/// chain, whatever the decision clocks say or the wall clock does.
pub fn sealing_time(
    decided: DateTime<Utc>,
    now: DateTime<Utc>,
    newest_sealed: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    decided.max(now).max(newest_sealed.unwrap_or(decided))
}

/// Seals `d` after the environment's newest capsule and stores it.
fn insert_capsule<E: std::fmt::Display>(
    tx: &rusqlite::Transaction<'_>,
    d: &DecisionRecord,
    promotion_id: i64,
    seal: impl FnOnce(Option<Digest>, Option<&[u8]>, i64) -> Result<SealedRow, E>,
) -> Result<(i64, SealedRow), StoreError> {
    let newest: Option<(String, String)> = tx
        .query_row(
            "SELECT payload_digest, sealed_at FROM capsules WHERE environment = ?1 ORDER BY id DESC LIMIT 1",
            [&d.environment],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let previous = newest
        .as_ref()
        .map(|(p, _)| digest_from_sql(0, p))
        .transpose()?;
    let newest_sealed = newest
        .as_ref()
        .map(|(_, t)| time_from_sql(1, t))
        .transpose()?;
    let at = time_to_sql(&sealing_time(d.at, Utc::now(), newest_sealed));
    // The signed head names the chain's end as last sealed: `seal` checks
    // it against `previous` before appending, so a chain cut at its end is
    // refused here instead of being covered by the next decision.
    let head: Option<Vec<u8>> = tx
        .query_row(
            "SELECT envelope FROM chain_heads WHERE environment = ?1",
            [&d.environment],
            |r| r.get(0),
        )
        .optional()?;
    let sealed = seal(previous.clone(), head.as_deref(), promotion_id)
        .map_err(|e| StoreError::Seal(e.to_string()))?;
    tx.execute(
        "INSERT INTO capsules (environment, app, digest, action, decision, promotion_id, payload_digest, previous, envelope, sealed_at, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            d.environment,
            d.app,
            d.digest.to_string(),
            d.action,
            d.decision,
            promotion_id,
            sealed.payload_digest.to_string(),
            previous.map(|p| p.to_string()),
            sealed.envelope,
            at,
            d.outcome.as_str()
        ],
    )?;
    let capsule_id = tx.last_insert_rowid();
    super::attachments::insert(
        tx,
        capsule_id,
        sealed.summary.as_ref(),
        sealed.attach.as_ref(),
    )?;
    tx.execute(
        "INSERT INTO chain_heads (environment, payload_digest, envelope) VALUES (?1, ?2, ?3)
         ON CONFLICT (environment) DO UPDATE SET payload_digest = excluded.payload_digest, envelope = excluded.envelope",
        params![d.environment, sealed.payload_digest.to_string(), sealed.head],
    )?;
    Ok((capsule_id, sealed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// A canary's shape: step capsules sealed while the promotion runs,
    /// then the promotion's own capsule, whose decision clock is the
    /// earliest of all. The chain's `sealed_at` still never decreases, and
    /// each capsule is sealed no earlier than its decision.
    #[test]
    fn sealed_at_never_decreases_when_decision_clocks_go_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        // Whole seconds, as decisions are taken.
        let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 0);
        // Decision clocks in sealing order: later, later, then one taken
        // an hour before (the promotion's gate decision), then one in the
        // future (a wall clock that jumps).
        let clocks = [
            now - chrono::TimeDelta::minutes(2),
            now - chrono::TimeDelta::minutes(1),
            now - chrono::TimeDelta::hours(1),
            now + chrono::TimeDelta::minutes(10),
            now - chrono::TimeDelta::hours(2),
        ];
        for (n, at) in clocks.iter().enumerate() {
            let rec = DecisionRecord {
                app: "web".into(),
                digest: Digest::of(b"web 2.0"),
                tag: None,
                environment: "prod".into(),
                requested_by: "canary".into(),
                action: "canary-step".into(),
                decision: "allow".into(),
                outcome: PromotionOutcome::Live,
                at: *at,
                goes_live: false,
                also: Vec::new(),
            };
            store
                .record_decision(&rec, None, |_, _, _| {
                    Ok::<_, String>(SealedRow {
                        payload_digest: Digest::of(&[n as u8]),
                        envelope: vec![n as u8],
                        head: vec![n as u8],
                        summary: None,
                        attach: None,
                    })
                })
                .unwrap();
        }
        let rows = store.capsules(&CapsuleFilter::default()).unwrap();
        assert_eq!(rows.len(), clocks.len());
        for (row, at) in rows.iter().zip(clocks) {
            assert!(
                row.sealed_at >= at,
                "#{} sealed before its decision",
                row.id
            );
        }
        for w in rows.windows(2) {
            assert!(
                w[1].sealed_at >= w[0].sealed_at,
                "sealed_at went backwards from #{} ({}) to #{} ({})",
                w[0].id,
                w[0].sealed_at,
                w[1].id,
                w[1].sealed_at
            );
        }
    }

    #[test]
    fn sealing_time_is_the_latest_of_decision_now_and_chain_end() {
        let (a, b, c) = (
            t("2026-12-04T10:00:00Z"),
            t("2026-12-04T11:00:00Z"),
            t("2026-12-04T12:00:00Z"),
        );
        assert_eq!(sealing_time(a, b, None), b);
        assert_eq!(sealing_time(a, b, Some(c)), c);
        assert_eq!(sealing_time(c, a, Some(b)), c);
    }
}
