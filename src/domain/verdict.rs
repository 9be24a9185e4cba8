//! Gate verdicts and the decision they add up to. A blocked gate is data,
//! not an error.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GateKind {
    Security,
    Approval,
    Freeze,
    Policy,
    Upstream,
}

impl GateKind {
    /// How the gate is named on a line of output.
    pub fn title(self) -> &'static str {
        match self {
            GateKind::Security => "Security gate",
            GateKind::Approval => "Approval gate",
            GateKind::Freeze => "Freeze window",
            GateKind::Policy => "Policy gate",
            GateKind::Upstream => "Upstream gate",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GateKind::Security => "security",
            GateKind::Approval => "approval",
            GateKind::Freeze => "freeze",
            GateKind::Policy => "policy",
            GateKind::Upstream => "upstream",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Warn,
    Fail,
    Skipped,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Warn => "WARN",
            Outcome::Fail => "FAIL",
            Outcome::Skipped => "SKIPPED",
        }
    }
}

/// One gate's verdict: the outcome, a one-line summary in the style
/// `PASS — 8 reachable CVEs below threshold`, the reasons behind it, what
/// was measured (integers and strings only, so it canonicalizes), and what
/// would unblock it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub gate: GateKind,
    pub verdict: Outcome,
    pub summary: String,
    pub reasons: Vec<String>,
    pub measured: serde_json::Value,
    pub unblock: Vec<String>,
}

impl Verdict {
    pub fn new(gate: GateKind, verdict: Outcome, summary: impl fmt::Display) -> Verdict {
        Verdict {
            gate,
            verdict,
            summary: format!("{} — {summary}", verdict.word()),
            reasons: Vec::new(),
            measured: serde_json::Value::Object(Default::default()),
            unblock: Vec::new(),
        }
    }

    pub fn blocks(&self) -> bool {
        self.verdict == Outcome::Fail
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    /// The word a statement and the store record (`allow` or `deny`).
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }

    /// Deny if any gate fails; warnings and skips do not block.
    pub fn of(verdicts: &[Verdict]) -> Decision {
        if verdicts.iter().any(Verdict::blocks) {
            Decision::Deny
        } else {
            Decision::Allow
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Decision;

    #[test]
    fn a_decision_word_is_what_serde_writes() {
        for d in [Decision::Allow, Decision::Deny] {
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
    }
}
