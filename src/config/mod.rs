//! `stella.toml` → a validated `Config`. Every error names `FILE:LINE:COL`
//! and says what was expected.

mod error;
pub mod model;
pub mod resolved;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use toml::Spanned;

pub use error::{ConfigError, Locator, Problem};
pub use model::{EnvironmentConfig, ExistingNginx, TargetConfig, TargetKind};
pub use resolved::{
    Analysis, Canary, Environment, Pause, Probe, Routed, Script, Strategy, Target, Unpacked,
};

use crate::domain::duration::parse_duration;
use crate::domain::reference::{ImageRef, Repository};
use crate::domain::release::{valid_app_name, valid_email};
use crate::domain::schedule::{parse_cron, parse_tz};

/// The file name stella looks for.
pub const CONFIG_FILE: &str = "stella.toml";

/// A config that passed every check.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    /// The workspace root (the folder holding `stella.toml`).
    pub root: PathBuf,
    pub name: String,
    pub apps: BTreeMap<String, App>,
    /// Environments in lane order: every environment after the one it
    /// promotes from.
    pub environments: Vec<(String, Environment)>,
    pub targets: BTreeMap<String, Target>,
    pub freeze: BTreeMap<String, model::FreezeWindowConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub name: String,
    pub image: ImageRef,
    pub insecure: bool,
    /// Capsules and summaries are attached to the image.
    pub attach: bool,
}

impl Config {
    /// Reads and validates the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(path, &src)
    }

    /// Validates `src` as if read from `path` (relative paths in it are
    /// checked against `path`'s folder).
    pub fn parse(path: &Path, src: &str) -> Result<Config, ConfigError> {
        let loc = Locator::new(src);
        let invalid = |problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        };
        let file: model::File = toml::from_str(src).map_err(|e| {
            let mut message = e.message().trim_end().to_owned();
            if message == "missing field `workspace`" {
                message.push_str(": start the file with `[workspace]` and `name = \"…\"`");
            }
            invalid(vec![loc.problem(e.span(), message)])
        })?;
        let root = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut v = Validator {
            loc: &loc,
            root: &root,
            problems: Vec::new(),
        };
        let config = v.check(&file, path);
        if v.problems.is_empty() {
            Ok(config)
        } else {
            let mut problems = v.problems;
            problems.sort_by_key(|p| (p.line, p.col));
            problems.dedup();
            Err(invalid(problems))
        }
    }

    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e)
    }
}

struct Validator<'a> {
    loc: &'a Locator<'a>,
    root: &'a Path,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    fn at<T>(&mut self, item: &Spanned<T>, message: impl Into<String>) {
        let p = self.loc.problem(Some(item.span()), message);
        self.problems.push(p);
    }

    fn check(&mut self, file: &model::File, path: &Path) -> Config {
        let name = file.workspace.name.get_ref().trim().to_owned();
        if name.is_empty() {
            self.at(
                &file.workspace.name,
                "the workspace name is empty; expected e.g. `name = \"acme\"`",
            );
        }

        for key in file
            .apps
            .keys()
            .chain(file.environments.keys())
            .chain(file.targets.keys())
            .chain(file.freeze.keys())
        {
            if !valid_app_name(key.get_ref()) {
                self.at(
                    key,
                    format!(
                        "`{}` is not a valid name: use letters, digits, `-`, `_` and `.`, starting with a letter or digit",
                        key.get_ref()
                    ),
                );
            }
        }

        let apps = self.check_apps(file);
        self.check_targets(file);
        let targets = file
            .targets
            .iter()
            .map(|(name, t)| (name.get_ref().clone(), self.target(name.get_ref(), t)))
            .collect();
        self.check_freeze(file);
        let environments = self
            .check_environments(file)
            .into_iter()
            .map(|(name, env)| (name, environment(&env)))
            .collect();

        Config {
            path: path.to_owned(),
            root: self.root.to_owned(),
            name,
            apps,
            environments,
            targets,
            freeze: unspan(&file.freeze),
        }
    }

    fn check_apps(&mut self, file: &model::File) -> BTreeMap<String, App> {
        let mut apps = BTreeMap::new();
        for (name, app) in &file.apps {
            match ImageRef::parse(app.image.get_ref()) {
                Ok(image) if image.selector.is_some() => self.at(
                    &app.image,
                    format!(
                        "app `{}`: `image` names a repository, without a tag or digest (expected e.g. `{}`); releases pick the tag or digest",
                        name.get_ref(),
                        image.repository
                    ),
                ),
                Ok(image) => {
                    if let Repository::Layout(p) = &image.repository
                        && p.as_os_str().is_empty()
                    {
                        self.at(&app.image, "the layout path is empty");
                    }
                    apps.insert(
                        name.get_ref().clone(),
                        App {
                            name: name.get_ref().clone(),
                            attach: app.attach.unwrap_or(matches!(
                                image.repository,
                                crate::domain::Repository::Remote { .. }
                            )),
                            image,
                            insecure: app.insecure,
                        },
                    );
                }
                Err(e) => self.at(&app.image, format!("app `{}`: {e}", name.get_ref())),
            }
        }
        apps
    }

    fn check_targets(&mut self, file: &model::File) {
        for (name, t) in &file.targets {
            let n = name.get_ref();
            let need = |field: &str| {
                format!(
                    "target `{n}` of kind `{}` needs `{field}`",
                    format!("{:?}", t.kind).to_lowercase()
                )
            };
            if let Some(timeout) = &t.timeout
                && let Err(e) = parse_duration(timeout.get_ref())
            {
                self.at(timeout, format!("timeout: {e}"));
            }
            match t.kind {
                TargetKind::Dir if t.path.is_none() => self.at(name, need("path")),
                TargetKind::Script if t.deploy.is_none() => self.at(name, need("deploy")),
                TargetKind::Nginx | TargetKind::Router => {
                    if t.path.is_none() {
                        self.at(name, need("path"));
                    }
                    match &t.listen {
                        None => self.at(name, need("listen")),
                        Some(l) if l.get_ref().parse::<std::net::SocketAddr>().is_err() => self
                            .at(
                                l,
                                format!(
                                    "`{}` is not an address to listen on; expected `IP:PORT`, e.g. `127.0.0.1:8080`",
                                    l.get_ref()
                                ),
                            ),
                        Some(_) => {}
                    }
                }
                _ => {}
            }
            if let Some(p) = &t.path
                && p.get_ref().trim().is_empty()
            {
                self.at(p, format!("target `{n}`: `path` is empty"));
            }
            if let Some(u) = &t.unpack {
                let l = u.get_ref();
                if t.kind == TargetKind::Script {
                    self.at(u, format!("target `{n}`: `unpack` applies to targets that unpack images (`dir`, `router`, `nginx`), not `script`"));
                }
                for (key, v) in [
                    ("max_ratio", l.max_ratio),
                    ("max_release_mib", l.max_release_mib),
                    ("max_entries", l.max_entries),
                    ("max_depth", l.max_depth.map(u64::from)),
                ] {
                    if v == Some(0) {
                        self.at(
                            u,
                            format!("target `{n}`: unpack `{key}` must be at least 1"),
                        );
                    }
                }
            }
            if let Some(x) = &t.nginx {
                if t.kind != TargetKind::Nginx {
                    self.at(
                        x,
                        format!(
                            "target `{n}` is of kind `{}`; `nginx` (an existing nginx to drive) applies to `kind = \"nginx\"` targets only",
                            t.kind.as_str()
                        ),
                    );
                }
                let x = x.get_ref();
                if x.conf_dir.get_ref().trim().is_empty() {
                    self.at(
                        &x.conf_dir,
                        format!("target `{n}`: `conf_dir` is empty; name the directory nginx's `http` block includes, e.g. `/etc/nginx/conf.d`"),
                    );
                }
                for (key, cmd) in [("test", &x.test), ("reload", &x.reload)] {
                    if cmd.as_ref().is_some_and(|c| c.trim().is_empty()) {
                        self.at(
                            &x.conf_dir,
                            format!(
                                "target `{n}`: nginx `{key}` is empty; leave it out for the default"
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Target `n` resolved: a field its kind does not take is an error
    /// at the field; the defaults applied.
    fn target(&mut self, n: &str, t: &TargetConfig) -> Target {
        use resolved::{DEFAULT_HOOK_TIMEOUT, DEFAULT_KEEP};
        let kind = t.kind;
        let span = |f: &Option<Spanned<String>>| f.as_ref().map(|f| f.span());
        let fields = [
            (
                "listen",
                span(&t.listen),
                "`router` and `nginx`",
                kind.is_routed(),
            ),
            (
                "command",
                span(&t.command),
                "`router` and `nginx`",
                kind.is_routed(),
            ),
            (
                "deploy",
                span(&t.deploy),
                "`script`",
                kind == TargetKind::Script,
            ),
            (
                "health",
                span(&t.health),
                "`script`",
                kind == TargetKind::Script,
            ),
            (
                "rollback",
                span(&t.rollback),
                "`script`",
                kind == TargetKind::Script,
            ),
            (
                "timeout",
                span(&t.timeout),
                "`script`",
                kind == TargetKind::Script,
            ),
            (
                "keep",
                t.keep.as_ref().map(|k| k.span()),
                "`dir`, `router` and `nginx`",
                kind != TargetKind::Script,
            ),
        ];
        for (field, at, owners, belongs) in fields {
            if let (Some(at), false) = (at, belongs) {
                let p = self.loc.problem(
                    Some(at),
                    format!(
                        "target `{n}` is of kind `{}`: `{field}` does not belong to it (it applies to {owners} targets); remove it, or change `kind`",
                        kind.as_str()
                    ),
                );
                self.problems.push(p);
            }
        }
        let text = |f: &Option<Spanned<String>>| f.as_ref().map(|f| f.get_ref().clone());
        let unpacked = || resolved::Unpacked {
            path: text(&t.path).unwrap_or_else(|| ".".into()),
            keep: t
                .keep
                .as_ref()
                .map_or(DEFAULT_KEEP, |k| *k.get_ref() as usize),
            unpack: unpack_limits(t.unpack.as_ref().map(|u| u.get_ref())),
        };
        let routed = || resolved::Routed {
            unpacked: unpacked(),
            listen: t
                .listen
                .as_ref()
                .and_then(|l| l.get_ref().parse().ok())
                .unwrap_or(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            command: text(&t.command),
        };
        match kind {
            TargetKind::Dir => Target::Dir(unpacked()),
            TargetKind::Router => Target::Router(routed()),
            TargetKind::Nginx => {
                Target::Nginx(routed(), t.nginx.as_ref().map(|x| x.get_ref().clone()))
            }
            TargetKind::Script => Target::Script(resolved::Script {
                path: text(&t.path),
                deploy: text(&t.deploy).unwrap_or_default(),
                health: text(&t.health),
                rollback: text(&t.rollback),
                timeout: t
                    .timeout
                    .as_ref()
                    .and_then(|d| parse_duration(d.get_ref()).ok())
                    .unwrap_or(DEFAULT_HOOK_TIMEOUT),
            }),
        }
    }

    fn check_freeze(&mut self, file: &model::File) {
        for (name, w) in &file.freeze {
            let n = name.get_ref();
            let recurring = [&w.start, &w.end, &w.timezone];
            let one_off = [&w.from, &w.until];
            let has_recurring = recurring.iter().any(|f| f.is_some());
            let has_one_off = one_off.iter().any(|f| f.is_some());
            match (has_recurring, has_one_off) {
                (true, true) => self.at(
                    name,
                    format!("freeze window `{n}` mixes `start`/`end`/`timezone` (recurring) with `from`/`until` (one-off); pick one"),
                ),
                (false, false) => self.at(
                    name,
                    format!("freeze window `{n}` needs `start`, `end` and `timezone` (recurring) or `from` and `until` (one-off)"),
                ),
                (true, false) => {
                    for (field, value) in [("start", &w.start), ("end", &w.end)] {
                        match value {
                            None => self.at(name, format!("freeze window `{n}` needs `{field}` (a cron expression like \"0 18 * * FRI\")")),
                            Some(v) => {
                                if let Err(e) = parse_cron(v.get_ref()) {
                                    self.at(v, e);
                                }
                            }
                        }
                    }
                    match &w.timezone {
                        None => self.at(name, format!("freeze window `{n}` needs `timezone` (an IANA zone like \"Europe/Madrid\" or \"UTC\")")),
                        Some(tz) => {
                            if let Err(e) = parse_tz(tz.get_ref()) {
                                self.at(tz, e);
                            }
                        }
                    }
                }
                (false, true) => {
                    let mut times = Vec::new();
                    for (field, value) in [("from", &w.from), ("until", &w.until)] {
                        match value {
                            None => self.at(name, format!("freeze window `{n}` needs `{field}` (an RFC 3339 time like \"2026-11-27T00:00:00Z\")")),
                            Some(v) => match chrono::DateTime::parse_from_rfc3339(v.get_ref()) {
                                Ok(t) => times.push(t),
                                Err(e) => self.at(v, format!("`{}` is not an RFC 3339 time ({e}); expected e.g. \"2026-11-27T00:00:00Z\"", v.get_ref())),
                            },
                        }
                    }
                    if let ([from, until], Some(u)) = (times.as_slice(), &w.until)
                        && until <= from
                    {
                        self.at(u, format!("freeze window `{n}` ends before it starts"));
                    }
                }
            }
            for e in &w.exceptions {
                self.check_email(e);
            }
            if let Some(n) = &w.break_glass_approvals
                && *n.get_ref() as usize > w.exceptions.len()
            {
                self.at(
                    n,
                    format!(
                        "freeze window `{}` needs {} break-glass approvals but lists only {} exceptions",
                        name.get_ref(),
                        n.get_ref(),
                        w.exceptions.len()
                    ),
                );
            }
        }
    }

    fn check_email(&mut self, e: &Spanned<String>) {
        let s = e.get_ref();
        if !valid_email(s) {
            self.at(
                e,
                format!("`{s}` is not an email address like \"alice@example.com\""),
            );
        }
    }

    fn check_path(&mut self, p: &Spanned<String>, what: &str) {
        let full = self.root.join(p.get_ref());
        if !full.is_file() {
            self.at(
                p,
                format!(
                    "{what} `{}` not found (paths are relative to the folder of stella.toml)",
                    p.get_ref()
                ),
            );
        }
    }

    fn check_environments(&mut self, file: &model::File) -> Vec<(String, EnvironmentConfig)> {
        let names: BTreeSet<&str> = file
            .environments
            .keys()
            .map(|k| k.get_ref().as_str())
            .collect();
        let list = |set: &mut dyn Iterator<Item = &str>| {
            let v: Vec<String> = set.map(|s| format!("`{s}`")).collect();
            if v.is_empty() {
                "none are defined".to_owned()
            } else {
                format!("defined: {}", v.join(", "))
            }
        };
        for (name, env) in &file.environments {
            let n = name.get_ref();
            if let Some(from) = &env.from {
                if from.get_ref() == n {
                    self.at(
                        from,
                        format!("environment `{n}` cannot promote from itself"),
                    );
                } else if !names.contains(from.get_ref().as_str()) {
                    let known = list(&mut names.iter().copied());
                    self.at(
                        from,
                        format!("environment `{n}` promotes from `{}`, which is not an environment ({known})", from.get_ref()),
                    );
                }
            }
            for t in &env.targets {
                if !file.targets.keys().any(|k| k.get_ref() == t.get_ref()) {
                    let known = list(&mut file.targets.keys().map(|k| k.get_ref().as_str()));
                    self.at(
                        t,
                        format!("environment `{n}` deploys to target `{}`, which is not defined under [targets] ({known})", t.get_ref()),
                    );
                }
            }
            let strategy = env.strategy.as_ref().map(|s| *s.get_ref());
            let canary = strategy == Some(model::Strategy::Canary);
            let ab = strategy == Some(model::Strategy::Ab);
            if canary || ab {
                for t in &env.targets {
                    if file
                        .targets
                        .iter()
                        .any(|(k, v)| k.get_ref() == t.get_ref() && !v.kind.is_routed())
                    {
                        self.at(t, format!("target `{}` cannot run {}: only `router` and `nginx` targets split traffic", t.get_ref(), if canary { "a canary" } else { "an A/B test" }));
                    }
                }
            }
            if let Some(d) = env
                .rollout
                .as_ref()
                .and_then(|r| r.get_ref().scale_down_delay.as_ref())
                && let Err(e) = parse_duration(d.get_ref())
            {
                self.at(d, format!("scale_down_delay: {e}"));
            }
            match (&env.rollout, &env.strategy) {
                (None, Some(st)) if canary => self.at(
                    st,
                    format!("environment `{n}` is a canary but has no `[environments.{n}.rollout]` with `steps`, e.g. steps = [10, 50, 100]"),
                ),
                (Some(r), _) if ab => {
                    let ro = r.get_ref();
                    if !ro.steps.is_empty() || ro.pause.is_some() || ro.analysis.is_some() {
                        self.at(r, "an A/B rollout takes `split` (the percent of clients given the new release); `steps`, `pause` and `analysis` are for canaries");
                    }
                    if let Some(s) = &ro.split
                        && !(1..=99).contains(s.get_ref())
                    {
                        self.at(s, format!("split {} must be a percent from 1 to 99: the share of clients given the new release", s.get_ref()));
                    }
                }
                (Some(r), _)
                    if !canary
                        && r.get_ref().steps.is_empty()
                        && r.get_ref().pause.is_none()
                        && r.get_ref().analysis.is_none()
                        && r.get_ref().split.is_none() => {}
                (Some(r), _) => {
                    let ro = r.get_ref();
                    if !canary {
                        self.at(r, "a `rollout` with `steps`, `pause` or `analysis` needs `strategy = \"canary\"` (or `\"ab\"`, with `split`); blue/green takes only `scale_down_delay`");
                    } else if let Some(split) = &ro.split {
                        self.at(split, "`split` is for A/B rollouts (`strategy = \"ab\"`); a canary walks `steps`: remove it, or use `strategy = \"ab\"`");
                    } else if ro.steps.is_empty()
                        || ro.steps.last() != Some(&100)
                        || ro.steps.windows(2).any(|w| w[0] >= w[1])
                        || ro.steps.iter().any(|w| *w == 0 || *w > 100)
                    {
                        self.at(r, format!("rollout steps {:?} must rise from 1 to 100 and end at 100, e.g. [10, 50, 100]", ro.steps));
                    }
                    if let Some(p) = &ro.pause
                        && p.get_ref() != "manual"
                        && let Err(e) = parse_duration(p.get_ref())
                    {
                        self.at(p, format!("pause: {e}, or \"manual\" to hold each step until `stella rollout resume`"));
                    }
                    if let Some(i) = ro.analysis.as_ref().and_then(|a| a.interval.as_ref())
                        && let Err(e) = parse_duration(i.get_ref())
                    {
                        self.at(i, format!("interval: {e}"));
                    }
                    if let Some(p) = ro.analysis.as_ref().and_then(|a| a.probe.as_ref()) {
                        let probe = p.get_ref();
                        if probe.path.as_ref().is_some_and(|x| !x.starts_with('/')) {
                            self.at(p, "probe: `path` is a path on the target, starting with `/`, e.g. \"/healthz\"");
                        } else if probe.status.is_some_and(|s| !(100..=599).contains(&s)) {
                            self.at(p, "probe: `status` is an HTTP status, 100 to 599");
                        } else if let Some(Err(e)) = probe.timeout.as_deref().map(parse_duration) {
                            self.at(p, format!("probe: timeout: {e}"));
                        }
                    }
                }
                _ => {}
            }
            if let Some(w) = &env.workflow {
                self.check_path(w, "workflow");
            }
            let gates = &env.gates;
            if let Some(f) = &gates.freeze {
                for w in &f.windows {
                    if !file.freeze.keys().any(|k| k.get_ref() == w.get_ref()) {
                        let known = list(&mut file.freeze.keys().map(|k| k.get_ref().as_str()));
                        self.at(
                            w,
                            format!("environment `{n}` uses freeze window `{}`, which is not defined under [freeze] ({known})", w.get_ref()),
                        );
                    }
                }
            }
            if let Some(p) = &gates.policy {
                for m in &p.modules {
                    self.check_path(m, "policy module");
                }
            }
            if let Some(a) = &gates.approval {
                let cfg = a.get_ref();
                if cfg.required == 0 {
                    self.at(a, format!("environment `{n}`: approval `required` must be at least 1 (remove the gate to need no approvals)"));
                } else if cfg.required as usize > cfg.approvers.len() {
                    self.at(
                        a,
                        format!(
                            "environment `{n}` requires {} approvals but lists only {} approvers",
                            cfg.required,
                            cfg.approvers.len()
                        ),
                    );
                }
                for e in &cfg.approvers {
                    self.check_email(e);
                }
            }
            if let Some(u) = &gates.upstream {
                if env.from.is_none() {
                    self.at(u, format!("environment `{n}` has an upstream gate but no `from` environment to check"));
                }
                if let Some(soak) = &u.get_ref().soak
                    && let Err(e) = parse_duration(soak.get_ref())
                {
                    self.at(soak, format!("soak: {e}"));
                }
            }
        }
        self.lane_order(file)
    }

    /// Orders environments so each follows the one it promotes from, and
    /// reports cycles in `from`.
    fn lane_order(&mut self, file: &model::File) -> Vec<(String, EnvironmentConfig)> {
        let mut order: Vec<(String, EnvironmentConfig)> = Vec::new();
        let mut placed: BTreeSet<String> = BTreeSet::new();
        loop {
            let before = placed.len();
            for (name, env) in &file.environments {
                let n = name.get_ref();
                if placed.contains(n) {
                    continue;
                }
                let ready = match &env.from {
                    None => true,
                    Some(f) => {
                        placed.contains(f.get_ref())
                            || !file.environments.keys().any(|k| k.get_ref() == f.get_ref())
                            || f.get_ref() == n
                    }
                };
                if ready {
                    placed.insert(n.clone());
                    order.push((n.clone(), env.clone()));
                }
            }
            if placed.len() == before {
                break;
            }
        }
        // Whatever is left sits on a cycle, or downstream of one.
        for (name, env) in &file.environments {
            let n = name.get_ref();
            if placed.contains(n) {
                continue;
            }
            let mut path = vec![n.clone()];
            let mut cur = env;
            while let Some(f) = &cur.from {
                let f = f.get_ref();
                if let Some(pos) = path.iter().position(|p| p == f) {
                    if pos == 0 {
                        path.push(f.clone());
                        if let Some(from) = &env.from {
                            self.at(
                                from,
                                format!(
                                    "environments promote from each other in a cycle: {}",
                                    path.join(" → ")
                                ),
                            );
                        }
                    }
                    break;
                }
                path.push(f.clone());
                match file.environments.iter().find(|(k, _)| k.get_ref() == f) {
                    Some((_, e)) => cur = e,
                    None => break,
                }
            }
            order.push((n.clone(), env.clone()));
        }
        order
    }
}

fn unspan<V: Clone>(m: &BTreeMap<Spanned<String>, V>) -> BTreeMap<String, V> {
    m.iter()
        .map(|(k, v)| (k.get_ref().clone(), v.clone()))
        .collect()
}

/// `[targets.NAME.unpack]` over the defaults of `deploy::unpack::Limits`.
fn unpack_limits(u: Option<&model::UnpackLimitsConfig>) -> crate::deploy::unpack::Limits {
    let mut l = crate::deploy::unpack::Limits::default();
    if let Some(u) = u {
        l.max_ratio = u.max_ratio.unwrap_or(l.max_ratio);
        l.max_release_bytes = u
            .max_release_mib
            .map_or(l.max_release_bytes, |m| m.saturating_mul(1 << 20));
        l.max_entries = u.max_entries.unwrap_or(l.max_entries);
        l.max_depth = u.max_depth.map_or(l.max_depth, |d| d as usize);
    }
    l
}

/// An environment that passed `check_environments`, resolved: its
/// strategy with every parameter parsed and defaulted.
fn environment(env: &EnvironmentConfig) -> Environment {
    use resolved::*;
    let duration = |d: Option<&Spanned<String>>| d.and_then(|d| parse_duration(d.get_ref()).ok());
    let rollout = env.rollout.as_ref().map(|r| r.get_ref());
    let strategy = match env.strategy.as_ref().map(|s| *s.get_ref()) {
        None | Some(model::Strategy::Direct) => Strategy::Direct,
        Some(model::Strategy::Bluegreen) => Strategy::BlueGreen,
        Some(model::Strategy::Ab) => Strategy::Ab {
            split: rollout
                .and_then(|r| r.split.as_ref())
                .map_or(DEFAULT_SPLIT, |s| *s.get_ref()),
        },
        Some(model::Strategy::Canary) => {
            let pause = match rollout.and_then(|r| r.pause.as_ref()) {
                Some(p) if p.get_ref() == "manual" => Pause::Manual,
                p => Pause::For(duration(p).unwrap_or(DEFAULT_PAUSE)),
            };
            let a = rollout.and_then(|r| r.analysis.as_ref());
            let interval = duration(a.and_then(|a| a.interval.as_ref()))
                .unwrap_or(match pause {
                    Pause::Manual => DEFAULT_MANUAL_INTERVAL,
                    Pause::For(d) => d,
                })
                .max(MIN_INTERVAL);
            Strategy::Canary(Canary {
                steps: rollout.map(|r| r.steps.clone()).unwrap_or_default(),
                pause,
                interval,
                analysis: a.map(|a| Analysis {
                    max_error_rate: a.max_error_rate,
                    max_p95_ms: a.max_p95_ms,
                    min_requests: a.min_requests.unwrap_or(1),
                    failure_limit: a.failure_limit.unwrap_or(0),
                    probe: a.probe.as_ref().map(|p| {
                        let p = p.get_ref();
                        Probe {
                            path: p.path.clone().unwrap_or_else(|| "/".into()),
                            status: p.status.unwrap_or(200),
                            body: p.body.clone(),
                            timeout: p
                                .timeout
                                .as_deref()
                                .and_then(|t| parse_duration(t).ok())
                                .unwrap_or(DEFAULT_PROBE_TIMEOUT),
                        }
                    }),
                }),
            })
        }
    };
    Environment {
        from: env.from.clone(),
        targets: env.targets.clone(),
        workflow: env.workflow.clone(),
        gates: env.gates.clone(),
        strategy,
        scale_down_delay: duration(rollout.and_then(|r| r.scale_down_delay.as_ref())),
    }
}
