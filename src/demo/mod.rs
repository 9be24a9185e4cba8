//! `stella demo`: a complete workspace built from nothing but this binary —
//! OCI image layouts of three apps, scanner reports in two formats and a
//! VEX, two approvers' keys and the on-call's, a Rego policy, a workflow with parallel steps,
//! freeze windows (one active now), three lanes with a history of real
//! promotions, a blocked release and a rollback, all sealed in capsules,
//! and a fourth lane, `edge`, on the built-in router (or nginx), where the workbench
//! runs a live canary (`stella demo` starts it; see `cli/demo.rs`).

pub mod reports;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use crate::domain::{Digest, PromotionOutcome};
use crate::engine::approve::ApproveRequest;
use crate::engine::keys::Asker;
use crate::engine::{
    AttachRequest, EngineError, EngineHandle, KeyRequest, Pending, PromoteRequest, RollbackRequest,
};
use crate::gates::EvidenceKind;
use crate::registry::layout::{LayerFile, LayoutWriter};
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

/// One event of the demo's history, in the order it happens.
enum Past {
    Approve {
        app: &'static str,
        tag: &'static str,
        env: &'static str,
        /// Index into `APPROVERS`.
        by: usize,
    },
    Promote {
        app: &'static str,
        tag: &'static str,
        to: &'static str,
        /// What it must end as, or the demo is wrong.
        outcome: PromotionOutcome,
    },
    Rollback {
        app: &'static str,
        env: &'static str,
        reason: &'static str,
    },
}

const fn promote(
    app: &'static str,
    tag: &'static str,
    to: &'static str,
    outcome: PromotionOutcome,
) -> Past {
    Past::Promote {
        app,
        tag,
        to,
        outcome,
    }
}

const fn approve(app: &'static str, tag: &'static str, env: &'static str, by: usize) -> Past {
    Past::Approve { app, tag, env, by }
}

/// Everything reaches dev and staging; api-gateway and billing reach prod;
/// api-gateway 1.1 reaches prod and is rolled back; new releases in dev;
/// billing 2.4 is blocked by a critical finding; web 3.1 is approved for
/// staging, ready. Each is decided through the engine at the real clock,
/// as the demo's on-call (signed with their key), like any promotion.
const HISTORY: &[Past] = &[
    promote("api-gateway", "1.0", "dev", PromotionOutcome::Deployed),
    approve("api-gateway", "1.0", "staging", 1),
    promote("api-gateway", "1.0", "staging", PromotionOutcome::Deployed),
    promote("billing", "2.3", "dev", PromotionOutcome::Deployed),
    approve("billing", "2.3", "staging", 1),
    promote("billing", "2.3", "staging", PromotionOutcome::Deployed),
    promote("web", "3.0", "dev", PromotionOutcome::Deployed),
    approve("web", "3.0", "staging", 1),
    promote("web", "3.0", "staging", PromotionOutcome::Deployed),
    approve("api-gateway", "1.0", "prod", 0),
    promote("api-gateway", "1.0", "prod", PromotionOutcome::Deployed),
    approve("billing", "2.3", "prod", 0),
    promote("billing", "2.3", "prod", PromotionOutcome::Deployed),
    promote("api-gateway", "1.1", "dev", PromotionOutcome::Deployed),
    approve("api-gateway", "1.1", "staging", 1),
    promote("api-gateway", "1.1", "staging", PromotionOutcome::Deployed),
    approve("api-gateway", "1.1", "prod", 0),
    promote("api-gateway", "1.1", "prod", PromotionOutcome::Deployed),
    Past::Rollback {
        app: "api-gateway",
        env: "prod",
        reason: "p95 latency doubled after 1.1",
    },
    promote("api-gateway", "1.2", "dev", PromotionOutcome::Deployed),
    promote("billing", "2.4", "dev", PromotionOutcome::Deployed),
    approve("billing", "2.4", "staging", 1),
    promote("billing", "2.4", "staging", PromotionOutcome::Blocked),
    promote("web", "3.1", "dev", PromotionOutcome::Deployed),
    approve("web", "3.1", "staging", 1),
];

/// Who asks for the demo's history of promotions, and whom its workbench
/// acts as: (key name, email).
pub const ONCALL_KEY: &str = "oncall";
const ONCALL: &str = "oncall@demo.example";

/// What the history's config leaves out of the demo's: prod's freeze
/// windows (one is active now) and its soak.
const HISTORY_FREEZE: &str =
    "[environments.prod.gates.freeze]\nwindows = [\"incident-freeze\", \"weekend\"]\n\n";
const HISTORY_SOAK: &str = "soak = \"1h\"\n";

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
            EdgeRouter::Auto if crate::engine::probe::nginx().is_ok() => EdgeRouter::Nginx,
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
        crate::engine::probe::nginx().map_err(|e| {
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
    let final_config = CONFIG
        .replace("{{freeze_from}}", &minute(freeze_from))
        .replace("{{freeze_until}}", &minute(freeze_until))
        .replace("{{edge_port}}", &edge_port()?.to_string())
        .replace("{{edge_kind}}", edge_kind);
    // The history is decided at the real clock, minutes apart at most: it
    // is built under a config without prod's freeze windows and soak (the
    // config's author may change it, as anyone's may), which its capsules
    // record; the workspace's config is the full one from then on.
    let history_config = final_config
        .replace(HISTORY_FREEZE, "")
        .replace(HISTORY_SOAK, "");
    if history_config.len() + HISTORY_FREEZE.len() + HISTORY_SOAK.len() != final_config.len() {
        return Err(EngineError::error(
            "the demo's config no longer has the prod freeze and soak its history leaves out",
        ));
    }
    write("stella.toml", &history_config)?;
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
    let config = ws.load_config()?;
    // Every change below takes the one road: a command to the engine.
    let road = Road::start(&ws, &config)?;
    progress("keys: the workspace's sealing key, alice's, bob's and the on-call's");
    road.wait(road.handle.sealing_key())?;
    for (name, email) in APPROVERS.into_iter().chain([(ONCALL_KEY, ONCALL)]) {
        road.wait(road.handle.new_key(KeyRequest {
            name: name.into(),
            email: email.into(),
            import_pem: None,
            another: false,
        }))?;
    }

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
            &road,
            d,
            &reports::trivy(&format!("api-gateway:{tag}"), &owned),
            EvidenceKind::Scan,
        )?;
        attach(&road, d, &vex, EvidenceKind::Vex)?;
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
        &road,
        &digests["billing:2.3"],
        &reports::grype(&[grpc, x_net]),
        EvidenceKind::Scan,
    )?;
    attach(
        &road,
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
            &road,
            &digests[&format!("web:{tag}")],
            &reports::trivy(&format!("web:{tag}"), &vulns),
            EvidenceKind::Scan,
        )?;
    }

    progress("history: promotions through dev → staging → prod, a blocked release, a rollback");
    let oncall = Asker::Key(ONCALL_KEY.into());
    for step in HISTORY {
        let (what, got, want) = match *step {
            Past::Approve {
                app, tag, env, by, ..
            } => {
                road.wait(road.handle.approve(ApproveRequest {
                    app: app.to_owned(),
                    digest: digests[&format!("{app}:{tag}")].clone(),
                    env: env.to_owned(),
                    key: Some(APPROVERS[by].0.to_owned()),
                    comment: Some("looks good".into()),
                    purpose: crate::domain::approval::Purpose::Promote,
                }))?;
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
                    also: Vec::new(),
                    to: to.to_owned(),
                    approve_with: None,
                    asker: oncall.clone(),
                    break_glass: None,
                    parallel: 4,
                    expect: None,
                };
                let got = road.wait(road.handle.promote(req))?;
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
                    asker: oncall.clone(),
                    alone: false,
                };
                let got = road.wait(road.handle.rollback(req))?;
                (
                    format!("{app} {env} rolled back"),
                    got.outcome,
                    PromotionOutcome::RolledBack,
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

    road.stop();
    // From here on the workflow runs at watching speed, under the full
    // config: prod frozen, a soak before it.
    write("workflows/standard.toml", WORKFLOW)?;
    write("stella.toml", &final_config)?;
    progress(&format!(
        "prod is frozen now: incident-freeze until {}",
        minute(freeze_until)
    ));
    Ok(ws)
}

/// The engine the demo's history is made through, on a runtime of its
/// own (the build is synchronous).
struct Road {
    rt: tokio::runtime::Runtime,
    handle: EngineHandle,
}

impl Road {
    fn start(ws: &Workspace, config: &crate::config::Config) -> Result<Road, EngineError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| EngineError::error(format!("cannot start the async runtime: {e}")))?;
        // Nobody watches the history's events: the answers say enough.
        let (handle, _) = {
            let _in = rt.enter();
            crate::engine::spawn(ws.clone(), config.clone())
        };
        Ok(Road { rt, handle })
    }

    fn wait<T>(&self, p: Pending<T>) -> Result<T, EngineError> {
        self.rt.block_on(p.wait())
    }

    fn stop(self) {
        self.rt.block_on(self.handle.shutdown());
    }
}

fn attach(
    road: &Road,
    subject: &Digest,
    bytes: &[u8],
    kind: EvidenceKind,
) -> Result<(), EngineError> {
    let (format, _) = crate::scan::read(bytes)
        .map_err(|e| EngineError::error(format!("a demo report does not parse: {e}")))?;
    road.wait(road.handle.attach(AttachRequest {
        subject: subject.clone(),
        bytes: bytes.to_vec(),
        media_type: format.media_type().into(),
        kind: kind.as_str().into(),
    }))?;
    Ok(())
}

/// A free loopback port for the demo's router.
fn edge_port() -> Result<u16, EngineError> {
    Ok(crate::engine::probe::free_port()?)
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
