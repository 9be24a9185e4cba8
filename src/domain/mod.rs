//! Plain types of the problem: no I/O here.

pub mod approval;
pub mod digest;
pub mod duration;
pub mod reference;
pub mod release;
pub mod schedule;
pub mod verdict;

pub use digest::{Digest, DigestError};
pub use reference::{ImageRef, ReferenceError, Repository, Selector};
pub use release::{ReleaseSpec, Resolution};
pub use verdict::{Decision, GateKind, Outcome, Verdict};
