//! The engine's error: what went wrong, whether the caller asked for
//! something impossible (usage) or the world refused (error), and a hint.
//! The command line maps the kind to its exit code.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad config, registry down, corrupt image, a store that refuses.
    Failed,
    /// The request itself is wrong: unknown app, malformed digest.
    Usage,
    /// A rule holds it: a rollback's pin.
    Blocked,
}

#[derive(Debug, Clone, thiserror::Error)]
pub struct EngineError {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl EngineError {
    pub fn error(message: impl fmt::Display) -> EngineError {
        EngineError {
            kind: ErrorKind::Failed,
            message: message.to_string(),
            hint: None,
        }
    }

    pub fn usage(message: impl fmt::Display) -> EngineError {
        EngineError {
            kind: ErrorKind::Usage,
            message: message.to_string(),
            hint: None,
        }
    }

    pub fn blocked(message: impl fmt::Display) -> EngineError {
        EngineError {
            kind: ErrorKind::Blocked,
            message: message.to_string(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> EngineError {
        self.hint = Some(hint.into());
        self
    }
}

macro_rules! failed {
    ($($t:ty),*) => {$(
        impl From<$t> for EngineError {
            fn from(e: $t) -> EngineError {
                EngineError::error(e)
            }
        }
    )*};
}

failed!(
    crate::config::ConfigError,
    crate::store::StoreError,
    crate::store::EvidenceError,
    crate::registry::RegistryError,
    std::io::Error
);

impl From<crate::store::BeginError> for EngineError {
    fn from(e: crate::store::BeginError) -> EngineError {
        let locked = matches!(e, crate::store::BeginError::Locked(_));
        let f = EngineError::error(e);
        if locked {
            f.hint("wait for it to finish, or check it with `stella promotion list`")
        } else {
            f
        }
    }
}

impl From<crate::workspace::WorkspaceError> for EngineError {
    fn from(e: crate::workspace::WorkspaceError) -> EngineError {
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
        let f = EngineError::error(e);
        match hint {
            Some(h) => f.hint(h),
            None => f,
        }
    }
}
