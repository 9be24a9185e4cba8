//! The workbench's state and the reducers that fold messages into it.
//! Reducers never do I/O: what needs the world comes back as `Effect`s,
//! run by the app loop, whose answers return as messages. A blocked gate
//! or a failed step is data here, never an error.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};

use super::action::Screen;
use super::data::{RunInfo, Snapshot};
use super::keymap::Keymap;
use super::theme::{Role, Theme, outcome_role};
use crate::capsule::statement::Statement;
use crate::domain::{Decision, Digest, PromotionOutcome, PromotionState, RunState, Verdict};
use crate::engine::{EngineEvent, EventKind, Ticket};
use crate::workflow::executor::StepState;

/// Work the app loop does for the reducers.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Promote {
        app: String,
        digest: Digest,
        tag: Option<String>,
        to: String,
    },
    Rollback {
        app: String,
        env: String,
        to: Digest,
    },
    Approve {
        app: String,
        digest: Digest,
        env: String,
    },
    /// Lift the pin a rollback holds on an app in an environment.
    Unpin {
        app: String,
        env: String,
    },
    Gates(GateRequest),
    LoadCapsule(i64),
    Verify(Vec<i64>),
    Replay(i64),
    Export(i64),
    Pause(i64),
    Resume(i64),
    Abort(i64),
    LoadLog(Digest),
    SetTheme(String),
    Reload,
    LoadRollouts,
    /// Evaluate what waits to come into each lane (the Waiting screen).
    LoadWaiting,
    /// Leave the workbench; what still runs is aborted and sealed on the
    /// way out.
    Quit,
    /// `pause`, `resume`, `abort` or `promote` a target's canary, through
    /// the engine (which takes over a canary whose owner died).
    RolloutControl {
        target: String,
        change: crate::domain::OperatorRequest,
    },
    /// An A/B test ended, the winner (`b`: the new release) taking all
    /// traffic, sealed.
    Consolidate {
        env: String,
        winner_b: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct GateRequest {
    pub app: String,
    pub digest: Digest,
    pub tag: Option<String>,
    pub env: String,
    /// `None`: now.
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct GateResult {
    pub request: GateRequest,
    pub evaluated_at: DateTime<Utc>,
    pub outcome: Result<(Decision, Vec<Verdict>), String>,
    /// Every finding of the release's scans, judged as the security gate
    /// judges them.
    pub findings: Vec<FindingView>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FindingView {
    pub id: String,
    pub package: String,
    pub version: Option<String>,
    pub severity: String,
    /// `None`: reachable (counted); otherwise what suppressed it or made
    /// it not applicable.
    pub excused: Option<String>,
}

/// A capsule's decoded contents.
#[derive(Debug, Clone)]
pub struct CapsuleDetail {
    pub id: i64,
    pub statement: Result<Statement, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verification {
    Valid,
    Invalid(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReplayState {
    Running,
    Identical,
    Differs(Vec<String>),
    Failed(String),
}

/// Messages into the workbench.
#[derive(Debug, Clone)]
pub enum Msg {
    Action(super::action::Action),
    Engine(EngineEvent),
    Snapshot(Box<Snapshot>),
    Gates(Box<GateResult>),
    Capsule(Box<CapsuleDetail>),
    Verified(i64, Verification),
    Replayed(i64, ReplayState),
    Log(Digest, String),
    Rollouts(Vec<super::data::RolloutInfo>),
    Waiting(Result<crate::engine::waiting::Overview, String>),
    /// An effect finished: what to say in the status line.
    Status(String),
    Error(String),
    Tick(DateTime<Utc>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Command,
    Filter,
    Time,
}

/// Layers over the screen; keys go to the top one first.
#[derive(Debug, Clone)]
pub enum Layer {
    Help {
        scroll: u16,
    },
    /// A destructive action waits for `y`.
    Confirm {
        title: String,
        lines: Vec<String>,
        effect: Effect,
    },
    Promote {
        request: GateRequest,
        preview: Option<GateResult>,
    },
    Rollback {
        app: String,
        env: String,
        choices: Vec<RollbackChoice>,
        sel: usize,
        /// `enter` was pressed once on a release a rollback took out: the
        /// next `enter` goes on to the confirmation.
        armed: bool,
    },
    Input {
        kind: InputKind,
        text: String,
    },
}

/// A release the rollback picker offers.
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackChoice {
    pub digest: Digest,
    /// When it went live in the lane (its latest time).
    pub since: DateTime<Utc>,
    /// When a rollback took it out of the lane, if one did: it is offered
    /// last, marked, and asked for twice.
    pub taken_out: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepLive {
    pub state: StepState,
    pub attempts: u32,
    pub duration: Option<Duration>,
    pub error: Option<String>,
}

/// A run this process watches through engine events.
#[derive(Debug, Clone)]
pub struct LiveRun {
    pub id: i64,
    pub app: String,
    pub digest: Digest,
    pub env: String,
    pub graph: Vec<(String, Vec<String>)>,
    /// As the engine computed it from the template (never here).
    pub critical: Vec<String>,
    pub steps: BTreeMap<String, StepLive>,
    pub logs: BTreeMap<String, Vec<String>>,
    pub paused: bool,
    pub finished: Option<bool>,
    pub outcome: Option<PromotionOutcome>,
    pub capsule: Option<(i64, PathBuf)>,
    pub switched: Vec<String>,
}

/// A step as the Promotion screen draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub id: String,
    pub needs: Vec<String>,
    pub state: StepState,
    pub attempts: u32,
    pub duration: Option<Duration>,
    pub error: Option<String>,
    pub log_digest: Option<String>,
}

/// A run, live or from the store, as the Promotion screen draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    pub id: i64,
    pub app: String,
    pub digest: String,
    pub env: String,
    pub state: RunStatus,
    pub nodes: Vec<NodeView>,
    pub critical: Vec<String>,
    pub live: bool,
    pub paused: bool,
    /// The capsule that sealed how it ended, once sealed.
    pub capsule: Option<i64>,
}

/// Where a promotion stands, as every screen shows it: its outcome once
/// decided, else its run's state (or the promotion's, with no run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Ended(PromotionOutcome),
    /// The run is over; its capsule is being sealed.
    Sealing,
    Run(RunState),
    Promotion(PromotionState),
}

impl RunStatus {
    /// A stored promotion's.
    pub fn of(p: &crate::store::PromotionRow) -> RunStatus {
        match (p.outcome, p.run_state) {
            (Some(o), _) => RunStatus::Ended(o),
            (None, Some(r)) => RunStatus::Run(r),
            (None, None) => RunStatus::Promotion(p.state),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ended(o) => o.as_str(),
            RunStatus::Sealing => "sealing",
            RunStatus::Run(r) => r.as_str(),
            RunStatus::Promotion(p) => p.as_str(),
        }
    }

    /// The role it is drawn in, the same on every screen.
    pub fn role(self) -> Role {
        match self {
            RunStatus::Ended(o) => outcome_role(o),
            RunStatus::Sealing
            | RunStatus::Run(RunState::Running)
            | RunStatus::Promotion(PromotionState::Running) => Role::StepRunning,
            RunStatus::Run(RunState::Paused) => Role::GateWarn,
            RunStatus::Run(RunState::Succeeded) | RunStatus::Promotion(PromotionState::Decided) => {
                Role::StepDone
            }
            RunStatus::Run(RunState::Cancelled) => Role::GateBlocked,
            RunStatus::Run(RunState::Failed | RunState::Interrupted)
            | RunStatus::Promotion(PromotionState::Interrupted) => Role::StepFailed,
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Status {
    pub text: String,
    pub error: bool,
    /// The run and the pause state the text speaks of: a snapshot that
    /// shows the run otherwise (resumed or ended from another process)
    /// replaces the text, so it never goes stale.
    pub run: Option<(i64, bool)>,
}

pub struct App {
    pub screen: Screen,
    pub snap: Snapshot,
    pub now: DateTime<Utc>,
    /// The user's time zone (injected, so tests are stable).
    pub local: FixedOffset,
    pub keymap: Keymap,
    pub theme: Theme,
    pub layers: Vec<Layer>,
    pub status: Option<Status>,
    pub quit: bool,
    /// Selection on the Lanes screen: (lane, app).
    pub lane: usize,
    pub cell: usize,
    pub live: BTreeMap<i64, LiveRun>,
    /// Tickets of promotions this workbench asked for.
    pub asked: BTreeMap<Ticket, String>,
    pub run: Option<i64>,
    pub step: usize,
    pub logs: HashMap<Digest, String>,
    pub gates: Option<GateResult>,
    pub gates_at: Option<DateTime<Utc>>,
    pub month: NaiveDate,
    pub freeze_env: usize,
    pub capsule: usize,
    pub filter: String,
    pub detail: Option<CapsuleDetail>,
    pub detail_scroll: u16,
    pub verified: HashMap<i64, Verification>,
    pub replays: HashMap<i64, ReplayState>,
    pub rel_app: usize,
    pub rel: usize,
    /// Where the last history request is: don't ask twice.
    pub loading_capsule: Option<i64>,
    pub rollouts: Vec<super::data::RolloutInfo>,
    /// What waits to come into each lane, as last evaluated (and when).
    pub waiting: Option<Result<crate::engine::waiting::Overview, String>>,
    pub waiting_at: Option<DateTime<Utc>>,
    pub rollout: usize,
    /// Per target: the last minute of (stable, candidate) error rate and
    /// p95, one point per refresh, for the sparklines.
    pub rollout_history: HashMap<String, std::collections::VecDeque<[f64; 4]>>,
    /// When each target's history points were taken, oldest first.
    pub rollout_times: HashMap<String, std::collections::VecDeque<DateTime<Utc>>>,
    /// The terminal's size as last seen (columns, rows); `None` until the
    /// loop has looked.
    pub size: Option<(u16, u16)>,
    /// Capsules' statements read for the Promotion screen (why a run was
    /// blocked or failed), by capsule id; a few dozen at most.
    pub statements: HashMap<i64, Result<Statement, String>>,
    /// How far the Gates screen and the Freeze screen's windows are
    /// scrolled (j/k); back to the top on another screen.
    pub scroll: u16,
}

impl App {
    pub fn new(
        snap: Snapshot,
        now: DateTime<Utc>,
        local: FixedOffset,
        keymap: Keymap,
        theme: Theme,
    ) -> App {
        let status = (!theme.warnings.is_empty()).then(|| Status {
            text: format!("theme: {}", theme.warnings.join("; ")),
            error: true,
            run: None,
        });
        // The calendar opens on the first lane that can be frozen.
        let freeze_env = snap
            .lanes
            .iter()
            .position(|l| !l.freeze_windows.is_empty())
            .unwrap_or(0);
        App {
            screen: Screen::Lanes,
            snap,
            now,
            local,
            month: crate::gates::calendar::month_of(now, &local),
            keymap,
            theme,
            layers: vec![],
            status,
            quit: false,
            lane: 0,
            cell: 0,
            live: BTreeMap::new(),
            asked: BTreeMap::new(),
            run: None,
            step: 0,
            logs: HashMap::new(),
            gates: None,
            gates_at: None,
            freeze_env,
            capsule: 0,
            filter: String::new(),
            detail: None,
            detail_scroll: 0,
            verified: HashMap::new(),
            replays: HashMap::new(),
            rel_app: 0,
            rel: 0,
            loading_capsule: None,
            rollouts: vec![],
            waiting: None,
            waiting_at: None,
            rollout: 0,
            rollout_history: HashMap::new(),
            rollout_times: HashMap::new(),
            size: None,
            statements: HashMap::new(),
            scroll: 0,
        }
    }

    /// Whether the terminal is smaller than the workbench draws in: then
    /// only quitting (and answering its question) acts.
    pub fn too_small(&self) -> bool {
        self.size
            .is_some_and(|(w, h)| w < super::views::MIN_WIDTH || h < super::views::MIN_HEIGHT)
    }

    /// The pin a rollback holds on `app` in `env`, if any.
    pub fn pin_of(&self, env: &str, app: &str) -> Option<&crate::store::Pin> {
        self.snap
            .lanes
            .iter()
            .find(|l| l.env == env)?
            .cells
            .iter()
            .find(|c| c.app == app)?
            .pin
            .as_ref()
    }

    pub fn say(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: false,
            run: None,
        });
    }

    pub fn complain(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: true,
            run: None,
        });
    }

    /// A word about run `id` being paused (or running): kept only while
    /// the run stays so (see `refresh_status`).
    pub fn say_run(&mut self, id: i64, paused: bool, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: false,
            run: Some((id, paused)),
        });
    }

    /// After a new snapshot: a status line about a run's pause that the
    /// store now contradicts (resumed, paused or ended by another
    /// process) is replaced by what the store says.
    pub fn refresh_status(&mut self) {
        let Some((id, paused)) = self.status.as_ref().and_then(|s| s.run) else {
            return;
        };
        // A run this process drives says so by its own events.
        if self.live.get(&id).is_some_and(|r| r.finished.is_none()) {
            return;
        }
        let Some(p) = self
            .snap
            .promotions
            .iter()
            .map(|r| &r.promotion)
            .find(|p| p.id == id)
        else {
            return;
        };
        let status = RunStatus::of(p);
        if p.state != PromotionState::Running {
            self.say(format!("promotion #{id} ended: {status}"));
            return;
        }
        let now_paused = p.run_state == Some(RunState::Paused);
        if now_paused != paused {
            self.say_run(
                id,
                now_paused,
                format!(
                    "promotion #{id} {} (by another process)",
                    if now_paused { "paused" } else { "resumed" }
                ),
            );
        }
    }

    /// The lane that promotes from lane `i`, if any.
    pub fn next_lane(&self, i: usize) -> Option<usize> {
        let env = &self.snap.lanes.get(i)?.env;
        self.snap
            .lanes
            .iter()
            .position(|l| l.from.as_ref() == Some(env))
    }

    /// The release selected on the Lanes screen and where it would go.
    pub fn selected_request(&self) -> Option<GateRequest> {
        let lane = self.snap.lanes.get(self.lane)?;
        let cell = lane.cells.get(self.cell)?;
        let live = cell.live.as_ref()?;
        let next = self.next_lane(self.lane)?;
        Some(GateRequest {
            app: cell.app.clone(),
            digest: live.digest.clone(),
            tag: live.tag.clone(),
            env: self.snap.lanes[next].env.clone(),
            at: self.gates_at,
        })
    }

    /// Capsules passing the `/` filter: every word must match the app,
    /// environment, action, decision, outcome or digest of a capsule.
    pub fn filtered_capsules(&self) -> Vec<&crate::store::CapsuleRow> {
        let words: Vec<String> = self
            .filter
            .split_whitespace()
            .map(|w| w.to_ascii_lowercase())
            .collect();
        self.snap
            .capsules
            .iter()
            .filter(|c| {
                words.iter().all(|w| {
                    let w = w.trim_start_matches("sha256:");
                    c.app.contains(w)
                        || c.environment.contains(w)
                        || c.action.contains(w)
                        || c.decision.contains(w)
                        || c.outcome.is_some_and(|o| o.as_str().contains(w))
                        || c.digest.hex().starts_with(w)
                })
            })
            .collect()
    }

    /// Promotions the Promotion screen can show, newest first: live ones
    /// this process drives, then the store's.
    pub fn run_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.live.keys().copied().collect();
        ids.extend(self.snap.promotions.iter().map(|p| p.promotion.id));
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.dedup();
        ids
    }

    pub fn run_view(&self, id: i64) -> Option<RunView> {
        let stored = self.snap.promotions.iter().find(|p| p.promotion.id == id);
        if let Some(l) = self.live.get(&id) {
            let critical = stored
                .map(|s| s.critical_path.clone())
                .unwrap_or_else(|| l.critical.clone());
            let nodes = l
                .graph
                .iter()
                .map(|(step, needs)| {
                    let s = l.steps.get(step);
                    NodeView {
                        id: step.clone(),
                        needs: needs.clone(),
                        state: s.map_or(StepState::Pending, |s| s.state),
                        attempts: s.map_or(0, |s| s.attempts),
                        duration: s.and_then(|s| s.duration),
                        error: s.and_then(|s| s.error.clone()),
                        log_digest: None,
                    }
                })
                .collect();
            let state = match (l.outcome, l.finished, l.paused) {
                (Some(o), _, _) => RunStatus::Ended(o),
                (None, Some(true), _) => RunStatus::Sealing,
                (None, Some(false), _) => RunStatus::Run(RunState::Failed),
                (None, None, true) => RunStatus::Run(RunState::Paused),
                (None, None, false) => RunStatus::Run(RunState::Running),
            };
            return Some(RunView {
                id,
                app: l.app.clone(),
                digest: l.digest.to_string(),
                env: l.env.clone(),
                state,
                nodes,
                critical,
                live: l.finished.is_none(),
                paused: l.paused,
                capsule: l
                    .capsule
                    .as_ref()
                    .map(|c| c.0)
                    .or(stored.and_then(|s| s.capsule)),
            });
        }
        stored.map(run_view_of)
    }
}

fn run_view_of(r: &RunInfo) -> RunView {
    let p = &r.promotion;
    let nodes = r
        .graph
        .iter()
        .map(|(step, needs)| {
            let rows: Vec<&crate::store::StepRow> =
                r.steps.iter().filter(|s| s.step == *step).collect();
            let last = rows.last();
            NodeView {
                id: step.clone(),
                needs: needs.clone(),
                state: last.map_or(StepState::Pending, |s| s.state),
                attempts: last.map_or(0, |s| s.attempt as u32),
                duration: last.and_then(|s| {
                    Some(
                        (s.finished_at? - rows.first()?.started_at?)
                            .to_std()
                            .unwrap_or_default(),
                    )
                }),
                error: None,
                log_digest: last.and_then(|s| s.log_digest.clone()),
            }
        })
        .collect();
    RunView {
        id: p.id,
        app: p.app.clone(),
        digest: p.digest.clone(),
        env: p.environment.clone(),
        state: RunStatus::of(p),
        nodes,
        critical: r.critical_path.clone(),
        live: false,
        paused: p.run_state == Some(RunState::Paused),
        capsule: r.capsule,
    }
}

/// Why a run ended as it did, from its sealed capsule: the blocking
/// gates' summaries, reasons and what unblocks them, or the failure the
/// engine recorded. Empty for a run that went as asked, or whose capsule
/// is not read yet (`None`: ask for it).
pub fn why(app: &App, v: &RunView) -> Option<Vec<(String, Role)>> {
    let RunStatus::Ended(outcome) = v.state else {
        return Some(vec![]);
    };
    if outcome.succeeded() {
        return Some(vec![]);
    }
    let Some(id) = v.capsule else {
        return Some(vec![]);
    };
    let st = match app.statements.get(&id)? {
        Ok(st) => st,
        Err(e) => {
            return Some(vec![(
                format!("capsule #{id} cannot be read: {e}"),
                Role::StatusError,
            )]);
        }
    };
    let p = &st.predicate;
    let mut out = Vec::new();
    let blocking: Vec<&Verdict> = p.gates.iter().filter(|g| g.blocks()).collect();
    if p.decision == Decision::Deny {
        let by = blocking
            .iter()
            .map(|g| g.gate.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        out.push((
            if by.is_empty() {
                format!("blocked (capsule #{id}); no step ran")
            } else {
                format!("blocked by {by} (capsule #{id}); no step ran")
            },
            Role::GateBlocked,
        ));
        if let Some(reason) = &p.reason {
            out.push((format!("  {reason}"), Role::Text));
        }
        for g in &blocking {
            out.push((
                format!("  {}: {}", g.gate.as_str(), g.summary),
                Role::GateBlocked,
            ));
            for r in g.reasons.iter().take(3) {
                out.push((format!("    {r}"), Role::Text));
            }
            for u in &g.unblock {
                out.push((format!("    unblock: {u}"), Role::GateWarn));
            }
        }
    }
    if let Some(reason) = &p.reason
        && p.decision != Decision::Deny
    {
        out.push((format!("{outcome}: {reason}"), outcome_role(outcome)));
    }
    if out.is_empty() {
        out.push((
            format!("{outcome}; capsule #{id} says no more"),
            outcome_role(outcome),
        ));
    }
    Some(out)
}

/// Layers of a DAG: each step one column after the deepest step it needs.
pub fn layers(graph: &[(String, Vec<String>)]) -> Vec<Vec<usize>> {
    let index: HashMap<&str, usize> = graph
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.as_str(), i))
        .collect();
    let mut depth = vec![0usize; graph.len()];
    // Templates list steps in an order their needs allow (validated), but
    // be safe with any order: relax until stable, at most n rounds.
    for _ in 0..graph.len() {
        let mut changed = false;
        for (i, (_, needs)) in graph.iter().enumerate() {
            let d = needs
                .iter()
                .filter_map(|n| index.get(n.as_str()))
                .map(|&j| depth[j] + 1)
                .max()
                .unwrap_or(0);
            if d > depth[i] {
                depth[i] = d;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut out = vec![Vec::new(); depth.iter().max().map_or(0, |m| m + 1)];
    for (i, d) in depth.into_iter().enumerate() {
        out[d].push(i);
    }
    out
}

/// Folds an engine event into the live runs. Pure.
pub fn reduce_engine(app: &mut App, ev: EngineEvent) -> Vec<Effect> {
    let mut effects = Vec::new();
    match ev.kind {
        EventKind::PromotionCreated {
            promotion_id,
            app: a,
            digest,
            environment,
            steps,
            critical_path,
            ..
        } => {
            app.live.insert(
                promotion_id,
                LiveRun {
                    id: promotion_id,
                    app: a,
                    digest,
                    env: environment,
                    graph: steps,
                    critical: critical_path,
                    steps: BTreeMap::new(),
                    logs: BTreeMap::new(),
                    paused: false,
                    finished: None,
                    outcome: None,
                    capsule: None,
                    switched: vec![],
                },
            );
            // A promotion asked for here opens on the Promotion screen.
            if app.asked.remove(&ev.ticket).is_some() {
                app.screen = Screen::Promotion;
                app.run = Some(promotion_id);
                app.step = 0;
            }
        }
        EventKind::StepStarted {
            promotion_id,
            step,
            attempt,
        } => {
            if let Some(r) = app.live.get_mut(&promotion_id) {
                r.steps.insert(
                    step,
                    StepLive {
                        state: StepState::Running,
                        attempts: attempt,
                        duration: None,
                        error: None,
                    },
                );
            }
        }
        EventKind::StepLog {
            promotion_id,
            step,
            line,
        } => {
            if let Some(r) = app.live.get_mut(&promotion_id) {
                let log = r.logs.entry(step).or_default();
                // A tail is what a person reads; keep the last 500 lines.
                if log.len() >= 500 {
                    log.remove(0);
                }
                log.push(line);
            }
        }
        EventKind::StepFinished {
            promotion_id,
            step,
            state,
            attempts,
            duration,
            error,
        } => {
            if let Some(r) = app.live.get_mut(&promotion_id) {
                r.steps.insert(
                    step,
                    StepLive {
                        state,
                        attempts,
                        duration: Some(duration),
                        error,
                    },
                );
            }
        }
        EventKind::TargetSwitched {
            promotion_id,
            detail,
        } => {
            if let Some(r) = app.live.get_mut(&promotion_id) {
                r.switched.push(detail);
            }
        }
        EventKind::RunFinished {
            promotion_id, ok, ..
        } => {
            if let Some(r) = app.live.get_mut(&promotion_id) {
                r.finished = Some(ok);
            }
        }
        EventKind::Paused { promotion_id } | EventKind::Resumed { promotion_id } => {
            let paused = matches!(ev.kind, EventKind::Paused { .. });
            if let Some(r) = app.live.get_mut(&promotion_id) {
                r.paused = paused;
            }
            app.say_run(
                promotion_id,
                paused,
                format!(
                    "promotion #{promotion_id} {}",
                    if paused { "paused" } else { "resumed" }
                ),
            );
        }
        EventKind::Aborting { promotion_id } => {
            app.say(format!(
                "aborting promotion #{promotion_id}: the previous release goes back"
            ));
        }
        EventKind::CapsuleSealed {
            promotion_id,
            capsule_id,
            outcome,
            path,
        } => {
            if let Some(r) = app.live.get_mut(&promotion_id) {
                r.outcome = Some(outcome);
                r.finished.get_or_insert(true);
                r.capsule = Some((capsule_id, path.clone()));
            }
            app.say(format!(
                "promotion #{promotion_id}: {outcome}; capsule #{capsule_id} sealed ({})",
                path.display()
            ));
            effects.push(Effect::Reload);
        }
        EventKind::GatesEvaluated {
            decision: Decision::Deny,
            app: a,
            environment,
            ..
        } if app.asked.remove(&ev.ticket).is_some() => {
            app.complain(format!(
                "{a} → {environment}: blocked by a gate; the decision is sealed"
            ));
        }
        EventKind::Failed { error } => {
            app.asked.remove(&ev.ticket);
            app.complain(match &error.hint {
                Some(h) => format!("{error} — {h}"),
                None => error.to_string(),
            });
        }
        EventKind::Note(n) => app.say(n),
        EventKind::CapsuleAttachFailed {
            capsule_id,
            image,
            error,
            ..
        } => app.complain(format!(
            "capsule #{capsule_id} not attached to {image}: {error} — the decision stands; `stella capsule push --pending` retries"
        )),
        EventKind::CapsuleAttached {
            capsule_id, image, ..
        } => app.say(format!("capsule #{capsule_id} attached to {image}")),
        _ => {}
    }
    effects
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        edges
            .iter()
            .map(|(s, n)| (s.to_string(), n.iter().map(|x| x.to_string()).collect()))
            .collect()
    }

    #[test]
    fn layers_put_each_step_after_its_deepest_need() {
        let g = graph(&[
            ("resolve", &[]),
            ("a", &["resolve"]),
            ("b", &["resolve"]),
            ("slow", &["resolve"]),
            ("deploy", &["a", "b", "slow"]),
            ("smoke", &["deploy"]),
        ]);
        assert_eq!(layers(&g), vec![vec![0], vec![1, 2, 3], vec![4], vec![5]]);
    }
}
