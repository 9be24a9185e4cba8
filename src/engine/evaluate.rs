//! Evaluating a release's gates from what the workspace holds.

use chrono::{DateTime, Utc};

use super::EngineError;
use crate::domain::{Decision, Verdict};
use crate::gates::{self, collect};

/// Collects a release's gate inputs from the workspace and evaluates them.
pub fn evaluate_release(
    ws: &crate::workspace::Workspace,
    config: &crate::config::Config,
    release: &super::resolve::AppRelease,
    env: &str,
    requested_by: String,
    break_glass: Option<String>,
    now: DateTime<Utc>,
) -> Result<(gates::GateInputs, Decision, Vec<Verdict>), EngineError> {
    let store = ws.open_store()?;
    let inputs = collect::collect(
        config,
        &store,
        &ws.evidence(),
        collect::Request {
            app: release.app.clone(),
            digest: release.digest.clone(),
            tag: release.tag.clone(),
            environment: env.to_owned(),
            requested_by,
            promotion_id: None,
            break_glass,
            now,
        },
    )
    .map_err(EngineError::error)?;
    let (decision, verdicts) = gates::evaluate(&inputs);
    Ok((inputs, decision, verdicts))
}

/// Who is asking, when nobody said.
pub fn requester(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("STELLA_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into())
}
