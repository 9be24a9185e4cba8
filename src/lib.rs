//! stella: release orchestration that proves why each release was safe.
#![forbid(unsafe_code)]

pub mod capsule;
pub mod cli;
pub mod config;
pub mod demo;
pub mod deploy;
pub mod domain;
pub mod engine;
pub mod gates;
pub mod registry;
pub mod scan;
pub mod sign;
pub mod store;
pub mod tui;
pub mod workflow;
pub mod workspace;
