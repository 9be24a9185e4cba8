//! The upstream gate: the digest must be live in the environment it
//! promotes from and, with `soak`, have been live there at least that long
//! at the decision clock.

use serde_json::json;

use super::{GateInputs, human_duration, rfc3339};
use crate::config::model::UpstreamGateConfig;
use crate::domain::duration::parse_duration;
use crate::domain::{GateKind, Outcome, Verdict};

pub fn evaluate(cfg: &UpstreamGateConfig, inputs: &GateInputs) -> Verdict {
    let s = &inputs.subject;
    let Some(from) = &s.from else {
        return Verdict::new(
            GateKind::Upstream,
            Outcome::Fail,
            format!("{} promotes from no environment", s.environment),
        );
    };
    let soak = match cfg.soak.as_ref().map(|d| parse_duration(d.get_ref())) {
        None => None,
        Some(Ok(d)) => Some(chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX)),
        Some(Err(e)) => {
            return Verdict::new(GateKind::Upstream, Outcome::Fail, format!("soak: {e}"));
        }
    };
    let mut v = match &inputs.upstream {
        None => {
            let mut v = Verdict::new(
                GateKind::Upstream,
                Outcome::Fail,
                format!("{} is not live in {from}", s.app),
            );
            v.unblock
                .push(format!("promote {}@{} to {from} first", s.app, s.digest));
            v.measured = json!({"from": from, "live": null});
            return v;
        }
        Some(live) if live.digest != s.digest => {
            let mut v = Verdict::new(
                GateKind::Upstream,
                Outcome::Fail,
                format!("{from} runs {}, not this digest", live.digest),
            );
            v.unblock
                .push(format!("promote {}@{} to {from} first", s.app, s.digest));
            v
        }
        Some(live) => {
            let age = inputs.now - live.since;
            match soak {
                Some(soak) if age < soak => {
                    let mut v = Verdict::new(
                        GateKind::Upstream,
                        Outcome::Fail,
                        format!(
                            "live in {from} for {}, soak needs {}",
                            human_duration(age),
                            human_duration(soak)
                        ),
                    );
                    v.unblock.push(format!(
                        "wait until {} for the soak to complete",
                        rfc3339(live.since + soak)
                    ));
                    v
                }
                _ => Verdict::new(
                    GateKind::Upstream,
                    Outcome::Pass,
                    match soak {
                        Some(soak) => format!(
                            "live in {from} for {} (soak {})",
                            human_duration(age),
                            human_duration(soak)
                        ),
                        None => format!("live in {from} for {}", human_duration(age)),
                    },
                ),
            }
        }
    };
    if let Some(live) = &inputs.upstream {
        v.measured = json!({
            "from": from,
            "live": live.digest.to_string(),
            "since": rfc3339(live.since),
            "soak_seconds": soak.map(|d| d.num_seconds()),
        });
    }
    v
}
