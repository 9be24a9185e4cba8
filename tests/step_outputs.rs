//! Step outputs and the promotion context are data: a `run` script (and
//! the `script` builtin's command) reads each `${{ … }}` from an
//! environment variable, so a value is never spliced into bash as code.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use stella::workflow::Workflow;
use stella::workflow::executor::{
    Builtins, Control, ExecEvent, RunOutcome, StepResult, StepState, execute,
};

/// Records the parameters each builtin was called with.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, BTreeMap<String, String>)>>);

impl Builtins for Recorder {
    fn run<'a>(
        &'a self,
        name: &'a str,
        with: &'a BTreeMap<String, String>,
        _vars: &'a BTreeMap<String, String>,
    ) -> Pin<Box<dyn Future<Output = StepResult> + Send + 'a>> {
        self.0.lock().unwrap().push((name.to_owned(), with.clone()));
        Box::pin(async {
            StepResult {
                ok: true,
                ..Default::default()
            }
        })
    }
}

/// A value that runs a command if bash ever reads it as code.
fn hostile(marker: &std::path::Path) -> String {
    let m = marker.display();
    format!(r#"x; touch {m}; $(touch {m}) `touch {m}` "quoted" 'single' \ $HOME * && touch {m}"#)
}

async fn run(
    dir: &tempfile::TempDir,
    toml: &str,
    vars: BTreeMap<String, String>,
    builtins: Arc<Recorder>,
) -> (RunOutcome, Vec<ExecEvent>) {
    let path = dir.path().join("wf.toml");
    std::fs::write(&path, toml).unwrap();
    let w = Workflow::load(&path).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let outcome = execute(
        &w,
        vars,
        Some(dir.path().to_owned()),
        builtins,
        2,
        Control::default(),
        tx,
    )
    .await;
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
async fn a_hostile_step_output_is_not_run_and_arrives_intact() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("INJECTED");
    let value = hostile(&marker);
    std::fs::write(dir.path().join("note.txt"), format!("NOTE={value}\n")).unwrap();
    let toml = r#"
[[steps]]
id = "meta"
run = "cat note.txt >> $STELLA_OUTPUT"

[[steps]]
id = "quoted"
needs = ["meta"]
run = "printf '%s\n' \"${{ steps.meta.outputs.NOTE }}\""

[[steps]]
id = "bare"
needs = ["meta"]
run = "printf '%s\n' ${{ steps.meta.outputs.NOTE }}; printf '%s\n' \"$STELLA_STEP_META_NOTE\""

[[steps]]
id = "single"
needs = ["meta"]
run = "printf '%s\n' 'note: ${{ steps.meta.outputs.NOTE }}.'"

[[steps]]
id = "nested"
needs = ["meta"]
run = "bash -c 'printf \"%s\\n\" ${{ steps.meta.outputs.NOTE }}'"

[[steps]]
id = "builtin-script"
needs = ["meta"]
uses = "script"
with = { command = "printf '%s\n' ${{ steps.meta.outputs.NOTE }}" }

[[steps]]
id = "notify"
needs = ["meta"]
uses = "notify"
with = { url = "http://127.0.0.1:9/hook", message = "note: ${{ steps.meta.outputs.NOTE }}" }
"#;
    let recorder = Arc::new(Recorder::default());
    let (outcome, events) = run(&dir, toml, BTreeMap::new(), recorder.clone()).await;
    assert!(!marker.exists(), "the step output ran as code");
    assert!(outcome.ok, "{:?}", outcome.states);
    assert_eq!(outcome.outputs["meta"]["NOTE"], value);
    assert_eq!(log_of(&events, "quoted"), format!("{value}\n"));
    assert_eq!(log_of(&events, "bare"), format!("{value}\n{value}\n"));
    // In single quotes the reference is left for the shell that reads
    // them: a plain `printf '…'` prints it, and a nested `bash -c '…'`
    // (seen pasting the value into its code) expands it as data.
    assert_eq!(
        log_of(&events, "single"),
        "note: \"${STELLA_STEP_META_NOTE}\".\n"
    );
    assert_eq!(log_of(&events, "nested"), format!("{value}\n"));
    assert_eq!(log_of(&events, "builtin-script"), format!("{value}\n"));
    // A builtin's parameters are data already: the value, substituted.
    let calls = recorder.0.lock().unwrap();
    let notify = calls.iter().find(|(n, _)| n == "notify").unwrap();
    assert_eq!(notify.1["message"], format!("note: {value}"));
}

#[tokio::test]
async fn promotion_context_values_are_data_too() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("INJECTED");
    let tag = hostile(&marker);
    let vars = BTreeMap::from([
        ("release.tag".to_owned(), tag.clone()),
        ("release.app".to_owned(), "api".to_owned()),
    ]);
    let toml = r#"
[[steps]]
id = "show"
run = "echo \"tag ${{ release.tag }} of ${{ release.app }}\""
"#;
    let (outcome, events) = run(&dir, toml, vars, Arc::new(Recorder::default())).await;
    assert!(!marker.exists(), "the tag ran as code");
    assert_eq!(outcome.states["show"], StepState::Succeeded);
    assert_eq!(log_of(&events, "show"), format!("tag {tag} of api\n"));
}

#[test]
fn each_substitution_becomes_a_quoted_variable_reference() {
    use stella::workflow::executor::substitute_script;
    let vars = BTreeMap::from([("release.digest".to_owned(), "sha256:abc".to_owned())]);
    let outputs = BTreeMap::from([(
        "build-1".to_owned(),
        BTreeMap::from([("path".to_owned(), "/srv/x; rm -rf /".to_owned())]),
    )]);
    let (script, env) = substitute_script(
        "deploy ${{ steps.build-1.outputs.path }} ${{release.digest}}",
        &vars,
        &outputs,
    )
    .unwrap();
    assert_eq!(
        script,
        r#"deploy "${STELLA_STEP_BUILD_1_PATH}" "${STELLA_RELEASE_DIGEST}""#
    );
    assert_eq!(env["STELLA_STEP_BUILD_1_PATH"], "/srv/x; rm -rf /");
    assert_eq!(env["STELLA_RELEASE_DIGEST"], "sha256:abc");

    // Quoted for where it stands: outside quotes, in "…", in '…'.
    let (script, _) = substitute_script(
        r#"a ${{ release.digest }} "b ${{ release.digest }}" 'c ${{ release.digest }}' \'d ${{ release.digest }}"#,
        &vars,
        &outputs,
    )
    .unwrap();
    assert_eq!(
        script,
        r#"a "${STELLA_RELEASE_DIGEST}" "b ${STELLA_RELEASE_DIGEST}" 'c "${STELLA_RELEASE_DIGEST}"' \'d "${STELLA_RELEASE_DIGEST}""#
    );

    // Two outputs that would share one variable with different values.
    let outputs = BTreeMap::from([
        (
            "a-b".to_owned(),
            BTreeMap::from([("k".to_owned(), "1".to_owned())]),
        ),
        (
            "a_b".to_owned(),
            BTreeMap::from([("k".to_owned(), "2".to_owned())]),
        ),
    ]);
    let err = substitute_script(
        "echo ${{ steps.a-b.outputs.k }} ${{ steps.a_b.outputs.k }}",
        &vars,
        &outputs,
    )
    .unwrap_err();
    assert!(err.contains("STELLA_STEP_A_B_K"), "{err}");
}
