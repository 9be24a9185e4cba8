//! Workflow templates: a DAG of steps, loaded from TOML and validated
//! before anything runs — cycles, unknown `needs`, unknown builtins, bad
//! parameters and undefined substitutions are each an error naming the
//! template file, the step and the fix.

pub mod builtins;
pub mod executor;
pub mod template;
pub mod validate;

pub use template::{StepTemplate, Template};
pub use validate::{Workflow, WorkflowError};
