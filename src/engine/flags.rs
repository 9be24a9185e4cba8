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

/// A change to an environment's feature flags.
#[derive(Debug, Clone)]
pub struct FlagsRequest {
    pub env: String,
    /// `(name, value)` pairs, each checked by `parse_flag`.
    pub changes: Vec<(String, String)>,
    /// Who asks; it signs the change.
    pub asker: super::keys::Asker,
}

#[derive(Debug, Clone)]
pub struct FlagsOutcome {
    /// The environment's flags now.
    pub flags: std::collections::BTreeMap<String, String>,
    /// A line per target, and where the capsule went.
    pub lines: Vec<String>,
    pub capsule_id: i64,
    pub capsule: std::path::PathBuf,
    /// The canary whose promotion held the environment's lock: the change
    /// was written through to its routes (it keeps the flags it finds).
    pub through_canary: Option<i64>,
}

/// What a flags change is sealed on.
enum Subject {
    /// The app and release live on the environment's first routed target.
    Live(String, Digest),
    /// A target serves a release not live yet: a promotion is under way.
    Moving,
    Nothing,
}

/// How long a flags change waits for an environment another promotion
/// holds (a canary excepted: it is written through).
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Sets feature flags of `env` (`off` values are kept as `off`) under the
/// environment's lock: sealed first, with the flags before and after as
/// evidence, then written to the environment's flags file and delivered to
/// each `router`/`nginx` target (its routes — a reload for nginx — and a
/// `flags.json` its processes read through `STELLA_FLAGS_FILE`), each
/// change confirmed live. A canary holding the lock is not waited for (it
/// may hold for hours): the flags are written through to the routes it
/// serves, under the routes file's own lock, and it carries them on.
/// Another holder is waited for up to 30 s.
pub fn set_flags(
    ws: &crate::workspace::Workspace,
    config: &Config,
    req: &FlagsRequest,
    sink: &super::Sink,
) -> Result<FlagsOutcome, super::EngineError> {
    use super::EngineError;
    use super::event::EventKind;
    use crate::capsule::statement::{Action, EvidenceRef};
    use crate::deploy::routed;
    let (env_name, changes) = (req.env.as_str(), &req.changes);
    let env = config
        .environment(env_name)
        .ok_or_else(|| super::unknown_environment(env_name, config))?;
    let prover = super::keys::prove(ws, &req.asker)?;
    let requested_by = prover.requested_by();
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
    // What the flags ride on: the release stable on the first target
    // that serves one live in the store.
    let mut store = ws.open_store()?;
    let subject = |store: &crate::store::Store| -> Result<Subject, EngineError> {
        let mut serving = false;
        for t in &routed_targets {
            let st = routed::read_state(&routed::state_dir(&config.root, t))
                .map_err(EngineError::error)?;
            let Some(stable) = st.stable else { continue };
            serving = true;
            for app in config.apps.keys() {
                if store
                    .live_at(env_name, app, &chrono::Utc::now())?
                    .is_some_and(|l| l.digest == stable.digest)
                {
                    return Ok(Subject::Live(app.clone(), stable.digest.clone()));
                }
            }
        }
        Ok(if serving {
            Subject::Moving
        } else {
            Subject::Nothing
        })
    };
    // The environment's lock, or the canary that holds it.
    let canary_of = |promotion: i64| {
        routed_targets.iter().any(|t| {
            let p = super::rollout::progress(ws, &req.env, t);
            p.in_flight() && p.promotion == Some(promotion)
        })
    };
    let give_up = std::time::Instant::now() + LOCK_WAIT;
    let wait = || {
        let waited = std::time::Instant::now() < give_up;
        if waited {
            std::thread::sleep(Duration::from_millis(250));
        }
        waited
    };
    let (app, digest, existing, through_canary) = loop {
        let (app, digest) = match subject(&store)? {
            Subject::Live(app, digest) => (app, digest),
            // A promotion switched a target and has not sealed yet.
            Subject::Moving if wait() => continue,
            Subject::Moving | Subject::Nothing => {
                return Err(EngineError::usage(format!(
                    "nothing is deployed in {env_name} yet; flags are set on a running release"
                ))
                .hint(format!(
                    "`stella release promote APP --to {env_name}` first"
                )));
            }
        };
        match store.begin_promotion(&app, &digest, None, env_name, &requested_by) {
            Ok(id) => break (app, digest, Some(id), None),
            Err(crate::store::BeginError::Locked(l)) if canary_of(l.promotion_id) => {
                break (app, digest, None, Some(l.promotion_id));
            }
            Err(crate::store::BeginError::Locked(_)) if wait() => {}
            Err(e) => return Err(e.into()),
        }
    };
    let before = read_flags(&config.root, env_name);
    let mut after = before.clone();
    for (n, v) in changes {
        after.insert(n.clone(), v.clone());
    }
    let bytes = serde_json::to_vec_pretty(&after).expect("flags serialize");
    // Sealed before anything serves the new flags.
    let cas = ws.evidence();
    let evidence = serde_json::to_vec_pretty(&serde_json::json!({
        "environment": env_name, "before": before, "after": after,
        "through_canary": through_canary,
    }))
    .expect("serializes");
    let evidence_digest = cas.put(&evidence)?;
    let env_digest = super::seal::environment_digest(ws, env_name, env)?;
    let at = crate::domain::Clock::Real.now();
    let said: Vec<String> = changes.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let reason = format!(
        "flags of {env_name}: {}{}",
        said.join(", "),
        through_canary.map_or(String::new(), |p| format!(
            " (written through the canary of promotion #{p}, which holds the lock)"
        ))
    );
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
        existing,
        |previous, id| decision.predicate(previous, id),
    )?;
    sink.emit(EventKind::CapsuleSealed {
        promotion_id: sealed.promotion_id,
        capsule_id: sealed.capsule_id,
        outcome: crate::domain::state::PromotionOutcome::FlagsSet,
        path: sealed.path.clone(),
    });
    // Then delivered: the flags file, and each target's routes (only
    // their flags change, whoever else writes them).
    let file = flags_file(&config.root, env_name);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    super::seal::write_atomic(&file, &bytes)?;
    let mut lines = Vec::new();
    for t in &routed_targets {
        let sdir = routed::state_dir(&config.root, t);
        let delivered = routed::update_state(&sdir, |st| {
            st.flags = after.clone();
            Ok(())
        })
        .and_then(|version| {
            super::seal::write_atomic(&sdir.join("flags.json"), &bytes)
                .map_err(|e| e.to_string())?;
            Ok(version)
        });
        let version = delivered.map_err(|e| undelivered(t, &e, &sealed.path))?;
        if let Some(listen) = super::router::listen_of(&config.targets[*t])
            .filter(|_| routed::running_pid(&sdir).is_some())
        {
            super::resolve::block_on(routed::wait_live(
                listen,
                version,
                Duration::from_secs(10),
                Some(&sdir),
            ))?
            .map_err(|e| undelivered(t, &e, &sealed.path))?;
        }
        let line = format!("{t}: flags live (routes {version})");
        sink.emit(EventKind::TargetSwitched {
            promotion_id: sealed.promotion_id,
            detail: line.clone(),
        });
        lines.push(line);
    }
    lines.push(format!("sealed: {}", sealed.path.display()));
    Ok(FlagsOutcome {
        flags: after,
        lines,
        capsule_id: sealed.capsule_id,
        capsule: sealed.path,
        through_canary,
    })
}

/// The error of flags sealed but not delivered to target `t`.
fn undelivered(t: &str, e: &str, capsule: &std::path::Path) -> super::EngineError {
    super::EngineError::error(format!(
        "{t}: the flags were sealed ({}) but not delivered: {e}",
        capsule.display()
    ))
    .hint("the next change of its routes carries them; `stella flags set` again retries now")
}
