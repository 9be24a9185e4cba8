//! Deploying a release to an environment's targets.

use std::time::{Duration, Instant};

use crate::config::{Config, EnvironmentConfig, TargetKind};
use crate::deploy::dir::DirTarget;
use crate::domain::{Digest, Repository};

use super::seal::StepSealer;

/// How a deploy runs: which targets, as a rollback or not, from blobs
/// already fetched, and who seals a canary's steps.
#[derive(Default, Clone, Copy)]
pub struct DeployOptions<'a> {
    /// Only this target of the environment.
    pub only: Option<&'a str>,
    /// Run a script target's `rollback` hook instead of `deploy`.
    pub rollback: bool,
    /// The image's blobs, fetched from its registry (`None`: its layout).
    pub fetched: Option<&'a (dyn crate::deploy::unpack::BlobSource + Sync)>,
    /// Seals each canary step and operator action (`None`: not sealed,
    /// e.g. a rollback, which is sealed whole).
    pub steps: Option<&'a StepSealer>,
}

/// Deploys `digest` of `app` to every target of `env` (or only
/// `opts.only`). Returns a line per target.
pub async fn deploy_targets(
    config: &Config,
    env: &EnvironmentConfig,
    app: &str,
    digest: &Digest,
    opts: DeployOptions<'_>,
) -> Result<Vec<String>, String> {
    let image = &config
        .apps
        .get(app)
        .ok_or_else(|| format!("no app `{app}`"))?
        .image;
    let mut done = Vec::new();
    for t in env
        .targets
        .iter()
        .filter(|t| opts.only.is_none_or(|o| o == t.get_ref()))
    {
        let name = t.get_ref();
        let target = config
            .targets
            .get(name)
            .ok_or_else(|| format!("no target `{name}`"))?;
        if target.kind == TargetKind::Script {
            done.push(run_hooks(config, name, target, app, digest, opts.rollback)?);
            continue;
        }
        let layout = match (&image.repository, opts.fetched) {
            (Repository::Layout(path), None) => Some(
                crate::registry::Layout::open(&config.root.join(path))
                    .map_err(|e| e.to_string())?,
            ),
            _ => None,
        };
        let source: &(dyn crate::deploy::unpack::BlobSource + Sync) = match (opts.fetched, &layout)
        {
            (Some(f), _) => f,
            (None, Some(l)) => l,
            (None, None) => {
                return Err(format!(
                    "app `{app}` comes from a registry and its image was not fetched"
                ));
            }
        };
        let dir = dir_target(config, target, app);
        if target.kind.is_routed() {
            let routed = Routed {
                app,
                config,
                env,
                name,
                target,
                dir: &dir,
                steps: opts.steps,
            };
            done.push(routed.deploy(source, digest).await?);
            let _ = dir.prune(target.keep.unwrap_or(5) as usize);
            continue;
        }
        let d = dir
            .deploy(source, digest)
            .map_err(|e| format!("target `{name}`: {e}"))?;
        let _ = dir.prune(target.keep.unwrap_or(5) as usize);
        done.push(format!(
            "{name}: {} → sha256:{}{}",
            d.previous
                .map_or("nothing".into(), |p| format!("sha256:{}", p.short())),
            d.digest.short(),
            if d.unpacked {
                format!(" ({} entries unpacked)", d.entries)
            } else {
                " (already unpacked)".into()
            }
        ));
    }
    if let Some(o) = opts.only
        && done.is_empty()
    {
        return Err(format!("`{o}` is not a target of this environment"));
    }
    Ok(done)
}

/// One `router` or `nginx` target being deployed to.
struct Routed<'a> {
    app: &'a str,
    config: &'a Config,
    env: &'a EnvironmentConfig,
    name: &'a str,
    target: &'a crate::config::TargetConfig,
    dir: &'a DirTarget,
    steps: Option<&'a StepSealer>,
}

impl Routed<'_> {
    /// Blue/green: the release unpacked, put in the idle slot,
    /// health-checked through a forced request, then made stable in one
    /// swap with the old release kept warm. A canary walks the candidate
    /// through its weights first. The first release goes straight to
    /// stable. A failed health check leaves the stable release serving.
    /// Promoting the release an interrupted canary was walking picks that
    /// canary up at the step it reached.
    async fn deploy(
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
            let mut before = routed::read_stats(sdir).candidate;
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
                    before = routed::read_stats(sdir).candidate;
                    continue;
                }
                if Instant::now() < next_sample {
                    continue;
                }
                next_sample = Instant::now() + interval;
                let now = routed::read_stats(sdir).candidate;
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
                    failed += 1;
                    "FAIL"
                } else if d.requests < min_requests {
                    "inconclusive"
                } else if a.max_error_rate.is_some_and(|m| d.error_rate() > m)
                    || a.max_p95_ms.is_some_and(|m| d.p95_ms > m)
                {
                    failed += 1;
                    "FAIL"
                } else {
                    "pass"
                };
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

/// A `dir` target's folder for `app`, relative to the workspace; `{app}`
/// in the path is the app's name, so one target can hold every app.
pub fn dir_target(config: &Config, target: &crate::config::TargetConfig, app: &str) -> DirTarget {
    let path = target.path.as_ref().map_or(".", |p| p.get_ref().as_str());
    DirTarget::new(config.root.join(path.replace("{app}", app)))
}

/// A `script` target: the user's `deploy` hook (or `rollback`, when rolling
/// back and one is set), then `health` if set, each `bash -c` from the
/// workspace root with the release in `STELLA_*` variables.
fn run_hooks(
    config: &Config,
    name: &str,
    target: &crate::config::TargetConfig,
    app: &str,
    digest: &Digest,
    rollback: bool,
) -> Result<String, String> {
    let hooks: Vec<(&str, &String)> = [
        if rollback && target.rollback.is_some() {
            target.rollback.as_ref().map(|c| ("rollback", c))
        } else {
            target.deploy.as_ref().map(|c| ("deploy", c))
        },
        target.health.as_ref().map(|c| ("health", c)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let limit = target
        .timeout
        .as_ref()
        .and_then(|t| crate::domain::duration::parse_duration(t.get_ref()).ok())
        .unwrap_or(Duration::from_secs(600));
    let mut log = String::new();
    for (hook, command) in hooks {
        let mut cmd = std::process::Command::new("bash");
        cmd.arg("-c")
            .arg(command)
            .current_dir(&config.root)
            .env("STELLA_RELEASE_APP", app)
            .env("STELLA_RELEASE_DIGEST", digest.to_string())
            .env("STELLA_TARGET_NAME", name)
            .env(
                "STELLA_TARGET_PATH",
                target
                    .path
                    .as_ref()
                    .map(|p| p.get_ref().as_str())
                    .unwrap_or(""),
            )
            .env("STELLA_HOOK", hook)
            .stdin(std::process::Stdio::null());
        let out = crate::deploy::hook::run_with_timeout(cmd, limit)
            .map_err(|e| format!("target `{name}`: cannot run its {hook} hook: {e}"))?;
        log.push_str(&out.output);
        match out.status {
            Some(s) if s.success() => {}
            Some(s) => {
                return Err(format!(
                    "target `{name}`: the {hook} hook failed ({}): {}",
                    s.code().map_or("killed".into(), |c| format!("exit {c}")),
                    log.trim_end()
                ));
            }
            None => {
                return Err(format!(
                    "target `{name}`: the {hook} hook timed out after {}; its process group was killed (raise `timeout` on the target): {}",
                    crate::gates::human_duration(
                        chrono::Duration::from_std(limit).unwrap_or_default()
                    ),
                    log.trim_end()
                ));
            }
        }
    }
    Ok(format!(
        "{name}: hooks ran for sha256:{}{}",
        digest.short(),
        if log.is_empty() {
            String::new()
        } else {
            format!("\n{}", log.trim_end())
        }
    ))
}

/// What each `dir` target of `env` serves now: to put back if a later step
/// of the workflow fails.
pub fn snapshot(
    config: &Config,
    env: &EnvironmentConfig,
    app: &str,
) -> Vec<(String, Option<Digest>)> {
    env.targets
        .iter()
        .filter_map(|t| {
            let target = config.targets.get(t.get_ref())?;
            match target.kind {
                TargetKind::Dir => Some((
                    t.get_ref().clone(),
                    dir_target(config, target, app).current(),
                )),
                TargetKind::Router | TargetKind::Nginx => Some((
                    t.get_ref().clone(),
                    crate::deploy::routed::read_state(&crate::deploy::routed::state_dir(
                        &config.root,
                        t.get_ref(),
                    ))
                    .ok()
                    .and_then(|s| s.stable.map(|s| s.digest)),
                )),
                _ => None,
            }
        })
        .collect()
}

/// Switches every `dir` target back to what `snapshot` saw; returns a line
/// per target moved back.
pub fn restore(config: &Config, app: &str, before: &[(String, Option<Digest>)]) -> Vec<String> {
    let mut lines = Vec::new();
    for (name, previous) in before {
        let Some(target) = config.targets.get(name) else {
            continue;
        };
        if target.kind.is_routed() {
            lines.extend(restore_routed(config, name, target, app, previous));
            continue;
        }
        if target.kind != TargetKind::Dir {
            continue;
        }
        let dir = dir_target(config, target, app);
        if dir.current() == *previous {
            continue;
        }
        match previous {
            Some(d) => match dir.switch(d) {
                Ok(()) => lines.push(format!("{name}: back to sha256:{}", d.short())),
                Err(e) => lines.push(format!("{name}: could not switch back: {e}")),
            },
            None => {
                let _ = std::fs::remove_file(dir.current_link());
                lines.push(format!(
                    "{name}: nothing was serving before; current removed"
                ));
            }
        }
    }
    lines
}

/// Puts a router target's stable slot back to `previous` (an unpacked
/// release), with nothing in the candidate slot. The router takes it up
/// within a tenth of a second.
fn restore_routed(
    config: &Config,
    name: &str,
    target: &crate::config::TargetConfig,
    app: &str,
    previous: &Option<Digest>,
) -> Vec<String> {
    use crate::deploy::routed::{self, SlotState};
    let sdir = routed::state_dir(&config.root, name);
    let Ok(mut st) = routed::read_state(&sdir) else {
        return vec![format!(
            "{name}: its routes cannot be read; check {}",
            sdir.display()
        )];
    };
    if st.stable.as_ref().map(|s| &s.digest) == previous.as_ref() && st.candidate.is_none() {
        return vec![];
    }
    let dir = dir_target(config, target, app);
    st.stable = previous.as_ref().map(|d| SlotState {
        digest: d.clone(),
        dir: dir.release_dir(d),
        command: target.command.clone(),
    });
    st.candidate = None;
    st.weight = 0;
    match routed::write_state(&sdir, &mut st) {
        Ok(_) => vec![match previous {
            Some(d) => format!("{name}: back to sha256:{}", d.short()),
            None => format!("{name}: nothing was serving before; no release is routed"),
        }],
        Err(e) => vec![format!("{name}: could not switch back: {e}")],
    }
}

/// After a crash: promotions whose process died are marked `interrupted`,
/// and each `dir` target of their environment is switched back to the
/// release the store holds live there (the interrupted decision was never
/// sealed, so its release never became live). Returns a line per change.
pub fn recover(
    ws: &crate::workspace::Workspace,
    config: &Config,
) -> Result<Vec<String>, crate::store::StoreError> {
    let mut store = ws.open_store()?;
    let interrupted = store.recover_interrupted()?;
    let mut lines = Vec::new();
    for id in interrupted {
        let Some(p) = store.promotions(None)?.into_iter().find(|p| p.id == id) else {
            continue;
        };
        lines.push(format!(
            "promotion #{id} ({} into {}) was interrupted",
            p.app, p.environment
        ));
        let Some(env) = config.environment(&p.environment) else {
            continue;
        };
        let live = store.live_at(&p.environment, &p.app, &chrono::Utc::now())?;
        // A canary it was walking stays where it was, held: traffic does
        // not move until an operator resumes or aborts it.
        let held = |t: &str| {
            let progress = crate::deploy::routed::read_progress(&crate::deploy::routed::state_dir(
                &config.root,
                t,
            ));
            (progress.interrupted && progress.promotion == Some(id)).then_some(progress)
        };
        let mut before: Vec<(String, Option<Digest>)> = Vec::new();
        for t in &env.targets {
            match held(t.get_ref()) {
                Some(progress) => lines.push(format!(
                    "{}: its canary is held at {}% — `stella rollout resume {}` walks it on, `stella rollout abort {}` sends all traffic back to stable",
                    t.get_ref(),
                    progress.steps.get(progress.step).copied().unwrap_or(0),
                    p.environment,
                    p.environment
                )),
                None => before.push((t.get_ref().clone(), live.as_ref().map(|l| l.digest.clone()))),
            }
        }
        lines.extend(restore(config, &p.app, &before));
        for t in &env.targets {
            if let Some(target) = config.targets.get(t.get_ref())
                && target.kind == TargetKind::Dir
            {
                for p in dir_target(config, target, &p.app).clean_stale() {
                    lines.push(format!("{}: removed {}", t.get_ref(), p.display()));
                }
            }
        }
    }
    Ok(lines)
}

/// For an app whose image lives in a registry, fetches every blob the
/// release needs (once, before any target changes); `None` for layouts.
pub async fn fetch_if_remote(
    config: &Config,
    app: &str,
    digest: &Digest,
) -> Result<Option<crate::deploy::unpack::MemoryBlobs>, String> {
    let a = config
        .apps
        .get(app)
        .ok_or_else(|| format!("no app `{app}`"))?;
    match &a.image.repository {
        Repository::Layout(_) => Ok(None),
        Repository::Remote {
            registry,
            repository,
        } => crate::registry::remote::fetch_image(registry, repository, digest, a.insecure)
            .await
            .map(|b| Some(crate::deploy::unpack::MemoryBlobs(b)))
            .map_err(|e| e.to_string()),
    }
}

/// Aborts the interrupted canaries of `env` (their promotion's process
/// died): all traffic back to stable, the candidate retired, each abort
/// sealed under the interrupted promotion. Returns a line per target.
pub fn abort_interrupted(
    ws: &crate::workspace::Workspace,
    config: &Config,
    env_name: &str,
    requested_by: &str,
) -> Result<Vec<String>, super::EngineError> {
    use crate::capsule::statement::Action;
    use crate::deploy::routed;
    let env = config
        .environment(env_name)
        .ok_or_else(|| super::unknown_environment(env_name, config))?;
    let mut lines = Vec::new();
    for t in &env.targets {
        let name = t.get_ref();
        let sdir = routed::state_dir(&config.root, name);
        let mut progress = routed::read_progress(&sdir);
        let (true, Some(app), Some(digest), Some(promotion_id)) = (
            progress.interrupted,
            progress.app.clone(),
            progress.digest.clone(),
            progress.promotion,
        ) else {
            continue;
        };
        let mut st = routed::read_state(&sdir).map_err(super::EngineError::error)?;
        let at = st.weight;
        st.candidate = None;
        st.weight = 0;
        super::resolve::block_on(routed::switch(&sdir, &mut st))?
            .map_err(super::EngineError::error)?;
        progress.state = "aborted".into();
        progress.interrupted = false;
        progress.owner = None;
        progress.samples.push(format!(
            "{at}%: aborted by an operator after its promotion was interrupted"
        ));
        routed::write_progress(&sdir, &progress).map_err(super::EngineError::error)?;
        let sealer = StepSealer {
            workspace: ws.clone(),
            config: config.clone(),
            promotion_id,
            app,
            digest: digest.clone(),
            tag: None,
            environment: env_name.to_owned(),
            requested_by: requested_by.to_owned(),
        };
        let record = super::seal::StepRecord {
            target: name,
            from_weight: at,
            to_weight: 0,
            cause: "operator",
            samples: &progress.samples,
        };
        let path = sealer.seal(
            Action::Abort,
            &record,
            format!(
                "{name}: the interrupted canary of sha256:{} aborted by an operator at {at}%",
                digest.short()
            ),
        )?;
        lines.push(format!(
            "{name}: all traffic back on stable; sha256:{} retired (capsule {})",
            digest.short(),
            path.display()
        ));
    }
    Ok(lines)
}

/// The media type of an A/B test's comparison, sealed when it ends.
pub const AB_MEDIA_TYPE: &str = "application/vnd.stella.ab-comparison+json";

/// Ends the A/B tests of `env`: everything to the winning variant (`a`,
/// the release that was stable, or `b`, the new one), the comparison of
/// both over the test's window sealed as evidence of the decision.
/// Returns a line per target.
pub fn consolidate(
    ws: &crate::workspace::Workspace,
    config: &Config,
    env_name: &str,
    winner_b: bool,
    requested_by: &str,
) -> Result<Vec<String>, super::EngineError> {
    use super::EngineError;
    use crate::capsule::statement::{Action, EvidenceRef};
    use crate::deploy::routed;
    let env = config
        .environment(env_name)
        .ok_or_else(|| super::unknown_environment(env_name, config))?;
    let mut lines = Vec::new();
    for t in &env.targets {
        let name = t.get_ref();
        let Some(target) = config.targets.get(name) else {
            continue;
        };
        let sdir = routed::state_dir(&config.root, name);
        let mut progress = routed::read_progress(&sdir);
        let Some(test) = routed::read_ab(&sdir).filter(|_| progress.state == "experiment") else {
            continue;
        };
        let app = progress.app.clone().unwrap_or_default();
        let now_stats = routed::read_stats(&sdir);
        let variant = |s: &crate::deploy::router::SlotStats| {
            serde_json::json!({
                "requests": s.requests, "errors": s.errors,
                "error_rate": format!("{:.4}", s.error_rate()),
                "p50_ms": format!("{}", s.p50_ms), "p95_ms": format!("{}", s.p95_ms),
            })
        };
        let (a, b) = (
            now_stats.stable.since(&test.baseline.stable),
            now_stats.candidate.since(&test.baseline.candidate),
        );
        let said = |v: &str, s: &crate::deploy::router::SlotStats| {
            format!(
                "{v}: {} requests, error rate {:.3}, p95 ≤ {} ms",
                s.requests,
                s.error_rate(),
                s.p95_ms
            )
        };
        let comparison = serde_json::json!({
            "target": name, "started": test.started, "winner": if winner_b { "b" } else { "a" },
            "a": { "digest": test.a, "stats": variant(&a) },
            "b": { "digest": test.b, "stats": variant(&b) },
        });
        // Everything to the winner; the loser's slot is retired (b
        // winning keeps a warm, for an instant rollback).
        let mut st = routed::read_state(&sdir).map_err(EngineError::error)?;
        if winner_b {
            let old = st.stable.take();
            st.stable = st.candidate.take();
            st.candidate = old;
        } else {
            st.candidate = None;
        }
        st.weight = 0;
        st.sticky = false;
        let version = routed::write_state(&sdir, &mut st).map_err(EngineError::error)?;
        if let Some(listen) = target
            .listen
            .as_ref()
            .and_then(|l| l.get_ref().parse::<std::net::SocketAddr>().ok())
        {
            super::resolve::block_on(routed::wait_live(
                listen,
                version,
                Duration::from_secs(10),
                Some(&sdir),
            ))?
            .map_err(EngineError::error)?;
        }
        let winner = if winner_b { &test.b } else { &test.a };
        progress.state = "consolidated".into();
        progress.samples = vec![said("a", &a), said("b", &b)];
        routed::write_progress(&sdir, &progress).map_err(EngineError::error)?;
        let _ = std::fs::remove_file(sdir.join("ab.json"));

        let cas = ws.evidence();
        let blob = serde_json::to_vec_pretty(&comparison).expect("serializes");
        let comparison_digest = cas.put(&blob)?;
        let env_digest = super::seal::environment_digest(ws, env_name, env)?;
        let at = chrono::Utc::now();
        let reason = format!(
            "{name}: A/B since {} ends with {} winning (sha256:{}); {}; {}",
            test.started,
            if winner_b { "b" } else { "a" },
            winner.short(),
            said("a", &a),
            said("b", &b)
        );
        let decision = super::seal::Gateless {
            action: Action::Consolidate,
            app: &app,
            digest: winner,
            tag: None,
            environment: env_name,
            requested_by,
            at,
            record: EvidenceRef {
                digest: comparison_digest.clone(),
                media_type: AB_MEDIA_TYPE.into(),
                kind: "ab-comparison".into(),
            },
            env_digest: &env_digest,
            outcome: "live",
            reason: reason.clone(),
        };
        let sealed = super::seal::seal_and_export(
            ws,
            config,
            &decision.decision(true),
            None,
            |previous, id| decision.predicate(previous, id),
        )?;
        lines.push(format!(
            "{name}: everything on {} (sha256:{}); {}; {}; capsule {}",
            if winner_b { "b" } else { "a" },
            winner.short(),
            said("a", &a),
            said("b", &b),
            sealed.path.display()
        ));
    }
    if lines.is_empty() {
        return Err(
            EngineError::usage(format!("no A/B test is running in {env_name}")).hint(format!(
                "`stella rollout status {env_name}` shows what its targets serve"
            )),
        );
    }
    Ok(lines)
}

/// The media type of a flags change, sealed as its evidence.
pub const FLAGS_MEDIA_TYPE: &str = "application/vnd.stella.flags+json";

/// Where an environment's feature flags are kept.
pub fn flags_file(root: &std::path::Path, env: &str) -> std::path::PathBuf {
    root.join(".stella")
        .join("flags")
        .join(format!("{env}.json"))
}

pub fn read_flags(root: &std::path::Path, env: &str) -> std::collections::BTreeMap<String, String> {
    std::fs::read(flags_file(root, env))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Checks one `NAME=on|off|PCT%`; returns (name, value).
pub fn parse_flag(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE; e.g. new-checkout=on, dark-mode=25%"))?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "flag name `{name}` may hold letters, digits, `-` and `_` only"
        ));
    }
    let value = match value {
        "on" | "off" => value.to_owned(),
        v => match v.strip_suffix('%').and_then(|n| n.parse::<u8>().ok()) {
            Some(n) if n <= 100 => format!("{n}%"),
            _ => {
                return Err(format!(
                    "flag `{name}`: `{v}` is not on, off or a percentage from 0% to 100%"
                ));
            }
        },
    };
    Ok((name.to_owned(), value))
}

/// Sets feature flags of `env` (`off` values are kept as `off`):
/// written to the environment's flags file atomically, delivered to each
/// `router`/`nginx` target (its routes — a reload for nginx — and a
/// `flags.json` its processes read through `STELLA_FLAGS_FILE`), each
/// change confirmed live, then sealed with the flags before and after as
/// evidence. Returns a line per target.
pub fn set_flags(
    ws: &crate::workspace::Workspace,
    config: &Config,
    env_name: &str,
    changes: &[(String, String)],
    requested_by: &str,
) -> Result<Vec<String>, super::EngineError> {
    use super::EngineError;
    use crate::capsule::statement::{Action, EvidenceRef};
    use crate::deploy::routed;
    let env = config
        .environment(env_name)
        .ok_or_else(|| super::unknown_environment(env_name, config))?;
    let before = read_flags(&config.root, env_name);
    let mut after = before.clone();
    for (n, v) in changes {
        after.insert(n.clone(), v.clone());
    }
    let routed_targets: Vec<&String> = env
        .targets
        .iter()
        .map(|t| t.get_ref())
        .filter(|t| config.targets.get(*t).is_some_and(|t| t.kind.is_routed()))
        .collect();
    if routed_targets.is_empty() {
        return Err(EngineError::usage(format!(
            "environment `{env_name}` has no `router` or `nginx` target; flags reach a release through one"
        )));
    }
    // What the flags ride on: the release stable on the first target.
    let store = ws.open_store()?;
    let mut subject: Option<(String, Digest)> = None;
    for t in &routed_targets {
        let st =
            routed::read_state(&routed::state_dir(&config.root, t)).map_err(EngineError::error)?;
        let Some(stable) = st.stable else { continue };
        for app in config.apps.keys() {
            if store
                .live_at(env_name, app, &chrono::Utc::now())?
                .is_some_and(|l| l.digest == stable.digest)
            {
                subject = Some((app.clone(), stable.digest.clone()));
            }
        }
        if subject.is_some() {
            break;
        }
    }
    let Some((app, digest)) = subject else {
        return Err(EngineError::usage(format!(
            "nothing is deployed in {env_name} yet; flags are set on a running release"
        ))
        .hint(format!(
            "`stella release promote APP --to {env_name}` first"
        )));
    };
    let file = flags_file(&config.root, env_name);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let bytes = serde_json::to_vec_pretty(&after).expect("flags serialize");
    super::seal::write_atomic(&file, &bytes)?;
    let mut lines = Vec::new();
    for t in &routed_targets {
        let sdir = routed::state_dir(&config.root, t);
        let mut st = routed::read_state(&sdir).map_err(EngineError::error)?;
        st.flags = after.clone();
        let version = routed::write_state(&sdir, &mut st).map_err(EngineError::error)?;
        super::seal::write_atomic(&sdir.join("flags.json"), &bytes)?;
        if let Some(listen) = config.targets[*t]
            .listen
            .as_ref()
            .and_then(|l| l.get_ref().parse::<std::net::SocketAddr>().ok())
            .filter(|_| routed::running_pid(&sdir).is_some())
        {
            super::resolve::block_on(routed::wait_live(
                listen,
                version,
                Duration::from_secs(10),
                Some(&sdir),
            ))?
            .map_err(EngineError::error)?;
        }
        lines.push(format!("{t}: flags live (routes {version})"));
    }
    let cas = ws.evidence();
    let evidence = serde_json::to_vec_pretty(&serde_json::json!({
        "environment": env_name, "before": before, "after": after,
    }))
    .expect("serializes");
    let evidence_digest = cas.put(&evidence)?;
    let env_digest = super::seal::environment_digest(ws, env_name, env)?;
    let at = chrono::Utc::now();
    let said: Vec<String> = changes.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let reason = format!("flags of {env_name}: {}", said.join(", "));
    let decision = super::seal::Gateless {
        action: Action::Flags,
        app: &app,
        digest: &digest,
        tag: None,
        environment: env_name,
        requested_by,
        at,
        record: EvidenceRef {
            digest: evidence_digest,
            media_type: FLAGS_MEDIA_TYPE.into(),
            kind: "flags".into(),
        },
        env_digest: &env_digest,
        outcome: "flags-set",
        reason,
    };
    let sealed = super::seal::seal_and_export(
        ws,
        config,
        &decision.decision(false),
        None,
        |previous, id| decision.predicate(previous, id),
    )?;
    lines.push(format!("sealed: {}", sealed.path.display()));
    Ok(lines)
}
