//! The whole picture on the demo: `stella gate check --all` lists every
//! release waiting to come into each lane with its blockers and when each
//! clears; asked again at those times, the blockers are gone; the
//! workbench's Waiting screen shows the same.

mod common;

use std::path::Path;

use chrono::{DateTime, FixedOffset, Utc};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::Value;
use stella::config::Config;
use stella::tui::action::Screen;
use stella::tui::keymap::Keymap;
use stella::tui::state::App;
use stella::tui::theme::Theme;
use stella::workspace::Workspace;

fn demo() -> (tempfile::TempDir, std::path::PathBuf) {
    let parent = tempfile::tempdir().unwrap();
    let ws = parent.path().join("demo");
    let out = common::stella(parent.path())
        .args(["demo", "demo", "--no-open", "--router", "builtin"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    (parent, ws)
}

fn all(ws: &Path, args: &[&str]) -> Value {
    let out = common::stella(ws)
        .args(["gate", "check", "--all", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn lane<'a>(v: &'a Value, env: &str) -> &'a Value {
    v["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["environment"] == env)
        .unwrap_or_else(|| panic!("no lane {env} in {v:#}"))
}

fn waiting<'a>(lane: &'a Value, app: &str) -> &'a Value {
    lane["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["app"] == app)
        .unwrap_or_else(|| panic!("{app} is not waiting in {lane:#}"))
}

fn blocker<'a>(w: &'a Value, gate: &str) -> Option<&'a Value> {
    w["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["gate"] == gate)
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn every_waiting_release_with_its_blockers_and_when_they_clear() {
    let (_keep, ws) = demo();
    let v = all(&ws, &[]);
    let lanes: Vec<&str> = v["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["environment"].as_str().unwrap())
        .collect();
    assert!(
        lanes.contains(&"staging") && lanes.contains(&"prod"),
        "every lane promoted from another: {lanes:?}"
    );
    assert!(!lanes.contains(&"dev"), "dev has no upstream");

    // staging: web is ready; api-gateway waits for one approval, and the
    // approvers who may give it are named.
    let staging = lane(&v, "staging");
    assert_eq!(staging["from"], "dev");
    assert_eq!(waiting(staging, "web")["ready"], true);
    let api = waiting(staging, "api-gateway");
    assert_eq!(api["ready"], false);
    let approval = blocker(api, "approval").expect("api-gateway needs an approval");
    assert_eq!(approval["approvals_needed"], 1);
    let missing: Vec<&str> = approval["missing_approvers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        !missing.is_empty() && missing.iter().all(|a| a.contains('@')),
        "{missing:?}"
    );
    assert!(approval["clears"].is_null(), "an approval takes someone");
    let billing = waiting(staging, "billing");
    assert!(blocker(billing, "security").is_some(), "{billing:#}");

    // prod is frozen: the freeze's end in the window's zone and the
    // user's, the next freeze's start, and the soak's end.
    let prod = lane(&v, "prod");
    let active = prod["freeze"]["active"].as_array().unwrap();
    assert!(!active.is_empty(), "the demo freezes prod: {prod:#}");
    let next = &prod["freeze"]["next"];
    assert!(next["starts"]["written"].is_string(), "{prod:#}");
    assert!(time(&next["starts"]["at"]) > time(&v["now"]));
    let api = waiting(prod, "api-gateway");
    let freeze = blocker(api, "freeze").expect("frozen");
    let freeze_ends = time(&freeze["clears"]["at"]);
    let latest_end = active
        .iter()
        .filter_map(|a| a["ends"]["at"].as_str())
        .map(|s| time(&Value::from(s)))
        .max()
        .unwrap();
    assert_eq!(
        freeze_ends, latest_end,
        "it clears when every freeze has ended"
    );
    assert!(freeze["clears"]["yours"].as_str().unwrap().contains(':'));
    let soak = blocker(api, "upstream").expect("the soak is not over");
    let soak_ends = time(&soak["clears"]["at"]);
    assert!(soak_ends > time(&v["now"]));
    assert!(
        blocker(api, "pin").is_some(),
        "the demo pins api-gateway in prod"
    );

    // Asked at the times it gave, those blockers are gone.
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let later = all(&ws, &["--env", "prod", "--at", &at(soak_ends)]);
    let api_later = waiting(lane(&later, "prod"), "api-gateway");
    assert!(blocker(api_later, "upstream").is_none(), "{api_later:#}");
    let thawed = all(&ws, &["--env", "prod", "--at", &at(freeze_ends)]);
    assert_eq!(thawed["lanes"].as_array().unwrap().len(), 1, "only prod");
    let api_thawed = waiting(lane(&thawed, "prod"), "api-gateway");
    assert!(blocker(api_thawed, "freeze").is_none(), "{api_thawed:#}");

    // The text says the same, readable.
    let out = common::stella(&ws)
        .args(["gate", "check", "--all"])
        .output()
        .unwrap();
    let text = common::stdout(&out);
    assert!(text.contains("staging ← dev"), "{text}");
    assert!(text.contains("next freeze: "), "{text}");
    assert!(
        text.contains(&format!("1 more from: {}", missing.join(", "))),
        "{text}"
    );

    // An unknown lane is a usage error naming the lanes.
    let out = common::stella(&ws)
        .args(["gate", "check", "--all", "--env", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", common::stderr(&out));

    // The workbench's Waiting screen: the same picture.
    let config = Config::load(&ws.join("stella.toml")).unwrap();
    let workspace = Workspace::at(ws.clone());
    let store = workspace.read_store().unwrap();
    let now = time(&v["now"]);
    let overview =
        stella::engine::waiting::overview(&workspace, &store, &config, None, None, now).unwrap();
    let mut app = App::new(
        stella::tui::data::load(&workspace, &config, now).unwrap(),
        now,
        FixedOffset::east_opt(3600).unwrap(),
        Keymap::default_keys(),
        Theme::builtin("dark", true).unwrap(),
    );
    app.screen = Screen::Waiting;
    app.waiting = Some(Ok(overview));
    let mut t = Terminal::new(TestBackend::new(200, 120)).unwrap();
    t.draw(|f| stella::tui::views::render(f, &app)).unwrap();
    let buf = t.backend().buffer();
    let mut screen = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            screen.push_str(buf[(x, y)].symbol());
        }
        screen.push('\n');
    }
    for l in v["lanes"].as_array().unwrap() {
        assert!(
            screen.contains(&format!(
                "{} ← {}",
                l["environment"].as_str().unwrap(),
                l["from"].as_str().unwrap()
            )),
            "{screen}"
        );
        for w in l["waiting"].as_array().unwrap() {
            let short = &w["digest"].as_str().unwrap()["sha256:".len()..][..12];
            let line = screen
                .lines()
                .find(|s| s.contains(&format!(" {} sha256:{short}", w["app"].as_str().unwrap())))
                .unwrap_or_else(|| {
                    panic!(
                        "{} in {} is not on the screen:\n{screen}",
                        w["app"], l["environment"]
                    )
                });
            if w["ready"] == true {
                assert!(line.contains("ready"), "{line}");
            }
            for b in w["blockers"].as_array().unwrap() {
                assert!(line.contains(b["gate"].as_str().unwrap()), "{line}");
            }
        }
    }
    // Clear times in the user's zone (UTC+1 here), beside the rule's.
    assert!(screen.contains("+01:00"), "{screen}");
    assert!(screen.contains("next freeze: "), "{screen}");
}
