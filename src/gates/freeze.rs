//! The freeze gate: calendar windows, recurring (cron start/end in an IANA
//! time zone) or one-off (absolute from/until), evaluated at the decision
//! clock.
//!
//! Recurring windows follow GitLab's deploy-freeze semantics: it is frozen
//! at time t when the latest start at or before t is later than the latest
//! end at or before t. Daylight-saving changes are handled by croner: a
//! start in a skipped hour fires at the next valid instant, a repeated hour
//! fires once.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde_json::json;

use super::GateInputs;
use crate::config::model::{FreezeGateConfig, FreezeWindowConfig};
use crate::domain::approval::Purpose;
pub use crate::domain::schedule::{parse_cron, parse_tz};
use crate::domain::{GateKind, Outcome, Verdict};

/// A window ready to evaluate.
#[derive(Debug, Clone)]
pub struct Window {
    pub name: String,
    /// How the config wrote it: `0 18 * * FRI → 0 8 * * MON, Europe/Madrid`.
    pub described: String,
    pub kind: Kind,
    pub exceptions: Vec<String>,
    pub break_glass_approvals: u32,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Recurring {
        start: Box<Cron>,
        end: Box<Cron>,
        tz: Tz,
    },
    OneOff {
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    },
}

/// A frozen stretch of time: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
}

/// How far back a recurring window may have started and still be active:
/// far enough for yearly windows.
const MAX_PERIODS: usize = 2_000;

impl Window {
    pub fn from_config(name: &str, c: &FreezeWindowConfig) -> Result<Window, String> {
        let kind = match (&c.start, &c.end, &c.timezone, &c.from, &c.until) {
            (Some(s), Some(e), Some(tz), None, None) => Kind::Recurring {
                start: Box::new(parse_cron(s.get_ref())?),
                end: Box::new(parse_cron(e.get_ref())?),
                tz: parse_tz(tz.get_ref())?,
            },
            (None, None, None, Some(f), Some(u)) => {
                let p = |s: &str| {
                    DateTime::parse_from_rfc3339(s)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|e| format!("`{s}` is not an RFC 3339 time ({e})"))
                };
                Kind::OneOff {
                    from: p(f.get_ref())?,
                    until: p(u.get_ref())?,
                }
            }
            _ => {
                return Err(format!(
                    "freeze window `{name}` is neither recurring nor one-off"
                ));
            }
        };
        let described = match (&c.start, &c.end, &c.timezone, &c.from, &c.until) {
            (Some(s), Some(e), Some(tz), _, _) => {
                format!(
                    "recurring: {} → {}, {}",
                    s.get_ref(),
                    e.get_ref(),
                    tz.get_ref()
                )
            }
            (_, _, _, Some(f), Some(u)) => format!("one-off: {} → {}", f.get_ref(), u.get_ref()),
            _ => String::new(),
        };
        Ok(Window {
            name: name.to_owned(),
            described,
            kind,
            exceptions: c.exceptions.iter().map(|e| e.get_ref().clone()).collect(),
            break_glass_approvals: c.break_glass_approvals.as_ref().map_or(1, |n| *n.get_ref()),
        })
    }

    /// The period active at `t`, if any.
    pub fn active_at(&self, t: DateTime<Utc>) -> Option<Period> {
        match &self.kind {
            Kind::OneOff { from, until } => (*from <= t && t < *until).then_some(Period {
                start: *from,
                end: Some(*until),
            }),
            Kind::Recurring { start, end, tz } => {
                let local = t.with_timezone(tz);
                let last_start = start.find_previous_occurrence(&local, true).ok()?;
                let last_end = end.find_previous_occurrence(&local, true).ok();
                if last_end.is_some_and(|e| e >= last_start) {
                    return None;
                }
                let next_end = end.find_next_occurrence(&local, false).ok();
                Some(Period {
                    start: last_start.with_timezone(&Utc),
                    end: next_end.map(|e| e.with_timezone(&Utc)),
                })
            }
        }
    }

    /// Frozen periods overlapping `[from, to)`, in order.
    pub fn periods(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Period> {
        match &self.kind {
            Kind::OneOff { from: f, until } => {
                if *f < to && *until > from {
                    vec![Period {
                        start: *f,
                        end: Some(*until),
                    }]
                } else {
                    vec![]
                }
            }
            Kind::Recurring { start, end, tz } => {
                let mut out = Vec::new();
                let mut cursor = match self.active_at(from) {
                    Some(p) => {
                        out.push(p);
                        match p.end {
                            Some(e) => e,
                            None => return out,
                        }
                    }
                    None => from,
                };
                while out.len() < MAX_PERIODS {
                    let Ok(s) = start.find_next_occurrence(&cursor.with_timezone(tz), false) else {
                        break;
                    };
                    let s = s.with_timezone(&Utc);
                    if s >= to {
                        break;
                    }
                    let e = end
                        .find_next_occurrence(&s.with_timezone(tz), false)
                        .ok()
                        .map(|e| e.with_timezone(&Utc));
                    out.push(Period { start: s, end: e });
                    match e {
                        Some(e) => cursor = e,
                        None => break,
                    }
                }
                out
            }
        }
    }

    /// The first period of this window that starts after `t`. A period
    /// already active at `t` is not "next": the answer is the one after it.
    pub fn next_start(&self, t: DateTime<Utc>) -> Option<Period> {
        match &self.kind {
            Kind::OneOff { from, until } => (*from > t).then_some(Period {
                start: *from,
                end: Some(*until),
            }),
            Kind::Recurring { start, end, tz } => {
                let s = start
                    .find_next_occurrence(&t.with_timezone(tz), false)
                    .ok()?;
                let e = end.find_next_occurrence(&s, false).ok();
                Some(Period {
                    start: s.with_timezone(&Utc),
                    end: e.map(|e| e.with_timezone(&Utc)),
                })
            }
        }
    }

    /// The window's own zone (UTC for one-off windows).
    pub fn zone(&self) -> Tz {
        match &self.kind {
            Kind::Recurring { tz, .. } => *tz,
            Kind::OneOff { .. } => chrono_tz::UTC,
        }
    }
}

/// The freeze that starts soonest after `t` among `windows`, with its
/// period: what "the next freeze starts …" lines show beside a freeze.
pub fn next_freeze(windows: &[Window], t: DateTime<Utc>) -> Option<(&Window, Period)> {
    windows
        .iter()
        .filter_map(|w| w.next_start(t).map(|p| (w, p)))
        .min_by_key(|(w, p)| (p.start, w.name.clone()))
}

/// `Mon 2026-11-30 08:00 CET (07:00 UTC)`
pub fn when(t: DateTime<Utc>, tz: Tz) -> String {
    let local = tz.from_utc_datetime(&t.naive_utc());
    if tz == chrono_tz::UTC {
        local.format("%a %Y-%m-%d %H:%M UTC").to_string()
    } else {
        format!(
            "{} ({})",
            local.format("%a %Y-%m-%d %H:%M %Z"),
            t.format("%H:%M UTC")
        )
    }
}

pub fn evaluate(cfg: &FreezeGateConfig, inputs: &GateInputs) -> Verdict {
    let now = inputs.now;
    let mut active = Vec::new();
    let mut reasons = Vec::new();
    for name in &cfg.windows {
        let name = name.get_ref();
        let Some(wc) = inputs.freeze_windows.get(name) else {
            reasons.push(format!("freeze window `{name}` is not defined"));
            continue;
        };
        match Window::from_config(name, wc) {
            Ok(w) => {
                if let Some(p) = w.active_at(now) {
                    active.push((w, p));
                }
            }
            Err(e) => reasons.push(e),
        }
    }
    if !reasons.is_empty() {
        let mut v = Verdict::new(
            GateKind::Freeze,
            Outcome::Fail,
            "freeze windows cannot be evaluated",
        );
        v.reasons = reasons;
        v.measured = json!({"active": false, "windows": []});
        return v;
    }
    if active.is_empty() {
        let mut v = Verdict::new(GateKind::Freeze, Outcome::Pass, "no active freeze");
        v.measured = json!({"active": false, "windows": []});
        return v;
    }

    let names: Vec<&str> = active.iter().map(|(w, _)| w.name.as_str()).collect();
    let ends: Vec<String> = active
        .iter()
        .map(|(w, p)| match p.end {
            Some(e) => format!("{} until {}", w.name, when(e, w.zone())),
            None => format!("{} with no end in sight", w.name),
        })
        .collect();
    let measured_windows: Vec<serde_json::Value> = active
        .iter()
        .map(|(w, p)| {
            json!({
                "name": w.name,
                "started": super::rfc3339(p.start),
                "ends": p.end.map(super::rfc3339),
                "zone": w.zone().name(),
            })
        })
        .collect();

    let glass = super::approval::check(inputs, Purpose::BreakGlass);
    let mut missing = Vec::new();
    let mut broken_by: Vec<String> = Vec::new();
    for (w, _) in &active {
        let signers: Vec<&str> = {
            let mut s: Vec<&str> = glass
                .valid
                .iter()
                .filter(|v| w.exceptions.contains(&v.email))
                .map(|v| v.email.as_str())
                .collect();
            s.sort_unstable();
            s.dedup();
            s
        };
        if (signers.len() as u32) < w.break_glass_approvals {
            missing.push((w, w.break_glass_approvals - signers.len() as u32));
        }
        broken_by.extend(signers.iter().map(|s| s.to_string()));
    }
    broken_by.sort();
    broken_by.dedup();

    let mut v = match &inputs.break_glass {
        Some(reason) if missing.is_empty() => {
            let mut v = Verdict::new(
                GateKind::Freeze,
                Outcome::Warn,
                format!(
                    "frozen ({}), broken by break-glass: {reason}",
                    names.join(", ")
                ),
            );
            v.reasons
                .push(format!("break-glass approved by {}", broken_by.join(", ")));
            v
        }
        _ => {
            let mut v = Verdict::new(
                GateKind::Freeze,
                Outcome::Fail,
                format!("frozen: {}", ends.join("; ")),
            );
            v.unblock
                .push(format!("wait for the freeze to end: {}", ends.join("; ")));
            for (w, n) in &missing {
                if w.exceptions.is_empty() {
                    v.unblock.push(format!(
                        "`{}` lists no exceptions, so it cannot be broken",
                        w.name
                    ));
                } else {
                    v.unblock.push(format!(
                        "or break the glass: `--break-glass REASON` with {n} more break-glass approval{} from {} (`stella approve … --break-glass`)",
                        if *n == 1 { "" } else { "s" },
                        w.exceptions.join(", ")
                    ));
                }
            }
            if inputs.break_glass.is_some() {
                v.reasons.push("break-glass requested, but without enough approvals from the windows' exceptions".into());
            }
            v
        }
    };
    v.reasons.extend(glass.rejected);
    v.measured = json!({
        "active": true,
        "windows": measured_windows,
        "break_glass": inputs.break_glass.is_some() && missing.is_empty(),
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn weekend() -> Window {
        Window {
            name: "weekend".into(),
            described: String::new(),
            kind: Kind::Recurring {
                start: Box::new(parse_cron("0 18 * * FRI").unwrap()),
                end: Box::new(parse_cron("0 8 * * MON").unwrap()),
                tz: parse_tz("Europe/Madrid").unwrap(),
            },
            exceptions: vec![],
            break_glass_approvals: 1,
        }
    }

    #[test]
    fn recurring_windows_follow_the_latest_start_and_end() {
        let w = weekend();
        // Friday 2026-11-27 17:59 Madrid (CET, UTC+1) is 16:59 UTC: open.
        assert_eq!(w.active_at(t("2026-11-27T16:59:00Z")), None);
        // 18:00 Madrid = 17:00 UTC: frozen until Monday 08:00 Madrid.
        let p = w.active_at(t("2026-11-27T17:00:00Z")).unwrap();
        assert_eq!(p.start, t("2026-11-27T17:00:00Z"));
        assert_eq!(p.end, Some(t("2026-11-30T07:00:00Z")));
        assert!(w.active_at(t("2026-11-29T12:00:00Z")).is_some());
        assert_eq!(w.active_at(t("2026-11-30T07:00:00Z")), None);
        assert_eq!(
            when(p.end.unwrap(), w.zone()),
            "Mon 2026-11-30 08:00 CET (07:00 UTC)"
        );
    }

    #[test]
    fn the_next_freeze_is_the_soonest_start_after_now_not_the_active_one() {
        let w = weekend();
        // Inside this weekend's freeze, the next one is the following Friday.
        let p = w.next_start(t("2026-11-28T12:00:00Z")).unwrap();
        assert_eq!(p.start, t("2026-12-04T17:00:00Z"));
        assert_eq!(p.end, Some(t("2026-12-07T07:00:00Z")));
        let bf = Window {
            name: "bf".into(),
            described: String::new(),
            kind: Kind::OneOff {
                from: t("2026-12-01T00:00:00Z"),
                until: t("2026-12-02T00:00:00Z"),
            },
            exceptions: vec![],
            break_glass_approvals: 1,
        };
        let both = [w, bf];
        let (n, p) = next_freeze(&both, t("2026-11-28T12:00:00Z")).unwrap();
        assert_eq!(
            (n.name.as_str(), p.start),
            ("bf", t("2026-12-01T00:00:00Z"))
        );
        // Once the one-off has started it is no longer "next".
        let (n, _) = next_freeze(&both, t("2026-12-01T06:00:00Z")).unwrap();
        assert_eq!(n.name, "weekend");
    }

    #[test]
    fn a_window_across_a_dst_change_keeps_local_hours() {
        let w = weekend();
        // Madrid leaves summer time on Sunday 2026-10-25 (03:00 CEST → 02:00 CET).
        // Friday 18:00 CEST is 16:00 UTC; Monday 08:00 CET is 07:00 UTC.
        let p = w.active_at(t("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(p.start, t("2026-10-23T16:00:00Z"));
        assert_eq!(p.end, Some(t("2026-10-26T07:00:00Z")));
        // And into summer time: 2026-03-29 (02:00 CET → 03:00 CEST).
        let p = w.active_at(t("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(p.start, t("2026-03-27T17:00:00Z"));
        assert_eq!(p.end, Some(t("2026-03-30T06:00:00Z")));
    }

    #[test]
    fn a_start_inside_the_skipped_hour_still_freezes() {
        let w = Window {
            name: "night".into(),
            described: String::new(),
            kind: Kind::Recurring {
                start: Box::new(parse_cron("30 2 * * *").unwrap()),
                end: Box::new(parse_cron("0 5 * * *").unwrap()),
                tz: parse_tz("Europe/Madrid").unwrap(),
            },
            exceptions: vec![],
            break_glass_approvals: 1,
        };
        // 02:30 does not exist in Madrid on 2026-03-29; 04:00 CEST = 02:00 UTC.
        assert!(w.active_at(t("2026-03-29T02:00:00Z")).is_some());
        assert!(w.active_at(t("2026-03-29T03:30:00Z")).is_none());
    }

    #[test]
    fn one_off_windows_and_periods() {
        let w = Window {
            name: "bf".into(),
            described: String::new(),
            kind: Kind::OneOff {
                from: t("2026-11-27T00:00:00Z"),
                until: t("2026-11-30T23:59:59Z"),
            },
            exceptions: vec![],
            break_glass_approvals: 1,
        };
        assert!(w.active_at(t("2026-11-28T00:00:00Z")).is_some());
        assert!(w.active_at(t("2026-12-01T00:00:00Z")).is_none());
        let weekends = weekend().periods(t("2026-11-01T00:00:00Z"), t("2026-12-01T00:00:00Z"));
        // Nov 2026: the weekend of Oct 30 reaches into Nov 2, then four more.
        assert_eq!(weekends.len(), 5);
        assert_eq!(weekends[0].end, Some(t("2026-11-02T07:00:00Z")));
        assert_eq!(weekends[4].start, t("2026-11-27T17:00:00Z"));
    }
}
