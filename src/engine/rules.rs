//! The rules the fronts used to write each for themselves, once: which
//! release a rollback returns to, what a pin does to a gate decision, what
//! an operator's change means for an interrupted canary, and what "roll
//! back" means on a routed target. Pure functions of what is read; the
//! command line, the workbench and the demo all ask these.

use chrono::{DateTime, Utc};

use crate::domain::{CanaryPhase, Decision, Digest};
use crate::store::Pin;

/// The releases a rollback may return to, newest first: every digest that
/// was live (`history`, newest first, as far as `now`) other than the one
/// live now, each once. The first is what a rollback without `--to`
/// returns to.
pub fn rollback_choices(
    current: Option<&Digest>,
    history: &[(Digest, DateTime<Utc>)],
    now: DateTime<Utc>,
) -> Vec<(Digest, DateTime<Utc>)> {
    let mut out: Vec<(Digest, DateTime<Utc>)> = Vec::new();
    for (d, since) in history {
        if *since <= now && Some(d) != current && !out.iter().any(|(c, _)| c == d) {
            out.push((d.clone(), *since));
        }
    }
    out
}

/// The releases a rollback took out of a lane, each with when: walking
/// `history` (newest first, each record with whether a rollback wrote it),
/// a rollback takes out the release live just before it; a later
/// promotion of that release (not a rollback) clears it. What a rollback
/// picker marks, so the release an earlier rollback removed is never
/// offered as if it were a plain earlier one.
pub fn taken_out(history: &[(Digest, DateTime<Utc>, bool)]) -> Vec<(Digest, DateTime<Utc>)> {
    let mut out: Vec<(Digest, DateTime<Utc>)> = Vec::new();
    let mut previous: Option<&Digest> = None;
    for (d, since, by_rollback) in history.iter().rev() {
        if *by_rollback {
            if let Some(p) = previous.filter(|p| *p != d) {
                out.retain(|(x, _)| x != p);
                out.push((p.clone(), *since));
            }
        } else {
            out.retain(|(x, _)| x != d);
        }
        previous = Some(d);
    }
    out.reverse();
    out
}

/// The rollback choices (`rollback_choices`) in the order a picker offers
/// them and a rollback without `--to` takes the first: releases a
/// rollback took out of the lane (`taken_out`, as of `now`) after every
/// other, each with when it was taken out. The workbench's picker marks
/// those; `stella release rollback` returns to one only when nothing else
/// is left (or when `--to` names it).
pub fn rollback_order(
    choices: Vec<(Digest, DateTime<Utc>)>,
    taken_out: &[(Digest, DateTime<Utc>)],
    now: DateTime<Utc>,
) -> Vec<(Digest, DateTime<Utc>, Option<DateTime<Utc>>)> {
    let mut out: Vec<(Digest, DateTime<Utc>, Option<DateTime<Utc>>)> = choices
        .into_iter()
        .map(|(d, since)| {
            let out = taken_out
                .iter()
                .find(|(x, at)| *x == d && *at <= now)
                .map(|(_, at)| *at);
            (d, since, out)
        })
        .collect();
    out.sort_by_key(|c| c.2.is_some());
    out
}

/// A rollback's pin holds the lane whatever the gates say: the decision a
/// promotion (and a gate check) gets.
pub fn held(decision: Decision, pin: Option<&Pin>) -> Decision {
    if pin.is_some() {
        Decision::Deny
    } else {
        decision
    }
}

/// What an operator's change to a rollout comes to. Whether its owner is
/// alive does not matter here: `engine::rollout::request` asks a live
/// owner and takes a dead one's rollout over — the interrupted-canary rule,
/// in that one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryChange {
    /// No canary is under way on the target.
    NotRunning,
    /// The target runs an A/B test, not a canary.
    AbTest,
    /// A canary is under way: send the request.
    Ask,
}

/// Which changes a rollout in `phase` takes.
pub fn canary_change(phase: Option<CanaryPhase>) -> CanaryChange {
    match phase {
        Some(CanaryPhase::Running | CanaryPhase::Paused) => CanaryChange::Ask,
        Some(CanaryPhase::Experiment) => CanaryChange::AbTest,
        _ => CanaryChange::NotRunning,
    }
}

/// The app a routed target serves: its last rollout's app when that
/// rollout's release is the stable one, else the app live in the lane on
/// the stable release (`live_on`).
pub fn serving_app(
    rollout_app: Option<&str>,
    rollout_digest: Option<&Digest>,
    stable: Option<&Digest>,
    live_on: impl FnOnce(&Digest) -> Option<String>,
) -> Option<String> {
    let stable = stable?;
    match rollout_app {
        Some(app) if rollout_digest == Some(stable) => Some(app.to_owned()),
        _ => live_on(stable),
    }
}

/// What "roll back" means on a routed target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutRollback {
    /// A canary is under way: abort it (stable is the release before).
    AbortCanary,
    /// An A/B test is under way: end it on a, the stable release.
    EndAbTest,
    /// Back to the release the target keeps warm (at weight 0): one swap.
    Warm { app: String, to: Digest },
    /// Nothing warm: a rollback of `app` to a release from its history.
    Pick { app: String },
    /// Nothing stella knows is live there.
    Nothing,
}

/// The rollout view's rollback rule. `serving` is the app of the target's
/// last rollout, if that rollout's release is the stable one, else the app
/// live in the lane on the stable release; `warm` is the candidate slot's
/// release when it takes no traffic.
pub fn rollout_rollback(
    phase: Option<CanaryPhase>,
    serving: Option<String>,
    warm: Option<Digest>,
) -> RolloutRollback {
    match phase {
        Some(CanaryPhase::Running | CanaryPhase::Paused) => return RolloutRollback::AbortCanary,
        Some(CanaryPhase::Experiment) => return RolloutRollback::EndAbTest,
        _ => {}
    }
    match (serving, warm) {
        (Some(app), Some(to)) => RolloutRollback::Warm { app, to },
        (Some(app), None) => RolloutRollback::Pick { app },
        (None, _) => RolloutRollback::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
            .parse()
            .unwrap()
    }

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + h * 3600, 0).unwrap()
    }

    #[test]
    fn a_rollback_returns_to_the_newest_other_release_each_once_and_not_from_the_future() {
        let history = vec![
            (d(4), t(9)),
            (d(3), t(3)),
            (d(2), t(2)),
            (d(3), t(1)),
            (d(1), t(0)),
        ];
        let got = rollback_choices(Some(&d(3)), &history, t(5));
        assert_eq!(got, vec![(d(2), t(2)), (d(1), t(0))]);
        assert!(rollback_choices(Some(&d(1)), &[(d(1), t(0))], t(5)).is_empty());
    }

    #[test]
    fn a_rollback_takes_out_the_release_before_it_until_it_is_promoted_again() {
        // 1 promoted, 2 promoted, rolled back to 1: 2 is taken out.
        let h = vec![(d(1), t(2), true), (d(2), t(1), false), (d(1), t(0), false)];
        assert_eq!(taken_out(&h), vec![(d(2), t(2))]);
        // 2 promoted again on purpose: no longer taken out.
        let mut again = vec![(d(2), t(3), false)];
        again.extend(h.clone());
        assert!(taken_out(&again).is_empty());
        // Back and forth: each rollback takes out the one before it.
        let mut twice = vec![(d(2), t(3), true)];
        twice.extend(h);
        assert_eq!(taken_out(&twice), vec![(d(1), t(3)), (d(2), t(2))]);
        // No rollback, nothing taken out.
        assert!(taken_out(&[(d(2), t(1), false), (d(1), t(0), false)]).is_empty());
    }

    #[test]
    fn a_release_a_rollback_took_out_comes_last_unless_it_is_all_there_is() {
        let choices = vec![(d(3), t(3)), (d(1), t(1))];
        let got = rollback_order(choices.clone(), &[(d(3), t(4))], t(5));
        assert_eq!(got, vec![(d(1), t(1), None), (d(3), t(3), Some(t(4)))]);
        // Taken out later than `now` (a what-if): not yet.
        let got = rollback_order(choices, &[(d(3), t(4))], t(3));
        assert_eq!(got[0], (d(3), t(3), None));
        let only = rollback_order(vec![(d(3), t(3))], &[(d(3), t(4))], t(5));
        assert_eq!(only, vec![(d(3), t(3), Some(t(4)))]);
    }

    #[test]
    fn a_pin_denies_whatever_the_gates_say() {
        let pin = Pin {
            environment: "prod".into(),
            app: "web".into(),
            digest: d(1),
            capsule_id: 7,
            pinned_by: "oncall@example.com".into(),
            pinned_at: t(0),
        };
        assert_eq!(held(Decision::Allow, Some(&pin)), Decision::Deny);
        assert_eq!(held(Decision::Allow, None), Decision::Allow);
        assert_eq!(held(Decision::Deny, None), Decision::Deny);
    }

    #[test]
    fn only_a_canary_under_way_takes_a_change() {
        use CanaryPhase as P;
        assert_eq!(canary_change(Some(P::Running)), CanaryChange::Ask);
        assert_eq!(canary_change(Some(P::Paused)), CanaryChange::Ask);
        assert_eq!(canary_change(Some(P::Experiment)), CanaryChange::AbTest);
        for done in [P::Promoted, P::Aborted, P::RolledBack, P::Consolidated] {
            assert_eq!(canary_change(Some(done)), CanaryChange::NotRunning);
        }
        assert_eq!(canary_change(None), CanaryChange::NotRunning);
    }

    #[test]
    fn a_target_serves_its_last_rollouts_app_only_when_that_release_is_stable() {
        let live = |_: &Digest| Some("api".to_owned());
        assert_eq!(
            serving_app(Some("web"), Some(&d(1)), Some(&d(1)), live),
            Some("web".into())
        );
        // An aborted canary's release is not what serves.
        assert_eq!(
            serving_app(Some("web"), Some(&d(2)), Some(&d(1)), live),
            Some("api".into())
        );
        assert_eq!(serving_app(Some("web"), Some(&d(1)), None, live), None);
    }

    #[test]
    fn rolling_back_a_routed_target_depends_on_what_is_under_way() {
        assert_eq!(
            rollout_rollback(Some(CanaryPhase::Running), Some("web".into()), Some(d(1))),
            RolloutRollback::AbortCanary
        );
        assert_eq!(
            rollout_rollback(Some(CanaryPhase::Experiment), None, None),
            RolloutRollback::EndAbTest
        );
        assert_eq!(
            rollout_rollback(Some(CanaryPhase::Promoted), Some("web".into()), Some(d(1))),
            RolloutRollback::Warm {
                app: "web".into(),
                to: d(1)
            }
        );
        assert_eq!(
            rollout_rollback(Some(CanaryPhase::Promoted), Some("web".into()), None),
            RolloutRollback::Pick { app: "web".into() }
        );
        assert_eq!(
            rollout_rollback(Some(CanaryPhase::Aborted), None, Some(d(1))),
            RolloutRollback::Nothing
        );
    }
}
