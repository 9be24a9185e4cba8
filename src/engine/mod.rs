//! The engine: promotions and rollbacks end to end, run by one task per
//! process behind a typed handle (`handle.rs`), with progress as a stream
//! of events (`event.rs`). Every step transition is committed to the store
//! before its event is sent.

pub mod approve;
pub mod builtins;
mod canary;
pub mod deploy;
pub mod error;
pub mod evaluate;
pub mod event;
pub mod flags;
pub mod handle;
pub mod keys;
pub mod lanes;
pub mod pin;
pub mod probe;
pub mod promote;
pub mod publish;
pub mod record;
pub mod resolve;
pub mod rollback;
pub mod rollout;
mod routed;
pub mod router;
pub mod rules;
pub mod run;
pub mod runs;
pub mod seal;
pub mod steer;
pub mod swap;
pub mod waiting;

pub use builtins::StellaBuiltins;
pub use error::{EngineError, ErrorKind};
pub use event::{EngineEvent, EventKind, Sink, Ticket};
pub use flags::{FlagsOutcome, FlagsRequest};
pub use handle::{EngineHandle, Pending, spawn};
pub use pin::{UnpinOutcome, UnpinRequest};
pub use promote::{MemberOutcome, PromoteOutcome, PromoteRequest};
pub use record::{
    AppReleaseRequest, AttachRequest, Attached, KeyAdded, KeyRequest, MarkLiveRequest,
};
pub use rollback::{RollbackOutcome, RollbackRequest};
pub use rollout::{Ack, ConsolidateRequest, RolloutRequest};
pub use run::{RunReport, run_promotion_workflow};
pub use steer::{SteerRequest, Steered};

/// "no environment X", with the ones there are.
pub fn unknown_environment(name: &str, config: &crate::config::Config) -> EngineError {
    let known: Vec<&str> = config
        .environments
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    EngineError::usage(format!(
        "no environment `{name}` in {}",
        config.path.display()
    ))
    .hint(format!("environments: {}", known.join(", ")))
}
