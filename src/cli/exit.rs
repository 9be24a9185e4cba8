//! Exit codes, in one place, and the failure type every command returns.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | error (bad config, unreachable registry, corrupt image, …) |
//! | 2 | usage (bad arguments, malformed reference or digest) |
//! | 3 | blocked by a gate, or by a rollback's pin |
//! | 141 | standard output closed before the command finished (`stella … \| head`): the code a shell gives a command ended by SIGPIPE, so a pipeline under `pipefail` never takes a verdict cut short for success |
//!
//! With `--json` anywhere on the command line, a failure prints exactly one
//! document on stdout, `Failure::to_json` (`{"error": {"kind", "message",
//! "hint", "exit", "what", "where"}}`), from one place (`cli::finish`), and
//! says it on stderr as always; the exit code is the same as without.

use std::fmt;

/// The `kind` of a `--json` error for an exit code.
pub fn kind_of(code: u8) -> &'static str {
    match code {
        USAGE => "usage",
        BLOCKED => "blocked",
        BROKEN_PIPE => "broken_pipe",
        _ => "failed",
    }
}

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
    /// The command the failure happened in (`release promote app --env
    /// prod`), when it said: `--json` carries it as `where`.
    pub place: Option<String>,
}

impl Failure {
    fn new(code: u8, message: String, hint: Option<String>) -> Failure {
        Failure {
            code,
            message,
            hint,
            place: None,
        }
    }

    pub fn error(message: impl fmt::Display) -> Failure {
        Failure::new(ERROR, message.to_string(), None)
    }

    pub fn usage(message: impl fmt::Display) -> Failure {
        Failure::new(USAGE, message.to_string(), None)
    }

    /// Names the command the failure happened in.
    pub fn at(mut self, place: impl Into<String>) -> Failure {
        self.place = Some(place.into());
        self
    }

    /// The word `--json` gives the exit code: `failed`, `usage`, `blocked`.
    pub fn kind(&self) -> &'static str {
        kind_of(self.code)
    }

    /// The failure as the one document `--json` prints on stdout:
    /// `{"error": {kind, message, hint, exit, what, where}}`. `what` and
    /// `where` say it as the failures of `release promote|rollback|unpin`,
    /// `verify` and `capsule push|pull` always have.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "error": {
            "kind": self.kind(),
            "message": self.message,
            "hint": self.hint,
            "exit": self.code,
            "what": self.message,
            "where": self.place.as_deref().unwrap_or("stella"),
        }})
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
        Failure::new(
            match e.kind {
                crate::engine::ErrorKind::Failed => ERROR,
                crate::engine::ErrorKind::Usage => USAGE,
                crate::engine::ErrorKind::Blocked => BLOCKED,
            },
            e.message,
            e.hint,
        )
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
            return Failure::new(BROKEN_PIPE, "standard output was closed".into(), None);
        }
        crate::engine::EngineError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_of_a_failure_names_its_kind_code_and_place() {
        let f = Failure::from(crate::engine::EngineError::usage("bad")).hint("fix it");
        let v = f.to_json();
        assert_eq!(v["error"]["kind"], "usage");
        assert_eq!(v["error"]["exit"], USAGE);
        assert_eq!(v["error"]["message"], "bad");
        assert_eq!(v["error"]["hint"], "fix it");
        assert_eq!(v["error"]["where"], "stella");
        let v = Failure::error("down").at("stella status").to_json();
        assert_eq!(v["error"]["kind"], "failed");
        assert_eq!(v["error"]["hint"], serde_json::Value::Null);
        assert_eq!(v["error"]["where"], "stella status");
        assert_eq!(kind_of(BLOCKED), "blocked");
    }
}
