//! What the workbench shows, read from the store in one go: a `Snapshot`.
//! Loading does I/O and runs on a blocking thread, never in the view; the
//! view only ever holds the last snapshot.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::config::{Config, TargetKind};
use crate::domain::Digest;
use crate::engine::EngineError;
pub use crate::engine::lanes::{Cell, Health, Lane, Live};
use crate::gates::freeze::Window;
use crate::store::{CapsuleFilter, CapsuleRow, PromotionRow, StepRow};
use crate::workflow::Workflow;
use crate::workspace::Workspace;

/// How many capsules a history page holds.
pub const PAGE: usize = 200;
/// How many recent promotions are kept with their steps.
pub const RECENT: usize = 30;

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub workspace: String,
    pub lanes: Vec<Lane>,
    pub apps: Vec<String>,
    /// Newest first.
    pub promotions: Vec<RunInfo>,
    /// Newest first, one page.
    pub capsules: Vec<CapsuleRow>,
    pub capsule_count: i64,
    /// Per app: every resolution (tag → digest), newest first, with the
    /// evidence attached to each digest.
    pub releases: Vec<AppReleases>,
    pub freeze: Vec<(String, Window)>,
    pub data_version: i64,
}

#[derive(Debug, Clone)]
pub struct RunInfo {
    pub promotion: PromotionRow,
    pub capsule: Option<i64>,
    /// The DAG: step ids in template order with their needs.
    pub graph: Vec<(String, Vec<String>)>,
    pub critical_path: Vec<String>,
    pub steps: Vec<StepRow>,
}

#[derive(Debug, Clone)]
pub struct AppReleases {
    pub app: String,
    pub releases: Vec<ReleaseInfo>,
}

#[derive(Debug, Clone)]
pub struct ReleaseInfo {
    pub digest: Digest,
    pub tags: Vec<String>,
    pub resolved_at: DateTime<Utc>,
    /// (kind, media type, digest) of each attached blob.
    pub evidence: Vec<(String, String, Digest)>,
}

/// Reads everything the screens show.
pub fn load(ws: &Workspace, config: &Config, now: DateTime<Utc>) -> Result<Snapshot, EngineError> {
    let store = ws.open_store()?;
    let apps: Vec<String> = config.apps.keys().cloned().collect();
    let mut resolutions = BTreeMap::new();
    for app in &apps {
        resolutions.insert(app.clone(), store.resolutions(Some(app))?);
    }
    let lanes = crate::engine::lanes::lanes(&store, config, &resolutions, now)?;

    let mut workflows: BTreeMap<String, Option<Workflow>> = BTreeMap::new();
    let mut promotions = Vec::new();
    for p in store.recent_promotions(None, None, RECENT)? {
        let wf = workflows.entry(p.environment.clone()).or_insert_with(|| {
            let env = config.environment(&p.environment)?;
            match &env.workflow {
                Some(w) => Workflow::load(&config.root.join(w.get_ref())).ok(),
                None => Some(crate::engine::run::default_workflow()),
            }
        });
        let (graph, critical_path) = wf.as_ref().map_or_else(Default::default, |w| {
            (
                w.steps
                    .iter()
                    .map(|s| (s.id.clone(), s.needs.clone()))
                    .collect(),
                w.critical_path.clone(),
            )
        });
        let steps = match p.run_id {
            Some(r) => store.steps(r)?,
            None => vec![],
        };
        let capsule = store.capsule_of_promotion(p.id)?.map(|c| c.id);
        promotions.push(RunInfo {
            promotion: p,
            capsule,
            graph,
            critical_path,
            steps,
        });
    }

    let mut releases = Vec::new();
    for app in &apps {
        let mut by_digest: Vec<ReleaseInfo> = Vec::new();
        for r in resolutions[app].iter().rev() {
            match by_digest.iter_mut().find(|x| x.digest == r.digest) {
                Some(x) => {
                    if let Some(t) = &r.tag
                        && !x.tags.contains(t)
                    {
                        x.tags.push(t.clone());
                    }
                }
                None => by_digest.push(ReleaseInfo {
                    digest: r.digest.clone(),
                    tags: r.tag.iter().cloned().collect(),
                    resolved_at: r.resolved_at,
                    evidence: vec![],
                }),
            }
        }
        for r in &mut by_digest {
            r.evidence = store
                .evidence_for(&r.digest)?
                .into_iter()
                .map(|e| (e.kind, e.media_type, e.digest))
                .collect();
        }
        releases.push(AppReleases {
            app: app.clone(),
            releases: by_digest,
        });
    }

    let freeze = config
        .freeze
        .iter()
        .filter_map(|(n, c)| Window::from_config(n, c).ok().map(|w| (n.clone(), w)))
        .collect();

    Ok(Snapshot {
        workspace: config.name.clone(),
        lanes,
        apps,
        promotions,
        capsules: store.capsules_page(&CapsuleFilter::default(), PAGE)?,
        capsule_count: store.capsule_count()?,
        releases,
        freeze,
        data_version: store.data_version()?,
    })
}

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
    pub stats: (
        crate::deploy::router::SlotStats,
        crate::deploy::router::SlotStats,
    ),
    pub progress: crate::deploy::routed::Progress,
}

/// Every environment's router targets.
pub fn load_rollouts(config: &Config) -> Vec<RolloutInfo> {
    use crate::deploy::routed;
    let mut out = Vec::new();
    for (env, cfg) in &config.environments {
        for t in &cfg.targets {
            let Some(target) = config.targets.get(t.get_ref()) else {
                continue;
            };
            if !target.kind.is_routed() {
                continue;
            }
            let dir = routed::state_dir(&config.root, t.get_ref());
            let state = routed::read_state(&dir).unwrap_or_default();
            let stats = routed::read_stats(&dir);
            let per_slot = (
                stats.held(&state, crate::deploy::router::Slot::Stable),
                stats.held(&state, crate::deploy::router::Slot::Candidate),
            );
            out.push(RolloutInfo {
                env: env.clone(),
                target: t.get_ref().clone(),
                router: if target.kind == TargetKind::Nginx {
                    "nginx"
                } else {
                    "built-in router"
                },
                running: routed::running_pid(&dir).is_some(),
                weight: state.weight,
                stable: state.stable.map(|s| s.digest),
                candidate: state.candidate.map(|s| s.digest),
                stats: per_slot,
                progress: routed::read_progress(&dir),
            });
        }
    }
    out
}
