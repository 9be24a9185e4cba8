//! Runs a canary's state machine (`domain::rollout`) against a routed
//! target: each effect in order — a seal through `StepSealer` before the
//! traffic change it decides, weights changed on the target's *current*
//! routes (so flags set meanwhile survive), samples of the router's
//! counters and the probe, answers to operators' requests. The state is
//! written to the store after every input, so any process can read where
//! the canary is and, when this one dies, take it over from its stored
//! times. Requests are polled from the store at least every 250 ms.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::seal::{StepRecord, StepSealer};
use crate::capsule::statement::Action;
use crate::config::Environment;
use crate::deploy::routed;
use crate::domain::rollout::{Canary, Effect, Input, Plan, Reply, SealAction};
use crate::domain::{CanaryPhase, OperatorRequest};
use crate::store::{Answer, RequestSubject, RolloutKind, RolloutRow, Store};
use crate::workspace::Workspace;

/// How often requests are looked for, at least.
pub const POLL: Duration = Duration::from_millis(250);

/// How an environment rolls out, read from its config in this one place.
pub enum Rollout {
    BlueGreen,
    Canary {
        plan: Plan,
        probe: Option<crate::config::Probe>,
    },
    Ab {
        split: u8,
    },
}

/// The rollout of `env`, and how long a replaced release stays warm.
pub fn rollout_of(env: &Environment) -> (Rollout, Option<Duration>) {
    use crate::config::{Pause, Strategy};
    let rollout = match &env.strategy {
        Strategy::Ab { split } => Rollout::Ab { split: *split },
        Strategy::Canary(c) => Rollout::Canary {
            plan: Plan {
                steps: c.steps.clone(),
                pause: match c.pause {
                    Pause::Manual => None,
                    Pause::For(d) => Some(d),
                },
                interval: c.interval,
                analysis: c.analysis.is_some(),
                max_error_rate: c.analysis.as_ref().and_then(|a| a.max_error_rate),
                max_p95_ms: c.analysis.as_ref().and_then(|a| a.max_p95_ms),
                min_requests: c.analysis.as_ref().map_or(1, |a| a.min_requests),
                failure_limit: c.analysis.as_ref().map_or(0, |a| a.failure_limit),
            },
            probe: c.analysis.as_ref().and_then(|a| a.probe.clone()),
        },
        Strategy::Direct | Strategy::BlueGreen => Rollout::BlueGreen,
    };
    (rollout, env.scale_down_delay)
}

/// What a seal is, as a capsule's action.
pub fn action_of(a: SealAction) -> Action {
    match a {
        SealAction::CanaryStep => Action::CanaryStep,
        SealAction::Pause => Action::Pause,
        SealAction::Resume => Action::Resume,
        SealAction::Abort => Action::Abort,
        SealAction::Consolidate => Action::Consolidate,
    }
}

/// The canary of one target, run by this process.
pub struct Runner<'a> {
    pub ws: Workspace,
    pub environment: &'a str,
    pub target: &'a str,
    pub sdir: &'a Path,
    pub listen: Option<std::net::SocketAddr>,
    pub sealer: Option<&'a StepSealer>,
    pub probe: Option<&'a crate::config::Probe>,
    /// Took it over from a dead owner: its answers say so.
    pub taken_over: bool,
    pub canary: Canary,
    /// The candidate's counters at the last sample (or weight change).
    pub before: crate::deploy::router::SlotStats,
    /// Only moves traffic when asked to (a take-over of a pause or an
    /// abort holds the weight it found).
    pub apply_weights: bool,
}

impl Runner<'_> {
    fn store(&self) -> Result<Store, String> {
        self.ws.open_store().map_err(|e| e.to_string())
    }

    /// Records a new canary, owned by this process. Requests still
    /// pending were asked of an earlier rollout: they are refused, not
    /// applied to this one.
    pub fn record(&self, app: &str, digest: &crate::domain::Digest) -> Result<(), String> {
        let mut store = self.store()?;
        let subject = RequestSubject::Rollout {
            environment: self.environment.to_owned(),
        };
        while let Ok(Some(stale)) = store.next_request(&subject) {
            let error = "asked of an earlier rollout, which ended before it was taken".to_owned();
            if store
                .answer_request(stale.id, &Answer::Failed { error }, false)
                .is_err()
            {
                break;
            }
        }
        store
            .put_rollout(&RolloutRow {
                environment: self.environment.to_owned(),
                target: self.target.to_owned(),
                promotion_id: self.sealer.map(|s| s.promotion_id),
                app: app.to_owned(),
                digest: digest.clone(),
                kind: RolloutKind::Canary,
                phase: self.canary.phase,
                owner_pid: Some(i64::from(std::process::id())),
                taken_over: 0,
                state: serde_json::to_string(&self.canary).expect("a canary serializes"),
                updated_at: Utc::now(),
            })
            .map_err(|e| e.to_string())
    }

    fn save(&self) -> Result<(), String> {
        let json = serde_json::to_string(&self.canary).expect("a canary serializes");
        let mine = self
            .store()?
            .save_rollout(
                self.environment,
                self.target,
                self.canary.phase,
                &json,
                self.canary.is_over(),
            )
            .map_err(|e| e.to_string())?;
        if !mine {
            return Err(format!(
                "target `{}`: another process took the canary over; this one stops",
                self.target
            ));
        }
        Ok(())
    }

    /// Feeds one input and runs its effects; returns when to wake next.
    pub async fn feed(&mut self, input: Input) -> Result<Option<DateTime<Utc>>, String> {
        let (next, effects) = self.canary.clone().step(input);
        self.canary = next;
        let wake = self.run(effects).await;
        // Stored after each input, whatever happened: readers and a
        // process taking over see where it is.
        self.save()?;
        wake
    }

    /// Runs the effects of the canary's start, then stores it.
    pub async fn run_start(
        &mut self,
        effects: Vec<Effect>,
    ) -> Result<Option<DateTime<Utc>>, String> {
        let wake = self.run(effects).await;
        self.save()?;
        wake
    }

    /// Runs effects in order. A seal that fails stops the rest: the
    /// decision is not taken.
    async fn run(&mut self, effects: Vec<Effect>) -> Result<Option<DateTime<Utc>>, String> {
        let mut wake = None;
        let mut sealed: Option<i64> = None;
        let mut queue: std::collections::VecDeque<Effect> = effects.into();
        while let Some(e) = queue.pop_front() {
            match e {
                Effect::Seal {
                    action,
                    from,
                    to,
                    cause,
                    reason,
                } => match self.seal(action, from, to, cause, reason) {
                    Ok(id) => sealed = id,
                    Err(why) => {
                        for e in queue {
                            if let Effect::AnswerRequest { id, .. } = e {
                                self.answer(id, Answer::Failed { error: why.clone() });
                            }
                        }
                        return Err(why);
                    }
                },
                Effect::SetWeight(w) => {
                    if self.apply_weights {
                        self.set_weight(w).await?;
                    }
                    self.before =
                        routed::read_stats(self.sdir).slot(crate::deploy::router::Slot::Candidate);
                    let (next, more) = self.canary.clone().step(Input::WeightLive(Utc::now()));
                    self.canary = next;
                    queue.extend(more);
                }
                Effect::SendAllToStable => self.all_to_stable().await?,
                // The candidate becomes stable once the canary returns:
                // the deploy swaps the slots.
                Effect::Promote => {}
                Effect::TakeSample => {
                    let now =
                        routed::read_stats(self.sdir).slot(crate::deploy::router::Slot::Candidate);
                    let d = now.since(&self.before);
                    self.before = now;
                    let probe = match (self.probe, self.listen) {
                        (Some(p), Some(listen)) => Some(probe_candidate(listen, p).await),
                        _ => None,
                    };
                    let (next, more) = self.canary.clone().step(Input::Sample {
                        now: Utc::now(),
                        traffic: crate::domain::rollout::Traffic {
                            requests: d.requests,
                            error_rate: d.error_rate(),
                            p95_ms: d.p95_ms,
                        },
                        probe,
                    });
                    self.canary = next;
                    queue.extend(more);
                }
                Effect::AnswerRequest { id, reply } => self.answer(
                    id,
                    match reply {
                        Reply::Sealed => Answer::Done { capsule_id: sealed },
                        Reply::Refused(error) => Answer::Failed { error },
                    },
                ),
                Effect::WakeAt(t) => wake = Some(wake.map_or(t, |w: DateTime<Utc>| w.min(t))),
            }
        }
        Ok(wake)
    }

    fn answer(&self, id: i64, answer: Answer) {
        if let Ok(mut s) = self.store() {
            let _ = s.answer_request(id, &answer, self.taken_over);
        }
    }

    fn seal(
        &self,
        action: SealAction,
        from: u8,
        to: u8,
        cause: crate::domain::Cause,
        reason: String,
    ) -> Result<Option<i64>, String> {
        let Some(sealer) = self.sealer else {
            return Ok(None);
        };
        let lines = self.canary.lines();
        let record = StepRecord {
            target: self.target,
            from_weight: from,
            to_weight: to,
            cause,
            samples: &lines,
        };
        sealer
            .seal_step(
                action_of(action),
                &record,
                format!("{}: {reason}", self.target),
            )
            .map(|(id, _)| Some(id))
            .map_err(|e| format!("the canary step could not be sealed: {}", e.message))
    }

    /// The candidate's weight on the target's current routes: only the
    /// weight changes, whatever else (flags) changed meanwhile — read and
    /// written under the routes file's lock, as every writer of it does.
    async fn set_weight(&self, w: u8) -> Result<(), String> {
        let version = routed::update_state(self.sdir, |st| {
            st.weight = w;
            Ok(())
        })?;
        self.live(version).await
    }

    async fn all_to_stable(&self) -> Result<(), String> {
        let listen = self.listen;
        let version = routed::update_state(self.sdir, |st| {
            st.candidate = None;
            st.weight = 0;
            if st.listen.is_none() {
                st.listen = listen;
            }
            Ok(())
        })?;
        self.live(version).await
    }

    /// Waits until the target's router answers routes `version` (when its
    /// controller runs).
    async fn live(&self, version: u64) -> Result<(), String> {
        match self
            .listen
            .filter(|_| routed::running_pid(self.sdir).is_some())
        {
            Some(listen) => {
                routed::wait_live(listen, version, Duration::from_secs(10), Some(self.sdir)).await
            }
            None => Ok(()),
        }
    }

    /// The oldest pending request on this environment's rollout.
    fn next_request(&self) -> Option<(i64, OperatorRequest, String)> {
        let s = self.store().ok()?;
        let r = s
            .next_request(&RequestSubject::Rollout {
                environment: self.environment.to_owned(),
            })
            .ok()??;
        Some((r.id, r.request, r.requested_by))
    }

    /// Marks the canary failed (the error stopped it) and stores it, so
    /// nobody takes over a canary whose traffic went back to stable.
    pub fn fail(&mut self) {
        self.canary = self.canary.clone().fail();
        let _ = self.save();
    }

    /// Walks the canary until it is over: requests first, then what is
    /// due, sleeping until the next stored time (at most `POLL`).
    pub async fn walk(&mut self, mut wake: Option<DateTime<Utc>>) -> Result<(), String> {
        while !self.canary.is_over() {
            if let Some((id, request, who)) = self.next_request() {
                wake = self
                    .feed(Input::Request {
                        id,
                        request,
                        who,
                        now: Utc::now(),
                    })
                    .await?;
                continue;
            }
            let now = Utc::now();
            let until = wake
                .map(|w| (w - now).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(POLL)
                .min(POLL);
            tokio::time::sleep_until(tokio::time::Instant::now() + until).await;
            let before = self.canary.clone();
            let next = self.feed(Input::Tick(Utc::now())).await?;
            if next.is_some() || self.canary != before {
                wake = next;
            }
        }
        Ok(())
    }
}

/// The canary's outcome for the deploy: its sample lines when promoted,
/// why not otherwise (traffic is then back on stable).
pub fn outcome(c: &Canary, target: &str) -> Result<Vec<String>, String> {
    let lines = c.lines();
    match c.phase {
        CanaryPhase::Promoted => Ok(lines),
        CanaryPhase::Aborted => Err(format!(
            "canary aborted by an operator at {}%",
            c.step_weight()
        )),
        CanaryPhase::RolledBack => Err(format!(
            "canary analysis failed at {}% ({} failed samples, limit {}): {}",
            c.step_weight(),
            c.failed,
            c.plan.failure_limit,
            lines.join("; ")
        )),
        other => Err(format!("target `{target}`: the canary stopped {other}")),
    }
}

/// Where a target's rollout is, for readers (`stella rollout status`, the
/// workbench): from the store; one whose owner died is shown paused and
/// `interrupted`, at the step it reached.
pub fn progress(store: &Store, environment: &str, target: &str) -> routed::Progress {
    let Ok(Some(row)) = store.rollout(environment, target) else {
        return routed::Progress::default();
    };
    progress_of(&row)
}

pub fn progress_of(row: &RolloutRow) -> routed::Progress {
    let dead = row
        .owner_pid
        .is_none_or(|pid| !crate::store::process_alive(pid));
    let mut p = routed::Progress {
        app: Some(row.app.clone()),
        digest: Some(row.digest.clone()),
        state: Some(row.phase),
        promotion: row.promotion_id,
        owner: row.owner_pid,
        ..Default::default()
    };
    match row.kind {
        RolloutKind::Canary => {
            if let Ok(c) = serde_json::from_str::<Canary>(&row.state) {
                p.steps = c.plan.steps.clone();
                p.step = c.step;
                p.samples = c.lines();
                p.manual = c.plan.pause.is_none();
                p.next_at = c.step_ends_at.filter(|_| c.phase == CanaryPhase::Running);
            }
            if row.phase == CanaryPhase::Running && dead {
                p.state = Some(CanaryPhase::Paused);
                p.interrupted = true;
                p.next_at = None;
            }
            if row.phase == CanaryPhase::Paused && dead {
                p.interrupted = true;
            }
        }
        RolloutKind::Ab => {
            if let Ok(ab) = serde_json::from_str::<crate::domain::rollout::AbTest>(&row.state) {
                p.steps = vec![ab.split];
            }
        }
    }
    p
}

/// A canary analysis's probe: one GET through the target's router, forced
/// to the candidate. `Ok` or `Err` with what it saw, for the sample line.
pub async fn probe_candidate(
    listen: std::net::SocketAddr,
    p: &crate::config::Probe,
) -> Result<String, String> {
    let (path, want, timeout) = (p.path.as_str(), p.status, p.timeout);
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
