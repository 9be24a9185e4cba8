//! A run's step graph as it was when the run started: each step with what
//! it needs, and the critical path. Recorded with the run (the template
//! may change afterwards), and drawn from that record.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepGraph {
    /// Step ids in template order, with the steps each needs.
    pub steps: Vec<(String, Vec<String>)>,
    /// The longest chain of needs, first step first; computed once, when
    /// the template is validated (`workflow::validate`).
    pub critical_path: Vec<String>,
}
