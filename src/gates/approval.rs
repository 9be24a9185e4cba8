//! The approval gate: N distinct valid signatures by keys whose email is on
//! the environment's approver list. An approval counts only if its DSSE
//! signature verifies with a trusted key, the statement names this app,
//! digest and environment, its signer is the key's owner, and it was
//! signed no later than the decision clock. With four eyes, the
//! requester's own approval never counts, and a requester who proved no
//! identity (no key signed the request) fails the gate: compared with
//! nothing, four eyes would stop only requesters who name themselves.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{GateInputs, Subject};
use crate::config::model::ApprovalGateConfig;
use crate::domain::approval::{APPROVAL_PAYLOAD_TYPE, ApprovalStatement, Purpose};
use crate::domain::{GateKind, Outcome, Verdict};
use crate::sign::Envelope;

/// An approval that verified and is bound to this subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valid {
    pub email: String,
    pub key: String,
    pub signed_at: DateTime<Utc>,
    pub comment: Option<String>,
}

/// The approvals of one purpose: those that hold, and why the others do not.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub valid: Vec<Valid>,
    pub rejected: Vec<String>,
}

fn short(d: &str) -> &str {
    &d[..d.len().min(19)]
}

/// Verifies every approval blob against the trusted keys and the subject.
pub fn check(inputs: &GateInputs, purpose: Purpose) -> Checked {
    let subject = &inputs.subject;
    let mut out = Checked::default();
    for ev in &inputs.approvals {
        let name = format!("approval {}…", short(&ev.digest.to_string()));
        let env: Envelope = match serde_json::from_slice(&ev.bytes) {
            Ok(e) => e,
            Err(e) => {
                out.rejected
                    .push(format!("{name} is not a DSSE envelope ({e})"));
                continue;
            }
        };
        if env.payload_type != APPROVAL_PAYLOAD_TYPE {
            out.rejected.push(format!(
                "{name} has payload type {}, not an approval",
                env.payload_type
            ));
            continue;
        }
        let Some(key) = inputs
            .keys
            .iter()
            .find(|k| env.keyids().any(|id| id == k.key.keyid()))
        else {
            let ids: Vec<&str> = env.keyids().collect();
            out.rejected.push(format!(
                "{name} is signed by an unknown key ({}); import the approver's public key with `stella key import`",
                ids.join(", ")
            ));
            continue;
        };
        let payload = match env.verify(&key.key) {
            Ok(p) => p,
            Err(e) => {
                out.rejected.push(format!(
                    "{name}: {e} ({}); the approval was altered",
                    key.name
                ));
                continue;
            }
        };
        let st: ApprovalStatement = match serde_json::from_slice(&payload) {
            Ok(s) => s,
            Err(e) => {
                out.rejected
                    .push(format!("{name} holds a malformed statement ({e})"));
                continue;
            }
        };
        if st.purpose != purpose {
            continue;
        }
        let by = &st.signer;
        let problem = if st.signer != key.email {
            Some(format!(
                "claims signer {by} but key {} belongs to {}",
                key.name, key.email
            ))
        } else if st.digest != subject.digest {
            Some(format!("by {by} is for {}, not this digest", st.digest))
        } else if st.app != subject.app {
            Some(format!(
                "by {by} is for app {}, not {}",
                st.app, subject.app
            ))
        } else if st.environment != subject.environment {
            Some(format!(
                "by {by} is for environment {}, not {}",
                st.environment, subject.environment
            ))
        } else if let (Some(a), Some(b)) = (st.promotion_id, subject.promotion_id)
            && a != b
        {
            Some(format!("by {by} is for promotion #{a}, not #{b}"))
        } else {
            None
        };
        if let Some(p) = problem {
            out.rejected.push(format!("{name} {p}; it does not count"));
            continue;
        }
        let signed_at = match DateTime::parse_from_rfc3339(&st.signed_at) {
            Ok(t) => t.with_timezone(&Utc),
            Err(_) => {
                out.rejected
                    .push(format!("{name} by {by} has a malformed signed_at"));
                continue;
            }
        };
        if signed_at > inputs.now {
            out.rejected.push(format!(
                "{name} by {by} was signed at {}, after the decision clock",
                super::rfc3339(signed_at)
            ));
            continue;
        }
        out.valid.push(Valid {
            email: st.signer,
            key: key.name.clone(),
            signed_at,
            comment: st.comment,
        });
    }
    out
}

pub fn evaluate(cfg: &ApprovalGateConfig, checked: &Checked, subject: &Subject) -> Verdict {
    let approvers: Vec<&str> = cfg.approvers.iter().map(|a| a.get_ref().as_str()).collect();
    let mut reasons = checked.rejected.clone();
    let mut counted: Vec<&str> = Vec::new();
    for v in &checked.valid {
        if !approvers.contains(&v.email.as_str()) {
            reasons.push(format!(
                "{} is not an approver for {}; their approval does not count",
                v.email, subject.environment
            ));
        } else if cfg.four_eyes && v.email == subject.requested_by {
            reasons.push(format!(
                "{} requested this promotion; with four eyes their own approval does not count",
                v.email
            ));
        } else if !counted.contains(&v.email.as_str()) {
            counted.push(&v.email);
        }
    }
    counted.sort_unstable();
    let required = cfg.required as usize;
    // Four-eyes means someone other than the requester approved; a
    // requester who proved no identity could be anyone, so nothing counts.
    if cfg.four_eyes && !crate::domain::requester::is_proven(&subject.requested_by) {
        let mut v = Verdict::new(
            GateKind::Approval,
            Outcome::Fail,
            format!(
                "the requester is not proven ({}); four eyes cannot tell them from an approver",
                subject.requested_by
            ),
        );
        reasons.push(format!(
            "{} asked without a key; with four eyes an unproven requester counts no approval",
            subject.requested_by
        ));
        v.reasons = reasons;
        v.unblock
            .push("sign the request with --key NAME (`stella key list` shows your keys)".into());
        v.measured =
            json!({"required": required, "valid": 0, "approvers": [], "requester_proven": false});
        return v;
    }
    let mut v = if counted.len() >= required {
        Verdict::new(
            GateKind::Approval,
            Outcome::Pass,
            format!("signed by {}", counted.join(", ")),
        )
    } else {
        let mut v = Verdict::new(
            GateKind::Approval,
            Outcome::Fail,
            format!("{} of {required} required approvals", counted.len()),
        );
        let candidates: Vec<&str> = approvers
            .iter()
            .copied()
            .filter(|a| !(counted.contains(a) || cfg.four_eyes && *a == subject.requested_by))
            .collect();
        let missing = required - counted.len();
        v.unblock.push(format!(
            "{missing} more approval{} from: {} — `stella approve {}@{} --env {} --key NAME`",
            if missing == 1 { "" } else { "s" },
            if candidates.is_empty() {
                "nobody left on the list".to_owned()
            } else {
                candidates.join(", ")
            },
            subject.app,
            subject.digest,
            subject.environment
        ));
        v
    };
    v.reasons = reasons;
    v.measured = json!({"required": required, "valid": counted.len(), "approvers": counted});
    v
}
