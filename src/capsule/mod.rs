//! Decision capsules: every decision sealed into a signed, self-contained,
//! replayable record. The statement (in-toto v1, canonical JSON) is signed
//! as a DSSE envelope with ed25519; the exported file embeds every blob the
//! statement references, so it verifies and replays offline.

pub mod attached;
pub mod audit;
pub mod environment;
pub mod file;
pub mod limits;
pub mod replay;
pub mod seal;
pub mod statement;
pub mod summary;
pub mod trust;
pub mod verify;

pub use file::CapsuleFile;
pub use seal::{Sealed, seal};
pub use statement::{Action, Statement};
