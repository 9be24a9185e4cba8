//! The workflow executor: parallel steps tracking the critical path,
//! timeouts that kill a whole process group, retries, `if`, outputs and
//! substitution, cancellation.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use stella::workflow::Workflow;
use stella::workflow::executor::{
    Builtins, Control, ExecEvent, RunOutcome, StepResult, StepState, execute,
};

/// The engine's builtins are not under test here: every one succeeds.
struct NoBuiltins;

impl Builtins for NoBuiltins {
    fn run<'a>(
        &'a self,
        _name: &'a str,
        _with: &'a BTreeMap<String, String>,
        _vars: &'a BTreeMap<String, String>,
    ) -> Pin<Box<dyn Future<Output = StepResult> + Send + 'a>> {
        Box::pin(async {
            StepResult {
                ok: true,
                ..Default::default()
            }
        })
    }
}

fn workflow(dir: &tempfile::TempDir, toml: &str) -> Workflow {
    let path = dir.path().join("wf.toml");
    std::fs::write(&path, toml).unwrap();
    Workflow::load(&path).unwrap()
}

async fn run(w: &Workflow, parallel: usize, control: Control) -> (RunOutcome, Vec<ExecEvent>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let vars = BTreeMap::from([
        ("release.digest".to_owned(), "sha256:abc".to_owned()),
        ("env.name".to_owned(), "staging".to_owned()),
    ]);
    let outcome = execute(w, vars, None, Arc::new(NoBuiltins), parallel, control, tx).await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (outcome, events)
}

fn log_of(events: &[ExecEvent], id: &str) -> String {
    events
        .iter()
        .find_map(|e| match e {
            ExecEvent::Finished { step, log, .. } if step == id => Some(log.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn parallel_branches_make_the_makespan_track_the_critical_path() {
    let dir = tempfile::tempdir().unwrap();
    let w = workflow(
        &dir,
        r#"
[[steps]]
id = "a"
run = "sleep 0.5"
[[steps]]
id = "b"
run = "sleep 1"
needs = ["a"]
[[steps]]
id = "c"
run = "sleep 0.5"
needs = ["a"]
[[steps]]
id = "c2"
run = "sleep 0.5"
needs = ["a"]
[[steps]]
id = "d"
run = "sleep 0.5"
needs = ["b", "c", "c2"]
"#,
    );
    // a → b → d: 0.5 + 1 + 0.5 s.
    let critical = Duration::from_millis(2000);
    let (outcome, _) = run(&w, 4, Control::default()).await;
    assert!(outcome.ok);
    assert!(outcome.makespan >= critical, "{:?}", outcome.makespan);
    assert!(
        outcome.makespan <= critical.mul_f64(1.2),
        "makespan {:?} is more than 20 % over the critical path {critical:?}",
        outcome.makespan
    );

    // With one step at a time it is the sum instead.
    let (outcome, _) = run(&w, 1, Control::default()).await;
    assert!(
        outcome.makespan >= Duration::from_millis(3000),
        "{:?}",
        outcome.makespan
    );
}

#[tokio::test]
async fn a_hanging_script_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let w = workflow(
        &dir,
        &format!(
            r#"
[[steps]]
id = "hang"
run = "sleep 60 & echo $! > {}; wait"
timeout = "1s"
"#,
            pid_file.display()
        ),
    );
    let started = std::time::Instant::now();
    let (outcome, events) = run(&w, 2, Control::default()).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(outcome.states["hang"], StepState::Failed);
    assert!(!outcome.ok);
    let error = events.iter().find_map(|e| match e {
        ExecEvent::Finished { error, .. } => error.clone(),
        _ => None,
    });
    assert!(
        error
            .unwrap()
            .contains("timed out after 1s; its process group was killed")
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let alive =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
    assert!(!alive, "the background child {pid} outlived the timeout");
}

#[tokio::test]
async fn retries_conditions_outputs_and_substitution() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("count");
    let w = workflow(
        &dir,
        &format!(
            r#"
[[steps]]
id = "flaky"
run = "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; [ $n -ge 3 ]"
retries = 2

[[steps]]
id = "build"
run = "echo built $STELLA_RELEASE_DIGEST; echo path=/srv/${{{{ env.name }}}} >> $STELLA_OUTPUT"

[[steps]]
id = "use"
run = "echo using ${{{{ steps.build.outputs.path }}}} for ${{{{ release.digest }}}}"
needs = ["build"]

[[steps]]
id = "broken"
run = "exit 3"
needs = ["build"]

[[steps]]
id = "after-success"
run = "true"
needs = ["broken"]

[[steps]]
id = "on-failure"
run = "echo cleaning up"
needs = ["broken"]
if = "failure()"

[[steps]]
id = "always"
run = "true"
needs = ["broken"]
if = "always()"

[[steps]]
id = "tolerated"
run = "exit 1"
continue_on_error = true

[[steps]]
id = "after-tolerated"
run = "true"
needs = ["tolerated"]
"#,
            c = counter.display()
        ),
    );
    let (outcome, events) = run(&w, 3, Control::default()).await;
    let s = &outcome.states;
    assert_eq!(s["flaky"], StepState::Succeeded);
    let attempts = events.iter().find_map(|e| match e {
        ExecEvent::Finished { step, attempts, .. } if step == "flaky" => Some(*attempts),
        _ => None,
    });
    assert_eq!(attempts, Some(3));
    assert_eq!(log_of(&events, "build"), "built sha256:abc\n");
    assert_eq!(outcome.outputs["build"]["path"], "/srv/staging");
    assert_eq!(
        log_of(&events, "use"),
        "using /srv/staging for sha256:abc\n"
    );
    assert_eq!(s["broken"], StepState::Failed);
    assert_eq!(log_of(&events, "broken"), "");
    assert_eq!(s["after-success"], StepState::Skipped);
    assert_eq!(s["on-failure"], StepState::Succeeded);
    assert_eq!(s["always"], StepState::Succeeded);
    assert_eq!(s["tolerated"], StepState::Failed);
    assert_eq!(s["after-tolerated"], StepState::Succeeded);
    assert!(!outcome.ok, "broken failed without continue_on_error");
}

#[tokio::test]
async fn a_run_can_be_cancelled_and_paused() {
    let dir = tempfile::tempdir().unwrap();
    let w = workflow(
        &dir,
        "[[steps]]\nid = \"long\"\nrun = \"sleep 30\"\n[[steps]]\nid = \"next\"\nrun = \"true\"\nneeds = [\"long\"]\n",
    );
    let control = Control::default();
    let c = control.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.cancel();
    });
    let started = std::time::Instant::now();
    let (outcome, _) = run(&w, 2, control).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(outcome.states["long"], StepState::Cancelled);
    assert_eq!(outcome.states["next"], StepState::Cancelled);

    // Paused before it starts: nothing runs until resumed.
    let w = workflow(&dir, "[[steps]]\nid = \"one\"\nrun = \"true\"\n");
    let control = Control::default();
    control.pause();
    let c = control.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        c.resume();
    });
    let (outcome, _) = run(&w, 2, control).await;
    assert_eq!(outcome.states["one"], StepState::Succeeded);
    assert!(
        outcome.makespan >= Duration::from_millis(400),
        "{:?}",
        outcome.makespan
    );
}

#[tokio::test]
async fn the_script_builtin_runs_like_run() {
    let dir = tempfile::tempdir().unwrap();
    let w = workflow(
        &dir,
        "[[steps]]\nid = \"s\"\nuses = \"script\"\nwith = { command = \"echo in $STELLA_ENV_NAME\" }\n",
    );
    let (outcome, events) = run(&w, 1, Control::default()).await;
    assert!(outcome.ok);
    assert_eq!(log_of(&events, "s"), "in staging\n");
}
