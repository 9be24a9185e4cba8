//! The whole picture: for every lane promoted from another, each release
//! waiting to come in from upstream — the app's release live upstream
//! that is not the one live here — with its gates evaluated at the clock,
//! what holds it, and when each blocker clears: a freeze's end (and the
//! next freeze's start), a soak's end, the approvers still missing by
//! name. `stella gate check --all` prints it; the workbench's Waiting
//! screen draws it. Reads only: nothing is resolved, signed or sealed.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::EngineError;
use crate::config::Config;
use crate::domain::{Decision, Digest, GateKind, Outcome, Verdict};
use crate::gates::freeze::{Period, Window};
use crate::gates::{self, collect};
use crate::store::Store;
use crate::workspace::Workspace;

/// Who the overview asks as by default: a proven requester who is none of
/// the approvers, so four-eyes counts every approval and the picture is
/// the release's, not the reader's.
pub const ANY_REQUESTER: &str = "a proven requester who is not an approver";

#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    #[serde(serialize_with = "crate::domain::release::rfc3339")]
    pub now: DateTime<Utc>,
    /// Who the gates were asked as.
    pub requested_as: String,
    pub lanes: Vec<LaneWaiting>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LaneWaiting {
    pub environment: String,
    pub from: String,
    pub waiting: Vec<Waiting>,
    /// The lane's freezes: active now (with their ends) and the next to start.
    pub freeze: Freezes,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Freezes {
    pub active: Vec<FreezeTime>,
    pub next: Option<FreezeTime>,
}

/// A freeze period of a named window.
#[derive(Debug, Clone, Serialize)]
pub struct FreezeTime {
    pub window: String,
    pub starts: When,
    pub ends: Option<When>,
}

/// An instant, in UTC and as the window (or UTC) writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct When {
    #[serde(serialize_with = "crate::domain::release::rfc3339")]
    pub at: DateTime<Utc>,
    /// `Mon 2026-12-07 08:00 CET (07:00 UTC)`: in the zone the rule is
    /// written in (a freeze window's; UTC otherwise).
    pub written: String,
    /// `Mon 2026-12-07 08:00 +01:00`: in the zone of the machine asking.
    pub yours: String,
}

impl When {
    fn new(at: DateTime<Utc>, zone: Tz) -> When {
        When {
            at,
            written: gates::freeze::when(at, zone),
            yours: at
                .with_timezone(&chrono::Local)
                .format("%a %Y-%m-%d %H:%M %:z")
                .to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Waiting {
    pub app: String,
    pub digest: Digest,
    /// What runs in this lane now, if anything.
    pub live_here: Option<Digest>,
    /// Since when it is live upstream.
    #[serde(serialize_with = "crate::domain::release::rfc3339")]
    pub upstream_since: DateTime<Utc>,
    /// Nothing holds it: a promotion now would be allowed.
    pub ready: bool,
    pub blockers: Vec<Blocker>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Blocker {
    /// `security`, `approval`, `freeze`, `policy`, `upstream`, or `pin`.
    pub gate: String,
    pub summary: String,
    /// When it clears by itself (a freeze's end, a soak's end); `None`
    /// when it takes someone's action.
    pub clears: Option<When>,
    /// The approvers who may still sign, and how many more must.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_approvers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvals_needed: Option<u64>,
    /// What would unblock it.
    pub unblock: Vec<String>,
}

/// The overview at `now`, asked as `requester` (default [`ANY_REQUESTER`]),
/// of every lane or only `only`.
pub fn overview(
    ws: &Workspace,
    store: &Store,
    config: &Config,
    only: Option<&str>,
    requester: Option<String>,
    now: DateTime<Utc>,
) -> Result<Overview, EngineError> {
    if let Some(e) = only
        && config.environment(e).is_none()
    {
        return Err(super::unknown_environment(e, config));
    }
    let requested_as = requester.unwrap_or_else(|| ANY_REQUESTER.to_owned());
    let cas = ws.evidence();
    let mut lanes = Vec::new();
    for (name, env) in config.environments.iter() {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let Some(from) = env.from.as_ref().map(|f| f.get_ref().clone()) else {
            continue;
        };
        let windows: Vec<Window> = env
            .gates
            .freeze
            .iter()
            .flat_map(|f| &f.windows)
            .filter_map(|w| {
                let n = w.get_ref();
                config
                    .freeze
                    .get(n)
                    .and_then(|c| Window::from_config(n, c).ok())
            })
            .collect();
        let freeze = freezes(&windows, now);
        let mut waiting = Vec::new();
        for app in config.apps.keys() {
            let Some(up) = store.live_at(&from, app, &now)? else {
                continue;
            };
            let here = store.live_at(name, app, &now)?.map(|l| l.digest);
            if here.as_ref() == Some(&up.digest) {
                continue;
            }
            let inputs = collect::collect(
                config,
                store,
                &cas,
                collect::Request {
                    app: app.clone(),
                    digest: up.digest.clone(),
                    tag: None,
                    environment: name.clone(),
                    requested_by: requested_as.clone(),
                    promotion_id: None,
                    break_glass: None,
                    now,
                },
            )
            .map_err(EngineError::error)?;
            let (decision, verdicts) = gates::evaluate(&inputs);
            let mut blockers: Vec<Blocker> = verdicts
                .iter()
                .filter(|v| v.verdict == Outcome::Fail)
                .map(|v| blocker(v, env, &requested_as, &windows, now))
                .collect();
            if let Some(pin) = store.pin(name, app)? {
                let e = super::pin::pinned_error(&pin);
                blockers.push(Blocker {
                    gate: "pin".into(),
                    summary: e.message,
                    clears: None,
                    missing_approvers: vec![],
                    approvals_needed: None,
                    unblock: e.hint.into_iter().collect(),
                });
            }
            waiting.push(Waiting {
                app: app.clone(),
                digest: up.digest,
                live_here: here,
                upstream_since: up.since,
                ready: decision == Decision::Allow && blockers.is_empty(),
                blockers,
            });
        }
        lanes.push(LaneWaiting {
            environment: name.clone(),
            from,
            waiting,
            freeze,
        });
    }
    Ok(Overview {
        now,
        requested_as,
        lanes,
    })
}

/// The freezes of a lane's windows active at `now`, and the next to start.
pub fn freezes(windows: &[Window], now: DateTime<Utc>) -> Freezes {
    let time = |w: &Window, p: Period| FreezeTime {
        window: w.name.clone(),
        starts: When::new(p.start, w.zone()),
        ends: p.end.map(|e| When::new(e, w.zone())),
    };
    Freezes {
        active: windows
            .iter()
            .filter_map(|w| w.active_at(now).map(|p| time(w, p)))
            .collect(),
        next: gates::freeze::next_freeze(windows, now).map(|(w, p)| time(w, p)),
    }
}

fn blocker(
    v: &Verdict,
    env: &crate::config::Environment,
    requested_as: &str,
    windows: &[Window],
    now: DateTime<Utc>,
) -> Blocker {
    let mut b = Blocker {
        gate: v.gate.as_str().to_owned(),
        summary: v.summary.clone(),
        clears: None,
        missing_approvers: vec![],
        approvals_needed: None,
        unblock: v.unblock.clone(),
    };
    match v.gate {
        GateKind::Freeze => {
            // The latest end of the freezes active now: it clears when
            // every one of them has ended.
            b.clears = windows
                .iter()
                .filter_map(|w| w.active_at(now).and_then(|p| p.end).map(|e| (e, w.zone())))
                .max_by_key(|(e, _)| *e)
                .map(|(e, z)| When::new(e, z));
        }
        GateKind::Upstream => {
            let since = v.measured["since"]
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
            let soak = v.measured["soak_seconds"].as_i64();
            if let (Some(since), Some(soak)) = (since, soak) {
                let end = since.with_timezone(&Utc) + chrono::TimeDelta::seconds(soak);
                if end > now && v.measured["live"].is_string() {
                    b.clears = Some(When::new(end, chrono_tz::UTC));
                }
            }
        }
        GateKind::Approval => {
            if let Some(cfg) = env.gates.approval.as_ref().map(|a| a.get_ref()) {
                let counted: Vec<&str> = v.measured["approvers"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                    .unwrap_or_default();
                b.missing_approvers = cfg
                    .approvers
                    .iter()
                    .map(|a| a.get_ref().clone())
                    .filter(|a| {
                        !(counted.contains(&a.as_str()) || cfg.four_eyes && a == requested_as)
                    })
                    .collect();
                b.approvals_needed =
                    Some(u64::from(cfg.required).saturating_sub(counted.len() as u64));
            }
        }
        GateKind::Security | GateKind::Policy => {}
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lanes_freezes_name_the_active_end_and_the_next_start() {
        let w = Window {
            name: "weekend".into(),
            described: String::new(),
            kind: crate::gates::freeze::Kind::Recurring {
                start: Box::new(gates::freeze::parse_cron("0 18 * * FRI").unwrap()),
                end: Box::new(gates::freeze::parse_cron("0 8 * * MON").unwrap()),
                tz: gates::freeze::parse_tz("Europe/Madrid").unwrap(),
            },
            exceptions: vec![],
            break_glass_approvals: 1,
        };
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let f = freezes(std::slice::from_ref(&w), t("2026-12-05T12:00:00Z"));
        assert_eq!(f.active.len(), 1);
        let end = f.active[0].ends.as_ref().unwrap();
        assert_eq!(end.at, t("2026-12-07T07:00:00Z"));
        assert_eq!(end.written, "Mon 2026-12-07 08:00 CET (07:00 UTC)");
        let next = f.next.unwrap();
        assert_eq!(next.starts.at, t("2026-12-11T17:00:00Z"));
        let open = freezes(&[w], t("2026-12-08T12:00:00Z"));
        assert!(open.active.is_empty());
        assert_eq!(open.next.unwrap().starts.at, t("2026-12-11T17:00:00Z"));
    }
}
