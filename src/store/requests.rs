//! Operators' requests on work under way, as rows: written by whichever
//! process asks, taken in order by the process that owns the work (or by
//! the asker, when the owner is dead), and answered once with the capsule
//! they produced or the error they met.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, time_from_sql, time_to_sql};
use crate::domain::{OperatorRequest, RequestState};

/// What a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestSubject {
    /// A promotion's workflow run.
    Run {
        environment: String,
        promotion_id: i64,
    },
    /// The rollout on an environment's routed targets.
    Rollout { environment: String },
}

impl RequestSubject {
    pub fn environment(&self) -> &str {
        match self {
            RequestSubject::Run { environment, .. } | RequestSubject::Rollout { environment } => {
                environment
            }
        }
    }
}

/// One request and, once answered, its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow {
    pub id: i64,
    pub subject: RequestSubject,
    pub request: OperatorRequest,
    pub requested_by: String,
    pub envelope: Option<Vec<u8>>,
    pub pid: i64,
    pub requested_at: DateTime<Utc>,
    pub state: RequestState,
    pub answered_by: Option<i64>,
    pub taken_over: bool,
    pub capsule_id: Option<i64>,
    pub error: Option<String>,
    pub answered_at: Option<DateTime<Utc>>,
}

/// An answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Enacted; the capsule it sealed, if it sealed one.
    Done {
        capsule_id: Option<i64>,
    },
    Failed {
        error: String,
    },
}

const COLUMNS: &str = "id, subject, environment, promotion_id, request, requested_by, envelope, pid, requested_at, state, answered_by, taken_over, capsule_id, error, answered_at";

fn row(r: &rusqlite::Row<'_>) -> Result<RequestRow, rusqlite::Error> {
    let word = |col: usize, s: String| {
        rusqlite::Error::FromSqlConversionFailure(
            col,
            rusqlite::types::Type::Text,
            format!("unknown word `{s}`").into(),
        )
    };
    let subject: String = r.get(1)?;
    let environment: String = r.get(2)?;
    let subject = match (subject.as_str(), r.get::<_, Option<i64>>(3)?) {
        ("run", Some(promotion_id)) => RequestSubject::Run {
            environment,
            promotion_id,
        },
        ("rollout", None) => RequestSubject::Rollout { environment },
        _ => return Err(word(1, subject)),
    };
    let request: String = r.get(4)?;
    let state: String = r.get(9)?;
    let requested_at: String = r.get(8)?;
    let answered_at: Option<String> = r.get(14)?;
    Ok(RequestRow {
        id: r.get(0)?,
        subject,
        request: request.parse().map_err(|_| word(4, request.clone()))?,
        requested_by: r.get(5)?,
        envelope: r.get(6)?,
        pid: r.get(7)?,
        requested_at: time_from_sql(8, &requested_at)?,
        state: state.parse().map_err(|_| word(9, state.clone()))?,
        answered_by: r.get(10)?,
        taken_over: r.get::<_, i64>(11)? != 0,
        capsule_id: r.get(12)?,
        error: r.get(13)?,
        answered_at: answered_at
            .as_deref()
            .map(|a| time_from_sql(14, a))
            .transpose()?,
    })
}

impl Store {
    /// Writes a request; returns its id. Requests are taken in id order.
    pub fn put_request(
        &mut self,
        subject: &RequestSubject,
        request: OperatorRequest,
        requested_by: &str,
        envelope: Option<&[u8]>,
    ) -> Result<i64, StoreError> {
        let (kind, promotion_id) = match subject {
            RequestSubject::Run { promotion_id, .. } => ("run", Some(*promotion_id)),
            RequestSubject::Rollout { .. } => ("rollout", None),
        };
        self.write(|tx| {
            tx.execute(
                "INSERT INTO operator_requests (subject, environment, promotion_id, request, requested_by, envelope, pid, requested_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    kind,
                    subject.environment(),
                    promotion_id,
                    request.as_str(),
                    requested_by,
                    envelope,
                    i64::from(std::process::id()),
                    time_to_sql(&Utc::now()),
                ],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// The oldest unanswered request about `subject`, if any.
    pub fn next_request(&self, subject: &RequestSubject) -> Result<Option<RequestRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM operator_requests
             WHERE state = 'pending' AND environment = ?1 AND subject = ?2
               AND (promotion_id IS ?3)
             ORDER BY id LIMIT 1"
        );
        let (kind, promotion_id) = match subject {
            RequestSubject::Run { promotion_id, .. } => ("run", Some(*promotion_id)),
            RequestSubject::Rollout { .. } => ("rollout", None),
        };
        Ok(self
            .conn
            .query_row(
                &sql,
                params![subject.environment(), kind, promotion_id],
                row,
            )
            .optional()?)
    }

    /// Answers a pending request once; `false` if it was answered already
    /// (by another process that took the work over).
    pub fn answer_request(
        &mut self,
        id: i64,
        answer: &Answer,
        taken_over: bool,
    ) -> Result<bool, StoreError> {
        let (state, capsule_id, error) = match answer {
            Answer::Done { capsule_id } => (RequestState::Done, *capsule_id, None),
            Answer::Failed { error } => (RequestState::Failed, None, Some(error.as_str())),
        };
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE operator_requests
                 SET state = ?2, capsule_id = ?3, error = ?4, answered_by = ?5, taken_over = ?6, answered_at = ?7
                 WHERE id = ?1 AND state = 'pending'",
                params![
                    id,
                    state.as_str(),
                    capsule_id,
                    error,
                    i64::from(std::process::id()),
                    i64::from(taken_over),
                    time_to_sql(&Utc::now()),
                ],
            )?;
            Ok(n == 1)
        })
    }

    /// One request, answered or not.
    pub fn request(&self, id: i64) -> Result<Option<RequestRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM operator_requests WHERE id = ?1");
        Ok(self.conn.query_row(&sql, [id], row).optional()?)
    }

    /// The newest requests of an environment, newest first.
    pub fn requests(&self, environment: &str, limit: u32) -> Result<Vec<RequestRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM operator_requests WHERE environment = ?1 ORDER BY id DESC LIMIT ?2"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params![environment, limit], row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("stella.db")).unwrap();
        (dir, s)
    }

    #[test]
    fn requests_are_taken_in_order_and_answered_once() {
        let (_d, mut s) = store();
        let on = RequestSubject::Rollout {
            environment: "edge".into(),
        };
        let first = s
            .put_request(&on, OperatorRequest::Pause, "ana@example.com", None)
            .unwrap();
        let second = s
            .put_request(&on, OperatorRequest::Abort, "ana@example.com", None)
            .unwrap();
        assert_eq!(s.next_request(&on).unwrap().unwrap().id, first);
        assert!(
            s.answer_request(first, &Answer::Done { capsule_id: None }, false)
                .unwrap()
        );
        // A second answer (a process that also took the work over) loses.
        assert!(
            !s.answer_request(
                first,
                &Answer::Failed {
                    error: "late".into()
                },
                true
            )
            .unwrap()
        );
        let next = s.next_request(&on).unwrap().unwrap();
        assert_eq!((next.id, next.request), (second, OperatorRequest::Abort));
        let other = RequestSubject::Rollout {
            environment: "prod".into(),
        };
        assert!(s.next_request(&other).unwrap().is_none());
        let done = s.request(first).unwrap().unwrap();
        assert_eq!(done.state, RequestState::Done);
        assert_eq!(done.answered_by, Some(i64::from(std::process::id())));
    }

    #[test]
    fn an_unknown_word_is_refused_by_the_store() {
        let (_d, s) = store();
        let e = s.conn().execute(
            "INSERT INTO operator_requests (subject, environment, request, requested_by, pid, requested_at)
             VALUES ('rollout', 'edge', 'restart', 'x', 1, '2026-01-01T00:00:00Z')",
            [],
        );
        assert!(e.is_err(), "a request outside the vocabulary got in");
    }
}
