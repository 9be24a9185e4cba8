//! Keys and messages → state changes and effects. Keys go to the top
//! layer first; only an unconsumed key reaches the screen.

use chrono::{DateTime, Utc};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::action::{Action, Screen};
use super::keymap::Key;
use super::state::{
    App, Effect, GateRequest, InputKind, Layer, Msg, ReplayState, RollbackChoice, reduce_engine,
};
use crate::domain::{CanaryPhase, OperatorRequest, PromotionState, RunState};
use crate::engine::rules::{self, CanaryChange, RolloutRollback};

/// How often the Waiting screen is evaluated again while open, in seconds.
const WAITING_EVERY: i64 = 15;

/// Commands the `:` line knows, for completion.
pub const COMMANDS: &[&str] = &[
    "lanes",
    "promotion",
    "gates",
    "freeze",
    "capsules",
    "releases",
    "help",
    "quit",
    "q",
    "theme dark",
    "theme light",
    "theme high-contrast",
    "at ",
    "now",
];

pub fn reduce(app: &mut App, msg: Msg) -> Vec<Effect> {
    match msg {
        Msg::Action(a) => act(app, a),
        Msg::Engine(ev) => reduce_engine(app, ev),
        Msg::Snapshot(s) => {
            app.snap = *s;
            clamp(app);
            app.refresh_status();
            let mut fx = Vec::new();
            if app.screen == Screen::Capsules {
                fx.extend(capsule_effects(app));
            }
            if app.screen == Screen::Promotion {
                fx.extend(log_effect(app));
            }
            fx
        }
        Msg::Gates(g) => {
            for l in app.layers.iter_mut() {
                if let Layer::Promote { request, preview } = l
                    && same_release(request, &g.request)
                {
                    *preview = Some((*g).clone());
                }
            }
            app.gates = Some(*g);
            vec![]
        }
        Msg::Capsule(d) => {
            if app.loading_capsule == Some(d.id) {
                app.loading_capsule = None;
            }
            if app.statements.len() >= 64 {
                app.statements.clear();
            }
            app.statements.insert(d.id, d.statement.clone());
            app.detail = Some(*d);
            vec![]
        }
        Msg::Verified(id, v) => {
            app.verified.insert(id, v);
            vec![]
        }
        Msg::Replayed(id, r) => {
            app.say(match &r {
                ReplayState::Identical => format!("capsule #{id} replays identically"),
                ReplayState::Differs(d) => {
                    format!("capsule #{id} replays with {} differences", d.len())
                }
                ReplayState::Failed(e) => format!("capsule #{id} cannot be replayed: {e}"),
                ReplayState::Running => format!("replaying capsule #{id}…"),
            });
            app.replays.insert(id, r);
            vec![]
        }
        Msg::Log(d, text) => {
            app.logs.insert(d, text);
            vec![]
        }
        Msg::Status(s) => {
            app.say(s);
            vec![Effect::Reload]
        }
        Msg::Error(e) => {
            app.complain(e);
            vec![]
        }
        Msg::Tick(now) => {
            app.now = now;
            if app.screen == Screen::Rollout {
                vec![Effect::LoadRollouts]
            } else if app.screen == Screen::Waiting
                && app
                    .waiting_at
                    .is_none_or(|t| now - t >= chrono::TimeDelta::seconds(WAITING_EVERY))
            {
                // Soaks end and freezes lift by themselves: evaluated
                // again now and then while the screen is open.
                app.waiting_at = Some(now);
                vec![Effect::LoadWaiting]
            } else {
                vec![]
            }
        }
        Msg::Waiting(w) => {
            app.waiting = Some(w);
            vec![]
        }
        Msg::Rollouts(list) => {
            for r in &list {
                let prev = app.rollouts.iter().find(|p| p.target == r.target);
                let point = match prev {
                    Some(p) => {
                        let (s, c) = (r.stats.0.since(&p.stats.0), r.stats.1.since(&p.stats.1));
                        [s.error_rate(), c.error_rate(), s.p95_ms, c.p95_ms]
                    }
                    None => [0.0; 4],
                };
                let h = app.rollout_history.entry(r.target.clone()).or_default();
                let times = app.rollout_times.entry(r.target.clone()).or_default();
                if h.len() >= 60 {
                    h.pop_front();
                    times.pop_front();
                }
                h.push_back(point);
                times.push_back(app.now);
            }
            app.rollouts = list;
            app.rollout = app.rollout.min(app.rollouts.len().saturating_sub(1));
            vec![]
        }
    }
}

fn same_release(a: &GateRequest, b: &GateRequest) -> bool {
    a.app == b.app && a.digest == b.digest && a.env == b.env
}

/// Keeps selections inside what the snapshot holds.
fn clamp(app: &mut App) {
    let lanes = app.snap.lanes.len();
    app.lane = app.lane.min(lanes.saturating_sub(1));
    app.cell = app.cell.min(app.snap.apps.len().saturating_sub(1));
    let n = app.filtered_capsules().len();
    app.capsule = app.capsule.min(n.saturating_sub(1));
    app.rel_app = app.rel_app.min(app.snap.releases.len().saturating_sub(1));
}

/// A key, to the top layer or the screen. A key press also dismisses the
/// last status message, so the hint line comes back.
pub fn key(app: &mut App, ev: KeyEvent) -> Vec<Effect> {
    // On the "too small" screen nothing is seen, so nothing acts but
    // quitting: its key, and the answer to its question (work in flight).
    if app.too_small() {
        let quitting = matches!(
            app.layers.last(),
            Some(Layer::Confirm {
                effect: Effect::Quit,
                ..
            })
        );
        if !quitting {
            let k = Key::of(&ev);
            return match app.keymap.lookup(app.screen.name(), k) {
                Some(Action::Quit) => act(app, Action::Quit),
                _ => vec![],
            };
        }
    }
    app.status = None;
    if let Some(top) = app.layers.last_mut() {
        match top {
            Layer::Input { kind, text } => {
                let kind = *kind;
                match ev.code {
                    KeyCode::Esc => {
                        app.layers.pop();
                        if kind == InputKind::Filter {
                            app.filter.clear();
                        }
                    }
                    KeyCode::Enter => {
                        let text = text.clone();
                        app.layers.pop();
                        return submit(app, kind, &text);
                    }
                    KeyCode::Backspace => {
                        text.pop();
                        if kind == InputKind::Filter {
                            app.filter = text.clone();
                            app.capsule = 0;
                        }
                    }
                    KeyCode::Tab if kind == InputKind::Command => {
                        if let Some(c) = complete(text) {
                            *text = c;
                        }
                    }
                    KeyCode::Char(c) if !ev.modifiers.contains(KeyModifiers::CONTROL) => {
                        text.push(c);
                        if kind == InputKind::Filter {
                            app.filter = text.clone();
                            app.capsule = 0;
                        }
                    }
                    KeyCode::Char('c') => {
                        app.layers.pop();
                    }
                    _ => {}
                }
                return vec![];
            }
            Layer::Confirm { effect, .. } => {
                return match ev.code {
                    KeyCode::Char('y') | KeyCode::Char('Y') => {
                        let effect = effect.clone();
                        app.layers.pop();
                        vec![effect]
                    }
                    KeyCode::Char('n') | KeyCode::Esc | KeyCode::Char('q') => {
                        app.layers.pop();
                        app.say("cancelled");
                        vec![]
                    }
                    _ => vec![],
                };
            }
            Layer::Help { scroll } => {
                match ev.code {
                    KeyCode::Char('j') | KeyCode::Down => *scroll = scroll.saturating_add(1),
                    KeyCode::Char('k') | KeyCode::Up => *scroll = scroll.saturating_sub(1),
                    KeyCode::PageDown => *scroll = scroll.saturating_add(10),
                    KeyCode::PageUp => *scroll = scroll.saturating_sub(10),
                    KeyCode::Char('q') | KeyCode::Esc | KeyCode::Char('?') => {
                        app.layers.pop();
                    }
                    _ => {}
                }
                return vec![];
            }
            Layer::Promote { request, preview } => {
                return match ev.code {
                    KeyCode::Enter | KeyCode::Char('y') => {
                        let r = request.clone();
                        let blocked = preview.as_ref().is_some_and(|p| {
                            matches!(&p.outcome, Ok((crate::domain::Decision::Deny, _)))
                        });
                        app.layers.pop();
                        if blocked {
                            app.say(format!(
                                "{} → {}: promoting anyway; the gates will block it and the decision is sealed",
                                r.app, r.env
                            ));
                        }
                        vec![Effect::Promote {
                            app: r.app,
                            digest: r.digest,
                            tag: r.tag,
                            to: r.env,
                        }]
                    }
                    KeyCode::Char('a') => {
                        let r = request.clone();
                        vec![Effect::Approve {
                            app: r.app,
                            digest: r.digest,
                            env: r.env,
                        }]
                    }
                    KeyCode::Esc | KeyCode::Char('n') | KeyCode::Char('q') => {
                        app.layers.pop();
                        vec![]
                    }
                    _ => vec![],
                };
            }
            Layer::Rollback {
                app: a,
                env,
                choices,
                sel,
                armed,
            } => {
                match ev.code {
                    KeyCode::Char('j') | KeyCode::Down => {
                        *sel = (*sel + 1).min(choices.len().saturating_sub(1));
                        *armed = false;
                    }
                    KeyCode::Char('k') | KeyCode::Up => {
                        *sel = sel.saturating_sub(1);
                        *armed = false;
                    }
                    KeyCode::Enter => {
                        if let Some(c) = choices.get(*sel) {
                            // A release a rollback took out is asked for
                            // twice: here, then in the confirmation.
                            if c.taken_out.is_some() && !*armed {
                                *armed = true;
                                return vec![];
                            }
                            let (a, env, c) = (a.clone(), env.clone(), c.clone());
                            app.layers.pop();
                            let mut lines = vec![format!("to {}", c.digest)];
                            if let Some(t) = c.taken_out {
                                lines.push(format!(
                                    "WARNING: a rollback took this release out of {env} on {} ({} ago).",
                                    t.format("%Y-%m-%d %H:%M UTC"),
                                    crate::tui::views::age(app.now, t)
                                ));
                            }
                            lines.push("The current release stops serving; the rollback is sealed in a capsule and pins the lane.".into());
                            app.layers.push(Layer::Confirm {
                                title: format!("Roll back {a} in {env}?"),
                                lines,
                                effect: Effect::Rollback {
                                    app: a,
                                    env,
                                    to: c.digest,
                                },
                            });
                        }
                    }
                    KeyCode::Esc | KeyCode::Char('q') => {
                        app.layers.pop();
                    }
                    _ => {}
                }
                return vec![];
            }
        }
    }
    let k = Key::of(&ev);
    match app.keymap.lookup(app.screen.name(), k).cloned() {
        Some(a) => act(app, a),
        None => vec![],
    }
}

fn complete(text: &str) -> Option<String> {
    let matches: Vec<&&str> = COMMANDS.iter().filter(|c| c.starts_with(text)).collect();
    match matches.as_slice() {
        [] => None,
        [one] => Some(one.to_string()),
        many => {
            // The longest common prefix, or the next match after an exact one.
            if let Some(i) = many.iter().position(|c| **c == text) {
                return Some(many[(i + 1) % many.len()].to_string());
            }
            let first = many[0];
            let len = (0..first.len())
                .take_while(|&i| {
                    many.iter()
                        .all(|c| c.as_bytes().get(i) == first.as_bytes().get(i))
                })
                .count();
            Some(first[..len].to_string())
        }
    }
}

/// `+2h`, `-1d`, `+30m`, or an RFC 3339 time; never panics.
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    crate::domain::duration::parse_when(text, now)
}

fn submit(app: &mut App, kind: InputKind, text: &str) -> Vec<Effect> {
    match kind {
        InputKind::Filter => {
            app.filter = text.to_owned();
            app.capsule = 0;
            capsule_effects(app)
        }
        InputKind::Time => match parse_time(text, app.now) {
            Ok(t) => time_travel(app, Some(t)),
            Err(e) => {
                app.complain(e);
                vec![]
            }
        },
        InputKind::Command => {
            let t = text.trim();
            if let Some(s) = Screen::parse(t) {
                return act(app, Action::Screen(s));
            }
            match t.split_once(' ').unwrap_or((t, "")) {
                ("q" | "quit", _) => act(app, Action::Quit),
                ("help", _) => act(app, Action::Help),
                ("now", _) => time_travel(app, None),
                ("at", when) => match parse_time(when, app.now) {
                    Ok(at) => {
                        app.screen = Screen::Gates;
                        time_travel(app, Some(at))
                    }
                    Err(e) => {
                        app.complain(e);
                        vec![]
                    }
                },
                ("theme", name) => vec![Effect::SetTheme(name.trim().to_owned())],
                _ => {
                    app.complain(format!(
                        "`:{t}` is not a command; try :lanes, :capsules, :at +2h, :theme light, :q (tab completes)"
                    ));
                    vec![]
                }
            }
        }
    }
}

fn time_travel(app: &mut App, at: Option<DateTime<Utc>>) -> Vec<Effect> {
    app.gates_at = at;
    match app
        .gates
        .as_ref()
        .map(|g| g.request.clone())
        .or_else(|| app.selected_request())
    {
        Some(mut r) => {
            r.at = at;
            vec![Effect::Gates(r)]
        }
        None => {
            app.complain("select a release on the Lanes screen first");
            vec![]
        }
    }
}

/// What the Capsules screen needs loaded: the selected capsule, and the
/// verification of those in view.
fn capsule_effects(app: &mut App) -> Vec<Effect> {
    let list = app.filtered_capsules();
    let unverified: Vec<i64> = list
        .iter()
        .take(60)
        .map(|c| c.id)
        .filter(|id| !app.verified.contains_key(id))
        .collect();
    let selected = list.get(app.capsule).map(|c| c.id);
    let mut fx = Vec::new();
    if !unverified.is_empty() {
        fx.push(Effect::Verify(unverified));
    }
    if let Some(id) = selected
        && app.detail.as_ref().is_none_or(|d| d.id != id)
        && app.loading_capsule != Some(id)
    {
        app.loading_capsule = Some(id);
        app.detail_scroll = 0;
        fx.push(Effect::LoadCapsule(id));
    }
    fx
}

fn move_sel(sel: &mut usize, len: usize, down: bool) {
    if len == 0 {
        *sel = 0;
    } else if down {
        *sel = (*sel + 1).min(len - 1);
    } else {
        *sel = sel.saturating_sub(1);
    }
}

fn selected_run(app: &App) -> Option<i64> {
    app.run.or_else(|| app.run_ids().first().copied())
}

fn log_effect(app: &App) -> Vec<Effect> {
    let Some(view) = selected_run(app).and_then(|id| app.run_view(id)) else {
        return vec![];
    };
    let mut fx = match view.nodes.get(app.step).and_then(|n| n.log_digest.as_ref()) {
        Some(d) => match d.parse::<crate::domain::Digest>() {
            Ok(d) if !app.logs.contains_key(&d) => vec![Effect::LoadLog(d)],
            _ => vec![],
        },
        None => vec![],
    };
    // A run that was blocked or failed says why: its capsule is read.
    if crate::tui::state::why(app, &view).is_none()
        && let Some(c) = view.capsule
    {
        fx.push(Effect::LoadCapsule(c));
    }
    fx
}

/// What this workbench runs that quitting would stop, one line each.
fn work_in_flight(app: &App) -> Vec<String> {
    let runs = app.live.values().filter(|r| r.finished.is_none()).map(|r| {
        let paused = if r.paused { " (paused)" } else { "" };
        format!("promotion #{}: {} → {}{paused}", r.id, r.app, r.env)
    });
    let asked = app
        .asked
        .values()
        .map(|what| format!("promotion {what}: starting"));
    runs.chain(asked).collect()
}

pub fn act(app: &mut App, a: Action) -> Vec<Effect> {
    match a {
        Action::Quit => {
            // Quitting ends the process, and with it every promotion this
            // workbench runs: with work in flight, it asks first.
            let running = work_in_flight(app);
            if running.is_empty() {
                app.quit = true;
                return vec![];
            }
            let mut lines = running;
            lines.push(
                "Quitting aborts them: running steps are killed, the previous release goes back, and each abort is sealed."
                    .into(),
            );
            app.layers.push(Layer::Confirm {
                title: "Quit with work in flight?".into(),
                lines,
                effect: Effect::Quit,
            });
            vec![]
        }
        Action::Help => {
            app.layers.push(Layer::Help { scroll: 0 });
            vec![]
        }
        Action::Command => {
            app.layers.push(Layer::Input {
                kind: InputKind::Command,
                text: String::new(),
            });
            vec![]
        }
        Action::Filter => {
            if app.screen != Screen::Capsules {
                app.screen = Screen::Capsules;
            }
            // A fresh filter each time: typing never appends to the last.
            app.filter.clear();
            app.capsule = 0;
            app.layers.push(Layer::Input {
                kind: InputKind::Filter,
                text: String::new(),
            });
            vec![]
        }
        Action::Screen(s) => {
            app.screen = s;
            on_enter(app)
        }
        Action::NextScreen | Action::PreviousScreen => {
            let n = Screen::ALL.len();
            let i = app.screen.index();
            let j = if a == Action::NextScreen {
                (i + 1) % n
            } else {
                (i + n - 1) % n
            };
            app.screen = Screen::ALL[j];
            on_enter(app)
        }
        Action::Back => {
            if app.screen == Screen::Capsules && !app.filter.is_empty() {
                app.filter.clear();
                return capsule_effects(app);
            }
            if app.screen != Screen::Lanes {
                app.screen = Screen::Lanes;
            }
            vec![]
        }
        Action::Up | Action::Down => {
            let down = a == Action::Down;
            match app.screen {
                Screen::Lanes => move_sel(&mut app.cell, app.snap.apps.len(), down),
                Screen::Promotion => {
                    let n = selected_run(app)
                        .and_then(|id| app.run_view(id))
                        .map_or(0, |v| v.nodes.len());
                    move_sel(&mut app.step, n, down);
                    return log_effect(app);
                }
                Screen::Capsules => {
                    let n = app.filtered_capsules().len();
                    move_sel(&mut app.capsule, n, down);
                    return capsule_effects(app);
                }
                Screen::Releases => {
                    let n = app
                        .snap
                        .releases
                        .get(app.rel_app)
                        .map_or(0, |r| r.releases.len());
                    move_sel(&mut app.rel, n, down);
                    return release_effects(app);
                }
                Screen::Rollout => move_sel(&mut app.rollout, app.rollouts.len(), down),
                Screen::Gates | Screen::Freeze | Screen::Waiting => {
                    app.scroll = if down {
                        app.scroll.saturating_add(1).min(500)
                    } else {
                        app.scroll.saturating_sub(1)
                    };
                }
            }
            vec![]
        }
        Action::Left | Action::Right => {
            let right = a == Action::Right;
            match app.screen {
                Screen::Lanes => move_sel(&mut app.lane, app.snap.lanes.len(), right),
                Screen::Freeze => move_sel(&mut app.freeze_env, app.snap.lanes.len(), right),
                Screen::Releases => {
                    move_sel(&mut app.rel_app, app.snap.releases.len(), right);
                    app.rel = 0;
                    return release_effects(app);
                }
                Screen::Promotion => {
                    return act(
                        app,
                        if right {
                            Action::NextRun
                        } else {
                            Action::PreviousRun
                        },
                    );
                }
                Screen::Capsules => {
                    app.detail_scroll = if right {
                        app.detail_scroll.saturating_add(5)
                    } else {
                        app.detail_scroll.saturating_sub(5)
                    };
                }
                Screen::Gates | Screen::Rollout | Screen::Waiting => {}
            }
            vec![]
        }
        Action::Open => match app.screen {
            Screen::Lanes => {
                // Open the newest promotion of the selected cell.
                let last = app
                    .snap
                    .lanes
                    .get(app.lane)
                    .and_then(|l| l.cells.get(app.cell))
                    .and_then(|c| c.last.as_ref())
                    .map(|p| p.id);
                match last {
                    Some(id) => {
                        app.run = Some(id);
                        app.step = 0;
                        app.screen = Screen::Promotion;
                        log_effect(app)
                    }
                    None => {
                        app.say("nothing was promoted here yet");
                        vec![]
                    }
                }
            }
            Screen::Promotion => {
                // The run's capsule, on the Capsules screen.
                let capsule = selected_run(app).and_then(|id| {
                    app.live
                        .get(&id)
                        .and_then(|l| l.capsule.as_ref().map(|c| c.0))
                        .or_else(|| {
                            app.snap
                                .promotions
                                .iter()
                                .find(|p| p.promotion.id == id)
                                .and_then(|p| p.capsule)
                        })
                });
                match capsule {
                    Some(c) => {
                        app.filter.clear();
                        app.screen = Screen::Capsules;
                        app.capsule = app
                            .filtered_capsules()
                            .iter()
                            .position(|r| r.id == c)
                            .unwrap_or(0);
                        capsule_effects(app)
                    }
                    None => {
                        app.say("this promotion has no capsule yet");
                        vec![]
                    }
                }
            }
            Screen::Capsules => {
                app.detail_scroll = app.detail_scroll.saturating_add(10);
                vec![]
            }
            _ => vec![],
        },
        Action::Promote if app.screen == Screen::Rollout => {
            rollout_change(app, OperatorRequest::PromoteNow)
        }
        Action::Pause if app.screen == Screen::Rollout => {
            let paused = app
                .rollouts
                .get(app.rollout)
                .is_some_and(|r| r.progress.state == Some(CanaryPhase::Paused));
            rollout_change(
                app,
                if paused {
                    OperatorRequest::Resume
                } else {
                    OperatorRequest::Pause
                },
            )
        }
        Action::Abort if app.screen == Screen::Rollout => {
            rollout_change(app, OperatorRequest::Abort)
        }
        Action::Rollback if app.screen == Screen::Rollout => rollout_rollback(app),
        Action::Promote => {
            if app.screen != Screen::Lanes {
                return vec![];
            }
            match app.selected_request() {
                Some(mut r) => {
                    r.at = None;
                    app.layers.push(Layer::Promote {
                        request: r.clone(),
                        preview: None,
                    });
                    vec![Effect::Gates(r)]
                }
                None => {
                    app.complain(no_request_reason(app));
                    vec![]
                }
            }
        }
        Action::Approve => match app.selected_request() {
            Some(r) => vec![Effect::Approve {
                app: r.app,
                digest: r.digest,
                env: r.env,
            }],
            None => {
                app.complain(no_request_reason(app));
                vec![]
            }
        },
        Action::Rollback => {
            let Some(lane) = app.snap.lanes.get(app.lane) else {
                return vec![];
            };
            let Some(cell) = lane.cells.get(app.cell) else {
                return vec![];
            };
            let (a, env) = (cell.app.clone(), lane.env.clone());
            pick_rollback(app, &a, &env);
            vec![]
        }
        Action::Unpin => {
            let Some(lane) = app.snap.lanes.get(app.lane) else {
                return vec![];
            };
            let Some(cell) = lane.cells.get(app.cell) else {
                return vec![];
            };
            let (a, env) = (cell.app.clone(), lane.env.clone());
            let Some(pin) = &cell.pin else {
                app.complain(format!(
                    "{a} is not pinned in {env}; only a rollback pins a lane"
                ));
                return vec![];
            };
            app.layers.push(Layer::Confirm {
                title: format!("Unpin {a} in {env}?"),
                lines: vec![
                    format!(
                        "Pinned to sha256:{} by the rollback in capsule #{} ({}).",
                        pin.digest.short(),
                        pin.capsule_id,
                        pin.pinned_by
                    ),
                    "Promotions may move it again; the unpin is sealed in a capsule.".into(),
                ],
                effect: Effect::Unpin { app: a, env },
            });
            vec![]
        }
        Action::Pause | Action::Abort => {
            let Some(id) = selected_run(app) else {
                return vec![];
            };
            // A run of this workbench, or of any other process: the
            // engine steers the second through a request row its owner
            // answers (a dead owner's run is taken over for an abort).
            let (paused, what) =
                if let Some(run) = app.live.get(&id).filter(|r| r.finished.is_none()) {
                    (run.paused, format!("{} → {}", run.app, run.env))
                } else if let Some(p) = app
                    .snap
                    .promotions
                    .iter()
                    .map(|r| &r.promotion)
                    .find(|p| p.id == id && p.state == PromotionState::Running)
                {
                    (
                        p.run_state == Some(RunState::Paused),
                        format!("{} → {} (run by another process)", p.app, p.environment),
                    )
                } else {
                    app.complain(format!("promotion #{id} is not running"));
                    return vec![];
                };
            if a == Action::Pause {
                return vec![if paused {
                    Effect::Resume(id)
                } else {
                    Effect::Pause(id)
                }];
            }
            app.layers.push(Layer::Confirm {
                title: format!("Abort promotion #{id}?"),
                lines: vec![
                    what,
                    "Running steps are killed, the previous release goes back, and the abort is sealed.".into(),
                ],
                effect: Effect::Abort(id),
            });
            vec![]
        }
        Action::NextRun | Action::PreviousRun => {
            let ids = app.run_ids();
            if ids.is_empty() {
                return vec![];
            }
            let cur = selected_run(app).and_then(|id| ids.iter().position(|x| *x == id));
            let i = match (cur, a == Action::NextRun) {
                (Some(i), true) => (i + 1).min(ids.len() - 1),
                (Some(i), false) => i.saturating_sub(1),
                (None, _) => 0,
            };
            app.run = Some(ids[i]);
            app.step = 0;
            log_effect(app)
        }
        Action::TimeTravel => {
            app.layers.push(Layer::Input {
                kind: InputKind::Time,
                text: String::new(),
            });
            vec![]
        }
        Action::Now => time_travel(app, None),
        Action::NextMonth | Action::PreviousMonth => {
            let m = chrono::Months::new(1);
            app.month = if a == Action::NextMonth {
                app.month.checked_add_months(m)
            } else {
                app.month.checked_sub_months(m)
            }
            .unwrap_or(app.month);
            vec![]
        }
        Action::Replay => match app.filtered_capsules().get(app.capsule).map(|c| c.id) {
            Some(id) => {
                app.replays.insert(id, ReplayState::Running);
                vec![Effect::Replay(id)]
            }
            None => vec![],
        },
        Action::Export => match app.filtered_capsules().get(app.capsule).map(|c| c.id) {
            Some(id) => vec![Effect::Export(id)],
            None => vec![],
        },
    }
}

fn no_request_reason(app: &App) -> String {
    let Some(lane) = app.snap.lanes.get(app.lane) else {
        return "no lanes".into();
    };
    let app_name = app.snap.apps.get(app.cell).cloned().unwrap_or_default();
    if app.next_lane(app.lane).is_none() {
        return format!("{} is the last lane; nothing promotes from it", lane.env);
    }
    format!("{app_name} is not live in {}; nothing to promote", lane.env)
}

/// What a screen loads when it opens.
fn on_enter(app: &mut App) -> Vec<Effect> {
    app.scroll = 0;
    match app.screen {
        Screen::Capsules => capsule_effects(app),
        Screen::Gates => match app.selected_request() {
            Some(r) => vec![Effect::Gates(r)],
            None => vec![],
        },
        Screen::Promotion => log_effect(app),
        Screen::Releases => release_effects(app),
        Screen::Rollout => vec![Effect::LoadRollouts],
        Screen::Waiting => {
            app.waiting_at = Some(app.now);
            vec![Effect::LoadWaiting]
        }
        _ => vec![],
    }
}

/// The releases `app` had in `env` other than the live one, to pick one
/// to roll back to (then confirm).
fn pick_rollback(app: &mut App, a: &str, env: &str) {
    let Some(cell) = app
        .snap
        .lanes
        .iter()
        .find(|l| l.env == env)
        .and_then(|l| l.cells.iter().find(|c| c.app == a))
    else {
        app.complain(format!(
            "{a} has no history in {env}; nothing to roll back to"
        ));
        return;
    };
    let current = cell.live.as_ref().map(|l| l.digest.clone());
    // Releases a rollback took out come last, marked (as of `now`): the
    // order `stella release rollback` takes its default from.
    let choices: Vec<RollbackChoice> = rules::rollback_order(
        rules::rollback_choices(current.as_ref(), &cell.history, app.now),
        &cell.taken_out,
        app.now,
    )
    .into_iter()
    .map(|(digest, since, taken_out)| RollbackChoice {
        digest,
        since,
        taken_out,
    })
    .collect();
    if choices.is_empty() {
        app.complain(format!(
            "{a} has had no other release in {env}; nothing to roll back to"
        ));
        return;
    }
    app.layers.push(Layer::Rollback {
        app: a.to_owned(),
        env: env.to_owned(),
        choices,
        sel: 0,
        armed: false,
    });
}

/// A change to the selected target's canary: pause and resume at once,
/// promote and abort after a confirmation. The engine asks the canary's
/// owner, or takes the canary over when its owner is dead.
fn rollout_change(app: &mut App, change: OperatorRequest) -> Vec<Effect> {
    let Some(r) = app.rollouts.get(app.rollout).cloned() else {
        app.complain("no router target in this workspace");
        return vec![];
    };
    let p = &r.progress;
    let at = p.steps.get(p.step).copied().unwrap_or(0);
    match rules::canary_change(p.state) {
        CanaryChange::AbTest => {
            app.complain(format!(
                "{} runs an A/B test, not a canary: `r` ends it on a (stable), `stella rollout consolidate {} --winner a|b` picks the winner",
                r.target, r.env
            ));
            return vec![];
        }
        CanaryChange::NotRunning => {
            app.complain(format!("no canary is running on {}", r.target));
            return vec![];
        }
        CanaryChange::Ask => {}
    }
    let effect = Effect::RolloutControl {
        target: r.target.clone(),
        change,
    };
    let (title, line) = match change {
        OperatorRequest::Abort => (
            format!("Abort the canary on {} at {at}%?", r.target),
            "All traffic goes back to stable; the deploy fails and is sealed.",
        ),
        OperatorRequest::PromoteNow => (
            format!("Promote the canary on {} from {at}%?", r.target),
            "The candidate skips its remaining steps and takes all traffic.",
        ),
        _ => {
            if p.interrupted {
                app.say(format!(
                    "taking over the interrupted canary on {} at {at}%…",
                    r.target
                ));
            }
            return vec![effect];
        }
    };
    app.layers.push(Layer::Confirm {
        title,
        lines: vec![line.into()],
        effect,
    });
    vec![]
}

/// `r` on the Rollout screen: back to the release before. A canary under
/// way is aborted (stable is the release before); an A/B test ends on a;
/// otherwise the app goes back to the release its target keeps warm, or
/// one picked from the lane's history. Each confirms.
fn rollout_rollback(app: &mut App) -> Vec<Effect> {
    let Some(r) = app.rollouts.get(app.rollout).cloned() else {
        app.complain("no router target in this workspace");
        return vec![];
    };
    let lane = app.snap.lanes.iter().find(|l| l.env == r.env);
    let serving = rules::serving_app(
        r.progress.app.as_deref(),
        r.progress.digest.as_ref(),
        r.stable.as_ref(),
        |stable| {
            lane?
                .cells
                .iter()
                .find(|c| c.live.as_ref().is_some_and(|l| &l.digest == stable))
                .map(|c| c.app.clone())
        },
    );
    let warm = r.candidate.clone().filter(|_| r.weight == 0);
    match rules::rollout_rollback(r.progress.state, serving, warm) {
        RolloutRollback::AbortCanary => return rollout_change(app, OperatorRequest::Abort),
        RolloutRollback::EndAbTest => app.layers.push(Layer::Confirm {
            title: format!("End the A/B test on {}, a winning?", r.target),
            lines: vec![
                "All traffic goes back to a, the stable release; b is kept warm. Sealed with the comparison.".into(),
            ],
            effect: Effect::Consolidate {
                env: r.env.clone(),
                winner_b: false,
            },
        }),
        RolloutRollback::Warm { app: a, to: warm } => app.layers.push(Layer::Confirm {
            title: format!("Roll back {a} in {}?", r.env),
            lines: vec![
                format!(
                    "to sha256:{}, kept warm on {}: one swap",
                    warm.short(),
                    r.target
                ),
                "The current release stops serving; the rollback is sealed in a capsule and pins the lane.".into(),
            ],
            effect: Effect::Rollback {
                app: a,
                env: r.env.clone(),
                to: warm,
            },
        }),
        RolloutRollback::Pick { app: a } => pick_rollback(app, &a, &r.env),
        RolloutRollback::Nothing => app.complain(format!(
            "nothing known is live on {}; nothing to roll back",
            r.target
        )),
    }
    vec![]
}

/// The selected release's findings, as the first lane with a security
/// gate counts them.
fn release_effects(app: &App) -> Vec<Effect> {
    let Some(env) = app.snap.lanes.iter().find(|l| l.security) else {
        return vec![];
    };
    let Some(group) = app.snap.releases.get(app.rel_app) else {
        return vec![];
    };
    match group.releases.get(app.rel) {
        Some(r) => vec![Effect::Gates(GateRequest {
            app: group.app.clone(),
            digest: r.digest.clone(),
            tag: r.tags.first().cloned(),
            env: env.env.clone(),
            at: None,
        })],
        None => vec![],
    }
}
