//! `stella status`: the lanes as text or JSON — what runs where, since
//! when, whether its targets serve it, how it was last decided, what is
//! frozen and what a rollback pinned. The workbench's Lanes screen for a
//! script or a quick look.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use serde::Serialize;

use super::{Context, Failure, exit, load_config, parse_at, print_json};
use crate::engine::lanes::{Health, Lane};
use crate::gates::freeze::Window;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this environment
    #[arg(long)]
    pub env: Option<String>,
    /// As it was at this time (RFC 3339) instead of now
    #[arg(long)]
    pub at: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// A lane with what is frozen in it at the clock.
#[derive(Serialize)]
struct LaneStatus<'a> {
    #[serde(flatten)]
    lane: &'a Lane,
    /// The freeze windows active at the clock, with when each ends.
    frozen: Vec<Frozen>,
}

#[derive(Serialize)]
struct Frozen {
    window: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<String>,
}

pub fn run(ctx: &Context, a: StatusArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    let at = parse_at(a.at.as_deref())?;
    if let Some(env) = &a.env
        && config.environment(env).is_none()
    {
        return Err(super::unknown_environment(env, &config));
    }
    // Looking changes nothing: a promotion whose process died is named,
    // and `stella recover` (or the next command that acts) recovers it.
    let store = ws.read_store()?;
    for l in store.dead_locks()? {
        eprintln!(
            "note: promotion #{} in {} was interrupted: its process (pid {}) is gone; `stella recover` puts the previous release back",
            l.promotion_id, l.environment, l.pid
        );
    }
    let pending = store.pending_attachments(1)?;
    if let Some(first) = pending.first() {
        eprintln!(
            "note: {} decision(s) not yet attached to their image (capsule #{} → {}: {}); `stella capsule push --pending` tries again",
            store.pending_attachment_count()?,
            first.capsule_id,
            first.target.image,
            first.last_error.as_deref().unwrap_or("not tried yet")
        );
    }
    let mut resolutions = BTreeMap::new();
    for app in config.apps.keys() {
        resolutions.insert(app.clone(), store.resolutions(Some(app))?);
    }
    let lanes = crate::engine::lanes::lanes(&store, &config, &resolutions, at)?;
    let windows: BTreeMap<&String, Window> = config
        .freeze
        .iter()
        .filter_map(|(n, c)| Window::from_config(n, c).ok().map(|w| (n, w)))
        .collect();
    let shown: Vec<LaneStatus> = lanes
        .iter()
        .filter(|l| a.env.as_ref().is_none_or(|e| *e == l.env))
        .map(|lane| LaneStatus {
            lane,
            frozen: lane
                .freeze_windows
                .iter()
                .filter_map(|w| {
                    let period = windows.get(w)?.active_at(at)?;
                    Some(Frozen {
                        window: w.clone(),
                        until: period.end.map(rfc3339),
                    })
                })
                .collect(),
        })
        .collect();
    if a.json {
        print_json(&shown)?;
        return Ok(exit::OK);
    }
    for l in &shown {
        let mut head = match &l.lane.from {
            Some(f) => format!("{} — from {f}", l.lane.env),
            None => format!("{} — first lane", l.lane.env),
        };
        for f in &l.frozen {
            head.push_str(&format!(
                "  FROZEN: {}{}",
                f.window,
                f.until
                    .as_ref()
                    .map(|u| format!(" until {u}"))
                    .unwrap_or_default()
            ));
        }
        println!("{head}");
        for c in &l.lane.cells {
            let Some(live) = &c.live else {
                println!("  {:<14} not live", c.app);
                continue;
            };
            let health = match c.health {
                Health::Serving => "serving",
                Health::Drift => "DRIFT",
                Health::Unknown => "-",
            };
            let last = c
                .last
                .as_ref()
                .map(|p| {
                    format!(
                        "#{} {}",
                        p.id,
                        p.outcome.map_or(p.state.as_str(), |o| o.as_str())
                    )
                })
                .unwrap_or_default();
            let pin = c
                .pin
                .as_ref()
                .map(|p| format!("  PINNED by the rollback in capsule #{}", p.capsule_id))
                .unwrap_or_default();
            println!(
                "  {:<14} {:<8} sha256:{}  live {:>4}  {:<8} {last}{pin}",
                c.app,
                live.tag.as_deref().unwrap_or("-"),
                live.digest.short(),
                age(at, live.since),
                health,
            );
        }
    }
    Ok(exit::OK)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `3d`, `5h`, `12m`, `40s`: how long ago, roughly.
fn age(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let d = (now - t).to_std().unwrap_or_default();
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}
