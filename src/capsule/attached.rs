//! Decisions attached to an image, read back by someone who holds only
//! the image reference and the sealing public keys they trust: the
//! verification summaries found among the image's referrers, each checked
//! (signature by a trusted key, statement shape, subject = the image),
//! and the newest for an environment answering whether the image may run
//! there. Every attestation that fails a check is named with why, and
//! ignored. Needs no workspace.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::file::CapsuleFile;
use super::summary::{
    self, CAPSULE_ARTIFACT_TYPE, SUMMARY_ARTIFACT_TYPE, SummaryStatement, VerificationResult,
};
use super::verify::Trusted;
use crate::domain::{Digest, Repository};
use crate::registry::RegistryError;
use crate::registry::referrers::{self, Referrer};
use crate::sign::Envelope;

/// The largest summary envelope read (a summary is a few KiB).
pub const MAX_SUMMARY_BYTES: u64 = 1024 * 1024;
/// The most attached artifacts of one kind read for one image: a
/// decision per environment and promotion comes to a few dozen; more is
/// refused (not truncated, which could hide the newest), so a registry
/// stuffed with entries cannot keep a check busy for hours.
pub const MAX_REFERRERS: usize = 256;
/// How many summaries are fetched at once.
pub const IN_FLIGHT: usize = 8;
/// The most bytes of attached artifacts held at once.
pub const MAX_PULL_BYTES: u64 = 512 * 1024 * 1024;

/// A summary that passed every check.
#[derive(Debug, Clone, Serialize)]
pub struct Decided {
    /// The referrer manifest it was read from.
    pub manifest: Digest,
    pub environment: String,
    pub result: VerificationResult,
    pub time_verified: String,
    /// The trusted key that signed it, as the caller named it.
    pub signed_by: String,
    pub keyid: String,
    pub action: Option<String>,
    pub app: Option<String>,
    pub outcome: Option<String>,
    pub requested_by: Option<String>,
    /// Whether the requester was proven by a signature at decision time.
    pub requester_proven: Option<bool>,
    pub policy_uri: Option<String>,
    pub policy_digest: Option<String>,
    pub verified_levels: Vec<String>,
    /// The capsule's payload digest.
    pub capsule: Option<Digest>,
    pub resource_uri: String,
    #[serde(skip)]
    at: Option<DateTime<Utc>>,
}

/// An attestation that failed a check, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    pub manifest: Digest,
    pub problem: String,
}

/// The answer for one image and environment.
#[derive(Debug, Clone, Serialize)]
pub struct ImageVerdict {
    pub image: String,
    pub digest: Digest,
    pub environment: String,
    pub allowed: bool,
    /// The newest valid decision for the environment, if any.
    pub decision: Option<Decided>,
    /// Valid summaries found for this environment.
    pub decisions: usize,
    /// Environments with valid summaries for this image.
    pub environments: Vec<String>,
    pub rejected: Vec<Rejected>,
}

/// Checks one summary envelope's bytes against the trusted keys and the
/// image; returns the decision it records or why it cannot be used.
pub fn check_summary(
    manifest: &Digest,
    bytes: &[u8],
    image: &Digest,
    trusted: &[Trusted],
) -> Result<Decided, String> {
    let env: Envelope =
        serde_json::from_slice(bytes).map_err(|e| format!("not a DSSE envelope ({e})"))?;
    if env.payload_type != super::statement::PAYLOAD_TYPE {
        return Err(format!(
            "payloadType is `{}`, expected {}",
            env.payload_type,
            super::statement::PAYLOAD_TYPE
        ));
    }
    let payload = env.payload_bytes().map_err(|e| e.to_string())?;
    let t = super::trust::signer(&env, trusted).map_err(|ids| {
        format!("signed by key {ids}, which is not a key trusted here (foreign or unknown signer)")
    })?;
    env.verify_payload(&t.key, &payload).map_err(|e| {
        format!("{e}: the summary was changed after it was signed (tampered), or the signature is forged")
    })?;
    let s: SummaryStatement = summary::parse(&payload)?;
    if s.subject_digest().as_ref() != Some(image) {
        return Err(format!(
            "its subject is {}, not this image {image}: a summary of another image attached here",
            s.subject_digest()
                .map_or("(none)".into(), |d| d.to_string())
        ));
    }
    let Some(environment) = s.environment().map(str::to_owned) else {
        return Err("its policy names no environment".into());
    };
    let at = DateTime::parse_from_rfc3339(&s.predicate.time_verified)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!(
                "timeVerified `{}` is not an RFC 3339 time ({e})",
                s.predicate.time_verified
            )
        })?;
    let text = |key: &str| {
        s.annotation(key)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    Ok(Decided {
        manifest: manifest.clone(),
        environment,
        result: s.predicate.verification_result,
        time_verified: s.predicate.time_verified.clone(),
        signed_by: t.name.clone(),
        keyid: t.key.keyid().to_owned(),
        action: text("action"),
        app: text("app"),
        outcome: text("outcome"),
        requested_by: text("requestedBy"),
        requester_proven: s
            .annotation("requester")
            .and_then(|r| r.get("verified"))
            .and_then(serde_json::Value::as_bool),
        policy_uri: s.predicate.policy.uri.clone(),
        policy_digest: s
            .predicate
            .policy
            .digest
            .get("sha256")
            .map(|h| format!("sha256:{h}")),
        verified_levels: s.predicate.verified_levels.clone(),
        capsule: s.capsule(),
        resource_uri: s.predicate.resource_uri.clone(),
        at: Some(at),
    })
}

/// Picks the newest decision; on a tie a FAILED one wins (the cautious
/// reading of two decisions sealed in the same second).
pub fn newest(decisions: &[Decided]) -> Option<&Decided> {
    decisions.iter().max_by(|a, b| {
        a.at.cmp(&b.at).then_with(|| {
            let failed = |d: &Decided| d.result == VerificationResult::Failed;
            failed(a).cmp(&failed(b))
        })
    })
}

/// The referrers of one kind, refused when there are more than
/// `MAX_REFERRERS`.
fn listed(found: Vec<Referrer>, what: &str, at: &str) -> Result<Vec<Referrer>, RegistryError> {
    if found.len() > MAX_REFERRERS {
        return Err(RegistryError::Registry {
            reference: at.to_owned(),
            detail: format!(
                "{} {what} are attached, over the limit of {MAX_REFERRERS} read for one image; refused unread (remove stale ones from the registry)",
                found.len()
            ),
        });
    }
    Ok(found)
}

/// Fetches every referrer, `IN_FLIGHT` at a time; each answer in the
/// order listed. A registry that went down stops it all.
async fn fetch_all(
    repository: &Repository,
    found: &[Referrer],
    (limit, in_flight): (u64, usize),
    insecure: bool,
    base: &Path,
) -> Result<Vec<Result<referrers::Fetched, RegistryError>>, RegistryError> {
    let mut answers: Vec<Option<Result<referrers::Fetched, RegistryError>>> =
        (0..found.len()).map(|_| None).collect();
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0;
    let mut held = 0u64;
    loop {
        while tasks.len() < in_flight && next < found.len() {
            let (repository, manifest, base) = (
                repository.clone(),
                found[next].manifest.clone(),
                base.to_owned(),
            );
            let n = next;
            tasks.spawn(async move {
                (
                    n,
                    referrers::fetch(&repository, &manifest, limit, insecure, &base).await,
                )
            });
            next += 1;
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        let (n, answer) = done.map_err(|e| RegistryError::Registry {
            reference: repository.to_string(),
            detail: format!("a fetch failed: {e}"),
        })?;
        if let Err(e @ (RegistryError::Unreachable { .. } | RegistryError::TooSlow { .. })) = answer
        {
            return Err(e);
        }
        held += answer.as_ref().map_or(0, |f| f.bytes.len() as u64);
        if held > MAX_PULL_BYTES {
            return Err(RegistryError::Registry {
                reference: repository.to_string(),
                detail: format!(
                    "what is attached comes to over {}, the most read at once; refused",
                    super::limits::human(MAX_PULL_BYTES)
                ),
            });
        }
        answers[n] = Some(answer);
    }
    Ok(answers.into_iter().flatten().collect())
}

/// `stella verify`: every summary attached to `digest` in `repository`,
/// checked; the newest valid one for `environment` decides.
pub async fn verify_image(
    repository: &Repository,
    digest: &Digest,
    environment: &str,
    trusted: &[Trusted],
    insecure: bool,
    base: &Path,
) -> Result<ImageVerdict, RegistryError> {
    let at = format!("{repository}@{digest}");
    let found = listed(
        referrers::referrers(
            repository,
            digest,
            Some(SUMMARY_ARTIFACT_TYPE),
            insecure,
            base,
        )
        .await?,
        "verification summaries",
        &at,
    )?;
    let answers = fetch_all(
        repository,
        &found,
        (MAX_SUMMARY_BYTES, IN_FLIGHT),
        insecure,
        base,
    )
    .await?;
    let mut valid = Vec::new();
    let mut rejected = Vec::new();
    for (r, answer) in found.into_iter().zip(answers) {
        let fetched = match answer {
            Ok(f) => f,
            Err(e) => {
                rejected.push(Rejected {
                    manifest: r.manifest.clone(),
                    problem: e.to_string(),
                });
                continue;
            }
        };
        if fetched.subject.as_ref() != Some(digest) {
            rejected.push(Rejected {
                manifest: r.manifest.clone(),
                problem: "its manifest's subject is not this image".into(),
            });
            continue;
        }
        match check_summary(&r.manifest, &fetched.bytes, digest, trusted) {
            Ok(d) => valid.push(d),
            Err(problem) => rejected.push(Rejected {
                manifest: r.manifest.clone(),
                problem,
            }),
        }
    }
    let mut environments: Vec<String> = valid.iter().map(|d| d.environment.clone()).collect();
    environments.sort();
    environments.dedup();
    let mine: Vec<Decided> = valid
        .into_iter()
        .filter(|d| d.environment == environment)
        .collect();
    let decision = newest(&mine).cloned();
    Ok(ImageVerdict {
        image: repository.to_string(),
        digest: digest.clone(),
        environment: environment.to_owned(),
        allowed: decision
            .as_ref()
            .is_some_and(|d| d.result == VerificationResult::Passed),
        decision,
        decisions: mine.len(),
        environments,
        rejected,
    })
}

/// One capsule pulled from the image.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub manifest: Digest,
    pub file: CapsuleFile,
    /// Exactly the bytes that were attached.
    pub bytes: Vec<u8>,
}

/// `stella capsule pull`: every capsule attached to `digest`, read within
/// the capsule limits and checked to be about this image. Verification
/// (signature, evidence, chain link) is the caller's, with its keys.
pub async fn pull(
    repository: &Repository,
    digest: &Digest,
    insecure: bool,
    base: &Path,
) -> Result<(Vec<Pulled>, Vec<Rejected>), RegistryError> {
    let at = format!("{repository}@{digest}");
    let found = listed(
        referrers::referrers(
            repository,
            digest,
            Some(CAPSULE_ARTIFACT_TYPE),
            insecure,
            base,
        )
        .await?,
        "capsules",
        &at,
    )?;
    // Capsules can be large: two at a time, each bounded, and all of
    // them together too.
    let answers = fetch_all(
        repository,
        &found,
        (super::limits::MAX_CAPSULE_BYTES, 2),
        insecure,
        base,
    )
    .await?;
    let mut pulled = Vec::new();
    let mut rejected = Vec::new();
    for (r, answer) in found.into_iter().zip(answers) {
        let reject = |problem: String| Rejected {
            manifest: r.manifest.clone(),
            problem,
        };
        let fetched = match answer {
            Ok(f) => f,
            Err(e) => {
                rejected.push(reject(e.to_string()));
                continue;
            }
        };
        let file = match CapsuleFile::parse(&fetched.bytes) {
            Ok(f) => f,
            Err(e) => {
                rejected.push(reject(e.to_string()));
                continue;
            }
        };
        let about = file
            .envelope
            .payload_bytes()
            .ok()
            .and_then(|p| serde_json::from_slice::<super::Statement>(&p).ok())
            .map(|st| st.predicate.release.digest);
        if about.as_ref() != Some(digest) || fetched.subject.as_ref() != Some(digest) {
            rejected.push(reject("it is not a capsule about this image".into()));
            continue;
        }
        pulled.push(Pulled {
            manifest: r.manifest,
            file,
            bytes: fetched.bytes,
        });
    }
    Ok((pulled, rejected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::PrivateKey;

    fn decided(at: &str, result: VerificationResult) -> Decided {
        Decided {
            manifest: Digest::of(at.as_bytes()),
            environment: "prod".into(),
            result,
            time_verified: at.into(),
            signed_by: "k".into(),
            keyid: "k".into(),
            action: None,
            app: None,
            outcome: None,
            requested_by: None,
            requester_proven: None,
            policy_uri: None,
            policy_digest: None,
            verified_levels: vec![],
            capsule: None,
            resource_uri: String::new(),
            at: Some(at.parse().unwrap()),
        }
    }

    #[test]
    fn the_newest_decides_and_a_tie_goes_to_failed() {
        use VerificationResult::{Failed, Passed};
        let a = decided("2026-12-01T10:00:00Z", Passed);
        let b = decided("2026-12-02T10:00:00Z", Failed);
        let c = decided("2026-12-02T10:00:00Z", Passed);
        assert_eq!(newest(&[a.clone(), b.clone()]).unwrap().result, Failed);
        assert_eq!(newest(&[c.clone(), b.clone()]).unwrap().result, Failed);
        assert_eq!(newest(&[b, c]).unwrap().result, Failed);
        assert!(newest(&[]).is_none());
        assert_eq!(newest(&[a]).unwrap().result, Passed);
    }

    #[test]
    fn a_summary_by_an_unknown_key_or_changed_is_named() {
        let key = PrivateKey::from_seed(&[1; 32]);
        let other = PrivateKey::from_seed(&[2; 32]);
        let trusted = [Trusted {
            name: "mine".into(),
            key: key.public(),
        }];
        let env = Envelope::sign(super::super::statement::PAYLOAD_TYPE, b"{}", &other);
        let m = Digest::of(b"m");
        let bytes = serde_json::to_vec(&env).unwrap();
        let e = check_summary(&m, &bytes, &m, &trusted).unwrap_err();
        assert!(e.contains("not a key trusted here"), "{e}");
        let mut env = Envelope::sign(super::super::statement::PAYLOAD_TYPE, b"{}", &key);
        env.payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"{ }");
        let bytes = serde_json::to_vec(&env).unwrap();
        let e = check_summary(&m, &bytes, &m, &trusted).unwrap_err();
        assert!(e.contains("tampered"), "{e}");
    }
}
