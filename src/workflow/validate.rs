//! Loading (with includes) and validating a template into a `Workflow`:
//! the steps in dependency order, their layers, and the critical path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use petgraph::graph::{DiGraph, NodeIndex};

use super::builtins::{self, Param};
use super::template::{StepTemplate, Template};
use crate::config::{Locator, Problem};
use crate::domain::duration::parse_duration;
use crate::domain::release::valid_app_name;

/// When a step runs, given how its `needs` went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Every need succeeded (the default).
    Success,
    /// Some need failed.
    Failure,
    Always,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Builtin {
        name: String,
        with: BTreeMap<String, toml::Value>,
    },
    Run {
        script: String,
        env: BTreeMap<String, String>,
    },
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub action: Action,
    pub needs: Vec<String>,
    pub timeout: Option<Duration>,
    pub retries: u32,
    pub condition: Condition,
    pub continue_on_error: bool,
    /// The template file it came from.
    pub source: PathBuf,
}

/// A validated workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// Steps in a dependency order (every step after its needs).
    pub steps: Vec<Step>,
    /// Steps grouped by depth: layer N needs only layers before it.
    pub layers: Vec<Vec<String>>,
    /// The longest chain of dependent steps.
    pub critical_path: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("cannot read workflow {path}: {source}", path = .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render(.0))]
    Invalid(Vec<(PathBuf, Problem)>),
}

fn render(problems: &[(PathBuf, Problem)]) -> String {
    problems
        .iter()
        .map(|(p, pr)| format!("{}:{}:{}: {}", p.display(), pr.line, pr.col, pr.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The context names a substitution may use, besides step outputs.
pub const CONTEXT: &[&str] = &[
    "release.app",
    "release.digest",
    "release.tag",
    "env.name",
    "target.path",
    "target.name",
];

/// Every `${{ expr }}` in a string: (byte offset, expr).
pub fn substitutions(s: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    let mut base = 0;
    while let Some(start) = rest.find("${{") {
        let after = &rest[start + 3..];
        let Some(end) = after.find("}}") else {
            out.push((base + start, String::new()));
            break;
        };
        out.push((base + start, after[..end].trim().to_owned()));
        base += start + 3 + end + 2;
        rest = &after[end + 2..];
    }
    out
}

struct Loaded {
    path: PathBuf,
    src: String,
    template: Template,
}

fn load_all(
    path: &Path,
    seen: &mut Vec<PathBuf>,
    out: &mut Vec<Loaded>,
    problems: &mut Vec<(PathBuf, Problem)>,
) -> Result<(), WorkflowError> {
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    if seen.contains(&canonical) {
        return Ok(());
    }
    seen.push(canonical);
    let src = std::fs::read_to_string(path).map_err(|source| WorkflowError::Read {
        path: path.to_owned(),
        source,
    })?;
    let loc = Locator::new(&src);
    let template: Template = match toml::from_str(&src) {
        Ok(t) => t,
        Err(e) => {
            problems.push((
                path.to_owned(),
                loc.problem(e.span(), e.message().trim_end().to_owned()),
            ));
            return Ok(());
        }
    };
    for inc in &template.include {
        let p = path.parent().unwrap_or(Path::new(".")).join(inc.get_ref());
        if !p.is_file() {
            problems.push((
                path.to_owned(),
                loc.problem(
                    Some(inc.span()),
                    format!(
                        "included template `{}` not found (paths are relative to this file)",
                        inc.get_ref()
                    ),
                ),
            ));
            continue;
        }
        load_all(&p, seen, out, problems)?;
    }
    out.push(Loaded {
        path: path.to_owned(),
        src,
        template,
    });
    Ok(())
}

impl Workflow {
    /// Loads and validates the template at `path`, with its includes.
    pub fn load(path: &Path) -> Result<Workflow, WorkflowError> {
        let mut loaded = Vec::new();
        let mut problems = Vec::new();
        load_all(path, &mut Vec::new(), &mut loaded, &mut problems)?;
        if !problems.is_empty() {
            return Err(WorkflowError::Invalid(problems));
        }
        validate(&loaded)
    }
}

fn validate(loaded: &[Loaded]) -> Result<Workflow, WorkflowError> {
    let mut problems: Vec<(PathBuf, Problem)> = Vec::new();
    let mut steps: Vec<(&Loaded, &StepTemplate, std::ops::Range<usize>)> = Vec::new();
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    for l in loaded {
        for s in &l.template.steps {
            let st = s.get_ref();
            let loc = Locator::new(&l.src);
            let at = |span: std::ops::Range<usize>, m: String| {
                (l.path.clone(), loc.problem(Some(span), m))
            };
            let id = st.id.get_ref().as_str();
            if !valid_app_name(id) {
                problems.push(at(
                    st.id.span(),
                    format!("step id `{id}` must be letters, digits, `-`, `_` or `.`"),
                ));
            }
            if ids.insert(id, steps.len()).is_some() {
                problems.push(at(
                    st.id.span(),
                    format!("step `{id}` is defined twice; step ids must be unique"),
                ));
            }
            steps.push((l, st, s.span()));
        }
    }
    if steps.is_empty() {
        let l = loaded.last().expect("the template itself is loaded");
        problems.push((
            l.path.clone(),
            Locator::new(&l.src).problem(None, "the workflow has no steps; add `[[steps]]` tables"),
        ));
    }

    let mut graph: DiGraph<usize, ()> = DiGraph::new();
    let nodes: Vec<NodeIndex> = (0..steps.len()).map(|i| graph.add_node(i)).collect();
    for (i, (l, st, span)) in steps.iter().enumerate() {
        let loc = Locator::new(&l.src);
        let at =
            |span: std::ops::Range<usize>, m: String| (l.path.clone(), loc.problem(Some(span), m));
        let id = st.id.get_ref();
        match (&st.uses, &st.run) {
            (Some(_), Some(r)) => problems.push(at(
                r.span(),
                format!("step `{id}` has both `uses` and `run`; a step does one thing"),
            )),
            (None, None) => problems.push(at(
                span.clone(),
                format!("step `{id}` needs `uses = \"<builtin>\"` or `run = \"<bash>\"`"),
            )),
            (Some(u), None) => match builtins::find(u.get_ref()) {
                None => problems.push(at(
                    u.span(),
                    format!(
                        "step `{id}` uses unknown builtin `{}`; builtins: {}",
                        u.get_ref(),
                        builtins::names()
                    ),
                )),
                Some(b) => {
                    for (name, value) in &st.with {
                        match b.params.iter().find(|(n, _, _)| n == name) {
                            None => problems.push(at(
                                value.span(),
                                format!(
                                    "step `{id}`: `{}` takes no parameter `{name}`{}",
                                    b.name,
                                    if b.params.is_empty() {
                                        String::new()
                                    } else {
                                        format!(
                                            " (it takes: {})",
                                            b.params
                                                .iter()
                                                .map(|p| p.0)
                                                .collect::<Vec<_>>()
                                                .join(", ")
                                        )
                                    }
                                ),
                            )),
                            Some((_, ty, _)) => {
                                if let Some(m) = type_problem(*ty, value.get_ref()) {
                                    problems.push(at(
                                        value.span(),
                                        format!("step `{id}`: `{name}` {m}"),
                                    ));
                                }
                            }
                        }
                    }
                    for (name, _, required) in b.params {
                        if *required && !st.with.contains_key(*name) {
                            problems.push(at(
                                span.clone(),
                                format!(
                                    "step `{id}`: `{}` needs `with = {{ {name} = … }}`",
                                    b.name
                                ),
                            ));
                        }
                    }
                }
            },
            (None, Some(_)) => {
                if !st.with.is_empty() {
                    problems.push(at(span.clone(), format!("step `{id}`: `with` is for builtins; give a `run` step its values through `env`")));
                }
            }
        }
        for n in &st.needs {
            match ids.get(n.get_ref().as_str()) {
                Some(&j) if j == i => {
                    problems.push(at(n.span(), format!("step `{id}` needs itself")))
                }
                Some(&j) => {
                    graph.add_edge(nodes[j], nodes[i], ());
                }
                None => problems.push(at(
                    n.span(),
                    format!(
                        "step `{id}` needs `{}`, which is not a step (steps: {})",
                        n.get_ref(),
                        ids.keys().copied().collect::<Vec<_>>().join(", ")
                    ),
                )),
            }
        }
        if let Some(t) = &st.timeout
            && let Err(e) = parse_duration(t.get_ref())
        {
            problems.push(at(t.span(), format!("step `{id}`: timeout {e}")));
        }
        if let Some(c) = &st.condition
            && !matches!(c.get_ref().trim(), "success()" | "failure()" | "always()")
        {
            problems.push(at(
                c.span(),
                format!("step `{id}`: `if` must be `success()`, `failure()` or `always()`"),
            ));
        }
    }

    // Cycles, named.
    if let Err(cycle) = petgraph::algo::toposort(&graph, None) {
        let start = graph[cycle.node_id()];
        let path = find_cycle(&graph, cycle.node_id()).unwrap_or_default();
        let names: Vec<&str> = path
            .iter()
            .map(|n| steps[graph[*n]].1.id.get_ref().as_str())
            .collect();
        let (l, st, _) = &steps[start];
        problems.push((
            l.path.clone(),
            Locator::new(&l.src).problem(
                Some(st.id.span()),
                format!(
                    "steps need each other in a cycle: {}; remove one of these `needs`",
                    names.join(" → ")
                ),
            ),
        ));
    }

    // Substitutions: context names, or outputs of steps this one needs
    // (directly or not). Reachability is asked only for step outputs, on
    // one shared graph, so a large template validates in linear time.
    if problems.is_empty() {
        let mut space = petgraph::algo::DfsSpace::new(&graph);
        for (i, (l, st, _)) in steps.iter().enumerate() {
            let loc = Locator::new(&l.src);
            let mut texts: Vec<(std::ops::Range<usize>, &str)> = Vec::new();
            if let Some(r) = &st.run {
                texts.push((r.span(), r.get_ref()));
            }
            for v in st.with.values() {
                if let toml::Value::String(s) = v.get_ref() {
                    texts.push((v.span(), s));
                }
            }
            for (span, text) in texts {
                for (_, expr) in substitutions(text) {
                    let mut needs = |j: usize| {
                        petgraph::algo::has_path_connecting(
                            &graph,
                            nodes[j],
                            nodes[i],
                            Some(&mut space),
                        )
                    };
                    if let Some(m) = substitution_problem(&expr, &ids, &mut needs, i, &steps) {
                        problems.push((
                            l.path.clone(),
                            loc.problem(
                                Some(span.clone()),
                                format!("step `{}`: {m}", st.id.get_ref()),
                            ),
                        ));
                    }
                }
            }
        }
    }

    if !problems.is_empty() {
        problems.sort_by(|a, b| (&a.0, a.1.line, a.1.col).cmp(&(&b.0, b.1.line, b.1.col)));
        problems.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        return Err(WorkflowError::Invalid(problems));
    }

    let order = petgraph::algo::toposort(&graph, None).expect("cycles were reported");
    let mut depth = vec![0usize; steps.len()];
    let mut via: Vec<Option<usize>> = vec![None; steps.len()];
    for n in &order {
        let i = graph[*n];
        for pred in graph.neighbors_directed(*n, petgraph::Direction::Incoming) {
            let p = graph[pred];
            if depth[p] + 1 > depth[i] {
                depth[i] = depth[p] + 1;
                via[i] = Some(p);
            }
        }
    }
    let mut layers: Vec<Vec<String>> = vec![Vec::new(); depth.iter().max().map_or(0, |d| d + 1)];
    for (i, d) in depth.iter().enumerate() {
        layers[*d].push(steps[i].1.id.get_ref().clone());
    }
    let mut end = (0..steps.len())
        .max_by_key(|&i| (depth[i], std::cmp::Reverse(i)))
        .unwrap_or(0);
    let mut critical = vec![steps[end].1.id.get_ref().clone()];
    while let Some(p) = via[end] {
        critical.push(steps[p].1.id.get_ref().clone());
        end = p;
    }
    critical.reverse();

    let steps = order
        .iter()
        .map(|n| {
            let (l, st, _) = &steps[graph[*n]];
            Step {
                id: st.id.get_ref().clone(),
                action: match (&st.uses, &st.run) {
                    (Some(u), _) => Action::Builtin {
                        name: u.get_ref().clone(),
                        with: st
                            .with
                            .iter()
                            .map(|(k, v)| (k.clone(), v.get_ref().clone()))
                            .collect(),
                    },
                    (_, Some(r)) => Action::Run {
                        script: r.get_ref().clone(),
                        env: st.env.clone(),
                    },
                    _ => unreachable!("validated"),
                },
                needs: st.needs.iter().map(|n| n.get_ref().clone()).collect(),
                timeout: st
                    .timeout
                    .as_ref()
                    .and_then(|t| parse_duration(t.get_ref()).ok()),
                retries: st.retries,
                condition: match st.condition.as_ref().map(|c| c.get_ref().trim()) {
                    Some("failure()") => Condition::Failure,
                    Some("always()") => Condition::Always,
                    _ => Condition::Success,
                },
                continue_on_error: st.continue_on_error,
                source: l.path.clone(),
            }
        })
        .collect();
    Ok(Workflow {
        steps,
        layers,
        critical_path: critical,
    })
}

fn type_problem(ty: Param, v: &toml::Value) -> Option<String> {
    match (ty, v) {
        (Param::String, toml::Value::String(_))
        | (Param::Integer, toml::Value::Integer(_))
        | (Param::Number, toml::Value::Integer(_) | toml::Value::Float(_)) => None,
        (Param::Duration, toml::Value::String(s)) => parse_duration(s).err(),
        (Param::OneOf(options), toml::Value::String(s)) if options.contains(&s.as_str()) => None,
        (Param::OneOf(options), _) => Some(format!("must be one of {}", options.join(", "))),
        (Param::String, _) => Some("must be a string".into()),
        (Param::Integer, _) => Some("must be a whole number".into()),
        (Param::Number, _) => Some("must be a number, like 0.05".into()),
        (Param::Duration, _) => Some("must be a duration like \"30s\"".into()),
    }
}

fn substitution_problem(
    expr: &str,
    ids: &BTreeMap<&str, usize>,
    needs: &mut dyn FnMut(usize) -> bool,
    this: usize,
    steps: &[(&Loaded, &StepTemplate, std::ops::Range<usize>)],
) -> Option<String> {
    if expr.is_empty() {
        return Some("an unterminated `${{`; close it with `}}`".into());
    }
    if CONTEXT.contains(&expr) {
        return None;
    }
    let parts: Vec<&str> = expr.split('.').collect();
    if let ["steps", id, "outputs", key] = parts.as_slice() {
        if key.is_empty() {
            return Some(format!("`${{{{ {expr} }}}}` names no output"));
        }
        return match ids.get(id) {
            None => Some(format!(
                "`${{{{ {expr} }}}}` refers to step `{id}`, which does not exist"
            )),
            Some(j) if *j == this || !needs(*j) => Some(format!(
                "`${{{{ {expr} }}}}` uses step `{}`'s output, but this step does not need it; add it to `needs`",
                steps[*j].1.id.get_ref()
            )),
            Some(_) => None,
        };
    }
    Some(format!(
        "`${{{{ {expr} }}}}` is not defined; use {}, or steps.ID.outputs.KEY",
        CONTEXT.join(", ")
    ))
}

/// A cycle through `start`, as nodes (the first repeated at the end).
fn find_cycle(g: &DiGraph<usize, ()>, start: NodeIndex) -> Option<Vec<NodeIndex>> {
    fn dfs(
        g: &DiGraph<usize, ()>,
        n: NodeIndex,
        target: NodeIndex,
        path: &mut Vec<NodeIndex>,
        seen: &mut BTreeSet<NodeIndex>,
    ) -> bool {
        for next in g.neighbors(n) {
            if next == target {
                path.push(next);
                return true;
            }
            if seen.insert(next) {
                path.push(next);
                if dfs(g, next, target, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start];
    let mut seen = BTreeSet::from([start]);
    dfs(g, start, start, &mut path, &mut seen).then_some(path)
}
