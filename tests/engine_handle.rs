//! The engine driven in-process through its handle, as the workbench does:
//! the order of events, durable-before-visible, pause, resume and abort.

mod common;

use std::time::Duration;

use stella::engine::{self, EngineEvent, EventKind, PromoteRequest};
use stella::workflow::executor::StepState;
use stella::workspace::Workspace;
use tokio::sync::mpsc::UnboundedReceiver;

fn setup(workflow: &str) -> (tempfile::TempDir, Workspace, stella::config::Config) {
    let dir = common::workspace_with_dev_workflow(workflow);
    common::app_image(dir.path(), "1.0", "v1");
    common::app_image(dir.path(), "2.0", "v2");
    let ws = Workspace::at(dir.path().to_owned());
    let config = ws.load_config().unwrap();
    (dir, ws, config)
}

fn request(reference: &str) -> PromoteRequest {
    PromoteRequest {
        reference: reference.into(),
        also: Vec::new(),
        to: "dev".into(),
        approve_with: None,
        asker: stella::engine::keys::Asker::Account,
        break_glass: None,
        parallel: 4,
        expect: None,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The next event matching `pred`, collecting everything seen on the way.
async fn until(
    events: &mut UnboundedReceiver<EngineEvent>,
    seen: &mut Vec<EventKind>,
    what: &str,
    pred: impl Fn(&EventKind) -> bool,
) -> EventKind {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}; saw {seen:#?}"))
            .expect("the engine's stream stays open");
        seen.push(ev.kind.clone());
        if pred(&ev.kind) {
            return ev.kind;
        }
    }
}

fn name(k: &EventKind) -> &'static str {
    match k {
        EventKind::Note(_) => "note",
        EventKind::Recorded(_) => "recorded",
        EventKind::Resolved { .. } => "resolved",
        EventKind::Approved { .. } => "approved",
        EventKind::GatesEvaluated { .. } => "gates",
        EventKind::PromotionCreated { .. } => "created",
        EventKind::StepStarted { .. } => "step-started",
        EventKind::StepLog { .. } => "step-log",
        EventKind::StepFinished { .. } => "step-finished",
        EventKind::TargetSwitched { .. } => "switched",
        EventKind::TargetsRestored { .. } => "restored",
        EventKind::RunFinished { .. } => "run-finished",
        EventKind::Paused { .. } => "paused",
        EventKind::Resumed { .. } => "resumed",
        EventKind::Aborting { .. } => "aborting",
        EventKind::CapsuleSealed { .. } => "sealed",
        EventKind::CapsuleAttached { .. } => "attached",
        EventKind::CapsuleAttachFailed { .. } => "attach-failed",
        EventKind::Failed { .. } => "failed",
    }
}

#[test]
fn a_promotion_streams_its_events_in_order_each_already_in_the_store() {
    let (dir, ws, config) = setup(
        "[[steps]]\nid = \"deploy\"\nuses = \"deploy\"\n\n[[steps]]\nid = \"smoke\"\nrun = \"echo one; echo two\"\nneeds = [\"deploy\"]\n",
    );
    runtime().block_on(async {
        let (handle, mut events) = engine::spawn(ws.clone(), config);
        let pending = handle.promote(request("api-gateway:1.0"));
        let ticket = pending.ticket;
        let mut seen = Vec::new();
        // A step's start is in the store by the time it is seen.
        until(
            &mut events,
            &mut seen,
            "smoke's start",
            |k| matches!(k, EventKind::StepStarted { step, .. } if step == "smoke"),
        )
        .await;
        let state: String = rusqlite::Connection::open(dir.path().join(".stella/stella.db"))
            .unwrap()
            .query_row("SELECT state FROM steps WHERE step = 'smoke'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(state == "running" || state == "succeeded", "{state}");
        until(&mut events, &mut seen, "the capsule", |k| {
            matches!(k, EventKind::CapsuleSealed { .. })
        })
        .await;
        let done = pending.wait().await.unwrap();
        assert_eq!(done.outcome, stella::domain::PromotionOutcome::Deployed);
        assert!(dir.path().join(&done.capsule).is_file());

        let names: Vec<&str> = seen.iter().map(name).collect();
        let mut order = names.clone();
        order.dedup();
        order.retain(|n| *n != "step-log");
        assert_eq!(
            order,
            [
                "resolved",
                "gates",
                "created",
                "step-started",
                "step-finished",
                "switched",
                "step-started",
                "step-finished",
                "run-finished",
                "sealed"
            ],
            "{names:?}"
        );
        let logs: Vec<&str> = seen
            .iter()
            .filter_map(|k| match k {
                EventKind::StepLog { step, line, .. } if step == "smoke" => Some(line.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(logs, ["one", "two"]);
        let _ = ticket;
        handle.shutdown().await;
    });
    assert_eq!(
        std::fs::read_to_string(dir.path().join("deploy/dev/current/index.html")).unwrap(),
        "v1"
    );
}

#[test]
fn pause_holds_the_next_step_resume_releases_it_abort_restores_and_seals() {
    let (dir, ws, config) = setup(
        "[[steps]]\nid = \"deploy\"\nuses = \"deploy\"\n\n[[steps]]\nid = \"warm\"\nrun = \"sleep 0.5\"\nneeds = [\"deploy\"]\n\n[[steps]]\nid = \"soak\"\nrun = \"sleep 60\"\nneeds = [\"warm\"]\n",
    );
    let current = || std::fs::read_to_string(dir.path().join("deploy/dev/current/index.html"));
    // v1 twice: aborted once during the soak, then paused, resumed and
    // aborted again.
    runtime().block_on(async {
        let (handle, mut events) = engine::spawn(ws.clone(), config.clone());
        let mut seen = Vec::new();

        let first = handle.promote(request("api-gateway:1.0"));
        let EventKind::PromotionCreated { promotion_id, .. } =
            until(&mut events, &mut seen, "promotion #1", |k| {
                matches!(k, EventKind::PromotionCreated { .. })
            })
            .await
        else {
            unreachable!()
        };
        until(&mut events, &mut seen, "soak", |k| {
            matches!(k, EventKind::StepStarted { step, .. } if step == "soak")
        })
        .await;
        // v1 was nothing before: an abort leaves nothing serving.
        handle.abort(promotion_id).wait().await.unwrap();
        let done = first.wait().await.unwrap();
        assert_eq!(done.outcome, stella::domain::PromotionOutcome::Aborted);
        assert!(current().is_err());

        let v1 = handle.promote(request("api-gateway:1.0"));
        let EventKind::PromotionCreated { promotion_id, .. } =
            until(&mut events, &mut seen, "promotion #2", |k| {
                matches!(k, EventKind::PromotionCreated { .. })
            })
            .await
        else {
            unreachable!()
        };
        until(&mut events, &mut seen, "warm", |k| {
            matches!(k, EventKind::StepStarted { step, .. } if step == "warm")
        })
        .await;
        handle.pause(promotion_id).wait().await.unwrap();
        let run_state: String = ws
            .open_store()
            .unwrap()
            .conn()
            .query_row(
                "SELECT state FROM runs WHERE promotion_id = ?1",
                [promotion_id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(run_state, "paused", "a pause is durable before it is seen");
        until(&mut events, &mut seen, "warm's end", |k| {
            matches!(k, EventKind::StepFinished { step, state: StepState::Succeeded, .. } if step == "warm")
        })
        .await;
        // Paused: soak does not start while we wait.
        let held = tokio::time::timeout(Duration::from_millis(800), async {
            until(&mut events, &mut Vec::new(), "soak", |k| {
                matches!(k, EventKind::StepStarted { step, .. } if step == "soak")
            })
            .await
        })
        .await;
        assert!(held.is_err(), "soak started while paused");
        handle.resume(promotion_id).wait().await.unwrap();
        until(&mut events, &mut seen, "soak after resume", |k| {
            matches!(k, EventKind::StepStarted { step, .. } if step == "soak")
        })
        .await;
        assert_eq!(current().unwrap(), "v1", "deployed before the soak");
        handle.abort(promotion_id).wait().await.unwrap();
        let done = v1.wait().await.unwrap();
        assert_eq!(done.outcome, stella::domain::PromotionOutcome::Aborted);
        assert!(current().is_err(), "aborted: back to nothing serving");

        // Steering what is not running is a usage error naming the id.
        let e = handle.pause(promotion_id).wait().await.unwrap_err();
        assert!(e.message.contains("is not running"), "{}", e.message);
        handle.shutdown().await;
        // After shutdown, requests fail instead of hanging.
        let e = handle
            .promote(request("api-gateway:2.0"))
            .wait()
            .await
            .unwrap_err();
        assert!(e.message.contains("engine"), "{}", e.message);
    });
    // Both aborts were decided and sealed, and the chain holds.
    let out = common::stella(dir.path())
        .args(["promotion", "list", "--json"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcomes: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["aborted", "aborted"]);
    let capsules: i64 = rusqlite::Connection::open(dir.path().join(".stella/stella.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM capsules", [], |r| r.get(0))
        .unwrap();
    assert_eq!(capsules, 2);
    common::stella(dir.path())
        .args(["audit", "verify-chain"])
        .assert()
        .success();
}

#[test]
fn approvals_go_through_the_handle_and_are_attached_to_the_digest() {
    let (_dir, ws, config) = setup("[[steps]]\nid = \"deploy\"\nuses = \"deploy\"\n");
    let digest = stella::registry::Layout::open(&ws.root().join("images/api-gateway"))
        .unwrap()
        .resolve(
            &stella::domain::Selector::Tag("1.0".into()),
            "api-gateway:1.0",
        )
        .unwrap();
    let req = |key: Option<&str>| stella::engine::approve::ApproveRequest {
        app: "api-gateway".into(),
        digest: digest.clone(),
        env: "staging".into(),
        key: key.map(str::to_owned),
        comment: None,
        purpose: stella::domain::approval::Purpose::Promote,
    };
    runtime().block_on(async {
        let (handle, mut events) = engine::spawn(ws.clone(), config);
        // Only the sealing key exists: nothing to approve with.
        let e = handle.approve(req(None)).wait().await.unwrap_err();
        assert!(
            e.message.contains("no key to approve with"),
            "{}",
            e.message
        );
        stella::engine::keys::create_key(&ws, "alice", "alice@example.com").unwrap();
        let done = handle.approve(req(None)).wait().await.unwrap();
        assert_eq!(done.signer, "alice@example.com");
        let mut seen = Vec::new();
        until(
            &mut events,
            &mut seen,
            "the approval",
            |k| matches!(k, EventKind::Approved { signer, .. } if signer == "alice@example.com"),
        )
        .await;
        handle.shutdown().await;
    });
    let attached = ws.open_store().unwrap().evidence_for(&digest).unwrap();
    assert!(
        attached.iter().any(|e| e.kind == "approval"),
        "{attached:?}"
    );
}

#[test]
fn record_changes_are_commands_each_committed_then_shown() {
    let (_dir, ws, config) = setup("[[steps]]\nid = \"deploy\"\nuses = \"deploy\"\n");
    let digest: stella::domain::Digest = common::app_image(ws.root(), "3.0", "v3").parse().unwrap();
    runtime().block_on(async {
        let (handle, mut events) = engine::spawn(ws.clone(), config);
        let mut seen = Vec::new();
        handle
            .mark_release_live(engine::MarkLiveRequest {
                app: "api-gateway".into(),
                digest: digest.clone(),
                env: "dev".into(),
                since: chrono::Utc::now(),
            })
            .wait()
            .await
            .unwrap();
        let EventKind::Recorded(what) = until(&mut events, &mut seen, "recorded", |k| {
            matches!(k, EventKind::Recorded(_))
        })
        .await
        else {
            unreachable!()
        };
        assert!(what.contains("live in dev"), "{what}");
        // Committed before it was shown.
        let live = ws
            .read_store()
            .unwrap()
            .live_at("dev", "api-gateway", &chrono::Utc::now())
            .unwrap()
            .unwrap();
        assert_eq!(live.digest, digest);

        let added = handle
            .new_key(engine::KeyRequest {
                name: "carol".into(),
                email: "carol@example.com".into(),
                import_pem: None,
                another: false,
            })
            .wait()
            .await
            .unwrap();
        assert!(added.private.unwrap().exists());
        assert!(ws.read_store().unwrap().key("carol").unwrap().is_some());

        // Steering what does not run says so, and writes no request.
        let e = handle
            .steer(engine::SteerRequest {
                promotion_id: 999,
                request: stella::domain::OperatorRequest::Pause,
                asker: stella::engine::keys::Asker::Account,
            })
            .wait()
            .await
            .unwrap_err();
        assert!(e.message.contains("no promotion #999"), "{}", e.message);
        assert!(
            ws.read_store()
                .unwrap()
                .requests("dev", 10)
                .unwrap()
                .is_empty()
        );

        // Nothing died: recovery finds nothing.
        assert!(handle.recover().wait().await.unwrap().is_empty());
        handle.shutdown().await;
    });
}
