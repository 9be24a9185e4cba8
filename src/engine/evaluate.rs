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

/// Who a what-if (`gate check`, `--dry-run`) asks as: `--as EMAIL` as
/// given — a what-if proves nothing and changes nothing — else the key's
/// owner for `--key NAME`, else the operating-system account, unverified.
pub fn what_if_requester(
    ws: &crate::workspace::Workspace,
    given: Option<String>,
    key: Option<String>,
) -> Result<String, EngineError> {
    match (given, key) {
        (Some(email), _) => Ok(email),
        (None, key) => {
            Ok(super::keys::prove(ws, &super::keys::Asker::from_key(key))?.requested_by())
        }
    }
}
