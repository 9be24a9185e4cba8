//! The step graph each run was started with.

use rusqlite::OptionalExtension;

use super::{Store, StoreError};
use crate::domain::graph::StepGraph;

impl Store {
    /// Records the graph run `run_id` was started with.
    pub fn set_run_graph(&mut self, run_id: i64, graph: &StepGraph) -> Result<(), StoreError> {
        let json = serde_json::to_string(graph)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        self.write(|tx| {
            tx.execute(
                "UPDATE runs SET graph = ?2 WHERE id = ?1",
                rusqlite::params![run_id, json],
            )
        })?;
        Ok(())
    }

    /// The graph run `run_id` was started with; `None` for runs recorded
    /// before graphs were (or one that does not parse).
    pub fn run_graph(&self, run_id: i64) -> Result<Option<StepGraph>, StoreError> {
        let text: Option<Option<String>> = self
            .conn
            .query_row("SELECT graph FROM runs WHERE id = ?1", [run_id], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(text.flatten().and_then(|t| serde_json::from_str(&t).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_keeps_the_graph_it_started_with() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        store
            .write(|tx| {
                tx.execute(
                    "INSERT INTO promotions (id, app, digest, environment, requested_by, state, created_at)
                     VALUES (1, 'a', 'sha256:00', 'dev', 'me', 'running', '2026-01-01T00:00:00Z')",
                    [],
                )
            })
            .unwrap();
        let run = store.create_run(1).unwrap();
        assert_eq!(store.run_graph(run).unwrap(), None);
        let g = StepGraph {
            steps: vec![
                ("build".into(), vec![]),
                ("deploy".into(), vec!["build".into()]),
            ],
            critical_path: vec!["build".into(), "deploy".into()],
        };
        store.set_run_graph(run, &g).unwrap();
        assert_eq!(store.run_graph(run).unwrap(), Some(g));
    }
}
