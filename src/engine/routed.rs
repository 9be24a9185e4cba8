//! Deploying to a `router` or `nginx` target: blue/green through the idle
//! slot, a canary walked through its weights with its analysis (and an
//! HTTP probe), the start of an A/B test. Each weight change and each
//! operator's action is sealed through `StepSealer` before traffic moves.

use std::time::Duration;

use crate::config::{Config, Environment};
use crate::deploy::dir::DirTarget;
use crate::domain::Digest;

use super::seal::StepSealer;

/// One `router` or `nginx` target being deployed to.
pub(super) struct Routed<'a> {
    pub app: &'a str,
    pub config: &'a Config,
    pub env: &'a Environment,
    pub name: &'a str,
    pub target: &'a crate::config::Routed,
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
        let listen = target.listen;
        let (unpacked, entries) = self
            .dir
            .unpack(source, digest)
            .map_err(|e| format!("target `{name}`: {e}"))?;
        let sdir = routed::state_dir(&self.config.root, name);
        routed::ensure_running(&self.config.root, name, listen)
            .await
            .map_err(|e| format!("target `{name}`: {e}"))?;
        let st = routed::read_state(&sdir)?;
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
        let (rollout, warm) = super::canary::rollout_of(self.env);
        // An interrupted canary of this digest (its owner dead) is picked
        // up at the step it reached, from its stored state.
        let resumed = crate::workspace::Workspace::at(self.config.root.clone())
            .open_store()
            .ok()
            .and_then(|s| s.rollout(self.env_name(), name).ok().flatten())
            .filter(|row| {
                row.kind == crate::store::RolloutKind::Canary
                    && row.phase.is_active()
                    && row
                        .owner_pid
                        .is_none_or(|pid| !crate::store::process_alive(pid))
                    && row.digest == *digest
                    && st.candidate.as_ref().is_some_and(|c| c.digest == *digest)
            });
        if previous.is_some() && resumed.is_none() {
            let version = routed::update_state(&sdir, |st| {
                st.listen = Some(listen);
                st.candidate = Some(new.clone());
                st.weight = 0;
                st.warm_until = None;
                Ok(())
            })?;
            live(version).await?;
            if let Err(e) = routed::check_candidate(listen, version).await {
                let cleared = routed::update_state(&sdir, |st| {
                    st.candidate = None;
                    Ok(())
                });
                return Err(match cleared {
                    Ok(_) => format!("target `{name}`: {e}; the stable release keeps serving"),
                    Err(c) => format!(
                        "target `{name}`: {e}; the stable release keeps serving, but taking the failed release out of its idle slot failed: {c}"
                    ),
                });
            }
        }
        let mut steps = String::new();
        match (previous.as_ref(), rollout) {
            (Some(stable), super::canary::Rollout::Ab { split }) => {
                return self.start_ab(&sdir, stable, digest, split, listen).await;
            }
            (Some(p), super::canary::Rollout::Canary { plan, probe }) => {
                let stable = p.digest.short().to_owned();
                match self
                    .canary(&sdir, digest, plan, probe.as_ref(), listen, resumed)
                    .await
                {
                    Ok(lines) => steps = format!(", canary {}", lines.join("; ")),
                    Err(why) => {
                        // All traffic back to stable (the canary's abort
                        // did so already); the candidate is retired.
                        let sent = async {
                            let version = routed::update_state(&sdir, |st| {
                                st.candidate = None;
                                st.weight = 0;
                                Ok(())
                            })?;
                            live(version).await
                        };
                        return Err(match sent.await {
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
            _ => {}
        }
        // The swap, on the routes as they are now (flags set meanwhile
        // stay).
        let version = routed::update_state(&sdir, |st| {
            st.listen = Some(listen);
            st.candidate = st.stable.take().filter(|s| s.digest != *digest);
            st.stable = Some(new);
            st.weight = 0;
            // The old release stays warm for an instant rollback: until a
            // newer one takes its slot, or for `scale_down_delay`.
            st.warm_until = warm.map(|d| chrono::Utc::now().timestamp() + d.as_secs() as i64);
            Ok(())
        })?;
        live(version).await?;
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
        stable: &crate::deploy::routed::SlotState,
        digest: &Digest,
        split: u8,
        listen: std::net::SocketAddr,
    ) -> Result<String, String> {
        use crate::deploy::routed;
        use crate::domain::rollout::{AbEffect, AbTest};
        let baseline = routed::read_stats(sdir);
        let (ab, effects) = AbTest::start(split, chrono::Utc::now());
        for e in effects {
            if let AbEffect::SetWeight(w) = e {
                // On the routes as they are (flags stay), under their lock.
                let version = routed::update_state(sdir, |st| {
                    if st.candidate.as_ref().is_none_or(|c| c.digest != *digest) {
                        return Err("the new release is not in the candidate slot".into());
                    }
                    st.weight = w;
                    st.sticky = true;
                    st.warm_until = None;
                    Ok(())
                })?;
                routed::wait_live(listen, version, Duration::from_secs(10), Some(sdir)).await?;
            }
        }
        routed::write_ab(
            sdir,
            &routed::AbTest {
                a: stable.digest.clone(),
                b: digest.clone(),
                started: ab
                    .started_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                baseline,
            },
        )?;
        crate::workspace::Workspace::at(self.config.root.clone())
            .open_store()
            .and_then(|mut s| {
                s.put_rollout(&crate::store::RolloutRow {
                    environment: self.env_name().to_owned(),
                    target: self.name.to_owned(),
                    promotion_id: self.steps.map(|s| s.promotion_id),
                    app: self.app.to_owned(),
                    digest: digest.clone(),
                    kind: crate::store::RolloutKind::Ab,
                    phase: ab.phase,
                    owner_pid: None,
                    taken_over: 0,
                    state: serde_json::to_string(&ab).expect("an A/B test serializes"),
                    updated_at: ab.started_at,
                })
            })
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "{}: A/B on {listen} — a sha256:{} ({}%) vs b sha256:{} ({split}%), each client kept on its variant; `stella rollout consolidate {} --winner a|b` ends it",
            self.name,
            stable.digest.short(),
            100 - split,
            digest.short(),
            self.env_name()
        ))
    }

    fn env_name(&self) -> &str {
        self.steps.map_or("ENV", |s| s.environment.as_str())
    }

    /// Walks the candidate through the canary's weights (see
    /// `canary::Runner`), from its first step or, `resumed`, from the
    /// stored state a dead owner left. Returns a line per sample; fails
    /// when the analysis rolls it back or an operator aborts it (all
    /// traffic is then back on stable).
    async fn canary(
        &self,
        sdir: &std::path::Path,
        digest: &Digest,
        plan: crate::domain::rollout::Plan,
        probe: Option<&crate::config::Probe>,
        listen: std::net::SocketAddr,
        resumed: Option<crate::store::RolloutRow>,
    ) -> Result<Vec<String>, String> {
        use crate::domain::rollout::{Canary, Input};
        let ws = crate::workspace::Workspace::at(self.config.root.clone());
        let environment = self.env_name().to_owned();
        let mut runner = super::canary::Runner {
            ws,
            environment: &environment,
            target: self.name,
            sdir,
            listen: Some(listen),
            sealer: self.steps,
            probe,
            taken_over: resumed.is_some(),
            canary: Canary::start(plan.clone(), chrono::Utc::now()).0,
            before: crate::deploy::routed::read_stats(sdir)
                .slot(crate::deploy::router::Slot::Candidate),
            apply_weights: true,
        };
        let wake = match resumed {
            Some(row) => {
                let stored: Canary = serde_json::from_str(&row.state).map_err(|e| {
                    format!(
                        "target `{}`: the stored canary is unreadable: {e}",
                        self.name
                    )
                })?;
                let store = runner.ws.open_store().map_err(|e| e.to_string());
                let took = store?
                    .take_over_rollout(
                        &environment,
                        self.name,
                        row.owner_pid,
                        self.steps.map(|s| s.promotion_id),
                    )
                    .map_err(|e| e.to_string())?;
                if !took {
                    return Err(format!(
                        "target `{}`: another process took the interrupted canary over first",
                        self.name
                    ));
                }
                runner.canary = stored;
                runner.feed(Input::TakenOver(chrono::Utc::now())).await
            }
            None => {
                let (canary, effects) = Canary::start(plan, chrono::Utc::now());
                runner.canary = canary;
                // Recorded (and steerable) before the first weight takes
                // traffic.
                runner.record(self.app, digest)?;
                runner.run_start(effects).await
            }
        };
        let walked = match wake {
            Ok(wake) => runner.walk(wake).await,
            Err(e) => Err(e),
        };
        if let Err(e) = walked {
            runner.fail();
            return Err(e);
        }
        super::canary::outcome(&runner.canary, self.name)
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
    let t = crate::domain::rollout::Traffic {
        requests: d.requests,
        error_rate: d.error_rate(),
        p95_ms: d.p95_ms,
    };
    crate::domain::rollout::judge(&t, max_error_rate, max_p95_ms, min_requests).as_str()
}
