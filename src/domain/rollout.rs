//! A canary and an A/B test as pure state machines: `(state, input) ->
//! (state, effects)`. No I/O and no clock: every input carries the time it
//! happened at, every deadline is a stored time, so a process that takes a
//! rollout over from a dead one goes on from where it stood. The engine
//! runs the effects in order; a `Seal` always comes before the traffic
//! change it decides, and a decision that cannot be sealed is not taken.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::state::{AbWinner, AnalysisVerdict, CanaryPhase, Cause, OperatorRequest};

/// What a canary does, from its config: built in one place by the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Candidate weights in percent; a weight of 100 (or the end of the
    /// list) promotes.
    pub steps: Vec<u8>,
    /// How long each step holds; `None`: manual, until an operator resumes.
    #[serde(with = "opt_secs")]
    pub pause: Option<Duration>,
    /// How often the analysis samples (when there is an analysis).
    pub interval: Duration,
    /// Whether samples are judged at all.
    pub analysis: bool,
    pub max_error_rate: Option<f64>,
    pub max_p95_ms: Option<f64>,
    pub min_requests: u64,
    /// Failed samples tolerated; one more rolls back.
    pub failure_limit: u32,
}

mod opt_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let v: Option<f64> = Option::deserialize(d)?;
        Ok(v.filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64))
    }
}

/// A slot's traffic over one sample's interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    pub requests: u64,
    pub error_rate: f64,
    pub p95_ms: f64,
}

/// One analysis sample, as judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub weight: u8,
    pub requests: u64,
    pub error_rate: f64,
    pub p95_ms: f64,
    /// What the probe saw (`Ok`: fine, `Err`: wrong), if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Result<String, String>>,
    pub verdict: AnalysisVerdict,
}

impl Sample {
    /// The line people read, and the step records seal.
    pub fn line(&self) -> String {
        let said = match &self.probe {
            Some(Ok(s) | Err(s)) => format!("; {s}"),
            None => String::new(),
        };
        format!(
            "{}%: {} requests, error rate {:.3}, p95 ≤ {} ms{said} — {}",
            self.weight, self.requests, self.error_rate, self.p95_ms, self.verdict
        )
    }
}

/// Judges one sample: `Fail` over a limit, `Inconclusive` under
/// `min_requests`, else `Pass`. The canary and the `analysis` workflow
/// step judge alike.
pub fn judge(
    t: &Traffic,
    max_error_rate: Option<f64>,
    max_p95_ms: Option<f64>,
    min_requests: u64,
) -> AnalysisVerdict {
    if t.requests < min_requests {
        AnalysisVerdict::Inconclusive
    } else if max_error_rate.is_some_and(|m| t.error_rate > m)
        || max_p95_ms.is_some_and(|m| t.p95_ms > m)
    {
        AnalysisVerdict::Fail
    } else {
        AnalysisVerdict::Pass
    }
}

/// What a decision is sealed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SealAction {
    CanaryStep,
    Pause,
    Resume,
    Abort,
    Consolidate,
}

/// How an operator's request ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Enacted: the `Seal` just before it is its capsule.
    Sealed,
    /// Not enacted, and why.
    Refused(String),
}

/// What the engine must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Seal the decision; if that fails, run none of the effects after it.
    Seal {
        action: SealAction,
        from: u8,
        to: u8,
        cause: Cause,
        reason: String,
    },
    /// Set the candidate's weight (only it: the routes' flags stay) and
    /// answer `Input::WeightLive` once clients see it.
    SetWeight(u8),
    /// All traffic on stable, the candidate retired.
    SendAllToStable,
    /// The candidate becomes stable.
    Promote,
    /// Read the candidate's counters since the last sample (and probe it),
    /// and answer `Input::Sample`.
    TakeSample,
    /// Answer the operator's request `id`.
    AnswerRequest { id: i64, reply: Reply },
    /// Nothing is due before this time (requests aside).
    WakeAt(DateTime<Utc>),
}

/// What happens to a canary.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Tick(DateTime<Utc>),
    Sample {
        now: DateTime<Utc>,
        traffic: Traffic,
        /// `Ok`/`Err` with what the probe saw; `None` without a probe.
        probe: Option<Result<String, String>>,
    },
    Request {
        id: i64,
        request: OperatorRequest,
        who: String,
        now: DateTime<Utc>,
    },
    /// The weight last set is what clients see.
    WeightLive(DateTime<Utc>),
    /// This process took the canary over from one that died.
    TakenOver(DateTime<Utc>),
}

/// A canary: where it is, with its deadlines as times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Canary {
    pub plan: Plan,
    /// Index into `plan.steps` of the weight held.
    pub step: usize,
    pub weight: u8,
    pub phase: CanaryPhase,
    /// Whether `weight` is live yet (the step's clock starts then).
    pub live: bool,
    /// When the step ends; `None` while not live, paused or manual.
    pub step_ends_at: Option<DateTime<Utc>>,
    pub next_sample_at: Option<DateTime<Utc>>,
    pub paused_at: Option<DateTime<Utc>>,
    /// A sample was asked for and not yet answered.
    #[serde(default)]
    pub sampling: bool,
    pub failed: u32,
    pub samples: Vec<Sample>,
    /// Its owner died and this state was taken over; cleared by the next
    /// operator request.
    #[serde(default)]
    pub interrupted: bool,
}

fn add(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX / 2)
}

impl Canary {
    /// A new canary at weight `from` (the candidate just health-checked at
    /// 0): sealed and set at its first step.
    pub fn start(plan: Plan, _now: DateTime<Utc>) -> (Canary, Vec<Effect>) {
        let c = Canary {
            plan,
            step: 0,
            weight: 0,
            phase: CanaryPhase::Running,
            live: true,
            step_ends_at: None,
            next_sample_at: None,
            paused_at: None,
            sampling: false,
            failed: 0,
            samples: Vec::new(),
            interrupted: false,
        };
        let mut fx = Vec::new();
        let c = c.go_to(0, Cause::Schedule, &mut fx);
        (c, fx)
    }

    /// The sample lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.samples.iter().map(Sample::line).collect()
    }

    /// Stopped by an error the engine met running its effects: all
    /// traffic is sent back to stable, and it can no longer be steered.
    pub fn fail(mut self) -> Canary {
        if self.phase.is_active() {
            self.weight = 0;
            self.finish(CanaryPhase::Failed);
        }
        self
    }

    /// The weight of the step it stands (or stood) at.
    pub fn step_weight(&self) -> u8 {
        self.plan.steps.get(self.step).copied().unwrap_or(0)
    }

    /// The weight it moves to next, if any.
    pub fn next_weight(&self) -> Option<u8> {
        self.plan.steps.get(self.step + 1).copied()
    }

    pub fn is_over(&self) -> bool {
        !self.phase.is_active()
    }

    /// Moves to step `i` (sealed first), or promotes past the last step.
    fn go_to(mut self, i: usize, cause: Cause, fx: &mut Vec<Effect>) -> Self {
        let was = self.weight;
        match self.plan.steps.get(i).copied().filter(|w| *w < 100) {
            Some(w) => {
                fx.push(Effect::Seal {
                    action: SealAction::CanaryStep,
                    from: was,
                    to: w,
                    cause,
                    reason: format!("candidate weight {was}% → {w}% ({cause})"),
                });
                fx.push(Effect::SetWeight(w));
                self.step = i;
                self.weight = w;
                self.live = false;
                self.step_ends_at = None;
                self.next_sample_at = None;
                self.sampling = false;
            }
            None => {
                let reason = match cause {
                    Cause::Operator => format!("promoted from {was}% to 100% by an operator"),
                    _ => format!("candidate weight {was}% → 100% ({cause}): promoted"),
                };
                fx.push(Effect::Seal {
                    action: SealAction::CanaryStep,
                    from: was,
                    to: 100,
                    cause,
                    reason,
                });
                fx.push(Effect::Promote);
                self.step = i.min(self.plan.steps.len().saturating_sub(1));
                self.weight = 100;
                self.finish(CanaryPhase::Promoted);
            }
        }
        self
    }

    fn finish(&mut self, phase: CanaryPhase) {
        self.phase = phase;
        self.step_ends_at = None;
        self.next_sample_at = None;
        self.paused_at = None;
        self.sampling = false;
    }

    /// The next time something is due, as a `WakeAt`.
    fn wake(&self, fx: &mut Vec<Effect>) {
        if self.phase != CanaryPhase::Running || !self.live || self.sampling {
            return;
        }
        let next = match (self.step_ends_at, self.next_sample_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(t) = next {
            fx.push(Effect::WakeAt(t));
        }
    }

    /// One input: the next state and what to do, in order.
    pub fn step(self, input: Input) -> (Canary, Vec<Effect>) {
        let mut fx = Vec::new();
        let next = match input {
            Input::Tick(now) => self.tick(now, &mut fx),
            Input::WeightLive(now) => self.weight_live(now, &mut fx),
            Input::Sample {
                now,
                traffic,
                probe,
            } => self.sample(now, traffic, probe, &mut fx),
            Input::Request {
                id,
                request,
                who,
                now,
            } => self.request(id, request, &who, now, &mut fx),
            Input::TakenOver(now) => {
                let mut s = self;
                if s.phase.is_active() {
                    s.interrupted = true;
                    s.sampling = false;
                    if !s.live && s.phase == CanaryPhase::Running {
                        // The dead owner set the weight but never saw it
                        // live: set it again.
                        fx.push(Effect::SetWeight(s.weight));
                    } else if s.next_sample_at.is_some_and(|t| t < now) {
                        s.next_sample_at = Some(now);
                    }
                }
                s
            }
        };
        next.wake(&mut fx);
        (next, fx)
    }

    fn weight_live(mut self, now: DateTime<Utc>, _fx: &mut [Effect]) -> Self {
        if self.phase.is_active() && !self.live {
            self.live = true;
            if self.phase == CanaryPhase::Running {
                self.step_ends_at = self.plan.pause.map(|p| add(now, p));
            }
            self.next_sample_at = Some(add(now, self.plan.interval));
        }
        self
    }

    fn tick(self, now: DateTime<Utc>, fx: &mut Vec<Effect>) -> Self {
        if self.phase != CanaryPhase::Running || !self.live {
            return self;
        }
        let mut s = self;
        if s.plan.analysis && !s.sampling && s.next_sample_at.is_some_and(|t| t <= now) {
            // The step's last sample is taken before the step ends.
            s.sampling = true;
            s.next_sample_at = None;
            fx.push(Effect::TakeSample);
            return s;
        }
        if !s.plan.analysis && s.next_sample_at.is_some_and(|t| t <= now) {
            s.next_sample_at = None;
        }
        if !s.sampling && s.step_ends_at.is_some_and(|t| t <= now) {
            let i = s.step + 1;
            return s.go_to(i, Cause::Schedule, fx);
        }
        s
    }

    fn sample(
        mut self,
        now: DateTime<Utc>,
        traffic: Traffic,
        probe: Option<Result<String, String>>,
        fx: &mut Vec<Effect>,
    ) -> Self {
        if self.phase != CanaryPhase::Running || !self.sampling {
            // Asked before a pause or an abort: the answer is stale.
            return self;
        }
        self.sampling = false;
        self.next_sample_at = Some(add(now, self.plan.interval));
        let p = &self.plan;
        let verdict = if probe.as_ref().is_some_and(|p| p.is_err()) {
            AnalysisVerdict::Fail
        } else {
            judge(&traffic, p.max_error_rate, p.max_p95_ms, p.min_requests)
        };
        self.samples.push(Sample {
            at: now,
            weight: self.weight,
            requests: traffic.requests,
            error_rate: traffic.error_rate,
            p95_ms: traffic.p95_ms,
            probe,
            verdict,
        });
        if verdict == AnalysisVerdict::Fail {
            self.failed += 1;
        }
        if self.failed > self.plan.failure_limit {
            let w = self.weight;
            fx.push(Effect::Seal {
                action: SealAction::Abort,
                from: w,
                to: 0,
                cause: Cause::Analysis,
                reason: format!(
                    "rolled back automatically; canary analysis failed at {w}% ({} failed samples, limit {}): {}",
                    self.failed,
                    self.plan.failure_limit,
                    self.lines().join("; ")
                ),
            });
            fx.push(Effect::SendAllToStable);
            self.weight = 0;
            self.finish(CanaryPhase::RolledBack);
        }
        self
    }

    fn request(
        mut self,
        id: i64,
        request: OperatorRequest,
        who: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> Self {
        let w = self.weight;
        let refuse = |fx: &mut Vec<Effect>, why: String| {
            fx.push(Effect::AnswerRequest {
                id,
                reply: Reply::Refused(why),
            })
        };
        if !self.phase.is_active() {
            refuse(
                fx,
                format!("the canary is {} already; nothing to {request}", self.phase),
            );
            return self;
        }
        let interrupted = std::mem::take(&mut self.interrupted);
        let answered = |fx: &mut Vec<Effect>| {
            fx.push(Effect::AnswerRequest {
                id,
                reply: Reply::Sealed,
            })
        };
        match request {
            OperatorRequest::Pause => {
                if self.phase == CanaryPhase::Paused {
                    self.interrupted = interrupted;
                    refuse(
                        fx,
                        format!("the canary is paused at {w}% already; `resume` lets it go on"),
                    );
                    return self;
                }
                fx.push(Effect::Seal {
                    action: SealAction::Pause,
                    from: w,
                    to: w,
                    cause: Cause::Operator,
                    reason: format!("paused by {who} at {w}%"),
                });
                self.phase = CanaryPhase::Paused;
                self.paused_at = Some(now);
                self.sampling = false;
                answered(fx);
            }
            OperatorRequest::Resume => {
                if self.phase == CanaryPhase::Paused {
                    fx.push(Effect::Seal {
                        action: SealAction::Resume,
                        from: w,
                        to: w,
                        cause: Cause::Operator,
                        reason: format!("resumed by {who} at {w}%"),
                    });
                    // Held: the step's time stopped, and so did the analysis.
                    let held = self.paused_at.take().map_or(chrono::Duration::zero(), |p| {
                        (now - p).max(chrono::Duration::zero())
                    });
                    self.phase = CanaryPhase::Running;
                    self.step_ends_at = self.step_ends_at.map(|e| e + held);
                    if self.live {
                        self.next_sample_at = Some(add(now, self.plan.interval));
                    }
                    answered(fx);
                } else if interrupted {
                    fx.push(Effect::Seal {
                        action: SealAction::Resume,
                        from: w,
                        to: w,
                        cause: Cause::Operator,
                        reason: format!("the interrupted canary resumed at {w}% by {who}"),
                    });
                    answered(fx);
                } else if self.plan.pause.is_none() {
                    // Manual steps: the operator moves it on.
                    let i = self.step + 1;
                    self = self.go_to(i, Cause::Operator, fx);
                    answered(fx);
                } else {
                    refuse(
                        fx,
                        format!("the canary is running at {w}%, not paused; nothing to resume"),
                    );
                }
            }
            OperatorRequest::PromoteNow => {
                let i = self.plan.steps.len();
                self = self.go_to(i, Cause::Operator, fx);
                answered(fx);
            }
            OperatorRequest::Abort => {
                fx.push(Effect::Seal {
                    action: SealAction::Abort,
                    from: w,
                    to: 0,
                    cause: Cause::Operator,
                    reason: format!("aborted by {who} at {w}%"),
                });
                fx.push(Effect::SendAllToStable);
                self.weight = 0;
                self.finish(CanaryPhase::Aborted);
                answered(fx);
            }
        }
        self
    }
}

/// An A/B test: variant b (the new release) takes `split` percent of the
/// clients beside a (the release that was stable) until an operator ends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbTest {
    pub split: u8,
    pub phase: CanaryPhase,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<AbWinner>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
}

/// What happens to an A/B test.
#[derive(Debug, Clone, PartialEq)]
pub enum AbInput {
    /// An operator's `consolidate --winner`.
    Consolidate {
        winner: AbWinner,
        who: String,
        now: DateTime<Utc>,
    },
    Request {
        id: i64,
        request: OperatorRequest,
        who: String,
        now: DateTime<Utc>,
    },
}

/// What the engine does for an A/B test, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum AbEffect {
    Seal {
        action: SealAction,
        from: u8,
        to: u8,
        cause: Cause,
        reason: String,
    },
    SetWeight(u8),
    /// Everything to the winner; the loser's slot retired (b winning
    /// keeps a warm, for an instant rollback).
    ConsolidateOn(AbWinner),
    AnswerRequest {
        id: i64,
        reply: Reply,
    },
    /// Refused: nothing to do, and why.
    Refuse(String),
}

impl AbTest {
    pub fn start(split: u8, now: DateTime<Utc>) -> (AbTest, Vec<AbEffect>) {
        let split = split.min(100);
        (
            AbTest {
                split,
                phase: CanaryPhase::Experiment,
                started_at: now,
                winner: None,
                ended_at: None,
            },
            vec![AbEffect::SetWeight(split)],
        )
    }

    pub fn step(mut self, input: AbInput) -> (AbTest, Vec<AbEffect>) {
        let mut fx = Vec::new();
        let over = self.phase != CanaryPhase::Experiment;
        match input {
            AbInput::Consolidate { winner, who, now } => {
                if over {
                    fx.push(AbEffect::Refuse(format!(
                        "the A/B test is {} already",
                        self.phase
                    )));
                    return (self, fx);
                }
                let to = match winner {
                    AbWinner::A => 0,
                    AbWinner::B => 100,
                };
                fx.push(AbEffect::Seal {
                    action: SealAction::Consolidate,
                    from: self.split,
                    to,
                    cause: Cause::Operator,
                    reason: format!("A/B consolidated on {winner} by {who}"),
                });
                fx.push(AbEffect::ConsolidateOn(winner));
                self.phase = CanaryPhase::Consolidated;
                self.winner = Some(winner);
                self.ended_at = Some(now);
            }
            AbInput::Request {
                id,
                request,
                who,
                now,
            } => match request {
                OperatorRequest::Abort if !over => {
                    fx.push(AbEffect::Seal {
                        action: SealAction::Abort,
                        from: self.split,
                        to: 0,
                        cause: Cause::Operator,
                        reason: format!("A/B test aborted by {who}: everything back on a"),
                    });
                    fx.push(AbEffect::ConsolidateOn(AbWinner::A));
                    fx.push(AbEffect::AnswerRequest {
                        id,
                        reply: Reply::Sealed,
                    });
                    self.phase = CanaryPhase::Aborted;
                    self.winner = Some(AbWinner::A);
                    self.ended_at = Some(now);
                }
                _ => fx.push(AbEffect::AnswerRequest {
                    id,
                    reply: Reply::Refused(if over {
                        format!("the A/B test is {} already", self.phase)
                    } else {
                        format!(
                            "an A/B test has no steps to {request}; `consolidate --winner a|b` ends it, `abort` sends everything back to a"
                        )
                    }),
                }),
            },
        }
        (self, fx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn plan(steps: &[u8], pause: Option<u64>) -> Plan {
        Plan {
            steps: steps.to_vec(),
            pause: pause.map(Duration::from_secs),
            interval: Duration::from_secs(10),
            analysis: true,
            max_error_rate: Some(0.05),
            max_p95_ms: None,
            min_requests: 5,
            failure_limit: 0,
        }
    }

    fn seals(fx: &[Effect]) -> Vec<(SealAction, u8, u8, Cause)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Seal {
                    action,
                    from,
                    to,
                    cause,
                    ..
                } => Some((*action, *from, *to, *cause)),
                _ => None,
            })
            .collect()
    }

    /// Every seal comes before the traffic change it decides.
    fn sealed_first(fx: &[Effect]) {
        for (i, e) in fx.iter().enumerate() {
            if matches!(
                e,
                Effect::SetWeight(_) | Effect::SendAllToStable | Effect::Promote
            ) {
                assert!(
                    i > 0 && matches!(fx[i - 1], Effect::Seal { .. }),
                    "unsealed traffic change: {fx:?}"
                );
            }
        }
    }

    fn run(c: Canary, input: Input) -> (Canary, Vec<Effect>) {
        let (c, fx) = c.step(input);
        sealed_first(&fx);
        (c, fx)
    }

    fn req(id: i64, r: OperatorRequest, now: i64) -> Input {
        Input::Request {
            id,
            request: r,
            who: "ana".into(),
            now: t(now),
        }
    }

    fn sample_at(now: i64, requests: u64, error_rate: f64) -> Input {
        Input::Sample {
            now: t(now),
            traffic: Traffic {
                requests,
                error_rate,
                p95_ms: 3.0,
            },
            probe: None,
        }
    }

    #[test]
    fn a_canary_walks_its_steps_on_schedule_and_promotes() {
        let (c, fx) = Canary::start(plan(&[10, 50, 100], Some(60)), t(0));
        sealed_first(&fx);
        assert_eq!(
            seals(&fx),
            [(SealAction::CanaryStep, 0, 10, Cause::Schedule)]
        );
        assert_eq!(fx[1], Effect::SetWeight(10));
        // Nothing moves before the weight is live.
        let (c, fx) = run(c, Input::Tick(t(100)));
        assert!(fx.is_empty(), "{fx:?}");
        let (c, fx) = run(c, Input::WeightLive(t(1)));
        assert_eq!(c.step_ends_at, Some(t(61)));
        assert_eq!(fx, [Effect::WakeAt(t(11))]);
        // A sample at 11 s, judged pass.
        let (c, fx) = run(c, Input::Tick(t(11)));
        assert_eq!(fx, [Effect::TakeSample]);
        let (c, fx) = run(c, sample_at(11, 100, 0.0));
        assert_eq!(c.samples.last().unwrap().verdict, AnalysisVerdict::Pass);
        assert_eq!(fx, [Effect::WakeAt(t(21))]);
        // Past the step's end: the next weight, sealed first.
        let c = Canary {
            next_sample_at: Some(t(100)),
            ..c
        };
        let (c, fx) = run(c, Input::Tick(t(61)));
        assert_eq!(
            seals(&fx),
            [(SealAction::CanaryStep, 10, 50, Cause::Schedule)]
        );
        assert_eq!((c.step, c.weight, c.live), (1, 50, false));
        let (c, _) = run(c, Input::WeightLive(t(62)));
        let c = Canary {
            next_sample_at: None,
            plan: Plan {
                analysis: false,
                ..c.plan
            },
            ..c
        };
        let (c, fx) = run(c, Input::Tick(t(122)));
        assert_eq!(
            seals(&fx),
            [(SealAction::CanaryStep, 50, 100, Cause::Schedule)]
        );
        assert_eq!(fx.last(), Some(&Effect::Promote));
        assert_eq!(c.phase, CanaryPhase::Promoted);
        assert!(c.is_over());
    }

    #[test]
    fn the_last_sample_of_a_step_is_taken_before_it_moves_on() {
        let (c, _) = Canary::start(plan(&[50, 100], Some(10)), t(0));
        let (c, _) = run(c, Input::WeightLive(t(0)));
        // Sample and step end both due at 10 s: the sample first.
        let (c, fx) = run(c, Input::Tick(t(10)));
        assert_eq!(fx, [Effect::TakeSample]);
        let (c, fx) = run(c, Input::Tick(t(10)));
        assert!(fx.is_empty(), "waits for its sample: {fx:?}");
        let (c, fx) = run(c, sample_at(10, 100, 0.5));
        assert_eq!(seals(&fx), [(SealAction::Abort, 50, 0, Cause::Analysis)]);
        assert_eq!(fx[1], Effect::SendAllToStable);
        assert_eq!(c.phase, CanaryPhase::RolledBack);
        assert_eq!(c.weight, 0);
    }

    #[test]
    fn failed_samples_within_the_limit_and_inconclusive_ones_do_not_roll_back() {
        let mut p = plan(&[50, 100], Some(60));
        p.failure_limit = 1;
        let (c, _) = Canary::start(p, t(0));
        let (c, _) = run(c, Input::WeightLive(t(0)));
        let (c, _) = run(c, Input::Tick(t(10)));
        let (c, fx) = run(c, sample_at(10, 100, 0.5));
        assert!(seals(&fx).is_empty());
        assert_eq!((c.failed, c.phase), (1, CanaryPhase::Running));
        let (c, _) = run(c, Input::Tick(t(20)));
        let (c, fx) = run(c, sample_at(20, 2, 1.0));
        assert!(seals(&fx).is_empty());
        assert_eq!(
            c.samples.last().unwrap().verdict,
            AnalysisVerdict::Inconclusive
        );
        assert!(c.samples.last().unwrap().line().contains("inconclusive"));
        let (c, _) = run(c, Input::Tick(t(30)));
        let (c, fx) = run(c, sample_at(30, 100, 0.5));
        assert_eq!(seals(&fx)[0].0, SealAction::Abort);
        assert_eq!(c.phase, CanaryPhase::RolledBack);
        assert!(
            c.samples.last().unwrap().line().contains("FAIL"),
            "{:?}",
            c.lines()
        );
    }

    #[test]
    fn a_failed_probe_fails_the_sample_whatever_the_traffic() {
        let (c, _) = Canary::start(plan(&[50, 100], Some(60)), t(0));
        let (c, _) = run(c, Input::WeightLive(t(0)));
        let (c, _) = run(c, Input::Tick(t(10)));
        let (c, fx) = run(
            c,
            Input::Sample {
                now: t(10),
                traffic: Traffic::default(),
                probe: Some(Err("probe /health: 500, not 200".into())),
            },
        );
        assert_eq!(seals(&fx)[0].0, SealAction::Abort);
        assert_eq!(c.samples[0].verdict, AnalysisVerdict::Fail);
        assert!(c.samples[0].line().contains("probe /health: 500"));
    }

    #[test]
    fn a_pause_stops_the_steps_clock_and_a_resume_restarts_it() {
        let (c, _) = Canary::start(plan(&[50, 100], Some(60)), t(0));
        let (c, _) = run(c, Input::WeightLive(t(0)));
        let (c, fx) = run(c, req(7, OperatorRequest::Pause, 20));
        assert_eq!(seals(&fx), [(SealAction::Pause, 50, 50, Cause::Operator)]);
        assert_eq!(
            fx[1],
            Effect::AnswerRequest {
                id: 7,
                reply: Reply::Sealed
            }
        );
        assert_eq!(c.phase, CanaryPhase::Paused);
        // Held: nothing moves, even past the step's end.
        let (c, fx) = run(c, Input::Tick(t(500)));
        assert!(fx.is_empty(), "{fx:?}");
        // A second pause is refused with a reason, not lost.
        let (c, fx) = run(c, req(8, OperatorRequest::Pause, 30));
        assert!(matches!(
            &fx[0],
            Effect::AnswerRequest { id: 8, reply: Reply::Refused(why) } if why.contains("paused at 50% already")
        ));
        // Resumed 100 s later: the step ends 100 s later than it would have.
        let (c, fx) = run(c, req(9, OperatorRequest::Resume, 120));
        assert_eq!(seals(&fx), [(SealAction::Resume, 50, 50, Cause::Operator)]);
        assert_eq!(c.step_ends_at, Some(t(160)));
        assert_eq!(c.phase, CanaryPhase::Running);
        let (_, fx) = run(c, Input::Tick(t(159)));
        assert!(seals(&fx).is_empty());
    }

    #[test]
    fn a_resume_of_a_running_canary_is_refused() {
        let (c, _) = Canary::start(plan(&[50, 100], Some(60)), t(0));
        let (c, fx) = run(c, req(1, OperatorRequest::Resume, 1));
        assert!(matches!(
            &fx[0],
            Effect::AnswerRequest { id: 1, reply: Reply::Refused(why) } if why.contains("not paused")
        ));
        assert_eq!(c.phase, CanaryPhase::Running);
    }

    #[test]
    fn promote_now_skips_the_remaining_steps() {
        let (c, _) = Canary::start(plan(&[10, 50, 100], Some(60)), t(0));
        let (c, _) = run(c, Input::WeightLive(t(0)));
        let (c, _) = run(c, req(1, OperatorRequest::Pause, 1));
        let (c, fx) = run(c, req(2, OperatorRequest::PromoteNow, 2));
        assert_eq!(
            seals(&fx),
            [(SealAction::CanaryStep, 10, 100, Cause::Operator)]
        );
        assert_eq!(fx[1], Effect::Promote);
        assert_eq!(c.phase, CanaryPhase::Promoted);
        // Once over, every request is refused with the reason.
        let (_, fx) = run(c, req(3, OperatorRequest::Abort, 3));
        assert!(matches!(
            &fx[0],
            Effect::AnswerRequest { id: 3, reply: Reply::Refused(why) } if why.contains("promoted already")
        ));
    }

    #[test]
    fn an_abort_sends_all_to_stable_sealed_first_and_a_later_pause_is_refused() {
        let (c, _) = Canary::start(plan(&[25, 100], Some(60)), t(0));
        let (c, _) = run(c, Input::WeightLive(t(0)));
        let (c, fx) = run(c, req(1, OperatorRequest::Abort, 5));
        assert_eq!(seals(&fx), [(SealAction::Abort, 25, 0, Cause::Operator)]);
        assert_eq!(fx[1], Effect::SendAllToStable);
        assert_eq!((c.phase, c.weight), (CanaryPhase::Aborted, 0));
        let (_, fx) = run(c, req(2, OperatorRequest::Pause, 6));
        assert!(matches!(
            &fx[0],
            Effect::AnswerRequest { id: 2, reply: Reply::Refused(why) } if why.contains("aborted already")
        ));
    }

    #[test]
    fn a_pause_and_an_abort_sent_together_are_both_sealed() {
        let (c, _) = Canary::start(plan(&[25, 100], Some(60)), t(0));
        let (c, _) = run(c, Input::WeightLive(t(0)));
        let (c, a) = run(c, req(1, OperatorRequest::Pause, 5));
        let (c, b) = run(c, req(2, OperatorRequest::Abort, 5));
        assert_eq!(seals(&a)[0].0, SealAction::Pause);
        assert_eq!(seals(&b)[0].0, SealAction::Abort);
        assert_eq!(c.phase, CanaryPhase::Aborted);
    }

    #[test]
    fn manual_steps_move_only_when_an_operator_resumes() {
        let (c, _) = Canary::start(plan(&[30, 60, 100], None), t(0));
        let (c, fx) = run(c, Input::WeightLive(t(0)));
        assert_eq!(c.step_ends_at, None);
        assert_eq!(fx, [Effect::WakeAt(t(10))]);
        let c = Canary {
            plan: Plan {
                analysis: false,
                ..c.plan
            },
            ..c
        };
        let (c, fx) = run(c, Input::Tick(t(10_000)));
        assert!(seals(&fx).is_empty());
        let (c, fx) = run(c, req(1, OperatorRequest::Resume, 10_001));
        assert_eq!(
            seals(&fx),
            [(SealAction::CanaryStep, 30, 60, Cause::Operator)]
        );
        assert_eq!(c.weight, 60);
        let (c, _) = run(c, Input::WeightLive(t(10_002)));
        // A manual canary paused, then resumed: a resume, not a step.
        let (c, _) = run(c, req(2, OperatorRequest::Pause, 10_003));
        let (c, fx) = run(c, req(3, OperatorRequest::Resume, 10_004));
        assert_eq!(seals(&fx)[0].0, SealAction::Resume);
        assert_eq!(c.weight, 60);
        let (c, fx) = run(c, req(4, OperatorRequest::Resume, 10_005));
        assert_eq!(
            seals(&fx),
            [(SealAction::CanaryStep, 60, 100, Cause::Operator)]
        );
        assert_eq!(c.phase, CanaryPhase::Promoted);
    }

    #[test]
    fn a_taken_over_canary_goes_on_from_its_stored_times() {
        let (c, _) = Canary::start(plan(&[50, 100], Some(60)), t(0));
        let (c, _) = run(c, Input::WeightLive(t(0)));
        // Stored, then read back by another process after the owner died.
        let stored = serde_json::to_string(&c).unwrap();
        let c: Canary = serde_json::from_str(&stored).unwrap();
        let (c, fx) = run(c, Input::TakenOver(t(30)));
        assert!(c.interrupted);
        assert_eq!(c.step_ends_at, Some(t(60)), "the stored time stands");
        // The overdue sample is taken at once, then the step ends on time.
        assert_eq!(fx, [Effect::WakeAt(t(30))]);
        // The operator's resume that brought it back is sealed.
        let (c, fx) = run(c, req(1, OperatorRequest::Resume, 30));
        assert_eq!(seals(&fx)[0].0, SealAction::Resume);
        assert!(!c.interrupted);
        let c = Canary {
            next_sample_at: None,
            ..c
        };
        let (c, fx) = run(c, Input::Tick(t(60)));
        assert_eq!(
            seals(&fx),
            [(SealAction::CanaryStep, 50, 100, Cause::Schedule)]
        );
        assert_eq!(c.phase, CanaryPhase::Promoted);
    }

    #[test]
    fn a_failed_canary_is_over_and_refuses_requests() {
        let (c, _) = Canary::start(plan(&[50, 100], Some(60)), t(0));
        let c = c.fail();
        assert!(c.is_over());
        assert_eq!((c.phase, c.weight), (CanaryPhase::Failed, 0));
        let (_, fx) = run(c, req(1, OperatorRequest::Resume, 1));
        assert!(matches!(
            &fx[0],
            Effect::AnswerRequest { reply: Reply::Refused(why), .. } if why.contains("failed already")
        ));
    }

    #[test]
    fn a_taken_over_canary_whose_weight_was_never_live_sets_it_again() {
        let (c, _) = Canary::start(plan(&[50, 100], Some(60)), t(0));
        // The 50 % step was sealed by the dead owner: applying it again
        // decides nothing new.
        let (c, fx) = c.step(Input::TakenOver(t(5)));
        assert_eq!(fx, [Effect::SetWeight(50)]);
        let (c, _) = run(c, Input::WeightLive(t(6)));
        assert_eq!(c.step_ends_at, Some(t(66)));
    }

    #[test]
    fn a_taken_over_paused_canary_stays_paused_until_resumed() {
        let (c, _) = Canary::start(plan(&[50, 100], Some(60)), t(0));
        let (c, _) = run(c, Input::WeightLive(t(0)));
        let (c, _) = run(c, req(1, OperatorRequest::Pause, 10));
        let (c, fx) = run(c, Input::TakenOver(t(100)));
        assert!(fx.is_empty());
        let (c, fx) = run(c, req(2, OperatorRequest::Pause, 100));
        assert!(matches!(
            &fx[0],
            Effect::AnswerRequest {
                reply: Reply::Refused(_),
                ..
            }
        ));
        let (c, fx) = run(c, req(3, OperatorRequest::Resume, 110));
        assert_eq!(seals(&fx)[0].0, SealAction::Resume);
        assert_eq!(c.step_ends_at, Some(t(160)));
    }

    #[test]
    fn a_sample_answered_after_a_pause_is_dropped() {
        let (c, _) = Canary::start(plan(&[50, 100], Some(60)), t(0));
        let (c, _) = run(c, Input::WeightLive(t(0)));
        let (c, _) = run(c, Input::Tick(t(10)));
        let (c, _) = run(c, req(1, OperatorRequest::Pause, 10));
        let (c, fx) = run(c, sample_at(11, 100, 0.9));
        assert!(fx.is_empty());
        assert_eq!((c.failed, c.samples.len()), (0, 0));
    }

    #[test]
    fn an_ab_test_starts_consolidates_and_aborts_sealed_first() {
        let (ab, fx) = AbTest::start(30, t(0));
        assert_eq!(fx, [AbEffect::SetWeight(30)]);
        let (done, fx) = ab.clone().step(AbInput::Consolidate {
            winner: AbWinner::B,
            who: "ana".into(),
            now: t(50),
        });
        assert!(matches!(
            fx[0],
            AbEffect::Seal {
                action: SealAction::Consolidate,
                from: 30,
                to: 100,
                ..
            }
        ));
        assert_eq!(fx[1], AbEffect::ConsolidateOn(AbWinner::B));
        assert_eq!(
            (done.phase, done.winner),
            (CanaryPhase::Consolidated, Some(AbWinner::B))
        );
        let (_, fx) = done.step(AbInput::Consolidate {
            winner: AbWinner::A,
            who: "ana".into(),
            now: t(51),
        });
        assert!(matches!(&fx[0], AbEffect::Refuse(why) if why.contains("consolidated already")));
        let (gone, fx) = ab.clone().step(AbInput::Request {
            id: 4,
            request: OperatorRequest::Abort,
            who: "ana".into(),
            now: t(9),
        });
        assert!(matches!(
            fx[0],
            AbEffect::Seal {
                action: SealAction::Abort,
                ..
            }
        ));
        assert_eq!(fx[1], AbEffect::ConsolidateOn(AbWinner::A));
        assert_eq!(gone.phase, CanaryPhase::Aborted);
        let (_, fx) = ab.step(AbInput::Request {
            id: 5,
            request: OperatorRequest::Pause,
            who: "ana".into(),
            now: t(9),
        });
        assert!(matches!(
            &fx[0],
            AbEffect::AnswerRequest { id: 5, reply: Reply::Refused(why) } if why.contains("no steps")
        ));
    }

    #[test]
    fn judging_matches_the_limits() {
        let tr = |requests, error_rate, p95_ms| Traffic {
            requests,
            error_rate,
            p95_ms,
        };
        assert_eq!(
            judge(&tr(3, 1.0, 1.0), Some(0.1), None, 5),
            AnalysisVerdict::Inconclusive
        );
        assert_eq!(
            judge(&tr(10, 0.2, 1.0), Some(0.1), None, 5),
            AnalysisVerdict::Fail
        );
        assert_eq!(
            judge(&tr(10, 0.0, 900.0), None, Some(500.0), 5),
            AnalysisVerdict::Fail
        );
        assert_eq!(
            judge(&tr(10, 0.0, 1.0), Some(0.1), Some(500.0), 5),
            AnalysisVerdict::Pass
        );
    }
}
