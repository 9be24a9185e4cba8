//! Verifying a capsule file: the signature (by a trusted key), every
//! embedded blob against its digest, every referenced blob present, and the
//! statement's shape. Verification reads the stored payload bytes; nothing
//! is re-serialized.

use serde::Serialize;

use super::file::CapsuleFile;
use super::statement::{PAYLOAD_TYPE, Statement};
use super::trust::short;
use crate::domain::Digest;
use crate::sign::{PublicKey, dsse::DsseError};

/// A key verification may rely on, and what to call it.
#[derive(Debug, Clone)]
pub struct Trusted {
    pub name: String,
    pub key: PublicKey,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub valid: bool,
    pub problems: Vec<String>,
    /// Facts worth saying that are not problems.
    pub notes: Vec<String>,
    #[serde(skip)]
    pub statement: Option<Statement>,
    pub payload_digest: Option<Digest>,
    /// The trusted key that signed, with why it is trusted.
    pub signed_by: Option<String>,
    /// The id of the key that signed (trusted or not), when known.
    pub keyid: Option<String>,
}

pub fn verify(file: &CapsuleFile, trusted: &[Trusted]) -> Report {
    let mut r = Report::default();
    let env = &file.envelope;
    if env.payload_type != PAYLOAD_TYPE {
        r.problems.push(format!(
            "payloadType is `{}`, expected {PAYLOAD_TYPE}",
            env.payload_type
        ));
    }
    let payload = match env.payload_bytes() {
        Ok(p) => p,
        Err(e) => {
            r.problems.push(e.to_string());
            return r;
        }
    };
    r.payload_digest = Some(Digest::of(&payload));

    // The signature, by a key this side trusts.
    let ids: Vec<&str> = env.keyids().collect();
    let mut checked = false;
    for t in trusted.iter().filter(|t| ids.contains(&t.key.keyid())) {
        checked = true;
        match env.verify_payload(&t.key, &payload) {
            Ok(_) => {
                r.signed_by = Some(t.name.clone());
                r.keyid = Some(t.key.keyid().to_owned());
                break;
            }
            Err(DsseError::BadSignature(id)) => r.problems.push(format!(
                "signature does not verify with key {} ({})",
                t.name,
                short(&id)
            )),
            Err(e) => r.problems.push(e.to_string()),
        }
    }
    if r.signed_by.is_some() {
        r.problems
            .retain(|p| !p.starts_with("signature does not verify"));
    } else if !checked {
        r.keyid = ids.first().map(|i| (*i).to_owned());
        match PublicKey::from_pem(&file.public_key_pem) {
            Ok(k) if ids.contains(&k.keyid()) => match env.verify_payload(&k, &payload) {
                Ok(_) => r.problems.push(format!(
                    "signed by key {}, the one in the file, which is not a sealing key trusted here; if you know it is the sealing key of the workspace that made it, pass --trust KEY.pub",
                    short(k.keyid())
                )),
                Err(_) => r.problems.push(format!("signature does not verify with key {} (the key in the file)", short(k.keyid()))),
            },
            _ => r.problems.push(format!(
                "signed by key {}, which is not a sealing key trusted here; pass --trust KEY.pub",
                ids.first().map_or("(none)", |i| short(i))
            )),
        }
    }

    // Every embedded blob hashes to its name.
    for b in &file.evidence {
        match b.content() {
            Ok(bytes) if Digest::of(&bytes) == b.digest => {}
            Ok(_) => r
                .problems
                .push(format!("evidence {} does not match its content", b.digest)),
            Err(e) => r.problems.push(e),
        }
    }

    match serde_json::from_slice::<Statement>(&payload) {
        Ok(st) => {
            r.problems.extend(st.shape_problems());
            for d in st.referenced() {
                if file.blob(d).is_none() {
                    r.problems.push(format!(
                        "evidence {d} is referenced by the statement but not in the file"
                    ));
                }
            }
            if let Some(summary) = &file.summary {
                r.problems.extend(summary_problems(
                    summary,
                    &st,
                    &Digest::of(&payload),
                    trusted,
                ));
            }
            r.statement = Some(st);
        }
        Err(e) => r
            .problems
            .push(format!("the payload is not a decision statement: {e}")),
    }
    r.valid = r.problems.is_empty();
    r
}

/// A capsule file's verification summary: signed by a trusted key, and
/// saying what the capsule says.
fn summary_problems(
    summary: &crate::sign::Envelope,
    st: &Statement,
    capsule: &Digest,
    trusted: &[Trusted],
) -> Vec<String> {
    let t = match super::trust::signer(summary, trusted) {
        Ok(t) => t,
        Err(ids) => {
            return vec![format!(
                "the verification summary is signed by key {ids}, which is not a sealing key trusted here"
            )];
        }
    };
    let payload = match summary.verify(&t.key) {
        Ok(p) => p,
        Err(e) => return vec![format!("the verification summary: {e}")],
    };
    match super::summary::parse(&payload)
        .and_then(|s| super::summary::check_against(&s, st, capsule))
    {
        Ok(()) => vec![],
        Err(e) => vec![format!("the verification summary: {e}")],
    }
}
