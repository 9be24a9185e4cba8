//! The workbench's screens and layers drawn on a fixed-size TestBackend
//! from a fixed sample (fixed digests, an injected clock and zone), as
//! insta snapshots; and its reducers and keys, driven as a person would.

use chrono::FixedOffset;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use stella::domain::{Decision, GateKind, OperatorRequest, Outcome, Verdict};
use stella::engine::{EngineEvent, EventKind};
use stella::tui::action::Screen;
use stella::tui::keymap::Keymap;
use stella::tui::reduce;
use stella::tui::sample;
use stella::tui::state::{
    App, CapsuleDetail, Effect, FindingView, GateRequest, GateResult, Layer, Msg, ReplayState,
    Verification,
};
use stella::tui::theme::Theme;
use stella::tui::views;
use stella::workflow::executor::StepState;

fn app_with(no_color: bool) -> App {
    App::new(
        sample::snapshot(3, 12),
        sample::now(),
        FixedOffset::east_opt(0).unwrap(),
        Keymap::default_keys(),
        Theme::builtin("dark", no_color).unwrap(),
    )
}

fn app() -> App {
    app_with(false)
}

fn terminal(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| views::render(f, app)).unwrap();
    t
}

fn text(t: &Terminal<TestBackend>) -> String {
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        for x in 0..buf.area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn draw(app: &App) -> String {
    text(&terminal(app, 120, 40))
}

fn key(app: &mut App, code: KeyCode) -> Vec<Effect> {
    reduce::key(app, KeyEvent::new(code, KeyModifiers::NONE))
}

fn chars(app: &mut App, s: &str) -> Vec<Effect> {
    s.chars().flat_map(|c| key(app, KeyCode::Char(c))).collect()
}

fn verdicts() -> Vec<Verdict> {
    let mut sec = Verdict::new(
        GateKind::Security,
        Outcome::Warn,
        "1 reachable high CVE, near the limit of 1",
    );
    sec.reasons = vec![
        "CVE-2024-21538 in cross-spawn 7.0.3 suppressed: unreachable per OpenVEX sha256:7f5ecd9fb54d… statements[0] (vulnerable_code_not_in_execute_path)".into(),
    ];
    sec.measured = serde_json::json!({"reachable": {"critical": 0, "high": 1}, "suppressed": 1});
    let mut appr = Verdict::new(
        GateKind::Approval,
        Outcome::Fail,
        "0 of 1 required approvals",
    );
    appr.unblock = vec!["1 more approval from: alice@example.com, bob@example.com".into()];
    let mut frz = Verdict::new(
        GateKind::Freeze,
        Outcome::Fail,
        "frozen: incident until Wed 2026-11-25 18:00 UTC",
    );
    frz.unblock =
        vec!["wait for the freeze to end: incident until Wed 2026-11-25 18:00 UTC".into()];
    let pol = Verdict::new(GateKind::Policy, Outcome::Pass, "1 module allows it");
    vec![sec, appr, frz, pol]
}

fn gate_request() -> GateRequest {
    GateRequest {
        app: "web".into(),
        digest: sample::digest(20),
        tag: Some("1.4".into()),
        env: "prod".into(),
        at: None,
    }
}

fn gates() -> GateResult {
    GateResult {
        request: gate_request(),
        evaluated_at: sample::now(),
        outcome: Ok((Decision::Deny, verdicts())),
        findings: vec![
            FindingView {
                id: "CVE-2021-23337".into(),
                package: "lodash".into(),
                version: Some("4.17.20".into()),
                severity: "high".into(),
                excused: None,
            },
            FindingView {
                id: "CVE-2024-21538".into(),
                package: "cross-spawn".into(),
                version: Some("7.0.3".into()),
                severity: "high".into(),
                excused: Some(
                    "suppressed: unreachable per OpenVEX sha256:7f5ecd9fb54d… statements[0] (vulnerable_code_not_in_execute_path)".into(),
                ),
            },
        ],
    }
}

fn golden_statement() -> stella::capsule::statement::Statement {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/staging-58b58f-2026-11-24.yaml"
    ))
    .unwrap();
    let file = stella::capsule::file::CapsuleFile::parse(&bytes).unwrap();
    serde_json::from_slice(&file.envelope.payload_bytes().unwrap()).unwrap()
}

#[test]
fn lanes() {
    let mut a = app();
    key(&mut a, KeyCode::Char('j'));
    insta::assert_snapshot!("lanes", draw(&a));
}

#[test]
fn promotion_dag_live_from_the_store() {
    let mut a = app();
    a.screen = Screen::Promotion;
    a.run = Some(1000);
    a.step = 3;
    insta::assert_snapshot!("promotion", draw(&a));
}

#[test]
fn gates_with_reasons_and_unblock() {
    let mut a = app();
    a.screen = Screen::Gates;
    a.gates = Some(gates());
    insta::assert_snapshot!("gates", draw(&a));
}

#[test]
fn freeze_calendar() {
    let mut a = app();
    a.screen = Screen::Freeze;
    insta::assert_snapshot!("freeze", draw(&a));
}

#[test]
fn capsules_with_detail_verification_and_replay() {
    let mut a = app();
    a.screen = Screen::Capsules;
    let id = a.filtered_capsules()[0].id;
    for c in a.snap.capsules.clone() {
        a.verified.insert(c.id, Verification::Valid);
    }
    a.verified.insert(
        38,
        Verification::Invalid(vec!["signature does not verify".into()]),
    );
    a.replays.insert(id, ReplayState::Identical);
    a.detail = Some(CapsuleDetail {
        id,
        statement: Ok(golden_statement()),
    });
    insta::assert_snapshot!("capsules", draw(&a));
}

#[test]
fn releases_and_findings() {
    let mut a = app();
    a.screen = Screen::Releases;
    let mut g = gates();
    g.request.digest = sample::digest(0);
    g.request.app = "api-gateway".into();
    a.gates = Some(g);
    insta::assert_snapshot!("releases", draw(&a));
}

#[test]
fn help_layer_lists_the_keymap() {
    let mut a = app();
    key(&mut a, KeyCode::Char('?'));
    let t = draw(&a);
    assert!(t.contains("Promote the selected release to the next lane"));
    insta::assert_snapshot!("help", t);
}

#[test]
fn confirm_layer_for_a_rollback() {
    let mut a = app();
    key(&mut a, KeyCode::Char('r'));
    assert!(matches!(a.layers.last(), Some(Layer::Rollback { .. })));
    insta::assert_snapshot!("rollback_picker", draw(&a));
    key(&mut a, KeyCode::Enter);
    assert!(matches!(a.layers.last(), Some(Layer::Confirm { .. })));
    insta::assert_snapshot!("confirm", draw(&a));
}

#[test]
fn promote_dialog_with_gate_preview() {
    let mut a = app();
    let fx = key(&mut a, KeyCode::Char('p'));
    let Some(Effect::Gates(r)) = fx.first() else {
        panic!("{fx:?}")
    };
    assert_eq!((r.app.as_str(), r.env.as_str()), ("api-gateway", "staging"));
    let mut g = gates();
    g.request = r.clone();
    reduce::reduce(&mut a, Msg::Gates(Box::new(g)));
    insta::assert_snapshot!("promote", draw(&a));
}

#[test]
fn no_color_draws_the_same_text_without_colours() {
    let mut dark = app();
    let mut plain = app_with(true);
    for a in [&mut dark, &mut plain] {
        a.screen = Screen::Gates;
        a.gates = Some(gates());
    }
    let (td, tp) = (terminal(&dark, 120, 40), terminal(&plain, 120, 40));
    assert_eq!(text(&td), text(&tp));
    insta::assert_snapshot!("gates_no_color", text(&tp));
    let coloured = |t: &Terminal<TestBackend>| {
        t.backend()
            .buffer()
            .content()
            .iter()
            .filter(|c| c.fg != Color::Reset || c.bg != Color::Reset)
            .count()
    };
    assert!(coloured(&td) > 100, "the dark theme colours verdicts");
    assert_eq!(coloured(&tp), 0, "NO_COLOR draws no colour at all");
    // A blocked gate is still marked without colour: bold.
    let buf = tp.backend().buffer();
    let fail = (0..buf.area.height)
        .flat_map(|y| (0..buf.area.width).map(move |x| (x, y)))
        .find(|&(x, y)| {
            buf[(x, y)].symbol() == "F"
                && buf[(x + 1, y)].symbol() == "A"
                && buf[(x + 2, y)].symbol() == "I"
        })
        .expect("a FAIL verdict on screen");
    assert!(buf[fail].modifier.contains(ratatui::style::Modifier::BOLD));
}

#[test]
fn a_terminal_too_small_says_so_and_does_not_panic() {
    let a = app();
    for (w, h) in [(60, 20), (79, 24), (1, 1), (200, 5)] {
        let t = text(&terminal(&a, w, h));
        if w >= 40 && h >= 3 {
            assert!(t.contains("Terminal too small"), "{w}×{h}:\n{t}");
        }
    }
    insta::assert_snapshot!("too_small", text(&terminal(&a, 60, 20)));
}

#[test]
fn keys_move_switch_and_filter() {
    let mut a = app();
    key(&mut a, KeyCode::Char('l'));
    key(&mut a, KeyCode::Char('j'));
    assert_eq!((a.lane, a.cell), (1, 1));
    key(&mut a, KeyCode::Tab);
    assert_eq!(a.screen, Screen::Promotion);
    key(&mut a, KeyCode::Char('5'));
    assert_eq!(a.screen, Screen::Capsules);
    chars(&mut a, "/");
    chars(&mut a, "rollback");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.filtered_capsules().len(), 1);
    assert_eq!(a.filtered_capsules()[0].action, "rollback");
    key(&mut a, KeyCode::Esc);
    assert!(a.filter.is_empty(), "esc clears the filter");
    // The command line completes and switches screens.
    chars(&mut a, ":");
    chars(&mut a, "fre");
    key(&mut a, KeyCode::Tab);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Freeze);
    chars(&mut a, ":");
    chars(&mut a, "launch");
    key(&mut a, KeyCode::Enter);
    assert!(a.status.as_ref().unwrap().text.contains("not a command"));
    key(&mut a, KeyCode::Char('q'));
    assert!(a.quit);
}

#[test]
fn promote_then_rollback_round_trips_through_layers() {
    let mut a = app();
    key(&mut a, KeyCode::Char('p'));
    key(&mut a, KeyCode::Char('a'));
    let fx = key(&mut a, KeyCode::Enter);
    assert_eq!(
        fx,
        vec![Effect::Promote {
            app: "api-gateway".into(),
            digest: sample::digest(0),
            tag: Some("1.2".into()),
            to: "staging".into(),
        }]
    );
    assert!(a.layers.is_empty());
    // Rollback: pick, confirm, and only `y` does it.
    key(&mut a, KeyCode::Char('r'));
    key(&mut a, KeyCode::Enter);
    assert_eq!(key(&mut a, KeyCode::Char('x')), vec![]);
    let fx = key(&mut a, KeyCode::Char('y'));
    assert_eq!(
        fx,
        vec![Effect::Rollback {
            app: "api-gateway".into(),
            env: "dev".into(),
            to: sample::digest(900),
        }]
    );
    key(&mut a, KeyCode::Char('r'));
    key(&mut a, KeyCode::Enter);
    assert_eq!(key(&mut a, KeyCode::Char('n')), vec![]);
    assert!(a.layers.is_empty());
}

#[test]
fn unpin_asks_first_and_only_where_a_rollback_pinned() {
    let mut a = app();
    // api-gateway in dev is not pinned: `u` says so and does nothing.
    assert_eq!(key(&mut a, KeyCode::Char('u')), vec![]);
    assert!(a.layers.is_empty());
    let status = a.status.as_ref().expect("a reason").text.clone();
    assert!(status.contains("not pinned in dev"), "{status}");
    // Promoting it from staging into prod: the dialog says the pin holds it.
    key(&mut a, KeyCode::Char('l'));
    key(&mut a, KeyCode::Char('p'));
    let screen = draw(&a);
    assert!(
        screen.contains("Pinned: the rollback in capsule #7"),
        "{screen}"
    );
    key(&mut a, KeyCode::Esc);
    assert!(a.layers.is_empty());
    // So does its Gates screen.
    let fx = key(&mut a, KeyCode::Char('g'));
    let Some(Effect::Gates(r)) = fx.first() else {
        panic!("{fx:?}")
    };
    let mut g = gates();
    g.request = r.clone();
    reduce::reduce(&mut a, Msg::Gates(Box::new(g)));
    let screen = draw(&a);
    assert!(
        screen.contains("PINNED — the rollback in capsule #7"),
        "{screen}"
    );
    key(&mut a, KeyCode::Char('1'));
    // In prod it is pinned: confirm, and only `y` unpins.
    key(&mut a, KeyCode::Char('l'));
    key(&mut a, KeyCode::Char('u'));
    assert_eq!(a.layers.len(), 1);
    assert!(draw(&a).contains("Unpin api-gateway in prod?"));
    assert_eq!(key(&mut a, KeyCode::Char('n')), vec![]);
    key(&mut a, KeyCode::Char('u'));
    assert_eq!(
        key(&mut a, KeyCode::Char('y')),
        vec![Effect::Unpin {
            app: "api-gateway".into(),
            env: "prod".into(),
        }]
    );
}

#[test]
fn engine_events_fold_into_a_live_run_and_open_it() {
    let mut a = app();
    a.asked.insert(7, "web → staging".into());
    let ev = |kind| Msg::Engine(EngineEvent { ticket: 7, kind });
    reduce::reduce(
        &mut a,
        ev(EventKind::PromotionCreated {
            promotion_id: 77,
            app: "web".into(),
            digest: sample::digest(2),
            environment: "staging".into(),
            targets: vec!["staging-local".into()],
            steps: vec![("a".into(), vec![]), ("b".into(), vec!["a".into()])],
            critical_path: vec!["a".into(), "b".into()],
        }),
    );
    assert_eq!((a.screen, a.run), (Screen::Promotion, Some(77)));
    reduce::reduce(
        &mut a,
        ev(EventKind::StepStarted {
            promotion_id: 77,
            step: "a".into(),
            attempt: 1,
        }),
    );
    reduce::reduce(
        &mut a,
        ev(EventKind::StepLog {
            promotion_id: 77,
            step: "a".into(),
            line: "hello".into(),
        }),
    );
    let v = a.run_view(77).unwrap();
    assert_eq!(v.nodes[0].state, StepState::Running);
    assert_eq!(v.nodes[1].state, StepState::Pending);
    assert_eq!(v.critical, ["a", "b"]);
    reduce::reduce(
        &mut a,
        ev(EventKind::StepFinished {
            promotion_id: 77,
            step: "a".into(),
            state: StepState::Succeeded,
            attempts: 1,
            duration: std::time::Duration::from_millis(1500),
            error: None,
        }),
    );
    let t = draw(&a);
    assert!(
        t.contains("✓ a") && t.contains("1.5s") && t.contains("hello"),
        "{t}"
    );
    // Pause and abort are for runs this workbench drives.
    assert_eq!(key(&mut a, KeyCode::Char(' ')), vec![Effect::Pause(77)]);
    key(&mut a, KeyCode::Char('x'));
    assert_eq!(key(&mut a, KeyCode::Char('y')), vec![Effect::Abort(77)]);
    let fx = reduce::reduce(
        &mut a,
        ev(EventKind::CapsuleSealed {
            promotion_id: 77,
            capsule_id: 41,
            outcome: stella::domain::PromotionOutcome::Aborted,
            path: "capsules/staging-x.yaml".into(),
        }),
    );
    assert_eq!(fx, vec![Effect::Reload]);
    assert_eq!(
        a.run_view(77).unwrap().state,
        stella::tui::state::RunStatus::Ended(stella::domain::PromotionOutcome::Aborted)
    );
    assert!(key(&mut a, KeyCode::Char(' ')).is_empty());
    assert!(
        a.status
            .as_ref()
            .unwrap()
            .text
            .contains("promotion #77 is not running")
    );
    // A run of another process, running in the store, takes the same
    // road: the engine steers it through a request row.
    let id = a.snap.promotions[0].promotion.id;
    a.snap.promotions[0].promotion.state = stella::domain::PromotionState::Running;
    a.snap.promotions[0].promotion.run_state = Some(stella::domain::RunState::Paused);
    a.run = Some(id);
    assert_eq!(key(&mut a, KeyCode::Char(' ')), vec![Effect::Resume(id)]);
    key(&mut a, KeyCode::Char('x'));
    assert_eq!(key(&mut a, KeyCode::Char('y')), vec![Effect::Abort(id)]);
}

#[test]
fn time_travel_parses_relative_and_absolute_times() {
    let now = sample::now();
    assert_eq!(
        reduce::parse_time("+2h", now).unwrap(),
        now + chrono::Duration::hours(2)
    );
    assert_eq!(
        reduce::parse_time("-1d", now).unwrap(),
        now - chrono::Duration::days(1)
    );
    assert!(reduce::parse_time("2026-12-24T18:00:00Z", now).is_ok());
    assert!(
        reduce::parse_time("soon", now)
            .unwrap_err()
            .contains("not a time")
    );
    let mut a = app();
    a.gates = Some(gates());
    a.screen = Screen::Gates;
    key(&mut a, KeyCode::Char('t'));
    let fx = {
        chars(&mut a, "+8h");
        key(&mut a, KeyCode::Enter)
    };
    let Some(Effect::Gates(r)) = fx.first() else {
        panic!("{fx:?}")
    };
    assert_eq!(r.at, Some(now + chrono::Duration::hours(8)));
}

#[test]
fn docs_tui_lists_every_key_of_the_default_keymap() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/tui.md")).unwrap();
    let table = stella::tui::keymap::markdown(&Keymap::default_keys());
    assert!(
        doc.contains(&table),
        "docs/tui.md's key tables are out of date with assets/keymap.toml; they should read:\n\n{table}"
    );
}

#[test]
fn every_screen_and_layer_under_no_color_has_the_same_text_and_no_colour() {
    type Setup = Box<dyn Fn(&mut App)>;
    let setups: Vec<Setup> = vec![
        Box::new(|_| {}),
        Box::new(|a| {
            a.screen = Screen::Promotion;
            a.run = Some(1000);
        }),
        Box::new(|a| {
            a.screen = Screen::Gates;
            a.gates = Some(gates());
        }),
        Box::new(|a| a.screen = Screen::Freeze),
        Box::new(|a| {
            a.screen = Screen::Capsules;
            a.verified.insert(40, Verification::Valid);
        }),
        Box::new(|a| a.screen = Screen::Releases),
        Box::new(|a| {
            a.screen = Screen::Rollout;
            reduce::reduce(a, Msg::Rollouts(sample::rollouts()));
        }),
        Box::new(|a| {
            key(a, KeyCode::Char('?'));
        }),
        Box::new(|a| {
            key(a, KeyCode::Char('r'));
            key(a, KeyCode::Enter);
        }),
    ];
    for (i, setup) in setups.iter().enumerate() {
        let (mut dark, mut plain) = (app(), app_with(true));
        setup(&mut dark);
        setup(&mut plain);
        let (td, tp) = (terminal(&dark, 120, 40), terminal(&plain, 120, 40));
        assert_eq!(text(&td), text(&tp), "setup {i}");
        let colours = tp
            .backend()
            .buffer()
            .content()
            .iter()
            .filter(|c| c.fg != Color::Reset || c.bg != Color::Reset)
            .count();
        assert_eq!(colours, 0, "setup {i} drew colours under NO_COLOR");
    }
}

#[test]
fn big_workspaces_draw_at_every_size_with_the_selection_in_view() {
    let mut a = App::new(
        sample::snapshot(20, 200),
        sample::now(),
        FixedOffset::east_opt(0).unwrap(),
        Keymap::default_keys(),
        Theme::dark(),
    );
    for screen in Screen::ALL {
        a.screen = screen;
        a.run = Some(1000);
        for (w, h) in [(80, 24), (100, 30), (120, 40), (250, 80), (400, 120)] {
            terminal(&a, w, h);
        }
    }
    // The last app of a 20-app lane, and a step deep in a 200-step DAG,
    // are drawn when selected.
    a.screen = Screen::Lanes;
    a.cell = 19;
    let t = text(&terminal(&a, 100, 30));
    assert!(t.contains("svc-19") && t.contains("more"), "{t}");
    a.screen = Screen::Promotion;
    a.step = 199;
    let t = text(&terminal(&a, 100, 30));
    assert!(t.contains("step-199") && t.contains("layers"), "{t}");
}

#[test]
fn rollout_screen_shows_the_split_the_steps_and_steers_the_canary() {
    let mut a = app();
    key(&mut a, KeyCode::Char('7'));
    assert_eq!(a.screen, Screen::Rollout);
    let empty = draw(&a);
    assert!(empty.contains("No router targets"), "{empty}");
    // Two refreshes: the second gives the sparklines a point.
    reduce::reduce(&mut a, Msg::Rollouts(sample::rollouts()));
    let mut later = sample::rollouts();
    later[0].stats.1.requests += 100;
    reduce::reduce(&mut a, Msg::Rollouts(later));
    assert_eq!(a.rollout_history["prod-web"].len(), 2);
    insta::assert_snapshot!("rollout", draw(&a));
    assert_eq!(
        key(&mut a, KeyCode::Char(' ')),
        vec![Effect::RolloutControl {
            target: "prod-web".into(),
            change: OperatorRequest::Pause
        }]
    );
    // Destructive changes confirm.
    assert!(key(&mut a, KeyCode::Char('x')).is_empty());
    assert!(matches!(a.layers.last(), Some(Layer::Confirm { .. })));
    assert_eq!(
        key(&mut a, KeyCode::Char('y')),
        vec![Effect::RolloutControl {
            target: "prod-web".into(),
            change: OperatorRequest::Abort
        }]
    );
    key(&mut a, KeyCode::Char('p'));
    assert_eq!(
        key(&mut a, KeyCode::Char('y')),
        vec![Effect::RolloutControl {
            target: "prod-web".into(),
            change: OperatorRequest::PromoteNow
        }]
    );
    // A finished canary cannot be steered.
    let mut done = sample::rollouts();
    done[0].progress.state = Some(stella::domain::CanaryPhase::Promoted);
    reduce::reduce(&mut a, Msg::Rollouts(done));
    assert!(key(&mut a, KeyCode::Char(' ')).is_empty());
    assert!(
        a.status
            .as_ref()
            .unwrap()
            .text
            .contains("no canary is running")
    );
}

#[test]
fn rollout_screen_picks_up_interrupted_canaries_ends_ab_tests_and_rolls_back() {
    let mut a = app();
    key(&mut a, KeyCode::Char('7'));
    let confirmed = |a: &mut App, k: char| {
        assert!(key(a, KeyCode::Char(k)).is_empty(), "`{k}` confirms first");
        assert!(matches!(a.layers.last(), Some(Layer::Confirm { .. })));
        key(a, KeyCode::Char('y'))
    };

    // A running canary: `r` is an abort.
    reduce::reduce(&mut a, Msg::Rollouts(sample::rollouts()));
    assert_eq!(
        confirmed(&mut a, 'r'),
        vec![Effect::RolloutControl {
            target: "prod-web".into(),
            change: OperatorRequest::Abort
        }]
    );

    // Interrupted: shown held; resume, promote, abort and roll back are
    // requests like any other — the engine takes the canary over.
    let mut held = sample::rollouts();
    held[0].progress.state = Some(stella::domain::CanaryPhase::Paused);
    held[0].progress.interrupted = true;
    held[0].progress.app = Some("web".into());
    reduce::reduce(&mut a, Msg::Rollouts(held));
    let screen = draw(&a);
    assert!(
        screen.contains("interrupted: its promotion stopped at 50%"),
        "{screen}"
    );
    insta::assert_snapshot!("rollout_interrupted", screen);
    let asked = |change| Effect::RolloutControl {
        target: "prod-web".into(),
        change,
    };
    assert_eq!(
        key(&mut a, KeyCode::Char(' ')),
        vec![asked(OperatorRequest::Resume)]
    );
    assert_eq!(
        confirmed(&mut a, 'p'),
        vec![asked(OperatorRequest::PromoteNow)]
    );
    for k in ['x', 'r'] {
        assert_eq!(confirmed(&mut a, k), vec![asked(OperatorRequest::Abort)]);
    }

    // An A/B test: labelled a and b; `r` ends it on a, steering refused.
    let mut ab = sample::rollouts();
    ab[0].weight = 30;
    ab[0].progress.state = Some(stella::domain::CanaryPhase::Experiment);
    ab[0].progress.steps = vec![30];
    ab[0].progress.step = 0;
    ab[0].progress.samples.clear();
    reduce::reduce(&mut a, Msg::Rollouts(ab));
    let screen = draw(&a);
    assert!(
        screen.contains("A/B test: b takes 30% of new clients") && screen.contains("a stable"),
        "{screen}"
    );
    insta::assert_snapshot!("rollout_ab", screen);
    assert!(key(&mut a, KeyCode::Char(' ')).is_empty());
    assert!(a.status.as_ref().unwrap().text.contains("A/B test"));
    assert_eq!(
        confirmed(&mut a, 'r'),
        vec![Effect::Consolidate {
            env: "prod".into(),
            winner_b: false
        }]
    );

    // After a switch the old release is warm: `r` swaps back to it, for
    // the app the lane shows live there.
    let mut warm = sample::rollouts();
    warm[0].weight = 0;
    warm[0].progress.state = Some(stella::domain::CanaryPhase::Promoted);
    reduce::reduce(&mut a, Msg::Rollouts(warm));
    assert!(draw(&a).contains("kept warm: r rolls back to it"));
    assert_eq!(
        confirmed(&mut a, 'r'),
        vec![Effect::Rollback {
            app: "api-gateway".into(),
            env: "prod".into(),
            to: sample::digest(20)
        }]
    );

    // Nothing warm: pick from the lane's history.
    let mut cold = sample::rollouts();
    cold[0].weight = 0;
    cold[0].candidate = None;
    cold[0].progress.state = Some(stella::domain::CanaryPhase::Promoted);
    reduce::reduce(&mut a, Msg::Rollouts(cold));
    assert!(key(&mut a, KeyCode::Char('r')).is_empty());
    assert!(
        matches!(a.layers.last(), Some(Layer::Rollback { app, env, .. }) if app == "api-gateway" && env == "prod")
    );
}

#[test]
fn the_users_config_sets_theme_and_key_and_names_a_bad_line() {
    use stella::tui::UserConfig;
    assert_eq!(
        UserConfig::parse("theme = \"light\"\nkey = \"alice\"\n", "config.toml").unwrap(),
        UserConfig {
            theme: Some("light".into()),
            key: Some("alice".into()),
        }
    );
    assert_eq!(
        UserConfig::parse("", "config.toml").unwrap(),
        UserConfig::default()
    );
    let e = UserConfig::parse("theme = \"light\"\ncolour = \"red\"\n", "config.toml").unwrap_err();
    assert!(
        e.starts_with("config.toml:2: unknown field `colour`"),
        "{e}"
    );
    assert!(e.ends_with("it takes `theme` and `key`"), "{e}");
}

/// The style of the first cell where `word` is drawn.
fn style_of(t: &Terminal<TestBackend>, word: &str) -> Option<ratatui::style::Style> {
    let buf = t.backend().buffer();
    for y in 0..buf.area.height {
        let mut line = String::new();
        let mut xs = Vec::new();
        for x in 0..buf.area.width {
            let s = buf[(x, y)].symbol();
            for _ in 0..s.len() {
                xs.push(x);
            }
            line.push_str(s);
        }
        if let Some(i) = line.find(word) {
            return Some(buf[(xs[i], y)].style());
        }
    }
    None
}

/// An outcome is drawn in one role on every screen: a failed rollback as
/// failed, an unpin and a flags change as done (they were drawn as
/// running, or blocked, and the Lanes and Promotion screens disagreed).
#[test]
fn lanes_and_promotion_draw_each_outcome_in_the_same_role() {
    use stella::domain::PromotionOutcome as O;
    use stella::tui::theme::Role;
    for (outcome, role) in [
        (O::RollbackFailed, Role::StepFailed),
        (O::Unpinned, Role::StepDone),
        (O::FlagsSet, Role::StepDone),
        (O::DeployFailed, Role::StepFailed),
    ] {
        let mut a = app();
        let want = a.theme.get(role).fg;
        assert!(want.is_some(), "{role:?}");
        // Lanes: the newest decision of the first cell.
        let cell = &mut a.snap.lanes[0].cells[0];
        let last = cell.last.as_mut().expect("the sample decided something");
        last.outcome = Some(outcome);
        a.screen = Screen::Lanes;
        let t = terminal(&a, 160, 48);
        let got = style_of(&t, outcome.as_str()).unwrap_or_else(|| panic!("{outcome} on Lanes"));
        assert_eq!(got.fg, want, "{outcome} on Lanes");
        // Promotion: the title of a run with that outcome.
        a.snap.promotions[0].promotion.outcome = Some(outcome);
        let id = a.snap.promotions[0].promotion.id;
        a.screen = Screen::Promotion;
        a.run = Some(id);
        let t = terminal(&a, 160, 48);
        let got =
            style_of(&t, outcome.as_str()).unwrap_or_else(|| panic!("{outcome} on Promotion"));
        assert_eq!(got.fg, want, "{outcome} on Promotion");
    }
}

/// `q` and ctrl-c with a promotion running ask before quitting (quitting
/// aborts it); `n` and esc stay, `y` quits; with nothing in flight `q`
/// quits at once.
#[test]
fn quitting_with_work_in_flight_asks_first() {
    let mut a = app();
    assert!(key(&mut a, KeyCode::Char('q')).is_empty());
    assert!(a.quit, "nothing in flight: q quits at once");

    let mut a = app();
    a.asked.insert(7, "web → staging".into());
    reduce::reduce(
        &mut a,
        Msg::Engine(EngineEvent {
            ticket: 7,
            kind: EventKind::PromotionCreated {
                promotion_id: 77,
                app: "web".into(),
                digest: sample::digest(2),
                environment: "staging".into(),
                targets: vec!["staging-local".into()],
                steps: vec![("a".into(), vec![])],
                critical_path: vec!["a".into()],
            },
        }),
    );
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    for (open, close) in [
        (KeyEvent::from(KeyCode::Char('q')), KeyCode::Char('n')),
        (ctrl_c, KeyCode::Esc),
    ] {
        assert!(reduce::key(&mut a, open).is_empty());
        assert!(!a.quit, "quitting with a run in flight must ask first");
        let t = draw(&a);
        assert!(
            t.contains("Quit with work in flight?") && t.contains("promotion #77: web → staging"),
            "{t}"
        );
        assert!(key(&mut a, close).is_empty());
        assert!(!a.quit && a.layers.is_empty());
        assert!(a.live[&77].finished.is_none(), "cancelling changes nothing");
    }
    key(&mut a, KeyCode::Char('q'));
    assert_eq!(key(&mut a, KeyCode::Char('y')), vec![Effect::Quit]);
    // The `:q` command line asks the same way.
    let mut b = app();
    b.live = a.live.clone();
    chars(&mut b, ":q");
    key(&mut b, KeyCode::Enter);
    assert!(!b.quit && matches!(b.layers.last(), Some(Layer::Confirm { .. })));
}

/// The Capsules screen shows each capsule's outcome, and `/` filters by it.
#[test]
fn capsules_show_and_filter_by_outcome() {
    let mut a = app();
    key(&mut a, KeyCode::Char('5'));
    let t = draw(&a);
    assert!(t.contains("OUTCOME") && t.contains("deploy-failed"), "{t}");
    let failed = a
        .snap
        .capsules
        .iter()
        .filter(|c| c.outcome == Some(stella::domain::PromotionOutcome::DeployFailed))
        .count();
    assert!(failed > 0);
    chars(&mut a, "/deploy-failed");
    key(&mut a, KeyCode::Enter);
    let shown = a.filtered_capsules();
    assert_eq!(shown.len(), failed);
    assert!(
        shown
            .iter()
            .all(|c| c.outcome == Some(stella::domain::PromotionOutcome::DeployFailed))
    );
}

/// The prod lane's first app, rolled back: 1.0 promoted, 2.0 promoted, a
/// rollback to 1.0 an hour ago took 2.0 out; an older 0.9 before both.
fn rolled_back_lane(a: &mut App) -> (stella::domain::Digest, stella::domain::Digest) {
    let now = sample::now();
    let (good, bad, older) = (sample::digest(0), sample::digest(66), sample::digest(65));
    let lane = a.snap.lanes.iter_mut().find(|l| l.env == "prod").unwrap();
    let cell = &mut lane.cells[0];
    cell.live = Some(stella::tui::data::Live {
        digest: good.clone(),
        tag: Some("1.0".into()),
        since: now - chrono::Duration::hours(1),
    });
    cell.history = vec![
        (good.clone(), now - chrono::Duration::hours(1)),
        (bad.clone(), now - chrono::Duration::hours(3)),
        (good.clone(), now - chrono::Duration::days(2)),
        (older.clone(), now - chrono::Duration::days(5)),
    ];
    cell.taken_out = vec![(bad.clone(), now - chrono::Duration::hours(1))];
    a.lane = 2;
    a.cell = 0;
    (bad, older)
}

#[test]
fn the_rollback_picker_marks_what_a_rollback_took_out_offers_it_last_and_asks_twice() {
    let mut a = app();
    let (bad, older) = rolled_back_lane(&mut a);
    key(&mut a, KeyCode::Char('r'));
    let Some(Layer::Rollback { choices, .. }) = a.layers.last() else {
        panic!("no picker")
    };
    // The release the rollback removed comes last, marked.
    let order: Vec<_> = choices.iter().map(|c| c.digest.clone()).collect();
    assert_eq!(order, vec![older.clone(), bad.clone()]);
    assert!(choices[1].taken_out.is_some() && choices[0].taken_out.is_none());
    let t = text(&terminal(&a, 80, 24));
    assert!(t.contains("TAKEN OUT by a rollback"), "{t}");
    assert!(t.contains("enter roll back"), "{t}");
    // A plain earlier release: one enter, then the confirmation.
    key(&mut a, KeyCode::Enter);
    assert!(matches!(a.layers.last(), Some(Layer::Confirm { .. })));
    key(&mut a, KeyCode::Esc);
    // The removed one: the first enter only warns…
    key(&mut a, KeyCode::Char('r'));
    key(&mut a, KeyCode::Char('j'));
    assert_eq!(key(&mut a, KeyCode::Enter), vec![]);
    assert!(matches!(
        a.layers.last(),
        Some(Layer::Rollback { armed: true, .. })
    ));
    let t = text(&terminal(&a, 80, 24));
    assert!(t.contains("enter again"), "{t}");
    // …the second goes on to a confirmation that says so, and `y` acts.
    key(&mut a, KeyCode::Enter);
    let Some(Layer::Confirm { lines, .. }) = a.layers.last() else {
        panic!("no confirmation")
    };
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARNING: a rollback took this release out"))
    );
    assert_eq!(
        key(&mut a, KeyCode::Char('y')),
        vec![Effect::Rollback {
            app: "api-gateway".into(),
            env: "prod".into(),
            to: bad,
        }]
    );
}

#[test]
fn dialog_key_hints_stay_visible_at_80x24() {
    // The first blocked promote dialog: every verdict, a pin, the hints.
    let mut a = app();
    key(&mut a, KeyCode::Char('p'));
    let mut g = gates();
    g.request = match a.layers.last() {
        Some(Layer::Promote { request, .. }) => request.clone(),
        _ => panic!("no promote dialog"),
    };
    let mut vs = verdicts();
    vs[0].reasons = (0..12)
        .map(|i| format!("CVE-2024-{i:05} in package-{i} 1.0.{i} reachable and counted"))
        .collect();
    g.outcome = Ok((Decision::Deny, vs));
    reduce::reduce(&mut a, Msg::Gates(Box::new(g)));
    let t = text(&terminal(&a, 80, 24));
    assert!(
        t.contains("enter  promote") && t.contains("a  approve") && t.contains("esc  cancel"),
        "{t}"
    );
    // The lanes' rollback confirmation, whose digest wraps.
    let mut a = app();
    key(&mut a, KeyCode::Char('r'));
    key(&mut a, KeyCode::Enter);
    let t = text(&terminal(&a, 80, 24));
    assert!(t.contains("y  confirm") && t.contains("n  cancel"), "{t}");
    // A wrapped line goes on indented under its start.
    let digest_line = t.lines().position(|l| l.contains("to sha256:")).unwrap();
    let next = t.lines().nth(digest_line + 1).unwrap();
    let line = t.lines().nth(digest_line).unwrap();
    let col = line[..line.find("to sha256:").unwrap()].chars().count();
    let cont: Vec<char> = next.chars().skip(col).take(3).collect();
    assert!(
        cont[..2] == [' ', ' '] && cont[2].is_ascii_hexdigit(),
        "{t}"
    );
}

#[test]
fn a_status_about_a_pause_gives_way_when_another_process_resumes_the_run() {
    use stella::domain::RunState;
    let mut a = app();
    reduce::reduce(
        &mut a,
        Msg::Engine(EngineEvent {
            ticket: 0,
            kind: EventKind::Paused { promotion_id: 1000 },
        }),
    );
    assert!(a.status.as_ref().unwrap().text.contains("#1000 paused"));
    // The store says paused: the word stands.
    let mut snap = a.snap.clone();
    snap.promotions[0].promotion.run_state = Some(RunState::Paused);
    reduce::reduce(&mut a, Msg::Snapshot(Box::new(snap.clone())));
    assert!(a.status.as_ref().unwrap().text.contains("#1000 paused"));
    // `stella promotion resume` from a shell: the store says running.
    snap.promotions[0].promotion.run_state = Some(RunState::Running);
    reduce::reduce(&mut a, Msg::Snapshot(Box::new(snap.clone())));
    let s = &a.status.as_ref().unwrap().text;
    assert!(!s.contains("paused") && s.contains("#1000 resumed"), "{s}");
    let t = draw(&a);
    assert!(!t.contains("#1000 paused"), "{t}");
    // And once it ends, the line says how.
    snap.promotions[0].promotion.state = stella::domain::PromotionState::Decided;
    snap.promotions[0].promotion.outcome = Some(stella::domain::PromotionOutcome::Aborted);
    reduce::reduce(&mut a, Msg::Snapshot(Box::new(snap)));
    assert!(
        a.status
            .as_ref()
            .unwrap()
            .text
            .contains("#1000 ended: aborted")
    );
}

#[test]
fn reopening_the_filter_starts_empty() {
    let mut a = app();
    key(&mut a, KeyCode::Char('/'));
    chars(&mut a, "web");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.filter, "web");
    key(&mut a, KeyCode::Char('/'));
    chars(&mut a, "prod");
    assert_eq!(a.filter, "prod");
    let Some(Layer::Input { text, .. }) = a.layers.last() else {
        panic!("no input line")
    };
    assert_eq!(text, "prod");
}

#[test]
fn freezes_end_in_both_zones_and_the_next_one_is_named_on_gates_and_in_the_promote_dialog() {
    let local = FixedOffset::east_opt(9 * 3600).unwrap();
    let mut a = app();
    a.local = local;
    // staging → prod, during the sample's one-off freeze.
    a.lane = 1;
    key(&mut a, KeyCode::Char('p'));
    let mut g = gates();
    g.request = match a.layers.last() {
        Some(Layer::Promote { request, .. }) => request.clone(),
        _ => panic!("no promote dialog"),
    };
    assert_eq!(g.request.env, "prod");
    reduce::reduce(&mut a, Msg::Gates(Box::new(g.clone())));
    for t in [text(&terminal(&a, 200, 60)), {
        let mut b = app();
        b.local = local;
        b.screen = Screen::Gates;
        b.gates = Some(g.clone());
        text(&terminal(&b, 200, 60))
    }] {
        // The end in the window's zone and the user's (+09:00).
        assert!(
            t.contains("frozen by incident until Wed 2026-11-25 18:00 UTC")
                && t.contains("(your time Thu 2026-11-26 03:00 +09:00)"),
            "{t}"
        );
        // The next freeze: the Madrid weekend, in both zones.
        assert!(
            t.contains("next freeze: weekend from Fri 2026-11-27 18:00 CET (17:00 UTC)")
                && t.contains("(your time Sat 2026-11-28 02:00 +09:00) until Mon 2026-11-30"),
            "{t}"
        );
    }
}

#[test]
fn at_80_columns_every_tab_and_a_sign_of_every_lane() {
    let mut a = app();
    let t = text(&terminal(&a, 80, 24));
    let tabs = t.lines().next().unwrap();
    for n in 1..=Screen::ALL.len() {
        assert!(tabs.contains(&format!(" {n} ")), "tab {n} missing: {tabs}");
    }
    assert!(tabs.contains("1 Lanes"), "{tabs}");
    // Two lanes fit; the third is named at the edge, and reached with l.
    assert!(t.contains("1 more ▶"), "{t}");
    key(&mut a, KeyCode::Char('l'));
    key(&mut a, KeyCode::Char('l'));
    let t = text(&terminal(&a, 80, 24));
    assert!(t.contains("◀ 1 more") && t.contains(" prod "), "{t}");
    // The current screen's tab is named in full.
    a.screen = Screen::Rollout;
    let t = text(&terminal(&a, 80, 24));
    assert!(t.lines().next().unwrap().contains("7 Rollout"), "{t}");
    // The tabs sit where a click finds them.
    for (s, x, w) in views::tab_spans(&a, 80) {
        let label: String = t
            .lines()
            .next()
            .unwrap()
            .chars()
            .skip(x as usize)
            .take(w as usize)
            .collect();
        assert!(
            label.contains(&(s.index() + 1).to_string()),
            "{s:?} at {x}: {label:?}"
        );
    }
}

#[test]
fn hints_are_cut_whole_and_cancelled_steps_have_no_duration() {
    for screen in Screen::ALL {
        let mut a = app();
        a.screen = screen;
        let t = text(&terminal(&a, 80, 24));
        let footer = t.lines().last().unwrap();
        for cut in ["Roll back the", "Gates of the", "Promote the selected"] {
            assert!(!footer.contains(cut), "{screen:?}: {footer}");
        }
        assert!(footer.starts_with("? help  ·  q quit"), "{footer}");
        // Every part of the footer is a whole hint: a key, then words.
        for part in footer.split("  ·  ") {
            assert!(part.split_whitespace().count() >= 2, "{screen:?}: {footer}");
        }
    }
    let mut a = app();
    a.screen = Screen::Promotion;
    a.run = Some(999);
    a.snap.promotions[1].steps[2].state = StepState::Cancelled;
    a.step = 2;
    let t = text(&terminal(&a, 200, 60));
    let lines: Vec<Vec<char>> = t.lines().map(|l| l.chars().collect()).collect();
    let (row, col) = lines
        .iter()
        .enumerate()
        .find_map(|(r, l)| {
            let s: String = l.iter().collect();
            s.find("⊘ step-002").map(|b| (r, s[..b].chars().count()))
        })
        .expect("the cancelled step is drawn");
    let below: String = lines[row + 1].iter().skip(col).take(12).collect();
    assert_eq!(below.trim(), "cancelled", "{t}");
}

#[test]
fn the_promotion_screen_says_why_a_run_was_blocked_or_failed() {
    use stella::domain::PromotionOutcome;
    let mut a = app();
    // #999, sealed in capsule #40: blocked by its gates.
    a.snap.promotions[1].promotion.outcome = Some(PromotionOutcome::Blocked);
    a.screen = Screen::Promotion;
    a.run = Some(999);
    let fx = key(&mut a, KeyCode::Char('j'));
    assert!(fx.contains(&Effect::LoadCapsule(40)), "{fx:?}");
    let t = text(&terminal(&a, 120, 40));
    assert!(t.contains("reading capsule #40"), "{t}");
    let mut st = golden_statement();
    st.predicate.decision = Decision::Deny;
    st.predicate.gates = verdicts();
    reduce::reduce(
        &mut a,
        Msg::Capsule(Box::new(CapsuleDetail {
            id: 40,
            statement: Ok(st.clone()),
        })),
    );
    let t = text(&terminal(&a, 120, 40));
    assert!(
        t.contains("blocked by approval, freeze (capsule #40)"),
        "{t}"
    );
    assert!(
        t.contains("approval: FAIL — 0 of 1 required approvals"),
        "{t}"
    );
    assert!(
        t.contains("unblock: 1 more approval from: alice@example.com"),
        "{t}"
    );
    assert!(!t.contains("no output") || t.contains("blocked by"), "{t}");

    // Failed while deploying: the error the engine sealed.
    a.snap.promotions[1].promotion.outcome = Some(PromotionOutcome::DeployFailed);
    st.predicate.decision = Decision::Allow;
    st.predicate.gates = vec![];
    st.predicate.reason = Some("deploy: prod-local: unpacking layer 2: disk full".into());
    reduce::reduce(
        &mut a,
        Msg::Capsule(Box::new(CapsuleDetail {
            id: 40,
            statement: Ok(st),
        })),
    );
    let t = text(&terminal(&a, 120, 40));
    assert!(
        t.contains("deploy-failed: deploy: prod-local: unpacking layer 2: disk full"),
        "{t}"
    );
    // A run that went as asked says nothing more, and reads nothing.
    a.snap.promotions[1].promotion.outcome = Some(PromotionOutcome::Deployed);
    let t = text(&terminal(&a, 120, 40));
    assert!(!t.contains("disk full"), "{t}");
}

#[test]
fn keys_on_the_too_small_screen_do_nothing_but_quit() {
    let mut a = app();
    a.size = Some((60, 20));
    for c in ['2', 'p', 'r', '/', ':', 'j', 'l'] {
        assert!(key(&mut a, KeyCode::Char(c)).is_empty(), "{c}");
    }
    key(&mut a, KeyCode::Tab);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Lanes);
    assert!(a.layers.is_empty() && (a.lane, a.cell) == (0, 0));
    // Quitting still works; with work in flight, its question is shown
    // and answered.
    key(&mut a, KeyCode::Char('q'));
    assert!(a.quit);
    let mut b = app();
    b.size = Some((60, 20));
    reduce::reduce(
        &mut b,
        Msg::Engine(EngineEvent {
            ticket: 0,
            kind: EventKind::PromotionCreated {
                promotion_id: 5,
                app: "web".into(),
                digest: sample::digest(7),
                environment: "staging".into(),
                steps: sample::graph(3),
                critical_path: vec![],
                targets: vec![],
            },
        }),
    );
    key(&mut b, KeyCode::Char('q'));
    assert!(!b.quit);
    let t = text(&terminal(&b, 60, 20));
    assert!(t.contains("Quit with work in flight?"), "{t}");
    key(&mut b, KeyCode::Char('y'));
    assert_eq!(b.layers.len(), 0);
    // Big enough again: keys act.
    let mut c = app();
    c.size = Some((80, 24));
    key(&mut c, KeyCode::Char('2'));
    assert_eq!(c.screen, Screen::Promotion);
}

#[test]
fn sparklines_say_their_scale_and_time_and_capsule_columns_fit_their_words() {
    let mut a = app();
    key(&mut a, KeyCode::Char('7'));
    let mut r = sample::rollouts();
    reduce::reduce(&mut a, Msg::Rollouts(r.clone()));
    for i in 1..=4 {
        reduce::reduce(
            &mut a,
            Msg::Tick(sample::now() + chrono::Duration::seconds(i)),
        );
        r[0].stats.1.requests += 100;
        r[0].stats.1.errors += i as u64;
        reduce::reduce(&mut a, Msg::Rollouts(r.clone()));
    }
    let t = text(&terminal(&a, 120, 40));
    assert!(t.contains(", last 4s"), "{t}");
    assert!(t.contains("0.000–0.040"), "{t}");
    assert!(t.contains(" ms, last 4s"), "{t}");

    let mut a = app();
    a.screen = Screen::Capsules;
    a.snap.capsules[0].action = "canary-step".into();
    let t = text(&terminal(&a, 200, 60));
    let row = t.lines().find(|l| l.starts_with("│   40")).unwrap();
    assert!(row.contains("canary-step "), "{row}");
    let header = t.lines().find(|l| l.contains("ACTION")).unwrap();
    let (header, row) = (
        header.split("││").next().unwrap(),
        row.split("││").next().unwrap(),
    );
    let col = |s: &str, w: &str| s[..s.find(w).unwrap()].chars().count();
    assert_eq!(
        col(header, "DEC"),
        col(row, "canary-step") + "canary-step".len() + 1,
        "{header}\n{row}"
    );
}

#[test]
fn releases_say_where_each_digest_is_live() {
    let mut a = app();
    a.screen = Screen::Releases;
    // api-gateway: digest 0 is live in dev, 1 in staging, 2 in prod.
    let t = text(&terminal(&a, 120, 40));
    assert!(t.contains("● live in dev"), "{t}");
    assert!(t.contains("● live in staging"), "{t}");
    assert!(t.contains("live in dev since"), "{t}");
    // billing's 1.1 is not live (the sample leaves one cell empty).
    a.rel_app = 1;
    let t = text(&terminal(&a, 120, 40));
    assert!(t.contains("not live anywhere"), "{t}");
}

/// The sample with every screen's data loaded: gate verdicts, a capsule's
/// detail, the rollouts with a few seconds of history.
fn full_app() -> App {
    let mut a = app();
    a.gates = Some(gates());
    let id = a.filtered_capsules()[0].id;
    for c in a.snap.capsules.clone() {
        a.verified.insert(c.id, Verification::Valid);
    }
    a.detail = Some(CapsuleDetail {
        id,
        statement: Ok(golden_statement()),
    });
    let mut r = sample::rollouts();
    reduce::reduce(&mut a, Msg::Rollouts(r.clone()));
    for i in 1..=3 {
        reduce::reduce(
            &mut a,
            Msg::Tick(sample::now() + chrono::Duration::seconds(i)),
        );
        r[0].stats.1.requests += 100;
        r[0].stats.1.errors += i as u64;
        reduce::reduce(&mut a, Msg::Rollouts(r.clone()));
    }
    a.now = sample::now();
    a.run = Some(1000);
    a.step = 3;
    a
}

#[test]
fn every_screen_at_80x24_and_200x60() {
    // The screens of this file (a screen added elsewhere brings its own).
    let screens = [
        Screen::Lanes,
        Screen::Promotion,
        Screen::Gates,
        Screen::Freeze,
        Screen::Capsules,
        Screen::Releases,
        Screen::Rollout,
    ];
    for (w, h) in [(80, 24), (200, 60)] {
        for s in screens {
            let mut a = full_app();
            a.screen = s;
            let t = text(&terminal(&a, w, h));
            // The tab bar names every screen's number, the footer its way out.
            let first = t.lines().next().unwrap();
            assert!(
                first.contains(&format!("{} {}", s.index() + 1, s.title())),
                "{first}"
            );
            assert!(t.lines().last().unwrap().contains("q quit"), "{t}");
            insta::assert_snapshot!(format!("{}_{w}x{h}", s.name()), t);
        }
        // The layers, over the Lanes screen.
        let mut a = full_app();
        key(&mut a, KeyCode::Char('p'));
        let mut g = gates();
        g.request = match a.layers.last() {
            Some(Layer::Promote { request, .. }) => request.clone(),
            _ => panic!("no promote dialog"),
        };
        reduce::reduce(&mut a, Msg::Gates(Box::new(g)));
        insta::assert_snapshot!(format!("promote_{w}x{h}"), text(&terminal(&a, w, h)));
        let mut a = full_app();
        key(&mut a, KeyCode::Char('r'));
        insta::assert_snapshot!(
            format!("rollback_picker_{w}x{h}"),
            text(&terminal(&a, w, h))
        );
        key(&mut a, KeyCode::Enter);
        insta::assert_snapshot!(format!("confirm_{w}x{h}"), text(&terminal(&a, w, h)));
        let mut a = full_app();
        key(&mut a, KeyCode::Char('?'));
        insta::assert_snapshot!(format!("help_{w}x{h}"), text(&terminal(&a, w, h)));
    }
}

#[test]
fn the_waiting_screen_at_80x24_and_200x60() {
    for (w, h) in [(80, 24), (200, 60)] {
        let mut a = full_app();
        key(&mut a, KeyCode::Char('8'));
        assert_eq!(a.screen, Screen::Waiting, "8 opens it");
        let loading = text(&terminal(&a, w, h));
        assert!(loading.contains("Evaluating what waits"), "{loading}");
        reduce::reduce(&mut a, Msg::Waiting(Ok(sample::waiting())));
        let t = text(&terminal(&a, w, h));
        let first = t.lines().next().unwrap();
        assert!(first.contains("8 Waiting"), "{first}");
        assert!(t.lines().last().unwrap().contains("q quit"), "{t}");
        assert!(t.contains("staging ← dev"), "{t}");
        insta::assert_snapshot!(format!("waiting_{w}x{h}"), t);
    }
    // Everything is there at 200x60: blockers, clear times in the rule's
    // zone and the user's, the approvers by name, the next freeze.
    let mut a = full_app();
    key(&mut a, KeyCode::Char('8'));
    reduce::reduce(&mut a, Msg::Waiting(Ok(sample::waiting())));
    let t = text(&terminal(&a, 200, 60));
    for want in [
        "app-1 sha256:",
        "ready",
        "blocked by approval, upstream",
        "1 more from: alice@example.com, bob@example.com",
        "clears Wed 2026-11-25 14:00 CET (13:00 UTC) — yours Wed 2026-11-25 13:00 +00:00",
        "FROZEN by weekend until",
        "next freeze: weekend from",
    ] {
        assert!(t.contains(want), "{want} missing:\n{t}");
    }
    // An evaluation that failed says so, in place of the picture.
    reduce::reduce(&mut a, Msg::Waiting(Err("the store is gone".into())));
    assert!(text(&terminal(&a, 120, 30)).contains("cannot evaluate what waits: the store is gone"));
}
