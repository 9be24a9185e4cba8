//! The lanes: for each environment in `from` order, each app's live
//! release (with its tag), how it was last decided, what was live before,
//! whether its `dir` targets serve it, and the pin a rollback holds. What
//! the workbench's Lanes screen and `stella status` show.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::EngineError;
use crate::config::Config;
use crate::domain::{Digest, Resolution};
use crate::store::{PromotionRow, Store};

#[derive(Debug, Clone, Serialize)]
pub struct Lane {
    pub env: String,
    pub from: Option<String>,
    /// The freeze windows the environment's gate names.
    pub freeze_windows: Vec<String>,
    /// Whether it has a security gate (the Releases screen shows findings
    /// as the first such lane sees them).
    pub security: bool,
    pub cells: Vec<Cell>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub app: String,
    pub live: Option<Live>,
    /// The newest decision about this app in this lane.
    pub last: Option<PromotionRow>,
    /// Every digest that was live here, newest first (for rollback).
    #[serde(serialize_with = "history_json")]
    pub history: Vec<(Digest, DateTime<Utc>)>,
    /// The releases a rollback took out of this lane, with when
    /// (`rules::taken_out`): a rollback picker marks them.
    #[serde(skip)]
    pub taken_out: Vec<(Digest, DateTime<Utc>)>,
    pub health: Health,
    /// The pin a rollback holds here, if any.
    pub pin: Option<crate::store::Pin>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Live {
    pub digest: Digest,
    pub tag: Option<String>,
    #[serde(serialize_with = "crate::domain::release::rfc3339")]
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Every `dir` target serves the live digest, and every routed one
    /// (router, nginx) holds it in its stable slot.
    Serving,
    /// A target serves something else (or nothing).
    Drift,
    /// Nothing live, or no target that can be looked at.
    Unknown,
}

fn tag_of(resolutions: &[crate::domain::Resolution], d: &Digest) -> Option<String> {
    resolutions
        .iter()
        .rev()
        .find(|r| r.digest == *d)
        .and_then(|r| r.tag.clone())
}

/// `[{"digest", "since"}]`, newest first.
fn history_json<S: serde::Serializer>(
    h: &[(Digest, DateTime<Utc>)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    #[derive(Serialize)]
    struct Was<'a> {
        digest: &'a Digest,
        #[serde(serialize_with = "crate::domain::release::rfc3339")]
        since: DateTime<Utc>,
    }
    let mut seq = s.serialize_seq(Some(h.len()))?;
    for (digest, since) in h {
        seq.serialize_element(&Was {
            digest,
            since: *since,
        })?;
    }
    seq.end()
}

/// Every lane at `now`; `resolutions` per app (for tags).
pub fn lanes(
    store: &Store,
    config: &Config,
    resolutions: &BTreeMap<String, Vec<Resolution>>,
    now: DateTime<Utc>,
) -> Result<Vec<Lane>, EngineError> {
    let apps: Vec<String> = config.apps.keys().cloned().collect();
    // Every pin at once: one query, not one per cell.
    let mut pins: BTreeMap<(String, String), crate::store::Pin> = store
        .pins()?
        .into_iter()
        .map(|p| ((p.environment.clone(), p.app.clone()), p))
        .collect();
    let mut lanes = Vec::new();
    for (env, cfg) in &config.environments {
        let mut cells = Vec::new();
        for app in &apps {
            let live = store.live_at(env, app, &now)?.map(|l| Live {
                tag: tag_of(&resolutions[app], &l.digest),
                digest: l.digest,
                since: l.since,
            });
            let records = store.live_history(env, app)?;
            let taken_out = super::rules::taken_out(
                &records
                    .iter()
                    .map(|l| (l.digest.clone(), l.since, l.source == "rollback"))
                    .collect::<Vec<_>>(),
            );
            let history = records.into_iter().map(|l| (l.digest, l.since)).collect();
            let last = store.recent_promotions(Some(env), Some(app), 1)?.pop();
            let health = match &live {
                None => Health::Unknown,
                Some(l) => {
                    // What each target serves: a `dir` target its
                    // `current` release; a routed one (router, nginx) the
                    // release in its stable slot, while its controller
                    // runs (an nginx stella does not run has none).
                    let dirs: Vec<Option<Digest>> = cfg
                        .targets
                        .iter()
                        .filter_map(|t| Some((t.get_ref(), config.targets.get(t.get_ref())?)))
                        .filter_map(|(name, t)| match t {
                            crate::config::Target::Dir(u) => {
                                Some(crate::engine::deploy::dir_target(config, u, app).current())
                            }
                            crate::config::Target::Router(_) | crate::config::Target::Nginx(..) => {
                                Some(routed_serves(config, name, t))
                            }
                            crate::config::Target::Script(_) => None,
                        })
                        .collect();
                    if dirs.is_empty() {
                        Health::Unknown
                    } else if dirs.iter().all(|d| d.as_ref() == Some(&l.digest)) {
                        Health::Serving
                    } else {
                        Health::Drift
                    }
                }
            };
            cells.push(Cell {
                app: app.clone(),
                live,
                last,
                history,
                taken_out,
                health,
                pin: pins.remove(&(env.clone(), app.clone())),
            });
        }
        lanes.push(Lane {
            env: env.clone(),
            from: cfg.from.as_ref().map(|f| f.get_ref().clone()),
            freeze_windows: cfg
                .gates
                .freeze
                .iter()
                .flat_map(|f| &f.windows)
                .map(|w| w.get_ref().clone())
                .collect(),
            security: cfg.gates.security.is_some(),
            cells,
        });
    }

    Ok(lanes)
}

/// The release a routed target serves in its stable slot, read from the
/// routes file its controller keeps; `None` when its controller is not
/// running (an nginx stella does not run needs none).
fn routed_serves(config: &Config, name: &str, target: &crate::config::Target) -> Option<Digest> {
    use crate::deploy::routed;
    let dir = routed::state_dir(&config.root, name);
    let existing = matches!(target, crate::config::Target::Nginx(_, Some(_)));
    if !existing && routed::running_pid(&dir).is_none() {
        return None;
    }
    routed::read_state(&dir).ok()?.stable.map(|s| s.digest)
}

/// What a routed target keeps, as the rollout views read it.
pub use crate::deploy::routed::Progress;
pub use crate::deploy::routed::RecentSlot;
pub use crate::deploy::router::SlotStats;

/// A `router` target as the Rollout screen shows it: read from the files
/// its router and canary keep, once a second while the screen is open.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutInfo {
    pub env: String,
    pub target: String,
    /// What routes it: `nginx` or `built-in router`.
    pub router: &'static str,
    pub running: bool,
    pub weight: u8,
    pub stable: Option<Digest>,
    pub candidate: Option<Digest>,
    pub stats: (SlotStats, SlotStats),
    /// Each slot over the last few seconds, and how many seconds.
    pub recent: (Option<RecentSlot>, Option<RecentSlot>),
    pub recent_window_s: Option<f64>,
    /// When the release kept warm leaves its slot (Unix seconds).
    pub warm_until: Option<i64>,
    pub progress: Progress,
}

/// Every environment's router targets.
pub fn rollouts(config: &Config) -> Vec<RolloutInfo> {
    use crate::deploy::routed;
    let store = crate::workspace::Workspace::at(config.root.clone())
        .read_store()
        .ok();
    let mut out = Vec::new();
    for (env, cfg) in &config.environments {
        for t in &cfg.targets {
            let Some(target) = config.targets.get(t.get_ref()) else {
                continue;
            };
            if !target.kind().is_routed() {
                continue;
            }
            let dir = routed::state_dir(&config.root, t.get_ref());
            let state = routed::read_state(&dir).unwrap_or_default();
            let stats = routed::read_stats(&dir);
            // Each slot's numbers are those of the release it holds.
            let per_slot = (
                stats.held(&state, crate::deploy::router::Slot::Stable),
                stats.held(&state, crate::deploy::router::Slot::Candidate),
            );
            out.push(RolloutInfo {
                env: env.clone(),
                target: t.get_ref().clone(),
                router: if target.kind() == crate::config::TargetKind::Nginx {
                    "nginx"
                } else {
                    "built-in router"
                },
                running: routed::running_pid(&dir).is_some(),
                weight: state.weight,
                recent: (
                    stats.recent_slot(crate::deploy::router::Slot::Stable),
                    stats.recent_slot(crate::deploy::router::Slot::Candidate),
                ),
                recent_window_s: stats.recent.as_ref().map(|r| r.window_s),
                warm_until: state.warm_until,
                stable: state.stable.map(|s| s.digest),
                candidate: state.candidate.map(|s| s.digest),
                stats: per_slot,
                progress: store.as_ref().map_or_else(Default::default, |s| {
                    super::canary::progress(s, env, t.get_ref())
                }),
            });
        }
    }
    out
}
