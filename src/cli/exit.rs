//! Exit codes, in one place, and the failure type every command returns.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | error (bad config, unreachable registry, corrupt image, …) |
//! | 2 | usage (bad arguments, malformed reference or digest) |
//! | 3 | blocked by a gate, or by a rollback's pin |
//! | 141 | standard output closed before the command finished (`stella … \| head`): the code a shell gives a command ended by SIGPIPE, so a pipeline under `pipefail` never takes a verdict cut short for success |

use std::fmt;

pub const OK: u8 = 0;
pub const ERROR: u8 = 1;
pub const USAGE: u8 = 2;
pub const BLOCKED: u8 = 3;
/// Standard output was closed under the command (128 + SIGPIPE).
pub const BROKEN_PIPE: u8 = 141;

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

/// A failure as `--json` carries it (`"error": {what, where, hint}`) and
/// as stderr says it: what failed, where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ErrorReport {
    pub what: String,
    #[serde(rename = "where")]
    pub place: String,
    pub hint: Option<String>,
}

impl ErrorReport {
    /// The report's lines on stderr: `error: WHAT (WHERE)`, then `hint:`.
    pub fn eprint(&self) {
        eprintln!("error: {} ({})", self.what, self.place);
        if let Some(h) = &self.hint {
            eprintln!("hint: {h}");
        }
    }
}

impl Failure {
    /// The failure as an error report about `place`.
    pub fn report(&self, place: impl Into<String>) -> ErrorReport {
        ErrorReport {
            what: self.message.clone(),
            place: place.into(),
            hint: self.hint.clone(),
        }
    }
}

impl From<crate::engine::EngineError> for Failure {
    fn from(e: crate::engine::EngineError) -> Failure {
        Failure {
            code: match e.kind {
                crate::engine::ErrorKind::Failed => ERROR,
                crate::engine::ErrorKind::Usage => USAGE,
                crate::engine::ErrorKind::Blocked => BLOCKED,
            },
            message: e.message,
            hint: e.hint,
        }
    }
}

macro_rules! via_engine_error {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Failure {
                crate::engine::EngineError::from(e).into()
            }
        }
    )*};
}

via_engine_error!(
    crate::config::ConfigError,
    crate::store::StoreError,
    crate::store::EvidenceError,
    crate::registry::RegistryError,
    crate::workspace::WorkspaceError
);

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Failure {
                code: BROKEN_PIPE,
                message: "standard output was closed".into(),
                hint: None,
            };
        }
        crate::engine::EngineError::from(e).into()
    }
}
