//! The real binary in a real terminal (tmux), driven with keys and read
//! from the screen: waiting for text to appear, never sleeping blindly.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux session that is killed when dropped.
struct Session {
    name: String,
}

impl Session {
    fn start(name: &str, cwd: &Path, command: &str) -> Session {
        let s = Session {
            name: format!("{name}-{}", std::process::id()),
        };
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &s.name,
                "-x",
                "120",
                "-y",
                "40",
                "-c",
            ])
            .arg(cwd)
            .arg(command)
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux new-session failed");
        s
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `text`; panics with the screen if not.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {text:?}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            Command::new("tmux")
                .args(["send-keys", "-t", &self.name, k])
                .status()
                .unwrap();
            // Keys sent as one burst can merge into an escape sequence
            // (esc then q reads as alt-q); a person types slower.
            std::thread::sleep(Duration::from_millis(60));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

fn binary() -> String {
    assert_cmd::cargo::cargo_bin("stella").display().to_string()
}

fn db(ws: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(ws.join(".stella/stella.db")).unwrap()
}

#[test]
fn the_demo_workbench_approves_promotes_watches_and_replays_with_keys() {
    if !common::require(&["tmux"]) {
        return;
    }
    let parent = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let s = Session::start(
        "stella-e2e",
        parent.path(),
        &format!(
            "HOME={} {} demo demo; sleep 5",
            home.path().display(),
            binary()
        ),
    );
    let ws = parent.path().join("demo");
    s.wait_for("1 Lanes");
    s.wait_for("api-gateway");
    // api-gateway 1.2 in dev needs an approval for staging: open the
    // promote dialog, see it missing. The workbench acts as the demo's
    // on-call (its key signs what it asks), so with four eyes the approval
    // comes from someone else: bob, from his own terminal. Open the dialog
    // again, see the gates pass, promote.
    s.keys(&["p"]);
    s.wait_for("0 of 1 required approvals");
    common::stella(&ws)
        .args([
            "approve",
            "api-gateway:1.2",
            "--env",
            "staging",
            "--key",
            "bob",
        ])
        .assert()
        .success();
    s.keys(&["Escape", "p"]);
    s.wait_for("All gates pass.");
    s.keys(&["Enter"]);
    // (The demo's canary in edge runs promotions of its own meanwhile, so
    // the number this one gets is not fixed.)
    s.wait_for("api-gateway sha256:330f84cb0542 → staging");
    s.wait_for("6/6 steps");
    // The steps finish before the capsule is sealed: the header says
    // "sealing" for a moment, then the outcome.
    let done = s.wait_for("→ staging  deployed");
    assert!(done.contains("✓ smoke"), "{done}");
    // Its capsule, replayed from the screen.
    s.keys(&["Enter"]);
    s.wait_for("promote api-gateway in staging");
    s.keys(&["R"]);
    s.wait_for("replays identically");
    // The demo's canary is alive on the Rollout screen: web 3.1 at 10 %
    // under the demo's load (through nginx where it is installed, as in
    // CI; else the built-in router).
    s.keys(&["Escape", "7"]);
    s.wait_for("canary running: [10%]");
    s.wait_for("— pass");
    s.keys(&["q"]);
    s.wait_for("logs:");
    // Quitting stopped the demo's canary and its router.
    let router_pid = ws.join(".stella/router/edge-web/pid");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while router_pid.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the demo's router outlived the workbench"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // The store agrees with what the screen said.
    let (outcome, env, app): (String, String, String) = db(&ws)
        .query_row(
            "SELECT outcome, environment, app FROM promotions WHERE app = 'api-gateway' ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (outcome.as_str(), env.as_str(), app.as_str()),
        ("deployed", "staging", "api-gateway")
    );
    // Sealed as the identity the workbench acts as, proven by its key.
    let by: String = db(&ws)
        .query_row(
            "SELECT requested_by FROM promotions WHERE app = 'api-gateway' ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(by, "oncall@demo.example");
    // The approval signed from the screen is attached to 1.2's digest.
    let approvals: i64 = db(&ws)
        .query_row(
            "SELECT count(*) FROM evidence_links l JOIN evidence e ON e.digest = l.evidence_digest
             WHERE e.kind = 'approval' AND l.subject_digest =
               (SELECT digest FROM promotions WHERE app = 'api-gateway' ORDER BY id DESC LIMIT 1)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(approvals, 1);
    assert_eq!(
        std::fs::read_to_string(ws.join("deploy/staging/api-gateway/current/index.html")).unwrap(),
        "<h1>api-gateway 1.2</h1>\n"
    );
    common::stella(&ws)
        .args(["audit", "verify-chain"])
        .assert()
        .success();
}

#[test]
fn a_promotion_from_another_process_shows_up_in_a_running_workbench() {
    if !common::require(&["tmux"]) {
        return;
    }
    let parent = tempfile::tempdir().unwrap();
    let ws = parent.path().join("demo");
    common::stella(parent.path())
        .args(["demo", "demo", "--no-open"])
        .assert()
        .success();
    let s = Session::start("stella-watch", &ws, &format!("{} tui; sleep 5", binary()));
    s.wait_for("1 Lanes");
    s.wait_for("#6 deployed 3.0");
    let cli = Command::new(binary())
        .args([
            "release", "promote", "web:3.1", "--to", "staging", "--key", "oncall",
        ])
        .current_dir(&ws)
        .env_remove("STELLA_WORKSPACE")
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let finished = Instant::now();
    let screen = s.wait_for("#17 deployed 3.1");
    // The store is watched four times a second.
    assert!(
        finished.elapsed() < Duration::from_secs(2),
        "seen {:?} after the CLI finished",
        finished.elapsed()
    );
    assert!(screen.contains("staging"), "{screen}");
    s.keys(&["q"]);
}

#[test]
fn keys_on_the_too_small_screen_do_nothing_but_quit() {
    if !common::require(&["tmux"]) {
        return;
    }
    let parent = tempfile::tempdir().unwrap();
    let ws = parent.path().join("demo");
    common::stella(parent.path())
        .args(["demo", "demo", "--no-open"])
        .assert()
        .success();
    let s = Session::start("stella-small", &ws, &format!("{} tui; sleep 5", binary()));
    s.wait_for("1 Lanes");
    let resize = |w: &str, h: &str| {
        assert!(
            Command::new("tmux")
                .args(["resize-window", "-t", &s.name, "-x", w, "-y", h])
                .status()
                .unwrap()
                .success()
        );
    };
    resize("60", "20");
    s.wait_for("Terminal too small");
    // Keys that would open the Promotion screen, the promote dialog and
    // the command line: none of them acts unseen.
    s.keys(&["2", "p", ":"]);
    resize("120", "40");
    let screen = s.wait_for("In flight");
    assert!(
        !screen.contains(" Promote ") && !screen.contains("log (j/k"),
        "{screen}"
    );
    // Quitting works from the small screen.
    resize("60", "20");
    s.wait_for("Terminal too small");
    s.keys(&["q"]);
    // The workbench leaves: its screen goes.
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.screen().contains("Terminal too small") {
        assert!(Instant::now() < deadline, "q did not quit: {}", s.screen());
        std::thread::sleep(Duration::from_millis(100));
    }
}
