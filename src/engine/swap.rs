//! A rollback to the release a routed environment keeps warm: after a
//! blue/green switch or a promoted canary, the previous release still runs
//! in the candidate slot at weight 0, so going back is one swap of stable
//! and candidate — one routes write per target, no canary, no unpack. The
//! rollback checks the warm release answers, seals, then swaps
//! (`engine::rollback`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::Config;
use crate::deploy::routed;
use crate::domain::Digest;

/// One target whose warm release a rollback swaps in.
#[derive(Debug, Clone)]
struct WarmTarget {
    name: String,
    dir: PathBuf,
    listen: SocketAddr,
    /// The routes version the check saw.
    version: u64,
}

/// Every target of an environment, each serving `current` with `target`
/// warm: a rollback to `target` is one swap on each.
#[derive(Debug, Clone)]
pub struct Warm {
    current: Digest,
    target: Digest,
    targets: Vec<WarmTarget>,
}

/// The swap a rollback of `env` from `current` to `target` can be: every
/// target of the environment is routed, with `current` stable, `target`
/// warm in the candidate slot at weight 0 (no canary or A/B test under
/// way), and its controller running. `None`: some target is not so, and
/// the rollback deploys as before. Reads only.
pub fn warm(
    config: &Config,
    env_name: &str,
    env: &crate::config::Environment,
    current: &Digest,
    target: &Digest,
) -> Option<Warm> {
    let now = chrono::Utc::now().timestamp();
    let mut targets = Vec::new();
    for t in &env.targets {
        let name = t.get_ref();
        let cfg = config.targets.get(name)?;
        if !cfg.kind().is_routed() {
            return None;
        }
        let listen = super::router::listen_of(cfg)?;
        let dir = routed::state_dir(&config.root, name);
        routed::running_pid(&dir)?;
        let st = routed::read_state(&dir).ok()?.effective(now);
        let holds = |slot: &Option<routed::SlotState>, d: &Digest| {
            slot.as_ref().is_some_and(|s| s.digest == *d)
        };
        if !holds(&st.stable, current) || !holds(&st.candidate, target) || st.weight != 0 {
            return None;
        }
        let ws = crate::workspace::Workspace::at(config.root.clone());
        if st.sticky || super::rollout::progress(&ws, env_name, name).in_flight() {
            return None;
        }
        targets.push(WarmTarget {
            name: name.clone(),
            dir,
            listen,
            version: st.version,
        });
    }
    (!targets.is_empty()).then(|| Warm {
        current: current.clone(),
        target: target.clone(),
        targets,
    })
}

impl Warm {
    /// The targets it swaps.
    pub fn targets(&self) -> Vec<String> {
        self.targets.iter().map(|t| t.name.clone()).collect()
    }

    /// Whether the warm release answers on every target (a request forced
    /// to the candidate slot). Changes nothing.
    pub async fn check(&self) -> Result<(), String> {
        for t in &self.targets {
            routed::check_candidate(t.listen, t.version)
                .await
                .map_err(|e| {
                    format!(
                        "target `{}`: the warm sha256:{} does not answer: {e}",
                        t.name,
                        self.target.short()
                    )
                })?;
        }
        Ok(())
    }

    /// Swaps stable and candidate on every target — on each one routes
    /// write, confirmed live — the bad release left warm at weight 0.
    /// Routes that changed since `warm` looked (someone else moved them)
    /// are not swapped. On a failure, targets already swapped are swapped
    /// back; the error says what serves. Returns a line per target.
    pub async fn swap(&self) -> Result<Vec<String>, String> {
        let mut done: Vec<&WarmTarget> = Vec::new();
        let mut lines = Vec::new();
        for t in &self.targets {
            match self.swap_one(t, &self.current, &self.target).await {
                Ok(version) => {
                    lines.push(format!(
                        "{}: sha256:{} → sha256:{} in one swap (routes {version}); sha256:{} kept warm at 0%",
                        t.name,
                        self.current.short(),
                        self.target.short(),
                        self.current.short()
                    ));
                    done.push(t);
                }
                Err(e) => {
                    let mut back = Vec::new();
                    for d in done {
                        match self.swap_one(d, &self.target, &self.current).await {
                            Ok(_) => back.push(format!(
                                "`{}` back on sha256:{}",
                                d.name,
                                self.current.short()
                            )),
                            Err(e2) => {
                                back.push(format!("`{}` could not be swapped back: {e2}", d.name))
                            }
                        }
                    }
                    return Err(format!(
                        "target `{}`: {e}; it still serves sha256:{}{}",
                        t.name,
                        self.current.short(),
                        if back.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", back.join(", "))
                        }
                    ));
                }
            }
        }
        Ok(lines)
    }

    /// One target from `from` stable and `to` warm to the other way round.
    async fn swap_one(&self, t: &WarmTarget, from: &Digest, to: &Digest) -> Result<u64, String> {
        let (from, to) = (from.clone(), to.clone());
        let mut swapped = routed::RouterState::default();
        let version = routed::update_state(&t.dir, |st| {
            let holds = |slot: &Option<routed::SlotState>, d: &Digest| {
                slot.as_ref().is_some_and(|s| s.digest == *d)
            };
            if !holds(&st.stable, &from) || !holds(&st.candidate, &to) || st.weight != 0 {
                return Err(format!(
                    "its routes changed since the rollback looked (version {}); nothing was swapped",
                    st.version
                ));
            }
            std::mem::swap(&mut st.stable, &mut st.candidate);
            swapped = st.clone();
            Ok(())
        })?;
        routed::wait_live(t.listen, version, Duration::from_secs(10), Some(&t.dir)).await?;
        let _ = swapped;
        Ok(version)
    }
}
