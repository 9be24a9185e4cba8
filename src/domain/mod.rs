//! Plain types of the problem: no I/O here.

pub mod approval;
pub mod clock;
pub mod digest;
pub mod duration;
pub mod graph;
pub mod reference;
pub mod release;
pub mod requester;
pub mod rollout;
pub mod schedule;
pub mod state;
pub mod verdict;

pub use clock::Clock;
pub use digest::{Digest, DigestError};
pub use reference::{ImageRef, ReferenceError, Repository, Selector};
pub use release::{ReleaseSpec, Resolution};
pub use state::{
    AbWinner, AnalysisVerdict, AttachState, CanaryPhase, Cause, OperatorRequest, PromotionOutcome,
    PromotionState, RequestState, RunState, StepState,
};
pub use verdict::{Decision, GateKind, Outcome, Verdict};
