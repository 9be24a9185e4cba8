//! An environment's feature flags: kept in a file, delivered to its
//! `router` and `nginx` targets, each change sealed.

use std::time::Duration;

use crate::config::Config;
use crate::domain::Digest;

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
    asker: &super::keys::Asker,
) -> Result<Vec<String>, super::EngineError> {
    use super::EngineError;
    use crate::capsule::statement::{Action, EvidenceRef};
    use crate::deploy::routed;
    let env = config
        .environment(env_name)
        .ok_or_else(|| super::unknown_environment(env_name, config))?;
    let prover = super::keys::prove(ws, asker)?;
    let requested_by = prover.requested_by();
    let before = read_flags(&config.root, env_name);
    let mut after = before.clone();
    for (n, v) in changes {
        after.insert(n.clone(), v.clone());
    }
    let routed_targets: Vec<&String> = env
        .targets
        .iter()
        .map(|t| t.get_ref())
        .filter(|t| config.targets.get(*t).is_some_and(|t| t.kind().is_routed()))
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
            .listen()
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
    let at = crate::domain::Clock::Real.now();
    let said: Vec<String> = changes.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let reason = format!("flags of {env_name}: {}", said.join(", "));
    let decision = super::seal::Gateless {
        action: Action::Flags,
        app: &app,
        digest: &digest,
        tag: None,
        environment: env_name,
        requested_by: &requested_by,
        at,
        record: EvidenceRef {
            digest: evidence_digest,
            media_type: FLAGS_MEDIA_TYPE.into(),
            kind: "flags".into(),
        },
        env_digest: &env_digest,
        outcome: crate::domain::PromotionOutcome::FlagsSet,
        reason,
        requester: None,
    }
    .signed_by(&prover)?;
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
