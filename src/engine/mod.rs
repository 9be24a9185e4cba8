//! Running promotions: the workflow of an environment (or the default, a
//! single `deploy`) executed with stella's builtins, every step transition
//! committed to the store before it is reported.

pub mod builtins;
pub mod deploy;
pub mod run;

pub use builtins::StellaBuiltins;
pub use run::{RunReport, run_promotion_workflow};
