//! The built-in steps a template may `use`, and the parameters each takes.
//! Adding a builtin is adding an entry here (and its runner in the
//! executor).

/// A parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    String,
    Integer,
    /// A whole or decimal number.
    Number,
    Duration,
    OneOf(&'static [&'static str]),
}

/// One builtin: its name, what it does, and its `with` parameters
/// (name, type, required).
pub struct Builtin {
    pub name: &'static str,
    pub about: &'static str,
    pub params: &'static [(&'static str, Param, bool)],
}

pub const GATES: &[&str] = &[
    "all", "security", "approval", "freeze", "policy", "upstream",
];

pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "resolve",
        about: "resolve the release's tag to its digest",
        params: &[],
    },
    Builtin {
        name: "gate",
        about: "evaluate one gate, or all",
        params: &[("gate", Param::OneOf(GATES), false)],
    },
    Builtin {
        name: "deploy",
        about: "deploy to the environment's targets (or one)",
        params: &[("target", Param::String, false)],
    },
    Builtin {
        name: "health-check",
        about: "HTTP GET until the expected status (and body) answer",
        params: &[
            ("url", Param::String, true),
            ("status", Param::Integer, false),
            ("body", Param::String, false),
            ("attempts", Param::Integer, false),
            ("interval", Param::Duration, false),
        ],
    },
    Builtin {
        name: "analysis",
        about: "watch a router or nginx target's traffic for a while; fail when more samples than failure_limit go over max_error_rate or max_p95_ms",
        params: &[
            ("duration", Param::Duration, true),
            ("interval", Param::Duration, false),
            ("target", Param::String, false),
            ("slot", Param::OneOf(&["stable", "candidate"]), false),
            ("max_error_rate", Param::Number, false),
            ("max_p95_ms", Param::Number, false),
            ("min_requests", Param::Integer, false),
            ("failure_limit", Param::Integer, false),
        ],
    },
    Builtin {
        name: "wait",
        about: "wait for a duration",
        params: &[("duration", Param::Duration, true)],
    },
    Builtin {
        name: "approval-wait",
        about: "block until the approval gate passes, or time out",
        params: &[("timeout", Param::Duration, false)],
    },
    Builtin {
        name: "script",
        about: "run a bash command with the context as STELLA_* variables (like `run`)",
        params: &[("command", Param::String, true)],
    },
    Builtin {
        name: "notify",
        about: "POST a JSON event to a webhook",
        params: &[
            ("url", Param::String, true),
            ("message", Param::String, false),
        ],
    },
];

pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

pub fn names() -> String {
    BUILTINS
        .iter()
        .map(|b| b.name)
        .collect::<Vec<_>>()
        .join(", ")
}
