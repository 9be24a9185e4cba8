//! Sealing: a statement in canonical JSON, signed as a DSSE envelope with
//! the workspace's key. The payload digest names the capsule and links the
//! chain.

use super::environment::{self, EffectiveEnvironment};
use super::statement::{
    EvidenceRef, Inputs, KeyRef, PAYLOAD_TYPE, PolicyRef, Statement, UpstreamRef,
};
use crate::domain::Digest;
use crate::gates::{GateInputs, rfc3339};
use crate::sign::{Envelope, PrivateKey};

/// A sealed capsule: the statement, the exact bytes signed, their digest and
/// the envelope.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub statement: Statement,
    pub payload: Vec<u8>,
    pub payload_digest: Digest,
    pub envelope: Envelope,
}

/// The payload type of an environment's chain head.
pub const HEAD_PAYLOAD_TYPE: &str = "application/vnd.stella.chain-head+json";
pub const HEAD_TYPE: &str = "https://stella.dev/chain-head/v1";

/// The end of an environment's chain, signed with the sealing key and
/// rewritten with every capsule: which capsule is the newest. A chain cut
/// at its end leaves a head naming a capsule that is not there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainHead {
    #[serde(rename = "_type")]
    pub kind: String,
    pub environment: String,
    /// The payload digest of the environment's newest capsule.
    pub newest: Digest,
    /// That capsule's clock.
    pub sealed_at: String,
}

impl ChainHead {
    /// Reads a head envelope signed by one of `trusted`; says why not.
    pub fn verify(
        envelope: &[u8],
        trusted: &[super::verify::Trusted],
    ) -> Result<(ChainHead, String), String> {
        let env: Envelope = serde_json::from_slice(envelope)
            .map_err(|e| format!("the chain head is not a DSSE envelope ({e})"))?;
        if env.payload_type != HEAD_PAYLOAD_TYPE {
            return Err(format!(
                "the chain head's payloadType is `{}`, expected {HEAD_PAYLOAD_TYPE}",
                env.payload_type
            ));
        }
        let payload = env.payload_bytes().map_err(|e| e.to_string())?;
        let t = super::trust::signer(&env, trusted).map_err(|ids| {
            format!("the chain head is signed by key {ids}, not a sealing key trusted here")
        })?;
        env.verify_payload(&t.key, &payload)
            .map_err(|e| format!("the chain head: {e}"))?;
        let head: ChainHead = serde_json::from_slice(&payload)
            .map_err(|e| format!("the chain head is not a chain head statement ({e})"))?;
        if head.kind != HEAD_TYPE {
            return Err(format!("the chain head's _type is `{}`", head.kind));
        }
        Ok((head, t.name.clone()))
    }
}

/// Checks that the environment's chain ends where its signed head says
/// before anything is appended to it: the head must be signed by `key`
/// and name `previous` (the store's newest capsule of `environment`).
/// Otherwise a capsule was deleted from the end, or the head rewritten,
/// and sealing after it would cover the cut. No head at all is a chain
/// from before heads were kept (or one whose head row went with the cut;
/// `audit verify-chain` names a chain without a head as not anchored).
pub fn check_chain_end(
    environment: &str,
    previous: Option<&Digest>,
    head: Option<&[u8]>,
    key: &crate::sign::PublicKey,
) -> Result<(), String> {
    let Some(head) = head else {
        return Ok(());
    };
    let refuse = |why: String| {
        format!(
            "the chain of `{environment}` does not end where its signed head says: {why}; \
             a capsule was deleted from its end or its head rewritten, and nothing is \
             sealed on a cut chain (run `stella audit verify-chain` to see which)"
        )
    };
    let envelope: Envelope = serde_json::from_slice(head)
        .map_err(|e| refuse(format!("the head is not a DSSE envelope ({e})")))?;
    if envelope.payload_type != HEAD_PAYLOAD_TYPE {
        return Err(refuse(format!(
            "the head's payload type is `{}`",
            envelope.payload_type
        )));
    }
    let payload = envelope
        .verify(key)
        .map_err(|e| refuse(format!("the head is not signed by the sealing key ({e})")))?;
    let signed: ChainHead = serde_json::from_slice(&payload)
        .map_err(|e| refuse(format!("the head is no chain head ({e})")))?;
    if signed.environment != environment {
        return Err(refuse(format!("the head is `{}`'s", signed.environment)));
    }
    if Some(&signed.newest) != previous {
        let newest = previous.map_or("no capsule".to_owned(), ToString::to_string);
        return Err(refuse(format!(
            "the head names {} (sealed {}) as the newest, the store's newest is {newest}",
            signed.newest, signed.sealed_at
        )));
    }
    Ok(())
}

/// Seals `statement` after `previous`, once the chain's end checks out
/// against its signed `head`, and signs the environment's new chain head
/// with the same key: what the store keeps for one decision.
pub fn sealed_row(
    statement: Statement,
    previous: Option<&Digest>,
    head: Option<&[u8]>,
    key: &PrivateKey,
) -> Result<crate::store::SealedRow, String> {
    check_chain_end(&statement.predicate.to, previous, head, &key.public())?;
    let environment = statement.predicate.to.clone();
    let sealed_at = statement.predicate.clock.clone();
    let sealed = seal(statement, key);
    let head = ChainHead {
        kind: HEAD_TYPE.into(),
        environment,
        newest: sealed.payload_digest.clone(),
        sealed_at,
    };
    let json = |e: serde_json::Error| e.to_string();
    let head = Envelope::sign(
        HEAD_PAYLOAD_TYPE,
        &serde_json::to_vec(&head).map_err(json)?,
        key,
    );
    Ok(crate::store::SealedRow {
        payload_digest: sealed.payload_digest,
        envelope: serde_json::to_vec(&sealed.envelope).map_err(json)?,
        head: serde_json::to_vec(&head).map_err(json)?,
        summary: None,
        attach: None,
    })
}

/// `sealed_row` for a decision about whether a release may run: its
/// verification summary is signed with the same key and kept with it,
/// and, with `attach`, both are queued to be attached to the image.
pub fn sealed_decision(
    statement: Statement,
    previous: Option<&Digest>,
    head: Option<&[u8]>,
    key: &PrivateKey,
    ctx: &super::summary::Context,
    attach: Option<crate::store::AttachTarget>,
) -> Result<crate::store::SealedRow, String> {
    let vsa = statement.clone();
    let mut row = sealed_row(statement, previous, head, key)?;
    if let Some(summary) = super::summary::summarize(&vsa, &row.payload_digest, ctx) {
        row.summary = Some(sealed_summary(&summary, key));
        row.attach = attach;
    }
    Ok(row)
}

/// A summary signed for the store.
pub fn sealed_summary(
    summary: &super::summary::SummaryStatement,
    key: &PrivateKey,
) -> crate::store::SealedSummary {
    let payload = summary.canonical();
    let envelope = Envelope::sign(PAYLOAD_TYPE, &payload, key);
    crate::store::SealedSummary {
        payload_digest: Digest::of(&payload),
        passed: summary.predicate.verification_result == super::summary::VerificationResult::Passed,
        envelope: serde_json::to_vec(&envelope).expect("an envelope serializes"),
    }
}

pub fn seal(statement: Statement, key: &PrivateKey) -> Sealed {
    let payload = statement.canonical();
    let envelope = Envelope::sign(PAYLOAD_TYPE, &payload, key);
    Sealed {
        payload_digest: Digest::of(&payload),
        statement,
        payload,
        envelope,
    }
}

/// A blob a decision needs stored beside the evidence it already has.
pub struct NewBlob {
    pub digest: Digest,
    pub media_type: &'static str,
    pub kind: &'static str,
    pub bytes: Vec<u8>,
}

pub const POLICY_MEDIA_TYPE: &str = "application/vnd.stella.rego";
pub const KEY_MEDIA_TYPE: &str = "application/x-pem-file";

fn blob(media_type: &'static str, kind: &'static str, bytes: Vec<u8>) -> NewBlob {
    NewBlob {
        digest: Digest::of(&bytes),
        media_type,
        kind,
        bytes,
    }
}

/// The `inputs` of a statement for these gate inputs, and the blobs (policy
/// sources, environment config, keys) to store so the capsule can embed
/// them. Pure: the same inputs give the same references.
pub fn inputs_of(gi: &GateInputs) -> (Inputs, Vec<NewBlob>) {
    let mut blobs = Vec::new();
    let mut evidence: Vec<EvidenceRef> = gi
        .scans
        .iter()
        .map(|s| EvidenceRef {
            digest: s.digest.clone(),
            media_type: s.format.media_type().into(),
            kind: s.kind.as_str().into(),
        })
        .collect();
    evidence.extend(gi.approvals.iter().map(|a| EvidenceRef {
        digest: a.digest.clone(),
        media_type: crate::domain::approval::APPROVAL_MEDIA_TYPE.into(),
        kind: "approval".into(),
    }));

    let policies = gi
        .policies
        .iter()
        .map(|p| {
            let b = blob(POLICY_MEDIA_TYPE, "policy", p.source.clone().into_bytes());
            let r = PolicyRef {
                path: p.path.clone(),
                digest: b.digest.clone(),
            };
            blobs.push(b);
            r
        })
        .collect();

    let used: Vec<&String> = gi
        .gates
        .freeze
        .iter()
        .flat_map(|f| &f.windows)
        .map(|w| w.get_ref())
        .collect();
    let env = EffectiveEnvironment {
        name: gi.subject.environment.clone(),
        from: gi.subject.from.clone(),
        gates: gi.gates.clone(),
        freeze: gi
            .freeze_windows
            .iter()
            .filter(|(k, _)| used.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    let env_blob = blob(
        environment::MEDIA_TYPE,
        "config",
        env.to_toml().into_bytes(),
    );
    let environment = EvidenceRef {
        digest: env_blob.digest.clone(),
        media_type: environment::MEDIA_TYPE.into(),
        kind: "config".into(),
    };
    blobs.push(env_blob);

    let keys = gi
        .keys
        .iter()
        .map(|k| {
            let b = blob(KEY_MEDIA_TYPE, "key", k.key.to_pem().into_bytes());
            let r = KeyRef {
                name: k.name.clone(),
                email: k.email.clone(),
                keyid: k.key.keyid().to_owned(),
                digest: b.digest.clone(),
            };
            blobs.push(b);
            r
        })
        .collect();

    let inputs = Inputs {
        evidence,
        policies,
        environment,
        keys,
        upstream: gi.upstream.as_ref().map(|u| UpstreamRef {
            environment: u.environment.clone(),
            digest: u.digest.clone(),
            since: rfc3339(u.since),
        }),
        break_glass: gi.break_glass.clone(),
    };
    (inputs, blobs)
}
