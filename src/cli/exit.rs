//! Exit codes, in one place, and the failure type every command returns.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | error (bad config, unreachable registry, corrupt image, …) |
//! | 2 | usage (bad arguments, malformed reference or digest) |
//! | 3 | blocked by a gate |

use std::fmt;

pub const OK: u8 = 0;
pub const ERROR: u8 = 1;
pub const USAGE: u8 = 2;
pub const BLOCKED: u8 = 3;

/// Why a command stopped: what to print, what to suggest, which code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn error(message: impl fmt::Display) -> Failure {
        Failure {
            code: ERROR,
            message: message.to_string(),
            hint: None,
        }
    }

    pub fn usage(message: impl fmt::Display) -> Failure {
        Failure {
            code: USAGE,
            message: message.to_string(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }
}

macro_rules! errors_exit_1 {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Failure {
                Failure::error(e)
            }
        }
    )*};
}

errors_exit_1!(
    crate::config::ConfigError,
    crate::store::StoreError,
    crate::store::EvidenceError,
    crate::registry::RegistryError,
    std::io::Error
);

impl From<crate::workspace::WorkspaceError> for Failure {
    fn from(e: crate::workspace::WorkspaceError) -> Failure {
        use crate::workspace::WorkspaceError as W;
        let hint = match &e {
            W::NotFound { .. } => Some(
                "run `stella init` to create one here, or pass --workspace DIR (or set STELLA_WORKSPACE)",
            ),
            W::NoConfig { .. } => Some(
                "point --workspace at the folder holding stella.toml, or run `stella init DIR`",
            ),
            W::Create { .. } => None,
        };
        let f = Failure::error(e);
        match hint {
            Some(h) => f.hint(h),
            None => f,
        }
    }
}
