//! What the workbench reads, from a real workspace: the lanes' health of
//! routed targets and the releases a rollback took out, through the same
//! read API `stella status` uses.

mod common;

use std::path::Path;

use chrono::{FixedOffset, Utc};
use common::{app_image, init_workspace, stella};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use stella::config::Config;
use stella::tui::data::{self, Health};
use stella::tui::keymap::Keymap;
use stella::tui::state::{App, Layer};
use stella::tui::theme::Theme;
use stella::workspace::Workspace;

fn snapshot(ws: &Path) -> data::Snapshot {
    let config = Config::load(&ws.join("stella.toml")).unwrap();
    data::load(&Workspace::at(ws.to_path_buf()), &config, Utc::now()).unwrap()
}

fn cell<'a>(snap: &'a data::Snapshot, env: &str, app: &str) -> &'a data::Cell {
    snap.lanes
        .iter()
        .find(|l| l.env == env)
        .unwrap()
        .cells
        .iter()
        .find(|c| c.app == app)
        .unwrap()
}

fn status_health(ws: &Path) -> String {
    let out = stella(ws).args(["status", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lane = v
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["env"] == "dev")
        .unwrap()
        .clone();
    lane["cells"][0]["health"].as_str().unwrap().to_owned()
}

#[test]
fn an_nginx_lane_is_healthy_when_its_stable_slot_serves_the_live_release() {
    let dir = init_workspace();
    let ws = dir.path();
    let toml = std::fs::read_to_string(ws.join("stella.toml")).unwrap();
    let toml = toml.replace(
        "[environments.dev]\ntargets = [\"dev-local\"]",
        "[environments.dev]\ntargets = [\"dev-edge\"]",
    ) + &format!(
        "\n[targets.dev-edge]\nkind = \"nginx\"\nlisten = \"127.0.0.1:{}\"\npath = \"deploy/edge\"\n",
        common::free_port()
    );
    std::fs::write(ws.join("stella.toml"), toml).unwrap();
    let v1 = app_image(ws, "1.0", "v1");
    let v2 = app_image(ws, "2.0", "v2");
    stella(ws)
        .args(["release", "mark-live", "api-gateway:1.0", "--env", "dev"])
        .assert()
        .success();
    let state = ws.join(".stella/router/dev-edge");
    std::fs::create_dir_all(&state).unwrap();
    let routes = |stable: &str| {
        let r = serde_json::json!({
            "version": 3,
            "stable": {"digest": stable, "dir": ws.join("deploy/edge/releases/x")},
            "candidate": null,
            "weight": 0
        });
        std::fs::write(state.join("routes.json"), r.to_string()).unwrap();
    };
    routes(&v1);
    // Its controller runs (this process stands in for it).
    std::fs::write(state.join("pid"), std::process::id().to_string()).unwrap();
    assert_eq!(
        cell(&snapshot(ws), "dev", "api-gateway").health,
        Health::Serving
    );
    assert_eq!(status_health(ws), "serving");
    // The stable slot holds another release: drift.
    routes(&v2);
    assert_eq!(
        cell(&snapshot(ws), "dev", "api-gateway").health,
        Health::Drift
    );
    assert_eq!(status_health(ws), "drift");
    // No controller: nothing serves.
    routes(&v1);
    std::fs::remove_file(state.join("pid")).unwrap();
    assert_eq!(
        cell(&snapshot(ws), "dev", "api-gateway").health,
        Health::Drift
    );
}

#[test]
fn the_release_a_rollback_took_out_is_marked_in_the_workbench_picker() {
    let dir = init_workspace();
    let ws = dir.path();
    let v1 = app_image(ws, "1.0", "v1");
    let v2 = app_image(ws, "2.0", "v2");
    for tag in ["1.0", "2.0"] {
        let out = stella(ws)
            .args([
                "release",
                "promote",
                &format!("api-gateway:{tag}"),
                "--to",
                "dev",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::stderr(&out));
    }
    let snap = snapshot(ws);
    assert!(cell(&snap, "dev", "api-gateway").taken_out.is_empty());
    let out = stella(ws)
        .args(["release", "rollback", "api-gateway", "--env", "dev"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let snap = snapshot(ws);
    let c = cell(&snap, "dev", "api-gateway");
    assert_eq!(c.live.as_ref().unwrap().digest.to_string(), v1);
    let taken: Vec<String> = c.taken_out.iter().map(|(d, _)| d.to_string()).collect();
    assert_eq!(taken, vec![v2.clone()]);

    // The workbench's picker: 2.0 is the only other release, marked, and
    // one enter does not roll back to it.
    let mut app = App::new(
        snap,
        Utc::now(),
        FixedOffset::east_opt(0).unwrap(),
        Keymap::default_keys(),
        Theme::builtin("dark", true).unwrap(),
    );
    let press = |app: &mut App, code| {
        stella::tui::reduce::key(app, KeyEvent::new(code, KeyModifiers::NONE))
    };
    press(&mut app, KeyCode::Char('r'));
    let Some(Layer::Rollback { choices, .. }) = app.layers.last() else {
        panic!("no picker: {:?}", app.status.as_ref().map(|s| &s.text))
    };
    assert_eq!(choices.len(), 1);
    assert_eq!(choices[0].digest.to_string(), v2);
    assert!(choices[0].taken_out.is_some());
    press(&mut app, KeyCode::Enter);
    assert!(matches!(
        app.layers.last(),
        Some(Layer::Rollback { armed: true, .. })
    ));
}

#[test]
fn a_rollback_without_to_passes_over_what_an_earlier_rollback_took_out_as_the_picker_does() {
    let dir = init_workspace();
    let ws = dir.path();
    let v1 = app_image(ws, "1.0", "v1");
    let v2 = app_image(ws, "2.0", "v2");
    let v3 = app_image(ws, "3.0", "v3");
    for tag in ["1.0", "2.0", "3.0"] {
        let out = stella(ws)
            .args([
                "release",
                "promote",
                &format!("api-gateway:{tag}"),
                "--to",
                "dev",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::stderr(&out));
    }
    let live = |ws: &Path| {
        cell(&snapshot(ws), "dev", "api-gateway")
            .live
            .as_ref()
            .unwrap()
            .digest
            .to_string()
    };
    // 3.0 is bad: back to 2.0.
    stella(ws)
        .args(["release", "rollback", "api-gateway", "--env", "dev"])
        .assert()
        .success();
    assert_eq!(live(ws), v2);
    // 2.0 is bad too: the next rollback goes on back to 1.0, not to 3.0,
    // which the first rollback took out — the picker's first choice too.
    let snap = snapshot(ws);
    let mut app = App::new(
        snap,
        Utc::now(),
        FixedOffset::east_opt(0).unwrap(),
        Keymap::default_keys(),
        Theme::builtin("dark", true).unwrap(),
    );
    stella::tui::reduce::key(
        &mut app,
        KeyEvent::new(KeyCode::Char('r'), KeyModifiers::NONE),
    );
    let Some(Layer::Rollback { choices, .. }) = app.layers.last() else {
        panic!("no picker")
    };
    let offered: Vec<String> = choices.iter().map(|c| c.digest.to_string()).collect();
    assert_eq!(offered, vec![v1.clone(), v3.clone()]);
    stella(ws)
        .args(["release", "rollback", "api-gateway", "--env", "dev"])
        .assert()
        .success();
    assert_eq!(live(ws), v1);
    // Named with --to, it is still reachable.
    stella(ws)
        .args([
            "release",
            "rollback",
            "api-gateway",
            "--env",
            "dev",
            "--to",
            &v3,
        ])
        .assert()
        .success();
    assert_eq!(live(ws), v3);
}
