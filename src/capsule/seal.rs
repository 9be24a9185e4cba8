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
