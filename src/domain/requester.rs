//! Who asked for a decision. A requester holding a key of the workspace
//! signs the request (action, app, digest, environment, clock and a
//! nonce); one without a key is recorded as the operating-system account
//! the command ran as, marked unverified. Four-eyes trusts only the first.

use serde::{Deserialize, Serialize};

use crate::domain::Digest;

/// The type a signed request names, so a request signature can never be
/// taken for an approval's or a capsule's.
pub const REQUEST_TYPE: &str = "https://stella-ops.org/request/v1";

/// How an unverified requester's name starts wherever a requester is shown
/// or compared (`requested_by`): four-eyes fails closed on it.
pub const UNVERIFIED_PREFIX: &str = "unverified: uid ";

/// Whether a recorded `requested_by` names a proven identity. Capsules
/// from before requesters were proven record a bare name and are read as
/// they were decided.
pub fn is_proven(requested_by: &str) -> bool {
    !requested_by.starts_with(UNVERIFIED_PREFIX)
}

/// The requester as a capsule records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requester {
    /// The key owner's email (from the workspace's store), or the account
    /// name of the real uid.
    pub identity: String,
    /// The key that signed the request, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyid: Option<String>,
    /// Its public half (SPKI PEM), so the signature can be checked from
    /// the capsule alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Base64 ed25519 signature over `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The operating-system account's uid, for an unverified requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    pub nonce: String,
    pub verified: bool,
}

/// The request a requester signs, as canonical JSON.
#[derive(Serialize)]
struct Request<'a> {
    #[serde(rename = "_type")]
    type_: &'a str,
    action: &'a str,
    app: &'a str,
    digest: &'a Digest,
    environment: &'a str,
    clock: &'a str,
    nonce: &'a str,
    identity: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    also: Vec<AlsoApp<'a>>,
}

#[derive(Serialize)]
struct AlsoApp<'a> {
    app: &'a str,
    digest: &'a Digest,
}

/// What one decision's requester signs.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub action: &'a str,
    pub app: &'a str,
    pub digest: &'a Digest,
    pub environment: &'a str,
    /// RFC 3339, as the capsule records it.
    pub clock: &'a str,
    /// A release set's other apps with their digests, signed too, so a set
    /// cannot be widened or swapped after it was asked for. Empty for one
    /// app: its request is signed as before sets existed.
    pub also: &'a [(String, Digest)],
}

impl Requester {
    /// The exact bytes the requester signs for `asked`.
    pub fn message(asked: &Asked<'_>, nonce: &str, identity: &str) -> Vec<u8> {
        serde_json_canonicalizer::to_vec(&Request {
            type_: REQUEST_TYPE,
            action: asked.action,
            app: asked.app,
            digest: asked.digest,
            environment: asked.environment,
            clock: asked.clock,
            nonce,
            identity,
            also: asked
                .also
                .iter()
                .map(|(app, digest)| AlsoApp { app, digest })
                .collect(),
        })
        .unwrap_or_default()
    }

    /// How it is shown and recorded in `requested_by`: the proven identity,
    /// or `unverified: uid NAME`.
    pub fn display(&self) -> String {
        if self.verified {
            self.identity.clone()
        } else {
            format!("{UNVERIFIED_PREFIX}{}", self.identity)
        }
    }
}

impl Requester {
    /// Checks a verified requester's signature over `asked` with the key it
    /// carries; an unverified one has nothing to check. `Err` says why it
    /// does not hold.
    pub fn check(&self, asked: &Asked<'_>) -> Result<(), String> {
        use base64::Engine as _;
        if !self.verified {
            return Ok(());
        }
        let (Some(keyid), Some(pem), Some(sig)) = (&self.keyid, &self.public_key, &self.signature)
        else {
            return Err(format!(
                "requester {} is marked verified but carries no key or signature",
                self.identity
            ));
        };
        let key = crate::sign::PublicKey::from_pem(pem)
            .map_err(|e| format!("requester {}'s key: {e}", self.identity))?;
        if key.keyid() != keyid {
            return Err(format!(
                "requester {}'s key is {}, not the keyid {keyid} recorded",
                self.identity,
                key.keyid()
            ));
        }
        let sig = base64::engine::general_purpose::STANDARD
            .decode(sig)
            .map_err(|e| format!("requester {}'s signature is not base64: {e}", self.identity))?;
        if key.verify(
            &Requester::message(asked, &self.nonce, &self.identity),
            &sig,
        ) {
            Ok(())
        } else {
            Err(format!(
                "the request signature of {} does not verify: the request was altered",
                self.identity
            ))
        }
    }
}
