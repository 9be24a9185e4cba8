//! stella: release orchestration that proves why each release was safe.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod domain;
pub mod registry;
pub mod store;
pub mod workspace;
