//! Operators' decisions on a rollout that are not a promotion: aborting
//! the canaries whose promotion died, and ending an A/B test on its
//! winner. Each is sealed.

use std::time::Duration;

use crate::config::Config;

use super::seal::StepSealer;

/// Aborts the interrupted canaries of `env` (their promotion's process
/// died): all traffic back to stable, the candidate retired, each abort
/// sealed under the interrupted promotion. Returns a line per target.
pub fn abort_interrupted(
    ws: &crate::workspace::Workspace,
    config: &Config,
    env_name: &str,
    asker: &super::keys::Asker,
) -> Result<Vec<String>, super::EngineError> {
    use crate::capsule::statement::Action;
    let requested_by = super::keys::prove(ws, asker)?.requested_by();
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
            requested_by: requested_by.clone(),
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
    asker: &super::keys::Asker,
) -> Result<Vec<String>, super::EngineError> {
    use super::EngineError;
    let prover = super::keys::prove(ws, asker)?;
    let requested_by = prover.requested_by();
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
            now_stats
                .release(&test.a)
                .since(&test.baseline.release(&test.a)),
            now_stats
                .release(&test.b)
                .since(&test.baseline.release(&test.b)),
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
        let at = crate::domain::Clock::Real.now();
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
            requested_by: &requested_by,
            at,
            record: EvidenceRef {
                digest: comparison_digest.clone(),
                media_type: AB_MEDIA_TYPE.into(),
                kind: "ab-comparison".into(),
            },
            env_digest: &env_digest,
            outcome: "live",
            reason: reason.clone(),
            requester: None,
        }
        .signed_by(&prover)?;
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
