//! stella's builtin steps for the workflow executor.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::Utc;

use crate::config::Config;
use crate::domain::duration::parse_duration;
use crate::domain::{Decision, Digest, GateKind};
use crate::gates::{self, collect};
use crate::workflow::executor::{Builtins, StepResult};
use crate::workspace::Workspace;

/// The promotion a workflow runs for.
#[derive(Clone)]
pub struct StellaBuiltins {
    pub workspace: Workspace,
    pub config: Config,
    pub app: String,
    pub digest: Digest,
    pub tag: Option<String>,
    pub environment: String,
    pub requested_by: String,
    /// The decision clock: `gate` steps evaluate at it, as the decision did.
    pub clock: chrono::DateTime<Utc>,
    /// The promotion's id: a canary's steps are sealed under it.
    pub promotion_id: i64,
}

fn fail(error: String) -> StepResult {
    StepResult {
        ok: false,
        error: Some(error),
        ..Default::default()
    }
}

impl StellaBuiltins {
    fn evaluate(
        &self,
        now: chrono::DateTime<Utc>,
    ) -> Result<(Decision, Vec<crate::domain::Verdict>), String> {
        let store = self.workspace.open_store().map_err(|e| e.to_string())?;
        let inputs = collect::collect(
            &self.config,
            &store,
            &self.workspace.evidence(),
            collect::Request {
                app: self.app.clone(),
                digest: self.digest.clone(),
                tag: self.tag.clone(),
                environment: self.environment.clone(),
                requested_by: self.requested_by.clone(),
                promotion_id: None,
                break_glass: None,
                now,
            },
        )
        .map_err(|e| e.to_string())?;
        Ok(gates::evaluate(&inputs))
    }

    fn gate(&self, which: &str) -> StepResult {
        match self.evaluate(self.clock) {
            Err(e) => fail(e),
            Ok((decision, verdicts)) => {
                let chosen: Vec<_> = verdicts
                    .iter()
                    .filter(|v| which == "all" || v.gate.as_str() == which)
                    .collect();
                let log = chosen
                    .iter()
                    .map(|v| format!("{}: {}\n", v.gate.title(), v.summary))
                    .collect::<String>();
                let ok = if which == "all" {
                    decision == Decision::Allow
                } else {
                    chosen.iter().all(|v| !v.blocks())
                };
                StepResult {
                    ok,
                    log,
                    error: (!ok).then(|| format!("the {which} gate blocks")),
                    ..Default::default()
                }
            }
        }
    }

    async fn health(&self, with: &BTreeMap<String, String>) -> StepResult {
        let url = with.get("url").cloned().unwrap_or_default();
        let status: u16 = with
            .get("status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(200);
        let attempts: u32 = with
            .get("attempts")
            .and_then(|s| s.parse().ok())
            .unwrap_or(5);
        let interval = with
            .get("interval")
            .and_then(|d| parse_duration(d).ok())
            .unwrap_or(Duration::from_secs(1));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build();
        let Ok(client) = client else {
            return fail("cannot build an HTTP client".into());
        };
        let mut log = String::new();
        for n in 1..=attempts {
            match client.get(&url).send().await {
                Ok(resp) => {
                    let got = resp.status().as_u16();
                    let body = resp.text().await.unwrap_or_default();
                    let body_ok = with.get("body").is_none_or(|b| body.contains(b.as_str()));
                    log.push_str(&format!("attempt {n}: {got}\n"));
                    if got == status && body_ok {
                        return StepResult {
                            ok: true,
                            log,
                            ..Default::default()
                        };
                    }
                }
                Err(e) => log.push_str(&format!("attempt {n}: {e}\n")),
            }
            if n < attempts {
                tokio::time::sleep(interval).await;
            }
        }
        StepResult {
            ok: false,
            error: Some(format!(
                "{url} did not answer {status} in {attempts} attempts"
            )),
            log,
            ..Default::default()
        }
    }

    /// Watches the traffic of the environment's `router` and `nginx`
    /// targets (or one) for `duration`, a sample every `interval`, judged
    /// as a canary's analysis is; fails once more samples fail than
    /// `failure_limit` allows. After a blue/green switch it is the check
    /// that the new release holds up under real traffic: its failure
    /// fails the run, which puts the previous release back.
    async fn analysis(&self, with: &BTreeMap<String, String>) -> StepResult {
        use crate::deploy::routed;
        let num = |k: &str| with.get(k).and_then(|v| v.parse::<f64>().ok());
        let duration = with
            .get("duration")
            .and_then(|d| parse_duration(d).ok())
            .unwrap_or(Duration::from_secs(60));
        let interval = with
            .get("interval")
            .and_then(|d| parse_duration(d).ok())
            .unwrap_or(Duration::from_secs(10))
            .clamp(
                Duration::from_millis(500),
                duration.max(Duration::from_millis(500)),
            );
        let candidate = with.get("slot").is_some_and(|s| s == "candidate");
        let min_requests = with
            .get("min_requests")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let limit: u32 = with
            .get("failure_limit")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let Some(env) = self.config.environment(&self.environment) else {
            return fail(format!("no environment {}", self.environment));
        };
        let targets: Vec<&str> = env
            .targets
            .iter()
            .map(|t| t.get_ref().as_str())
            .filter(|t| with.get("target").is_none_or(|o| o == t))
            .filter(|t| {
                self.config
                    .targets
                    .get(*t)
                    .is_some_and(|c| c.kind().is_routed())
            })
            .collect();
        if targets.is_empty() {
            return fail(format!(
                "`analysis` watches a `router` or `nginx` target, and {} has none{}",
                self.environment,
                with.get("target")
                    .map(|t| format!(" called `{t}`"))
                    .unwrap_or_default()
            ));
        }
        let read = |t: &str| {
            let s = routed::read_stats(&routed::state_dir(&self.config.root, t));
            s.slot(if candidate {
                crate::deploy::router::Slot::Candidate
            } else {
                crate::deploy::router::Slot::Stable
            })
        };
        let mut before: Vec<_> = targets.iter().map(|t| read(t)).collect();
        let (mut log, mut failed) = (String::new(), 0u32);
        let end = tokio::time::Instant::now() + duration;
        while tokio::time::Instant::now() < end {
            tokio::time::sleep(interval.min(end - tokio::time::Instant::now())).await;
            for (t, was) in targets.iter().zip(before.iter_mut()) {
                let now = read(t);
                let d = now.since(was);
                *was = now;
                let verdict = super::routed::judge(
                    &d,
                    num("max_error_rate"),
                    num("max_p95_ms"),
                    min_requests,
                );
                if verdict.parse() == Ok(crate::domain::AnalysisVerdict::Fail) {
                    failed += 1;
                }
                log.push_str(&format!(
                    "{t}: {} requests, error rate {:.3}, p95 ≤ {} ms — {verdict}\n",
                    d.requests,
                    d.error_rate(),
                    d.p95_ms
                ));
                if failed > limit {
                    let why = format!("analysis failed: {failed} failed samples, limit {limit}");
                    log.push_str(&why);
                    log.push('\n');
                    return StepResult {
                        ok: false,
                        error: Some(why),
                        log,
                        ..Default::default()
                    };
                }
            }
        }
        StepResult {
            ok: true,
            log,
            ..Default::default()
        }
    }

    async fn notify(&self, with: &BTreeMap<String, String>) -> StepResult {
        let url = with.get("url").cloned().unwrap_or_default();
        let event = serde_json::json!({
            "app": self.app, "digest": self.digest, "environment": self.environment,
            "message": with.get("message"),
        });
        match reqwest::Client::new()
            .post(&url)
            .json(&event)
            .timeout(Duration::from_secs(10))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => StepResult {
                ok: true,
                log: format!("{url}: {}\n", r.status()),
                ..Default::default()
            },
            Ok(r) => fail(format!("{url} answered {}", r.status())),
            Err(e) => fail(format!("{url}: {e}")),
        }
    }

    async fn approval_wait(&self, with: &BTreeMap<String, String>) -> StepResult {
        let timeout = with
            .get("timeout")
            .and_then(|d| parse_duration(d).ok())
            .unwrap_or(Duration::from_secs(3600));
        let until = std::time::Instant::now() + timeout;
        let started = chrono::Utc::now();
        loop {
            // Waiting is about approvals arriving: the clock moves on from
            // the decision's by the time waited.
            let now = self.clock + (chrono::Utc::now() - started);
            match self.evaluate(now) {
                Err(e) => return fail(e),
                Ok((_, verdicts)) => {
                    let v = verdicts.iter().find(|v| v.gate == GateKind::Approval);
                    match v {
                        None => {
                            return StepResult {
                                ok: true,
                                log: "no approval gate here\n".into(),
                                ..Default::default()
                            };
                        }
                        Some(v) if !v.blocks() => {
                            return StepResult {
                                ok: true,
                                log: format!("{}\n", v.summary),
                                ..Default::default()
                            };
                        }
                        Some(v) if std::time::Instant::now() >= until => {
                            return fail(format!(
                                "still waiting after {}s: {}",
                                timeout.as_secs(),
                                v.summary
                            ));
                        }
                        Some(_) => tokio::time::sleep(Duration::from_secs(2)).await,
                    }
                }
            }
        }
    }
}

impl Builtins for StellaBuiltins {
    fn run<'a>(
        &'a self,
        name: &'a str,
        with: &'a BTreeMap<String, String>,
        _vars: &'a BTreeMap<String, String>,
    ) -> Pin<Box<dyn Future<Output = StepResult> + Send + 'a>> {
        Box::pin(async move {
            match name {
                "resolve" => StepResult {
                    ok: true,
                    outputs: BTreeMap::from([("digest".to_owned(), self.digest.to_string())]),
                    log: format!("{}@{}\n", self.app, self.digest),
                    ..Default::default()
                },
                "gate" => self.gate(with.get("gate").map_or("all", String::as_str)),
                "deploy" => {
                    let Some(env) = self.config.environment(&self.environment) else {
                        return fail(format!("no environment {}", self.environment));
                    };
                    let fetched =
                        match super::deploy::fetch_if_remote(&self.config, &self.app, &self.digest)
                            .await
                        {
                            Ok(f) => f,
                            Err(e) => return fail(e),
                        };
                    let sealer = super::seal::StepSealer {
                        workspace: self.workspace.clone(),
                        config: self.config.clone(),
                        promotion_id: self.promotion_id,
                        app: self.app.clone(),
                        digest: self.digest.clone(),
                        tag: self.tag.clone(),
                        environment: self.environment.clone(),
                        requested_by: self.requested_by.clone(),
                    };
                    let opts = super::deploy::DeployOptions {
                        only: with.get("target").map(String::as_str),
                        rollback: false,
                        fetched: fetched
                            .as_ref()
                            .map(|f| f as &(dyn crate::deploy::unpack::BlobSource + Sync)),
                        steps: Some(&sealer),
                    };
                    match super::deploy::deploy_targets(
                        &self.config,
                        env,
                        &self.app,
                        &self.digest,
                        opts,
                    )
                    .await
                    {
                        Ok(lines) => StepResult {
                            ok: true,
                            log: lines.join("\n") + "\n",
                            changes: lines,
                            ..Default::default()
                        },
                        Err(e) => fail(e),
                    }
                }
                "health-check" => self.health(with).await,
                "analysis" => self.analysis(with).await,
                "notify" => self.notify(with).await,
                "approval-wait" => self.approval_wait(with).await,
                other => fail(format!("builtin `{other}` has no runner")),
            }
        })
    }
}
