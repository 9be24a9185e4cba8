//! The vocabularies of stella's state, one enum each: how a decision
//! ended, where a run and its steps are, what a rollout is doing, what an
//! operator asked, what the analysis said, who moved a canary, which
//! variant won. Each is stored as its text (guarded by CHECK constraints
//! in the store) and read back through `FromStr`; nothing outside
//! `domain/` compares these words as strings.

use serde::{Deserialize, Serialize};
use strum::{Display, EnumString, IntoStaticStr, VariantArray};

/// Derives for a vocabulary stored and shown as kebab-case words.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            Serialize, Deserialize, Display, EnumString, IntoStaticStr, VariantArray,
        )]
        #[serde(rename_all = "kebab-case")]
        #[strum(serialize_all = "kebab-case")]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// The word stored and shown for it.
            pub fn as_str(self) -> &'static str {
                self.into()
            }

            /// Every word of the vocabulary, for errors and CHECK constraints.
            pub fn words() -> Vec<&'static str> {
                Self::VARIANTS.iter().map(|v| v.as_str()).collect()
            }
        }
    };
}

vocabulary! {
    /// How a sealed decision ended: the `outcome` of a capsule and of its
    /// promotion row.
    pub enum PromotionOutcome {
        /// The release serves (or, for a gateless step, the step took).
        Live,
        /// Allowed and deployed to the environment's targets.
        Deployed,
        /// The gates said no; nothing changed.
        Blocked,
        /// Deploying failed; the previous release was put back.
        DeployFailed,
        /// The canary's analysis failed and sent all traffic back.
        RolledBack,
        /// A rollback could not put the earlier release back.
        RollbackFailed,
        /// An operator stopped it; the previous release was put back.
        Aborted,
        /// Its process died; the lock was released and the run marked.
        Interrupted,
        /// A canary held by an operator.
        Paused,
        /// A rollback's pin was lifted.
        Unpinned,
        /// The environment's feature flags changed.
        FlagsSet,
    }
}

impl PromotionOutcome {
    /// Did the world end up as asked?
    pub fn succeeded(self) -> bool {
        matches!(
            self,
            Self::Live | Self::Deployed | Self::Paused | Self::Unpinned | Self::FlagsSet
        )
    }

    /// Something went wrong (a block is a decision, not a failure).
    /// `rolled-back` is neither: the earlier release serves again, asked
    /// for by a rollback or by a canary's failed analysis.
    pub fn failed(self) -> bool {
        matches!(
            self,
            Self::DeployFailed | Self::RollbackFailed | Self::Interrupted
        )
    }
}

vocabulary! {
    /// A promotion row's life: deciding and acting, then decided.
    pub enum PromotionState {
        Running,
        Decided,
        Interrupted,
    }
}

vocabulary! {
    /// A workflow run.
    pub enum RunState {
        Running,
        Paused,
        Succeeded,
        Failed,
        Cancelled,
        Interrupted,
    }
}

impl RunState {
    pub fn is_over(self) -> bool {
        !matches!(self, Self::Running | Self::Paused)
    }
}

vocabulary! {
    /// One step of a run.
    pub enum StepState {
        Pending,
        Running,
        Succeeded,
        Failed,
        Skipped,
        Cancelled,
        /// Running when its process died.
        Interrupted,
    }
}

impl StepState {
    pub fn is_over(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }
}

vocabulary! {
    /// What a canary or an A/B test on a routed target is doing.
    pub enum CanaryPhase {
        /// Walking its weights.
        Running,
        /// Held by an operator at its weight.
        Paused,
        /// At 100 %: the candidate is stable.
        Promoted,
        /// Stopped by an operator; all traffic back on stable.
        Aborted,
        /// Stopped by its analysis; all traffic back on stable.
        RolledBack,
        /// An A/B test under way.
        Experiment,
        /// An A/B test ended on its winner.
        Consolidated,
        /// Stopped by an error (a weight that did not go live, a decision
        /// that could not be sealed); all traffic back on stable.
        Failed,
    }
}

impl CanaryPhase {
    /// Still moving, or waiting to move.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Running | Self::Paused | Self::Experiment)
    }
}

vocabulary! {
    /// An operator's hand on a rollout, from any process.
    pub enum OperatorRequest {
        /// Hold at the current weight.
        Pause,
        /// Go on (with manual steps: to the next one).
        Resume,
        /// Skip the remaining steps: the candidate to 100 %.
        #[strum(serialize = "promote")]
        #[serde(rename = "promote")]
        PromoteNow,
        /// All traffic back on stable, the candidate retired.
        Abort,
    }
}

vocabulary! {
    /// Where an operator request is.
    pub enum RequestState {
        /// Written, not yet taken by the rollout's owner.
        Pending,
        /// Enacted; its capsule is named.
        Done,
        /// Refused or failed; its error is named.
        Failed,
    }
}

vocabulary! {
    /// Whether a capsule and its summary are attached to the image yet.
    pub enum AttachState {
        /// Sealed, not yet pushed (or every push so far failed).
        Pending,
        /// In the registry (or layout), as referrers of the image.
        Attached,
    }
}

vocabulary! {
    /// One analysis sample of a candidate's traffic.
    pub enum AnalysisVerdict {
        Pass,
        /// Over a limit (shown as `FAIL`).
        #[strum(to_string = "FAIL", serialize = "fail")]
        #[serde(rename = "FAIL", alias = "fail")]
        Fail,
        /// Too few requests to judge.
        Inconclusive,
    }
}

vocabulary! {
    /// Who moved a rollout.
    pub enum Cause {
        /// Its steps' schedule.
        Schedule,
        /// A person, by a request.
        Operator,
        /// Its analysis.
        Analysis,
    }
}

vocabulary! {
    /// The variant an A/B test ends on: `a` the release that was stable,
    /// `b` the new one.
    pub enum AbWinner {
        A,
        B,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn round_trips<T>()
    where
        T: VariantArray + Copy + Eq + std::fmt::Debug + Serialize + FromStr + std::fmt::Display,
        for<'de> T: Deserialize<'de>,
        <T as FromStr>::Err: std::fmt::Debug,
    {
        for v in T::VARIANTS {
            let text = v.to_string();
            assert_eq!(T::from_str(&text).unwrap(), *v, "{text}");
            let json = serde_json::to_string(v).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), *v);
        }
    }

    #[test]
    fn every_vocabulary_round_trips_through_its_word() {
        round_trips::<PromotionOutcome>();
        round_trips::<PromotionState>();
        round_trips::<RunState>();
        round_trips::<StepState>();
        round_trips::<CanaryPhase>();
        round_trips::<OperatorRequest>();
        round_trips::<RequestState>();
        round_trips::<AnalysisVerdict>();
        round_trips::<Cause>();
        round_trips::<AbWinner>();
    }

    #[test]
    fn words_are_the_ones_stored_before_the_types() {
        assert_eq!(PromotionOutcome::DeployFailed.as_str(), "deploy-failed");
        assert_eq!(PromotionOutcome::FlagsSet.as_str(), "flags-set");
        assert_eq!(OperatorRequest::PromoteNow.as_str(), "promote");
        assert_eq!(AnalysisVerdict::Fail.as_str(), "FAIL");
        assert_eq!(
            "fail".parse::<AnalysisVerdict>().unwrap(),
            AnalysisVerdict::Fail
        );
        assert_eq!(AbWinner::B.as_str(), "b");
        assert!("bogus".parse::<CanaryPhase>().is_err());
    }

    #[test]
    fn a_failure_is_never_a_success() {
        for o in PromotionOutcome::VARIANTS {
            assert!(!(o.succeeded() && o.failed()), "{o}");
        }
        assert!(!PromotionOutcome::Blocked.succeeded());
        assert!(!PromotionOutcome::Blocked.failed());
    }
}
