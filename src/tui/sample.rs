//! A made-up, fully determined snapshot — fixed digests, fixed clock — for
//! the workbench's snapshot tests and render benchmarks. Nothing here
//! touches a store.

use chrono::{DateTime, Duration, Utc};

use super::data::{AppReleases, Cell, Health, Lane, Live, ReleaseInfo, RunInfo, Snapshot};
use crate::config::model::FreezeWindowConfig;
use crate::domain::{Digest, PromotionOutcome, PromotionState, RunState, StepState};
use crate::gates::freeze::Window;
use crate::store::{CapsuleRow, PromotionRow, StepRow};

/// The sample's clock: a Wednesday, during its one-off freeze.
pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
        .expect("a valid time")
        .with_timezone(&Utc)
}

/// A digest made from a number, the same every run.
pub fn digest(n: u64) -> Digest {
    Digest::of(format!("sample-{n}").as_bytes())
}

fn spanned(s: &str) -> toml::Spanned<String> {
    toml::Spanned::new(0..0, s.to_owned())
}

fn windows() -> Vec<(String, Window)> {
    let oneoff = FreezeWindowConfig {
        start: None,
        end: None,
        timezone: None,
        from: Some(spanned("2026-11-25T09:00:00Z")),
        until: Some(spanned("2026-11-25T18:00:00Z")),
        exceptions: vec![],
        break_glass_approvals: None,
    };
    let weekend = FreezeWindowConfig {
        start: Some(spanned("0 18 * * FRI")),
        end: Some(spanned("0 8 * * MON")),
        timezone: Some(spanned("Europe/Madrid")),
        from: None,
        until: None,
        exceptions: vec![],
        break_glass_approvals: None,
    };
    [("incident", oneoff), ("weekend", weekend)]
        .into_iter()
        .map(|(n, c)| {
            (
                n.to_owned(),
                Window::from_config(n, &c).expect("sample windows are valid"),
            )
        })
        .collect()
}

fn promotion(
    id: i64,
    app: &str,
    d: &Digest,
    env: &str,
    outcome: Option<PromotionOutcome>,
    at: DateTime<Utc>,
) -> PromotionRow {
    PromotionRow {
        id,
        app: app.to_owned(),
        digest: d.to_string(),
        tag: Some(format!("1.{}", id % 10)),
        environment: env.to_owned(),
        requested_by: "oncall@example.com".into(),
        state: if outcome.is_some() {
            PromotionState::Decided
        } else {
            PromotionState::Running
        },
        outcome,
        created_at: at,
        run_id: Some(id),
        run_state: Some(if outcome.is_some() {
            RunState::Succeeded
        } else {
            RunState::Running
        }),
    }
}

/// A workflow of `n` steps: a resolve, then branches of four that join.
pub fn graph(n: usize) -> Vec<(String, Vec<String>)> {
    let mut g = vec![("resolve".to_owned(), vec![])];
    for i in 1..n {
        let need = if i % 5 == 0 || i < 5 {
            g[i.saturating_sub(1) / 5 * 5].0.clone()
        } else {
            g[i - 1].0.clone()
        };
        g.push((format!("step-{i:03}"), vec![need]));
    }
    g
}

/// Three lanes × `apps` apps, with history; one run of `steps` steps in
/// flight (half done) and one finished.
pub fn snapshot(apps: usize, steps: usize) -> Snapshot {
    let now = now();
    let names: Vec<String> = ["api-gateway", "billing", "web"]
        .iter()
        .map(|s| s.to_string())
        .chain((3..apps).map(|i| format!("svc-{i:02}")))
        .take(apps)
        .collect();
    let envs = [
        ("dev", None),
        ("staging", Some("dev")),
        ("prod", Some("staging")),
    ];
    let mut lanes = Vec::new();
    let mut pid = 0;
    for (e, (env, from)) in envs.iter().enumerate() {
        let mut cells = Vec::new();
        for (a, app) in names.iter().enumerate() {
            let live = (e + a) % 4 != 3;
            let d = digest((a * 10 + e) as u64);
            pid += 1;
            cells.push(Cell {
                app: app.clone(),
                live: live.then(|| Live {
                    digest: d.clone(),
                    tag: Some(format!("1.{}", (a + 2 - e.min(2)))),
                    since: now - Duration::hours((e * 20 + a + 1) as i64),
                }),
                last: live.then(|| {
                    promotion(
                        pid,
                        app,
                        &d,
                        env,
                        Some(if a == 1 && e == 1 {
                            PromotionOutcome::Blocked
                        } else {
                            PromotionOutcome::Deployed
                        }),
                        now - Duration::hours(2),
                    )
                }),
                history: vec![
                    (d.clone(), now - Duration::hours(3)),
                    (digest(900 + a as u64), now - Duration::days(3)),
                ],
                taken_out: vec![],
                health: if a == 2 && e == 2 {
                    Health::Drift
                } else {
                    Health::Serving
                },
                pin: (a == 0 && e == 2 && live).then(|| crate::store::Pin {
                    environment: env.to_string(),
                    app: app.clone(),
                    digest: d.clone(),
                    capsule_id: 7,
                    pinned_by: "oncall@example.com".into(),
                    pinned_at: now - Duration::hours(1),
                }),
            });
        }
        lanes.push(Lane {
            env: env.to_string(),
            from: from.map(str::to_owned),
            freeze_windows: if *env == "prod" {
                vec!["incident".into(), "weekend".into()]
            } else {
                vec![]
            },
            security: *env != "dev",
            cells,
        });
    }

    let g = graph(steps);
    let done = steps / 2;
    let started = now - Duration::minutes(5);
    let step_rows = |upto: usize| -> Vec<StepRow> {
        g.iter()
            .take(upto + 1)
            .enumerate()
            .map(|(i, (id, _))| StepRow {
                step: id.clone(),
                state: if i < upto {
                    StepState::Succeeded
                } else {
                    StepState::Running
                },
                attempt: 1,
                started_at: Some(started + Duration::seconds(i as i64)),
                finished_at: (i < upto).then(|| started + Duration::seconds(i as i64 + 1)),
                log_digest: None,
            })
            .collect()
    };
    let critical: Vec<String> = {
        let mut c = vec!["resolve".to_owned()];
        c.extend(g.iter().skip(1).take(4).map(|s| s.0.clone()));
        c
    };
    let running = RunInfo {
        promotion: promotion(1000, "web", &digest(7), "staging", None, started),
        capsule: None,
        graph: g.clone(),
        critical_path: critical.clone(),
        steps: step_rows(done),
    };
    let finished = RunInfo {
        promotion: promotion(
            999,
            "api-gateway",
            &digest(1),
            "prod",
            Some(PromotionOutcome::Deployed),
            now - Duration::hours(1),
        ),
        capsule: Some(40),
        graph: g.clone(),
        critical_path: critical,
        steps: step_rows(steps).into_iter().take(steps).collect(),
    };

    let capsules: Vec<CapsuleRow> = (1..=40)
        .rev()
        .map(|i: i64| CapsuleRow {
            id: i,
            environment: envs[(i % 3) as usize].0.into(),
            app: names[(i as usize) % names.len()].clone(),
            digest: digest(i as u64),
            action: if i == 12 { "rollback" } else { "promote" }.into(),
            decision: if i % 7 == 0 { "deny" } else { "allow" }.into(),
            promotion_id: Some(i),
            payload_digest: digest(5000 + i as u64),
            previous: (i > 3).then(|| digest(5000 + i as u64 - 3)),
            sealed_at: now - Duration::hours(41 - i),
            outcome: Some(match i {
                _ if i % 7 == 0 => PromotionOutcome::Blocked,
                12 => PromotionOutcome::RolledBack,
                _ if i % 5 == 0 => PromotionOutcome::DeployFailed,
                _ => PromotionOutcome::Live,
            }),
        })
        .collect();

    let releases = names
        .iter()
        .enumerate()
        .map(|(a, app)| AppReleases {
            app: app.clone(),
            releases: (0..3)
                .map(|e| ReleaseInfo {
                    digest: digest((a * 10 + e) as u64),
                    tags: vec![format!("1.{}", a + 2 - e)],
                    resolved_at: now - Duration::days(3 - e as i64),
                    evidence: vec![
                        (
                            "scan".into(),
                            "application/vnd.stella.scan.trivy+json".into(),
                            digest(700 + a as u64),
                        ),
                        (
                            "vex".into(),
                            "application/vnd.stella.vex.openvex+json".into(),
                            digest(800),
                        ),
                    ],
                })
                .collect(),
        })
        .collect();

    Snapshot {
        workspace: "acme".into(),
        lanes,
        apps: names,
        promotions: vec![running, finished],
        capsules,
        capsule_count: 40,
        releases,
        freeze: windows(),
        data_version: 1,
    }
}

/// A canary at its second step, with samples and a minute of history.
pub fn rollouts() -> Vec<super::data::RolloutInfo> {
    let mut stable = crate::engine::lanes::SlotStats::default();
    stable.requests = 48_210;
    stable.errors = 12;
    stable.p95_ms = 12.8;
    let mut candidate = crate::engine::lanes::SlotStats::default();
    candidate.requests = 5_360;
    candidate.errors = 3;
    candidate.p95_ms = 25.6;
    vec![super::data::RolloutInfo {
        env: "prod".into(),
        target: "prod-web".into(),
        router: "nginx",
        running: true,
        weight: 50,
        stable: Some(digest(2)),
        candidate: Some(digest(20)),
        stats: (stable, candidate),
        recent: (None, None),
        recent_window_s: None,
        warm_until: None,
        progress: crate::engine::lanes::Progress {
            promotion: None,
            owner: None,
            app: None,
            interrupted: false,
            next_at: Some(now() + chrono::Duration::seconds(80)),
            manual: false,
            digest: Some(digest(20)),
            steps: vec![10, 50, 100],
            step: 1,
            state: Some(crate::domain::CanaryPhase::Running),
            samples: vec![
                "10%: 412 requests, error rate 0.000, p95 ≤ 12.8 ms — pass".into(),
                "10%: 398 requests, error rate 0.003, p95 ≤ 25.6 ms — pass".into(),
                "50%: 2011 requests, error rate 0.001, p95 ≤ 25.6 ms — pass".into(),
            ],
        },
    }]
}

/// What waits to come into two lanes: one release ready, one held by an
/// approval and a soak, one by a freeze; the next freeze named.
pub fn waiting() -> crate::engine::waiting::Overview {
    use crate::engine::waiting::{
        Blocker, FreezeTime, Freezes, LaneWaiting, Overview, Waiting, When,
    };
    let at = |h: i64| {
        let t = now() + chrono::TimeDelta::hours(h);
        When {
            at: t,
            written: crate::gates::freeze::when(t, chrono_tz::Europe::Madrid),
            yours: t.format("%a %Y-%m-%d %H:%M +00:00").to_string(),
        }
    };
    let blocker = |gate: &str, summary: &str, clears: Option<When>| Blocker {
        gate: gate.into(),
        summary: format!("FAIL — {summary}"),
        clears,
        missing_approvers: vec![],
        approvals_needed: None,
        unblock: vec![format!("what unblocks the {gate} gate")],
    };
    let mut approval = blocker("approval", "0 of 1 required approvals", None);
    approval.missing_approvers = vec!["alice@example.com".into(), "bob@example.com".into()];
    approval.approvals_needed = Some(1);
    Overview {
        now: now(),
        requested_as: crate::engine::waiting::ANY_REQUESTER.into(),
        lanes: vec![
            LaneWaiting {
                environment: "staging".into(),
                from: "dev".into(),
                waiting: vec![
                    Waiting {
                        app: "app-0".into(),
                        digest: digest(7),
                        live_here: Some(digest(6)),
                        upstream_since: now() - chrono::TimeDelta::minutes(20),
                        ready: false,
                        blockers: vec![
                            approval,
                            blocker(
                                "upstream",
                                "live in dev for 20m, soak needs 1h",
                                Some(at(1)),
                            ),
                        ],
                    },
                    Waiting {
                        app: "app-1".into(),
                        digest: digest(8),
                        live_here: None,
                        upstream_since: now() - chrono::TimeDelta::hours(3),
                        ready: true,
                        blockers: vec![],
                    },
                ],
                freeze: Freezes::default(),
            },
            LaneWaiting {
                environment: "prod".into(),
                from: "staging".into(),
                waiting: vec![Waiting {
                    app: "app-2".into(),
                    digest: digest(9),
                    live_here: Some(digest(5)),
                    upstream_since: now() - chrono::TimeDelta::days(1),
                    ready: false,
                    blockers: vec![blocker(
                        "freeze",
                        "frozen: weekend until Mon 08:00 CET",
                        Some(at(40)),
                    )],
                }],
                freeze: Freezes {
                    active: vec![FreezeTime {
                        window: "weekend".into(),
                        starts: at(-6),
                        ends: Some(at(40)),
                    }],
                    next: Some(FreezeTime {
                        window: "weekend".into(),
                        starts: at(160),
                        ends: Some(at(206)),
                    }),
                },
            },
        ],
    }
}
