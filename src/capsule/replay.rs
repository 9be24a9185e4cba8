//! Replay: rebuild every gate's inputs from the capsule's embedded blobs and
//! evaluate them again at the recorded clock, with the gate semantics the
//! capsule records, then compare with the recorded verdicts field by field.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::environment::EffectiveEnvironment;
use super::file::CapsuleFile;
use super::statement::{Action, GATE_SEMANTICS, Statement};
use crate::domain::{Decision, Digest, Verdict};
use crate::gates::{
    self, ApprovalEvidence, EvidenceKind, GateInputs, LiveState, PolicyModule, ScanEvidence,
    Subject, TrustedKey,
};
use crate::scan::{self, Format};
use crate::sign::PublicKey;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("the payload is not a decision statement: {0}")]
    Statement(String),
    #[error(
        "the capsule was decided with gate semantics {0}; this stella knows up to {GATE_SEMANTICS}: replay it with a newer stella"
    )]
    Semantics(u32),
    #[error("evidence {0} is referenced but not in the file")]
    Missing(Digest),
    #[error("evidence {0} does not match its content")]
    Corrupt(Digest),
    #[error("evidence {digest} cannot be read back: {detail}")]
    Unreadable { digest: Digest, detail: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub gate: String,
    pub field: String,
    pub recorded: serde_json::Value,
    pub replayed: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub identical: bool,
    pub differences: Vec<Difference>,
}

fn time(s: &str, digest: &Digest) -> Result<DateTime<Utc>, ReplayError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ReplayError::Unreadable {
            digest: digest.clone(),
            detail: format!("`{s}` is not an RFC 3339 time ({e})"),
        })
}

/// The gate inputs a statement records, rebuilt from blobs (digest → bytes,
/// already checked against their digests).
pub fn inputs_from(
    st: &Statement,
    blobs: &HashMap<Digest, Vec<u8>>,
) -> Result<GateInputs, ReplayError> {
    let p = &st.predicate;
    let get = |d: &Digest| blobs.get(d).ok_or_else(|| ReplayError::Missing(d.clone()));
    let unreadable = |d: &Digest, detail: String| ReplayError::Unreadable {
        digest: d.clone(),
        detail,
    };
    let text = |d: &Digest| {
        get(d).and_then(|b| {
            String::from_utf8(b.clone()).map_err(|_| unreadable(d, "not UTF-8 text".into()))
        })
    };

    let env_digest = &p.inputs.environment.digest;
    let env = EffectiveEnvironment::from_toml(&text(env_digest)?)
        .map_err(|e| unreadable(env_digest, e))?;

    let mut scans = Vec::new();
    let mut approvals = Vec::new();
    for e in &p.inputs.evidence {
        match EvidenceKind::parse(&e.kind) {
            Some(EvidenceKind::Approval) => approvals.push(ApprovalEvidence {
                digest: e.digest.clone(),
                bytes: get(&e.digest)?.clone(),
            }),
            Some(kind @ (EvidenceKind::Scan | EvidenceKind::Vex | EvidenceKind::Sbom)) => {
                let format = Format::from_media_type(&e.media_type).ok_or_else(|| {
                    unreadable(&e.digest, format!("unknown media type {}", e.media_type))
                })?;
                let report = scan::parse(format, get(&e.digest)?)
                    .map_err(|err| unreadable(&e.digest, err.to_string()))?;
                scans.push(ScanEvidence {
                    digest: e.digest.clone(),
                    kind,
                    format,
                    report,
                });
            }
            _ => {}
        }
    }
    let policies = p
        .inputs
        .policies
        .iter()
        .map(|m| {
            Ok(PolicyModule {
                path: m.path.clone(),
                source: text(&m.digest)?,
            })
        })
        .collect::<Result<Vec<_>, ReplayError>>()?;
    let keys = p
        .inputs
        .keys
        .iter()
        .map(|k| {
            let key = PublicKey::from_pem(&text(&k.digest)?)
                .map_err(|e| unreadable(&k.digest, e.to_string()))?;
            Ok(TrustedKey {
                name: k.name.clone(),
                email: k.email.clone(),
                key,
            })
        })
        .collect::<Result<Vec<_>, ReplayError>>()?;
    let upstream = match &p.inputs.upstream {
        Some(u) => Some(LiveState {
            environment: u.environment.clone(),
            digest: u.digest.clone(),
            since: time(&u.since, env_digest)?,
        }),
        None => None,
    };
    Ok(GateInputs {
        subject: Subject {
            app: p.app.clone(),
            digest: p.release.digest.clone(),
            tag: p.release.tag.clone(),
            environment: p.to.clone(),
            from: p.from.clone(),
            requested_by: p.requested_by.clone(),
            promotion_id: p.promotion_id,
        },
        gates: env.gates,
        freeze_windows: env.freeze,
        scans,
        approvals,
        keys,
        policies,
        upstream,
        break_glass: p.inputs.break_glass.clone(),
        now: time(&p.clock, env_digest)?,
    })
}

/// Replays the decision in `file` and compares it with what was recorded.
pub fn replay(file: &CapsuleFile) -> Result<Outcome, ReplayError> {
    let payload = file
        .envelope
        .payload_bytes()
        .map_err(|e| ReplayError::Statement(e.to_string()))?;
    let st: Statement =
        serde_json::from_slice(&payload).map_err(|e| ReplayError::Statement(e.to_string()))?;
    if st.predicate.engine.gate_semantics > GATE_SEMANTICS {
        return Err(ReplayError::Semantics(st.predicate.engine.gate_semantics));
    }
    let mut blobs = HashMap::new();
    for b in &file.evidence {
        let bytes = b
            .content()
            .map_err(|_| ReplayError::Corrupt(b.digest.clone()))?;
        if Digest::of(&bytes) != b.digest {
            return Err(ReplayError::Corrupt(b.digest.clone()));
        }
        blobs.insert(b.digest.clone(), bytes);
    }
    for d in st.referenced() {
        if !blobs.contains_key(d) {
            return Err(ReplayError::Missing(d.clone()));
        }
    }
    // A rollback, an unpin, a canary's step and an operator's pause, resume or abort
    // are decisions taken on a release already through its gates; they
    // record none, so there is nothing to re-evaluate beyond their inputs.
    let stepwise = matches!(
        st.predicate.action,
        Action::Rollback
            | Action::CanaryStep
            | Action::Pause
            | Action::Resume
            | Action::Abort
            | Action::Consolidate
            | Action::Flags
            | Action::Unpin
    );
    let mut differences = Vec::new();
    let mut all_allow = true;
    let each = st.predicate.each();
    for (i, p) in each.iter().enumerate() {
        let (decision, verdicts) = if stepwise && p.gates.is_empty() {
            (p.decision, Vec::new())
        } else {
            let one = Statement {
                predicate: p.clone(),
                ..st.clone()
            };
            let inputs = inputs_from(&one, &blobs)?;
            gates::evaluate_with(&inputs, st.predicate.engine.gate_semantics)
        };
        all_allow &= decision == Decision::Allow;
        let mut found = compare(&p.gates, &verdicts);
        // A set member's decision is recorded apart from the set's; the
        // first member's is the set's own unless it is a set.
        if i > 0 && decision != p.decision {
            found.push(Difference {
                gate: "decision".into(),
                field: "decision".into(),
                recorded: serde_json::to_value(p.decision).unwrap_or_default(),
                replayed: serde_json::to_value(decision).unwrap_or_default(),
            });
        }
        if st.predicate.is_set() {
            for d in &mut found {
                d.gate = format!("{}: {}", p.app, d.gate);
            }
        }
        differences.extend(found);
    }
    let decision = if all_allow {
        Decision::Allow
    } else {
        Decision::Deny
    };
    if decision != st.predicate.decision {
        differences.push(Difference {
            gate: "decision".into(),
            field: "decision".into(),
            recorded: serde_json::to_value(st.predicate.decision).unwrap_or_default(),
            replayed: serde_json::to_value(decision).unwrap_or_default(),
        });
    }
    differences.extend(requester_difference(&st));
    Ok(Outcome {
        identical: differences.is_empty(),
        differences,
    })
}

/// The requester's signature checked again over the request the capsule
/// records; a capsule sealed before requesters were proven has none.
fn requester_difference(st: &Statement) -> Option<Difference> {
    let p = &st.predicate;
    let r = p.requester.as_ref()?;
    let also: Vec<(String, Digest)> = p
        .members
        .iter()
        .map(|m| (m.app.clone(), m.release.digest.clone()))
        .collect();
    let asked = crate::domain::requester::Asked {
        action: p.action.as_str(),
        app: &p.app,
        digest: &p.release.digest,
        environment: &p.to,
        clock: &p.clock,
        also: &also,
    };
    // A decision that looked at the workspace's keys records them: the
    // requester's key must be one of them, and its owner the identity.
    let known = r
        .keyid
        .as_ref()
        .filter(|_| !p.inputs.keys.is_empty())
        .map(|id| p.inputs.keys.iter().find(|k| k.keyid == *id));
    let problem = match r.check(&asked) {
        Err(e) => e,
        Ok(()) if r.display() != p.requested_by => format!(
            "requested_by is `{}` but the requester is {}",
            p.requested_by,
            r.display()
        ),
        Ok(()) => match known {
            Some(None) => format!(
                "the request was signed by a key the decision's workspace did not hold ({})",
                r.keyid.as_deref().unwrap_or_default()
            ),
            Some(Some(k)) if k.email != r.identity => format!(
                "the request was signed with key `{}`, which belongs to {}, not {}",
                k.name, k.email, r.identity
            ),
            _ => return None,
        },
    };
    Some(Difference {
        gate: "requester".into(),
        field: "signature".into(),
        recorded: r.display().into(),
        replayed: problem.into(),
    })
}

/// Field by field, gate by gate.
pub fn compare(recorded: &[Verdict], replayed: &[Verdict]) -> Vec<Difference> {
    let mut out = Vec::new();
    let gates: Vec<String> = recorded
        .iter()
        .chain(replayed)
        .map(|v| v.gate.as_str().to_owned())
        .fold(Vec::new(), |mut acc, g| {
            if !acc.contains(&g) {
                acc.push(g);
            }
            acc
        });
    for g in gates {
        let a = recorded.iter().find(|v| v.gate.as_str() == g);
        let b = replayed.iter().find(|v| v.gate.as_str() == g);
        let (a, b) = match (a, b) {
            (Some(a), Some(b)) => (a, b),
            (a, b) => {
                out.push(Difference {
                    gate: g,
                    field: "present".into(),
                    recorded: a.is_some().into(),
                    replayed: b.is_some().into(),
                });
                continue;
            }
        };
        let (va, vb) = (
            serde_json::to_value(a).unwrap_or_default(),
            serde_json::to_value(b).unwrap_or_default(),
        );
        for field in ["verdict", "summary", "reasons", "measured", "unblock"] {
            if va[field] != vb[field] {
                out.push(Difference {
                    gate: g.clone(),
                    field: field.into(),
                    recorded: va[field].clone(),
                    replayed: vb[field].clone(),
                });
            }
        }
    }
    out
}
