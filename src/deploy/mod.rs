//! Deploying releases to targets. `unpack` turns an image into a release
//! directory, refusing anything that would write outside it; `dir` switches
//! a target's `current` link between complete releases.

pub mod backends;
pub mod controller;
pub mod dir;
pub mod failpoint;
pub mod hook;
pub mod nginx;
pub mod routed;
pub mod router;
pub mod unpack;
