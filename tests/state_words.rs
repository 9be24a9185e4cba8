//! Rules the source keeps, read from the source itself (a lint).
//!
//! States are enums in `domain/`: outside it, no code compares a word of
//! the vocabularies (outcome, promotion/run/step state, canary phase,
//! operator request, analysis verdict, cause) as a string.

use std::path::Path;

/// The words of `stella::domain::state`'s vocabularies, from the types.
fn words() -> Vec<&'static str> {
    use stella::domain::{
        AnalysisVerdict, CanaryPhase, Cause, OperatorRequest, PromotionOutcome, PromotionState,
        RunState, StepState,
    };
    let mut w = Vec::new();
    w.extend(PromotionOutcome::words());
    w.extend(PromotionState::words());
    w.extend(RunState::words());
    w.extend(StepState::words());
    w.extend(CanaryPhase::words());
    w.extend(OperatorRequest::words());
    w.extend(AnalysisVerdict::words());
    w.push("fail");
    w.extend(Cause::words());
    w.sort();
    w.dedup();
    w
}

/// Words that also name other things (the `analysis` builtin step), so a
/// match arm on them is not a comparison of a state.
const ALSO_NAMES: &[&str] = &["analysis", "schedule", "operator"];

/// Files allowed to compare these words: none, outside `domain/`.
const NOT_YET: &[&str] = &[];

fn comparisons(text: &str, words: &[&str]) -> Vec<(usize, String)> {
    let alt = |words: &mut dyn Iterator<Item = &&str>| {
        words
            .map(|w| regex::escape(w))
            .collect::<Vec<_>>()
            .join("|")
    };
    let word = format!(r#""(?:{})""#, alt(&mut words.iter()));
    let arm_word = format!(
        r#""(?:{})""#,
        alt(&mut words.iter().filter(|w| !ALSO_NAMES.contains(w)))
    );
    let forms = [
        // `x == "live"`, `"live" != x`
        format!(r#"(?:==|!=)\s*{word}|{word}\s*(?:==|!=)"#),
        // `Some("cancelled")`, in a pattern or a comparison
        format!(r#"Some\(\s*{word}\s*\)"#),
        // `matches!(x, "aborted" | …)`
        format!(r#"matches!\([^;]*?,\s*{word}"#),
        // a match arm: `"paused" =>`, `"running" | "paused" =>`
        format!(r#"^\s*\(?{arm_word}\s*(?:=>|\||,\s*(?:Some|None|_))"#),
    ];
    let re = regex::Regex::new(&forms.join("|")).unwrap();
    let mut found = Vec::new();
    let mut in_tests = false;
    for (i, line) in text.lines().enumerate() {
        // Unit tests at the end of a file may spell the words out.
        if line.starts_with("#[cfg(test)]") {
            in_tests = true;
        }
        if in_tests || line.trim_start().starts_with("//") {
            continue;
        }
        if re.is_match(line) {
            found.push((i + 1, line.trim().to_owned()));
        }
    }
    found
}

#[test]
fn no_state_word_is_compared_as_a_string_outside_domain() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let words = words();
    let mut offences = Vec::new();
    for entry in walkdir::WalkDir::new(root.join("src")) {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel.starts_with("src/domain/") || NOT_YET.contains(&rel.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        for (line, code) in comparisons(&text, &words) {
            offences.push(format!("{rel}:{line}: {code}"));
        }
    }
    assert!(
        offences.is_empty(),
        "state words compared as strings (use the enums of domain::state):\n{}",
        offences.join("\n")
    );
}

#[test]
fn the_rule_sees_each_form_it_names() {
    let words = words();
    for code in [
        r#"if p.state == "running" {"#,
        r#"if "live" != outcome {"#,
        r#"Some("cancelled") | Some("interrupted") => x,"#,
        r#"let held = matches!(p.state.as_str(), "running" | "paused");"#,
        r#"        "deployed" | "live" => Role::GatePass,"#,
        r#"        ("running", Some(at)) => 1,"#,
        r#"    if verdict == "FAIL" {"#,
    ] {
        assert_eq!(comparisons(code, &words).len(), 1, "{code}");
    }
    for code in [
        r#"println!("running {x}");"#,
        r#"("promote", Action::Promote),"#,
        r#"let s = "live".to_owned();"#,
    ] {
        assert!(comparisons(code, &words).is_empty(), "{code}");
    }
}
