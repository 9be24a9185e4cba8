//! ed25519 keys and DSSE envelopes: what approvals and capsules are
//! signed with.

pub mod bundle;
pub mod dsse;
pub mod keys;

pub use dsse::{Envelope, Signature};
pub use keys::{KeyError, PrivateKey, PublicKey};
