//! Deploying to a `router` or `nginx` target: blue/green through the idle
//! slot, a canary walked through its weights with its analysis (and an
//! HTTP probe), the start of an A/B test. Each weight change and each
//! operator's action is sealed through `StepSealer` before traffic moves.

use std::time::{Duration, Instant};

use crate::config::{Config, EnvironmentConfig};
use crate::deploy::dir::DirTarget;
use crate::domain::Digest;

use super::seal::StepSealer;

/// One `router` or `nginx` target being deployed to.
pub(super) struct Routed<'a> {
    pub app: &'a str,
    pub config: &'a Config,
    pub env: &'a EnvironmentConfig,
    pub name: &'a str,
    pub target: &'a crate::config::TargetConfig,
    pub dir: &'a DirTarget,
    pub steps: Option<&'a StepSealer>,
}

impl Routed<'_> {
    /// Blue/green: the release unpacked, put in the idle slot,
    /// health-checked through a forced request, then made stable in one
    /// swap with the old release kept warm. A canary walks the candidate
    /// through its weights first. The first release goes straight to
    /// stable. A failed health check leaves the stable release serving.
    /// Promoting the release an interrupted canary was walking picks that
    /// canary up at the step it reached.
    pub async fn deploy(
        &self,
        source: &(dyn crate::deploy::unpack::BlobSource + Sync),
        digest: &Digest,
    ) -> Result<String, String> {
        use crate::deploy::routed::{self, SlotState};
        let (name, target) = (self.name, self.target);
        let listen: std::net::SocketAddr = target
            .listen
            .as_ref()
            .and_then(|l| l.get_ref().parse().ok())
            .ok_or_else(|| format!("target `{name}` has no valid `listen`"))?;
        let (unpacked, entries) = self
            .dir
            .unpack(source, digest)
            .map_err(|e| format!("target `{name}`: {e}"))?;
        let sdir = routed::state_dir(&self.config.root, name);
        routed::ensure_running(&self.config.root, name, listen)
            .await
            .map_err(|e| format!("target `{name}`: {e}"))?;
        let mut st = routed::read_state(&sdir)?;
        st.listen = Some(listen);
        let previous = st.stable.clone();
        let new = SlotState {
            digest: digest.clone(),
            dir: self.dir.release_dir(digest),
            command: target.command.clone(),
        };
        let live = |v| routed::wait_live(listen, v, Duration::from_secs(10), Some(&sdir));
        let was = previous
            .as_ref()
            .map_or("nothing".into(), |p| format!("sha256:{}", p.digest.short()));
        if previous.as_ref().is_some_and(|p| p.digest == *digest) {
            return Ok(format!("{name}: already serving sha256:{}", digest.short()));
        }
        let progress = routed::read_progress(&sdir);
        let resumed = progress.interrupted
            && progress.digest.as_ref() == Some(digest)
            && st.candidate.as_ref().is_some_and(|c| c.digest == *digest);
        if previous.is_some() && !resumed {
            st.candidate = Some(new.clone());
            st.weight = 0;
            st.warm_until = None;
            let version = routed::write_state(&sdir, &mut st)?;
            live(version).await?;
            if let Err(e) = routed::check_candidate(listen, version).await {
                st.candidate = None;
                let _ = routed::write_state(&sdir, &mut st);
                return Err(format!(
                    "target `{name}`: {e}; the stable release keeps serving"
                ));
            }
        }
        if let Some(stable) = previous.as_ref().filter(|_| {
            self.env
                .strategy
                .as_ref()
                .is_some_and(|s| *s.get_ref() == crate::config::Strategy::Ab)
        }) {
            return self.start_ab(&sdir, &mut st, stable, listen).await;
        }
        let mut steps = String::new();
        if previous.is_some()
            && let Some(rollout) = self.env.rollout.as_ref().filter(|_| {
                self.env
                    .strategy
                    .as_ref()
                    .is_some_and(|s| *s.get_ref() == crate::config::Strategy::Canary)
            })
        {
            let stable = previous
                .as_ref()
                .map_or(String::new(), |p| p.digest.short().to_owned());
            let from = resumed.then_some(progress);
            match self
                .canary(&sdir, &mut st, rollout.get_ref(), listen, from)
                .await
            {
                Ok(lines) => steps = format!(", canary {}", lines.join("; ")),
                Err(why) => {
                    // All traffic back to stable; the candidate is retired.
                    st.candidate = None;
                    st.weight = 0;
                    return Err(match routed::switch(&sdir, &mut st).await {
                        Ok(()) => format!(
                            "target `{name}`: {why}; all traffic is back on sha256:{stable}"
                        ),
                        Err(e) => format!(
                            "target `{name}`: {why}; sending all traffic back to sha256:{stable} failed: {e}"
                        ),
                    });
                }
            }
        }
        st.candidate = previous;
        st.stable = Some(new);
        st.weight = 0;
        // The old release stays warm for an instant rollback: until a
        // newer one takes its slot, or for `scale_down_delay`.
        st.warm_until = self
            .env
            .rollout
            .as_ref()
            .and_then(|r| r.get_ref().scale_down_delay.as_ref())
            .and_then(|d| crate::domain::duration::parse_duration(d.get_ref()).ok())
            .map(|d| chrono::Utc::now().timestamp() + d.as_secs() as i64);
        live(routed::write_state(&sdir, &mut st)?).await?;
        Ok(format!(
            "{name}: {was} → sha256:{} on {listen} ({}{steps}{})",
            digest.short(),
            if steps.is_empty() {
                "blue/green"
            } else {
                "promoted"
            },
            if unpacked {
                format!(", {entries} entries unpacked")
            } else {
                String::new()
            }
        ))
    }

    /// A/B: the new release (b) takes `split` percent of clients beside
    /// the stable one (a), each client kept on its variant by a cookie,
    /// until `stella rollout consolidate ENV --winner a|b`.
    async fn start_ab(
        &self,
        sdir: &std::path::Path,
        st: &mut crate::deploy::routed::RouterState,
        stable: &crate::deploy::routed::SlotState,
        listen: std::net::SocketAddr,
    ) -> Result<String, String> {
        use crate::deploy::routed;
        let split = self
            .env
            .rollout
            .as_ref()
            .and_then(|r| r.get_ref().split.as_ref())
            .map_or(50, |s| *s.get_ref());
        let b = st
            .candidate
            .clone()
            .ok_or("the new release is not in the candidate slot")?;
        let baseline = routed::read_stats(sdir);
        st.weight = split;
        st.sticky = true;
        st.warm_until = None;
        routed::wait_live(
            listen,
            routed::write_state(sdir, st)?,
            Duration::from_secs(10),
            Some(sdir),
        )
        .await?;
        routed::write_ab(
            sdir,
            &routed::AbTest {
                a: stable.digest.clone(),
                b: b.digest.clone(),
                started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                baseline,
            },
        )?;
        routed::write_progress(
            sdir,
            &routed::Progress {
                app: Some(self.app.to_owned()),
                digest: Some(b.digest.clone()),
                steps: vec![split],
                step: 0,
                state: "experiment".into(),
                samples: vec![],
                promotion: self.steps.map(|s| s.promotion_id),
                owner: None,
                interrupted: false,
                next_at: None,
                manual: false,
            },
        )?;
        Ok(format!(
            "{}: A/B on {listen} — a sha256:{} ({}%) vs b sha256:{} ({split}%), each client kept on its variant; `stella rollout consolidate {} --winner a|b` ends it",
            self.name,
            stable.digest.short(),
            100 - split,
            b.digest.short(),
            self.env_name()
        ))
    }

    fn env_name(&self) -> &str {
        self.steps.map_or("ENV", |s| s.environment.as_str())
    }

    /// Seals one of the canary's decisions; a decision that cannot be
    /// sealed is not taken, so the error stops the canary.
    fn seal(
        &self,
        action: crate::capsule::statement::Action,
        (from, to): (u8, u8),
        cause: &str,
        samples: &[String],
        reason: String,
    ) -> Result<(), String> {
        let Some(sealer) = self.steps else {
            return Ok(());
        };
        let record = super::seal::StepRecord {
            target: self.name,
            from_weight: from,
            to_weight: to,
            cause,
            samples,
        };
        sealer
            .seal(action, &record, reason)
            .map(|_| ())
            .map_err(|e| format!("the canary step could not be sealed: {}", e.message))
    }

    /// Walks the candidate through the rollout's weights, holding each
    /// for `pause` (or, with `pause = "manual"`, until an operator
    /// resumes) while the analysis samples the candidate's counters every
    /// `interval`. Each weight change and each operator action is sealed.
    /// Returns a line per sample; fails when more samples fail than
    /// `failure_limit` allows, naming each sample, or when an operator
    /// aborts. `from`: an interrupted canary's progress, to pick up at
    /// its step.
    async fn canary(
        &self,
        sdir: &std::path::Path,
        st: &mut crate::deploy::routed::RouterState,
        rollout: &crate::config::model::RolloutConfig,
        listen: std::net::SocketAddr,
        from: Option<crate::deploy::routed::Progress>,
    ) -> Result<Vec<String>, String> {
        use crate::capsule::statement::Action;
        use crate::deploy::routed;
        use crate::domain::duration::parse_duration;
        let pause_text = rollout.pause.as_ref().map(|p| p.get_ref().as_str());
        let manual = pause_text == Some("manual");
        let pause = pause_text
            .and_then(|p| parse_duration(p).ok())
            .unwrap_or(Duration::from_secs(60));
        let a = rollout.analysis.as_ref();
        let interval = a
            .and_then(|a| a.interval.as_ref())
            .and_then(|i| parse_duration(i.get_ref()).ok())
            .unwrap_or(if manual {
                Duration::from_secs(30)
            } else {
                pause
            })
            .max(Duration::from_millis(500));
        let limit = a.and_then(|a| a.failure_limit).unwrap_or(0);
        let min_requests = a.and_then(|a| a.min_requests).unwrap_or(1);
        let (first_step, mut lines) = match &from {
            Some(p) => (p.step, p.samples.clone()),
            None => (0, Vec::new()),
        };
        let mut failed = 0;
        if from.is_none() {
            // A new canary starts with no operator request pending; a
            // resumed one keeps what the operator asked.
            routed::write_control(sdir, &routed::Control::default())?;
        } else {
            let mut c = routed::read_control(sdir);
            c.paused = false;
            routed::write_control(sdir, &c)?;
        }
        let mut progress = routed::Progress {
            app: Some(self.app.to_owned()),
            digest: st.candidate.as_ref().map(|c| c.digest.clone()),
            steps: rollout.steps.clone(),
            step: first_step,
            state: "running".into(),
            samples: lines.clone(),
            promotion: self.steps.map(|s| s.promotion_id),
            owner: Some(i64::from(std::process::id())),
            interrupted: false,
            next_at: None,
            manual,
        };
        // Steerable before the first weight takes traffic.
        routed::write_progress(sdir, &progress)?;
        // When a step's pause ends, on the wall clock, for people.
        let wall = |end: Option<Instant>| {
            end.and_then(|e| {
                chrono::Duration::from_std(e.saturating_duration_since(Instant::now()))
                    .ok()
                    .map(|d| chrono::Utc::now() + d)
            })
        };
        let finish = |progress: &mut routed::Progress, state: &str, lines: &[String]| {
            progress.state = state.into();
            progress.next_at = None;
            progress.samples = lines.to_vec();
            let _ = routed::write_progress(sdir, progress);
        };
        if let Some(p) = &from {
            let at = p.steps.get(p.step).copied().unwrap_or(0);
            self.seal(
                Action::Resume,
                (at, at),
                "operator",
                &lines,
                format!("{}: the interrupted canary resumed at {at}%", self.name),
            )?;
        }
        // Who moves the canary on: its schedule, or (manual steps) an
        // operator.
        let mut cause = "schedule";
        for (i, &w) in rollout.steps.iter().enumerate().skip(first_step) {
            if w >= 100 {
                break;
            }
            let was = st.weight;
            progress.step = i;
            if was != w {
                // The decision is sealed before traffic moves.
                self.seal(
                    Action::CanaryStep,
                    (was, w),
                    cause,
                    &lines,
                    format!("{}: candidate weight {was}% → {w}% ({cause})", self.name),
                )?;
                let _ = routed::write_progress(sdir, &progress);
                st.weight = w;
                routed::wait_live(
                    listen,
                    routed::write_state(sdir, st)?,
                    Duration::from_secs(10),
                    Some(sdir),
                )
                .await?;
            }
            let mut end = if manual {
                None
            } else {
                Some(Instant::now() + pause)
            };
            progress.next_at = wall(end);
            let _ = routed::write_progress(sdir, &progress);
            // The router writes its counters twice a second.
            tokio::time::sleep(Duration::from_millis(600)).await;
            let mut before = routed::read_stats(sdir).slot(crate::deploy::router::Slot::Candidate);
            let mut next_sample = Instant::now() + interval;
            let tick = Duration::from_millis(200);
            let mut held = false;
            while end.is_none_or(|e| Instant::now() < e) {
                tokio::time::sleep(tick).await;
                let control = routed::read_control(sdir);
                match control.request.as_deref() {
                    Some("abort") => {
                        lines.push(format!("{w}%: aborted by an operator"));
                        finish(&mut progress, "aborted", &lines);
                        self.seal(
                            Action::Abort,
                            (w, 0),
                            "operator",
                            &lines,
                            format!("{}: aborted by an operator at {w}%", self.name),
                        )?;
                        return Err(format!("canary aborted by an operator at {w}%"));
                    }
                    Some("promote") => {
                        lines.push(format!("{w}%: promoted to 100% by an operator"));
                        finish(&mut progress, "promoted", &lines);
                        self.seal(
                            Action::CanaryStep,
                            (w, 100),
                            "operator",
                            &lines,
                            format!("{}: promoted from {w}% to 100% by an operator", self.name),
                        )?;
                        return Ok(lines);
                    }
                    Some("resume") if manual && !control.paused => {
                        // Manual steps: the operator moves it on.
                        routed::write_control(sdir, &routed::Control::default())?;
                        end = Some(Instant::now());
                        cause = "operator";
                        continue;
                    }
                    _ => {}
                }
                if control.paused != held {
                    held = control.paused;
                    self.seal(
                        if held { Action::Pause } else { Action::Resume },
                        (w, w),
                        "operator",
                        &lines,
                        format!(
                            "{}: {} by an operator at {w}%",
                            self.name,
                            if held { "paused" } else { "resumed" }
                        ),
                    )?;
                    progress.state = if held { "paused" } else { "running" }.into();
                    progress.next_at = if held { None } else { wall(end) };
                    let _ = routed::write_progress(sdir, &progress);
                }
                if held {
                    // Held: the step's time stops, and so does the analysis.
                    end = end.map(|e| e + tick);
                    next_sample = Instant::now() + interval;
                    before = routed::read_stats(sdir).slot(crate::deploy::router::Slot::Candidate);
                    continue;
                }
                if Instant::now() < next_sample {
                    continue;
                }
                next_sample = Instant::now() + interval;
                let now = routed::read_stats(sdir).slot(crate::deploy::router::Slot::Candidate);
                let d = now.since(&before);
                before = now;
                let Some(a) = a else { continue };
                let probe = match a.probe.as_ref() {
                    Some(p) => Some(probe_candidate(listen, p.get_ref()).await),
                    None => None,
                };
                let said = match &probe {
                    Some(Ok(s) | Err(s)) => format!("; {s}"),
                    None => String::new(),
                };
                let verdict = if probe.as_ref().is_some_and(|p| p.is_err()) {
                    "FAIL"
                } else {
                    judge(&d, a.max_error_rate, a.max_p95_ms, min_requests)
                };
                if verdict == "FAIL" {
                    failed += 1;
                }
                lines.push(format!(
                    "{w}%: {} requests, error rate {:.3}, p95 ≤ {} ms{said} — {verdict}",
                    d.requests,
                    d.error_rate(),
                    d.p95_ms
                ));
                progress.samples = lines.clone();
                let _ = routed::write_progress(sdir, &progress);
                if failed > limit {
                    finish(&mut progress, "rolled-back", &lines);
                    let why = format!(
                        "canary analysis failed at {w}% ({failed} failed samples, limit {limit}): {}",
                        lines.join("; ")
                    );
                    self.seal(
                        Action::Abort,
                        (w, 0),
                        "analysis",
                        &lines,
                        format!("{}: rolled back automatically; {why}", self.name),
                    )?;
                    return Err(why);
                }
            }
        }
        finish(&mut progress, "promoted", &lines);
        Ok(lines)
    }
}

/// One analysis sample of a slot's traffic over an interval: `pass`,
/// `FAIL` (over a limit), or `inconclusive` (fewer than `min_requests`).
/// The canary's analysis and the `analysis` workflow step judge alike.
pub(super) fn judge(
    d: &crate::deploy::router::SlotStats,
    max_error_rate: Option<f64>,
    max_p95_ms: Option<f64>,
    min_requests: u64,
) -> &'static str {
    if d.requests < min_requests {
        "inconclusive"
    } else if max_error_rate.is_some_and(|m| d.error_rate() > m)
        || max_p95_ms.is_some_and(|m| d.p95_ms > m)
    {
        "FAIL"
    } else {
        "pass"
    }
}

/// A canary analysis's probe: one GET through the target's router, forced
/// to the candidate. `Ok` or `Err` with what it saw, for the sample line.
async fn probe_candidate(
    listen: std::net::SocketAddr,
    p: &crate::config::model::ProbeConfig,
) -> Result<String, String> {
    let path = p.path.as_deref().unwrap_or("/");
    let want = p.status.unwrap_or(200);
    let timeout = p
        .timeout
        .as_deref()
        .and_then(|t| crate::domain::duration::parse_duration(t).ok())
        .unwrap_or(Duration::from_secs(2));
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| format!("probe {path}: {e}"))?;
    let r = client
        .get(format!("http://{listen}{path}"))
        .header("X-Stella-Variant", "candidate")
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                format!("probe {path}: no answer within {timeout:?}")
            } else {
                format!("probe {path}: {e}")
            }
        })?;
    let status = r.status().as_u16();
    if status != want {
        return Err(format!("probe {path}: {status}, not {want}"));
    }
    if let Some(needle) = &p.body {
        let text = r
            .text()
            .await
            .map_err(|e| format!("probe {path}: {status}, body unreadable: {e}"))?;
        if !text.contains(needle.as_str()) {
            return Err(format!("probe {path}: {status}, body without {needle:?}"));
        }
    }
    Ok(format!("probe {path} {status}"))
}
