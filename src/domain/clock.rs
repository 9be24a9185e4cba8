//! The decision clock. A decision that acts is taken at the real clock;
//! an invented time is only ever a what-if, which evaluates and changes
//! nothing. Keeping the two apart in a type means no acting request can
//! carry an invented time: the engine's acting requests have no clock at
//! all, and the what-if paths take a `Clock` they cannot seal with.

use chrono::{DateTime, SubsecRound, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Now, read once when the decision is taken.
    Real,
    /// A time someone chose (`--at`): evaluate as if it were then.
    WhatIf(DateTime<Utc>),
}

impl Clock {
    /// The clock's time: for `Real`, the wall clock now, in whole seconds
    /// (as capsules record it, so a replay evaluates at the same instant).
    pub fn now(self) -> DateTime<Utc> {
        match self {
            Clock::Real => Utc::now().trunc_subsecs(0),
            Clock::WhatIf(t) => t,
        }
    }

    pub fn is_what_if(self) -> bool {
        matches!(self, Clock::WhatIf(_))
    }
}
