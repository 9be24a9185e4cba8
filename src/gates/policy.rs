//! The policy gate: Rego v1 modules in package `stella.gates`, evaluated
//! with regorus. Messages in the set `deny` fail the gate; messages in
//! `warn` warn. The input document is built here from the other gates'
//! facts and is documented in docs/policy.md.
//!
//! Determinism: `time.now_ns()` returns the decision clock (an extension
//! shadows the builtin), and no network builtins are compiled in. A module
//! that runs past the budget fails the gate.

use std::num::NonZeroU32;
use std::time::Duration;

use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, Value};
use serde_json::json;

use super::approval::Checked;
use super::{GateInputs, rfc3339};
use crate::config::model::PolicyGateConfig;
use crate::domain::{Digest, GateKind, Outcome, Verdict};

/// How long a policy may run before the gate fails.
pub const BUDGET: Duration = Duration::from_secs(2);

/// What the policy sees of the other gates.
pub struct Facts<'a> {
    pub security: Option<&'a Verdict>,
    pub approvals: &'a Checked,
    pub frozen: bool,
}

/// The input document (see docs/policy.md).
pub fn input_document(inputs: &GateInputs, facts: &Facts<'_>) -> serde_json::Value {
    let s = &inputs.subject;
    let zero = json!({"critical": 0, "high": 0, "medium": 0, "low": 0, "unknown": 0});
    let (reachable, suppressed, scanned) = match facts.security {
        Some(v) => (
            v.measured["reachable"].clone(),
            v.measured["suppressed"].clone(),
            v.measured["reports"].as_u64().unwrap_or(0) > 0,
        ),
        None => (zero, json!(0), false),
    };
    let mut approvals: Vec<serde_json::Value> = facts
        .approvals
        .valid
        .iter()
        .map(|a| json!({"email": a.email, "signed_at": rfc3339(a.signed_at)}))
        .collect();
    approvals.sort_by_key(|a| a.to_string());
    let mut doc = json!({
        "release": {"app": s.app, "digest": s.digest.to_string(), "tag": s.tag},
        "environment": {"name": s.environment, "from": s.from},
        "requested_by": s.requested_by,
        "now": rfc3339(inputs.now),
        "security": {"scanned": scanned, "reachable": reachable, "suppressed": suppressed},
        "approvals": approvals,
        "freeze": {"active": facts.frozen},
        "upstream": inputs.upstream.as_ref().map(|u| json!({
            "environment": u.environment,
            "digest": u.digest.to_string(),
            "since": rfc3339(u.since),
        })),
    });
    drop_nulls(&mut doc);
    doc
}

/// Absent, not null: Rego's `not input.release.tag` is true only for an
/// undefined value, and that is the idiom policy authors reach for.
fn drop_nulls(v: &mut serde_json::Value) {
    if let serde_json::Value::Object(map) = v {
        map.retain(|_, x| !x.is_null());
        map.values_mut().for_each(drop_nulls);
    } else if let serde_json::Value::Array(items) = v {
        items.iter_mut().for_each(drop_nulls);
    }
}

/// Loads the modules into a fresh engine with the decision clock.
pub fn engine(modules: &[super::PolicyModule], now_ns: i64) -> Result<Engine, String> {
    let mut engine = Engine::new();
    engine.set_rego_v0(false);
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: BUDGET,
        check_interval: NonZeroU32::new(64).expect("non-zero"),
    });
    engine
        .add_extension(
            "time.now_ns".into(),
            0,
            Box::new(move |_: Vec<Value>| Ok(Value::from(now_ns))),
        )
        .map_err(|e| e.to_string())?;
    for m in modules {
        let package = engine
            .add_policy(m.path.clone(), m.source.clone())
            .map_err(|e| one_line(&e.to_string()))?;
        if package != "data.stella.gates" {
            return Err(format!(
                "{}: package is `{}`, expected `package stella.gates`",
                m.path,
                package.trim_start_matches("data.")
            ));
        }
    }
    Ok(engine)
}

fn messages(engine: &mut Engine, rule: &str) -> Result<Vec<String>, String> {
    // A query, not `eval_rule`: a module need not define both rules, and an
    // undefined one is simply empty.
    let results = engine
        .eval_query(format!("data.stella.gates.{rule}"), false)
        .map_err(|e| one_line(&e.to_string()))?;
    let Some(v) = results
        .result
        .into_iter()
        .next()
        .and_then(|r| r.expressions.into_iter().next())
        .map(|e| e.value)
    else {
        return Ok(Vec::new());
    };
    if v == Value::Undefined {
        return Ok(Vec::new());
    }
    let set = v.as_set().map_err(|_| {
        format!("`{rule}` must be a set of messages, e.g. `{rule} contains msg if {{ … }}`")
    })?;
    Ok(set
        .iter()
        .map(|m| match m.as_string() {
            Ok(s) => s.to_string(),
            Err(_) => m.to_string(),
        })
        .collect())
}

/// regorus reports `--> FILE:LINE:COL`, a source excerpt and `error: …`
/// on separate lines; this makes it `FILE:LINE:COL: …`.
pub fn one_line(err: &str) -> String {
    let location = err.lines().find_map(|l| l.trim().strip_prefix("--> "));
    let message = err
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or_else(|| err.trim());
    match location {
        Some(loc) => format!("{loc}: {message}"),
        None => message.to_owned(),
    }
}

pub fn evaluate(cfg: &PolicyGateConfig, inputs: &GateInputs, facts: &Facts<'_>) -> Verdict {
    let modules: Vec<serde_json::Value> = inputs
        .policies
        .iter()
        .map(|m| json!({"path": m.path, "digest": Digest::of(m.source.as_bytes()).to_string()}))
        .collect();
    let missing: Vec<&str> = cfg
        .modules
        .iter()
        .map(|m| m.get_ref().as_str())
        .filter(|m| !inputs.policies.iter().any(|p| p.path == *m))
        .collect();
    let fail = |summary: String, reasons: Vec<String>| {
        let mut v = Verdict::new(GateKind::Policy, Outcome::Fail, summary);
        v.reasons = reasons;
        v.measured = json!({"modules": modules, "deny": 0, "warn": 0});
        v
    };
    if !missing.is_empty() {
        return fail(
            format!("policy modules missing: {}", missing.join(", ")),
            vec![],
        );
    }
    let now_ns = inputs.now.timestamp_nanos_opt().unwrap_or(i64::MAX);
    let mut engine = match engine(&inputs.policies, now_ns) {
        Ok(e) => e,
        Err(e) => return fail("a policy module does not compile".into(), vec![e]),
    };
    let input = input_document(inputs, facts);
    match Value::from_json_str(&input.to_string()) {
        Ok(v) => engine.set_input(v),
        Err(e) => return fail("cannot build the policy input".into(), vec![e.to_string()]),
    }
    let (deny, warn) = match (messages(&mut engine, "deny"), messages(&mut engine, "warn")) {
        (Ok(d), Ok(w)) => (d, w),
        (Err(e), _) | (_, Err(e)) => {
            let summary = if e.contains("time limit")
                || e.contains("execution exceeded")
                || e.contains("timed out")
            {
                format!(
                    "policy evaluation did not finish within {}s",
                    BUDGET.as_secs()
                )
            } else {
                "policy evaluation failed".into()
            };
            return fail(summary, vec![e]);
        }
    };
    let n = inputs.policies.len();
    let (outcome, summary) = if let Some(first) = deny.first() {
        let more = if deny.len() > 1 {
            format!(" (+{} more)", deny.len() - 1)
        } else {
            String::new()
        };
        (Outcome::Fail, format!("{first}{more}"))
    } else if let Some(first) = warn.first() {
        (Outcome::Warn, first.clone())
    } else {
        (
            Outcome::Pass,
            if n == 1 {
                "1 module allows it".to_owned()
            } else {
                format!("{n} modules allow it")
            },
        )
    };
    let mut v = Verdict::new(GateKind::Policy, outcome, summary);
    v.reasons = deny
        .iter()
        .map(|d| format!("deny: {d}"))
        .chain(warn.iter().map(|w| format!("warn: {w}")))
        .collect();
    if !deny.is_empty() {
        v.unblock.push(
            "change what the deny rules object to (see reasons), or the policy itself".into(),
        );
    }
    v.measured = json!({"modules": modules, "deny": deny.len(), "warn": warn.len()});
    v
}
