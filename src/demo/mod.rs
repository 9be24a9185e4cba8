//! `stella demo`: a complete workspace built from nothing but this binary —
//! OCI image layouts of three apps, scanner reports in two formats and a
//! VEX, two approvers' keys, a Rego policy, a workflow with parallel steps,
//! freeze windows (one active now), three lanes with a history of real
//! promotions, a blocked release and a rollback, all sealed in capsules,
//! and a fourth lane, `edge`, on the built-in router (or nginx), where the workbench
//! runs a live canary (`stella demo` starts it; see `cli/demo.rs`).

pub mod reports;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Duration, NaiveTime, SecondsFormat, Utc, Weekday};

use crate::domain::Digest;
use crate::domain::approval::Purpose;
use crate::engine::resolve::AppRelease;
use crate::engine::runs::Runs;
use crate::engine::{EngineError, PromoteRequest, RollbackRequest, Sink};
use crate::gates::EvidenceKind;
use crate::registry::layout::{LayerFile, LayoutWriter};
use crate::store::EvidenceRecord;
use crate::workspace::Workspace;
use reports::Vuln;

const CONFIG: &str = include_str!("../../assets/demo/stella.toml");
const POLICY: &str = include_str!("../../assets/demo/policies/release.rego");
const WORKFLOW: &str = include_str!("../../assets/demo/workflows/standard.toml");

/// Marks a folder as one `stella demo` built, so `--force` only ever
/// removes a demo.
pub const MARKER: &str = ".stella-demo";

/// The approvers the demo creates keys for: (key name, email).
pub const APPROVERS: [(&str, &str); 2] =
    [("alice", "alice@demo.example"), ("bob", "bob@demo.example")];

/// One event of the demo's history, on the `day`th weekday before today.
enum Past {
    Approve {
        app: &'static str,
        tag: &'static str,
        env: &'static str,
        /// Index into `APPROVERS`.
        by: usize,
        at: (usize, u32, u32),
    },
    Promote {
        app: &'static str,
        tag: &'static str,
        to: &'static str,
        /// What it must end as, or the demo is wrong.
        outcome: &'static str,
        at: (usize, u32, u32),
    },
    Rollback {
        app: &'static str,
        env: &'static str,
        reason: &'static str,
        at: (usize, u32, u32),
    },
}

impl Past {
    fn when(&self) -> (usize, u32, u32) {
        match self {
            Past::Approve { at, .. } | Past::Promote { at, .. } | Past::Rollback { at, .. } => *at,
        }
    }
}

const fn promote(
    app: &'static str,
    tag: &'static str,
    to: &'static str,
    outcome: &'static str,
    at: (usize, u32, u32),
) -> Past {
    Past::Promote {
        app,
        tag,
        to,
        outcome,
        at,
    }
}

const fn approve(
    app: &'static str,
    tag: &'static str,
    env: &'static str,
    by: usize,
    at: (usize, u32, u32),
) -> Past {
    Past::Approve {
        app,
        tag,
        env,
        by,
        at,
    }
}

/// Day 1: everything reaches dev and staging. Day 2: api-gateway and
/// billing reach prod; api-gateway 1.1 reaches staging. Day 3: 1.1 reaches
/// prod and is rolled back. Day 4: new releases in dev; billing 2.4 is
/// blocked by a critical finding; web 3.1 is approved for staging, ready.
const HISTORY: &[Past] = &[
    promote("api-gateway", "1.0", "dev", "deployed", (0, 9, 0)),
    approve("api-gateway", "1.0", "staging", 1, (0, 9, 30)),
    promote("api-gateway", "1.0", "staging", "deployed", (0, 10, 0)),
    promote("billing", "2.3", "dev", "deployed", (0, 9, 10)),
    approve("billing", "2.3", "staging", 1, (0, 9, 40)),
    promote("billing", "2.3", "staging", "deployed", (0, 10, 10)),
    promote("web", "3.0", "dev", "deployed", (0, 9, 20)),
    approve("web", "3.0", "staging", 1, (0, 9, 50)),
    promote("web", "3.0", "staging", "deployed", (0, 10, 20)),
    approve("api-gateway", "1.0", "prod", 0, (1, 9, 30)),
    promote("api-gateway", "1.0", "prod", "deployed", (1, 10, 0)),
    approve("billing", "2.3", "prod", 0, (1, 9, 50)),
    promote("billing", "2.3", "prod", "deployed", (1, 10, 20)),
    promote("api-gateway", "1.1", "dev", "deployed", (1, 12, 0)),
    approve("api-gateway", "1.1", "staging", 1, (1, 13, 0)),
    promote("api-gateway", "1.1", "staging", "deployed", (1, 14, 0)),
    approve("api-gateway", "1.1", "prod", 0, (2, 9, 30)),
    promote("api-gateway", "1.1", "prod", "deployed", (2, 10, 0)),
    Past::Rollback {
        app: "api-gateway",
        env: "prod",
        reason: "p95 latency doubled after 1.1",
        at: (2, 15, 0),
    },
    promote("api-gateway", "1.2", "dev", "deployed", (3, 9, 0)),
    promote("billing", "2.4", "dev", "deployed", (3, 9, 30)),
    approve("billing", "2.4", "staging", 1, (3, 9, 45)),
    promote("billing", "2.4", "staging", "blocked", (3, 10, 0)),
    promote("web", "3.1", "dev", "deployed", (3, 11, 0)),
    approve("web", "3.1", "staging", 1, (3, 11, 30)),
];

/// Who asks for the demo's history of promotions.
const ONCALL: &str = "oncall@demo.example";

/// Builds the demo workspace in `dir` as of `now`, reporting each stage to
/// `progress`. An existing folder is refused unless `force`, and then only
/// if an earlier demo made it.
/// What the demo's `edge` lane routes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EdgeRouter {
    /// nginx where it is installed, else the built-in router.
    Auto,
    Builtin,
    Nginx,
}

impl EdgeRouter {
    /// `Auto` decided: nginx when this machine has it.
    pub fn resolve(self) -> EdgeRouter {
        match self {
            EdgeRouter::Auto if crate::deploy::nginx::find_binary().is_ok() => EdgeRouter::Nginx,
            EdgeRouter::Auto => EdgeRouter::Builtin,
            other => other,
        }
    }

    /// How the demo's summary says it.
    pub fn describe(self) -> &'static str {
        match self.resolve() {
            EdgeRouter::Nginx => "nginx",
            _ => "the built-in router",
        }
    }
}

pub fn build(
    dir: &Path,
    force: bool,
    now: DateTime<Utc>,
    edge: EdgeRouter,
    mut progress: impl FnMut(&str),
) -> Result<Workspace, EngineError> {
    if edge == EdgeRouter::Nginx {
        crate::deploy::nginx::find_binary().map_err(|e| {
            EngineError::usage(e).hint("`stella demo --router builtin` needs nothing installed")
        })?;
    }
    let edge_kind = match edge.resolve() {
        EdgeRouter::Nginx => "nginx",
        _ => "router",
    };
    prepare(dir, force)?;
    let write = |rel: &str, body: &str| -> Result<(), EngineError> {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, body)
            .map_err(|e| EngineError::error(format!("cannot write {}: {e}", path.display())))
    };
    let minute = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let freeze_from = now - Duration::hours(1);
    let freeze_until = now + Duration::hours(5);
    write(
        MARKER,
        "built by `stella demo`; `stella demo --force` rebuilds it\n",
    )?;
    write(
        "stella.toml",
        &CONFIG
            .replace("{{freeze_from}}", &minute(freeze_from))
            .replace("{{freeze_until}}", &minute(freeze_until))
            .replace("{{edge_port}}", &edge_port()?.to_string())
            .replace("{{edge_kind}}", edge_kind),
    )?;
    write("policies/release.rego", POLICY)?;
    // The history runs the same workflow at a brisk pace; the workbench's
    // promotions run it at one second a step, to be watched.
    write(
        "workflows/standard.toml",
        &WORKFLOW.replace("sleep 1", "sleep 0.1"),
    )?;
    write(".gitignore", ".stella/\n")?;

    let ws = Workspace::at(dir.to_owned());
    ws.ensure_state_dirs()?;
    ws.open_store()?;
    progress("keys: the workspace's sealing key, alice's and bob's");
    crate::engine::keys::create_key(
        &ws,
        crate::engine::keys::SEALING_KEY,
        "sealing@demo.workspace",
    )?;
    for (name, email) in APPROVERS {
        crate::engine::keys::create_key(&ws, name, email)?;
    }
    let config = ws.load_config()?;

    progress("images: api-gateway 1.0 1.1 1.2, billing 2.3 2.4, web 3.0 3.1");
    let mut digests = std::collections::BTreeMap::new();
    for (app, tags) in [
        ("api-gateway", &["1.0", "1.1", "1.2"][..]),
        ("billing", &["2.3", "2.4"][..]),
        ("web", &["3.0", "3.1"][..]),
    ] {
        let layout = LayoutWriter::create(&dir.join("images").join(app))?;
        for tag in tags {
            let page = format!("<h1>{app} {tag}</h1>\n");
            let version = format!("{tag}\n");
            let d = layout.add_image(
                tag,
                &[
                    LayerFile {
                        path: "index.html",
                        mode: 0o644,
                        contents: page.as_bytes(),
                    },
                    LayerFile {
                        path: "VERSION",
                        mode: 0o644,
                        contents: version.as_bytes(),
                    },
                ],
            )?;
            digests.insert(format!("{app}:{tag}"), d);
        }
    }

    progress("evidence: Trivy and Grype reports, an OpenVEX that suppresses findings");
    let express = Vuln {
        id: "CVE-2024-43796",
        package: "express",
        version: "4.19.2",
        ecosystem: "npm",
        severity: "medium",
    };
    let cross_spawn = Vuln {
        id: "CVE-2024-21538",
        package: "cross-spawn",
        version: "7.0.3",
        ecosystem: "npm",
        severity: "high",
    };
    let common = [
        Vuln {
            id: "CVE-2024-4067",
            package: "micromatch",
            version: "4.0.5",
            ecosystem: "npm",
            severity: "medium",
        },
        Vuln {
            id: "CVE-2024-45590",
            package: "body-parser",
            version: "1.20.2",
            ecosystem: "npm",
            severity: "medium",
        },
        Vuln {
            id: "CVE-2023-26136",
            package: "tough-cookie",
            version: "4.1.2",
            ecosystem: "npm",
            severity: "low",
        },
    ];
    let vex = reports::openvex("https://demo.example/vex/api-gateway", &[&cross_spawn]);
    for tag in ["1.0", "1.1", "1.2"] {
        let d = &digests[&format!("api-gateway:{tag}")];
        let mut vulns: Vec<&Vuln> = common.iter().collect();
        vulns.push(&cross_spawn);
        if tag != "1.0" {
            vulns.push(&express);
        }
        let owned: Vec<Vuln> = vulns.iter().map(|v| **v).collect();
        attach(
            &ws,
            d,
            &reports::trivy(&format!("api-gateway:{tag}"), &owned),
            EvidenceKind::Scan,
        )?;
        attach(&ws, d, &vex, EvidenceKind::Vex)?;
    }
    let grpc = Vuln {
        id: "GHSA-m425-mq94-257g",
        package: "google.golang.org/grpc",
        version: "1.56.2",
        ecosystem: "golang",
        severity: "medium",
    };
    let x_net = Vuln {
        id: "CVE-2023-44487",
        package: "golang.org/x/net",
        version: "0.14.0",
        ecosystem: "golang",
        severity: "low",
    };
    let jwt = Vuln {
        id: "CVE-2024-51744",
        package: "github.com/golang-jwt/jwt/v4",
        version: "4.5.0",
        ecosystem: "golang",
        severity: "critical",
    };
    attach(
        &ws,
        &digests["billing:2.3"],
        &reports::grype(&[grpc, x_net]),
        EvidenceKind::Scan,
    )?;
    attach(
        &ws,
        &digests["billing:2.4"],
        &reports::grype(&[grpc, x_net, jwt]),
        EvidenceKind::Scan,
    )?;
    let lodash = Vuln {
        id: "CVE-2021-23337",
        package: "lodash",
        version: "4.17.20",
        ecosystem: "npm",
        severity: "high",
    };
    for tag in ["3.0", "3.1"] {
        let mut vulns = vec![lodash, common[2]];
        if tag == "3.1" {
            vulns.push(common[1]);
        }
        attach(
            &ws,
            &digests[&format!("web:{tag}")],
            &reports::trivy(&format!("web:{tag}"), &vulns),
            EvidenceKind::Scan,
        )?;
    }

    progress("history: promotions through dev → staging → prod, a blocked release, a rollback");
    let days = weekdays_before(now, 4);
    let runs = Runs::default();
    let sink = Sink::discard();
    for step in HISTORY {
        let (day, h, m) = step.when();
        let when = days[day]
            .and_time(NaiveTime::from_hms_opt(h, m, 0).expect("valid time"))
            .and_utc();
        let (what, got, want) = match *step {
            Past::Approve {
                app, tag, env, by, ..
            } => {
                let (key, rec) = crate::engine::keys::load_private(&ws, APPROVERS[by].0)?;
                let release = AppRelease {
                    app: app.to_owned(),
                    digest: digests[&format!("{app}:{tag}")].clone(),
                    tag: Some(tag.to_owned()),
                };
                crate::engine::approve::sign_approval(
                    &ws,
                    &key,
                    &rec.email,
                    &release,
                    env,
                    Purpose::Promote,
                    Some("looks good".into()),
                    &when,
                )?;
                continue;
            }
            Past::Promote {
                app,
                tag,
                to,
                outcome,
                ..
            } => {
                let req = PromoteRequest {
                    reference: format!("{app}:{tag}"),
                    to: to.to_owned(),
                    approve_with: None,
                    at: Some(when),
                    requested_by: ONCALL.into(),
                    break_glass: None,
                    parallel: 4,
                    expect: None,
                };
                let got = crate::engine::promote::promote(&ws, &config, &req, &runs, &sink)?;
                (format!("{app} {tag} → {to}"), got.outcome, outcome)
            }
            Past::Rollback {
                app, env, reason, ..
            } => {
                let req = RollbackRequest {
                    app: app.into(),
                    env: env.into(),
                    to: None,
                    reason: Some(reason.into()),
                    at: Some(when),
                    requested_by: ONCALL.into(),
                };
                let got = crate::engine::rollback::rollback(&ws, &config, &req, &sink)?;
                (
                    format!("{app} {env} rolled back"),
                    got.outcome,
                    "rolled-back",
                )
            }
        };
        if got != want {
            return Err(EngineError::error(format!(
                "the demo's history went wrong: {what} ended `{got}`, not `{want}`"
            )));
        }
        progress(&format!("  {what}: {got}"));
    }

    // From here on the workflow runs at watching speed.
    write("workflows/standard.toml", WORKFLOW)?;
    progress(&format!(
        "prod is frozen now: incident-freeze until {}",
        minute(freeze_until)
    ));
    Ok(ws)
}

fn attach(
    ws: &Workspace,
    subject: &Digest,
    bytes: &[u8],
    kind: EvidenceKind,
) -> Result<(), EngineError> {
    let (format, _) = crate::scan::read(bytes)
        .map_err(|e| EngineError::error(format!("a demo report does not parse: {e}")))?;
    let digest = ws.evidence().put(bytes)?;
    ws.open_store()?.attach_evidence(
        subject,
        &EvidenceRecord {
            digest,
            media_type: format.media_type().into(),
            kind: kind.as_str().into(),
            size: bytes.len() as u64,
            added_at: Utc::now(),
        },
    )?;
    Ok(())
}

/// The `n` weekdays before `now`'s date, oldest first: the demo's history
/// falls on them so the weekend freeze never gets in its way.
fn weekdays_before(now: DateTime<Utc>, n: usize) -> Vec<chrono::NaiveDate> {
    let mut days = Vec::new();
    let mut d = now.date_naive();
    while days.len() < n {
        d = d.pred_opt().expect("dates before now exist");
        if !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
            days.push(d);
        }
    }
    days.reverse();
    days
}

/// A free loopback port for the demo's router.
fn edge_port() -> Result<u16, EngineError> {
    Ok(crate::deploy::backends::free_port()?)
}

/// Empties `dir` for a new demo: a missing or empty folder is fine; one an
/// earlier demo built is removed with `force`; anything else is refused.
fn prepare(dir: &Path, force: bool) -> Result<(), EngineError> {
    let empty = std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
    if !empty {
        if !dir.join(MARKER).is_file() {
            return Err(EngineError::error(format!(
                "{} exists and was not made by `stella demo`; not touching it",
                dir.display()
            ))
            .hint("give the demo a new folder: `stella demo DIR`"));
        }
        if !force {
            return Err(EngineError::error(format!(
                "{} already holds a demo",
                dir.display()
            ))
            .hint(format!(
                "open it with `stella --workspace {} tui`, or rebuild it with `stella demo --force`",
                dir.display()
            )));
        }
        std::fs::remove_dir_all(dir)
            .map_err(|e| EngineError::error(format!("cannot remove {}: {e}", dir.display())))?;
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| EngineError::error(format!("cannot create {}: {e}", dir.display())))?;
    Ok(())
}

/// Where the demo goes when no folder is given.
pub fn default_dir(cwd: &Path) -> PathBuf {
    cwd.join("stella-demo")
}
