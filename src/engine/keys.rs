//! The workspace's keys on disk: private halves in `.stella/keys/NAME.key`
//! (PKCS#8 PEM, mode 0600), every key's record in the store.

use std::io::Write;
use std::path::Path;

use chrono::Utc;

use super::EngineError;
use crate::sign::{PrivateKey, PublicKey};
use crate::store::KeyRecord;
use crate::workspace::Workspace;

pub fn refuse_existing(ws: &Workspace, name: &str, keyid: &str) -> Result<(), EngineError> {
    let store = ws.open_store()?;
    if store.key(name)?.is_some() || ws.keys_dir().join(format!("{name}.key")).exists() {
        return Err(EngineError::error(format!(
            "a key named `{name}` already exists; not overwriting it"
        ))
        .hint("pick another name; `stella key list` shows the keys there are"));
    }
    if let Some(k) = store.keys()?.into_iter().find(|k| k.keyid == keyid) {
        return Err(EngineError::error(format!(
            "this key is already known as `{}` ({})",
            k.name, k.email
        )));
    }
    Ok(())
}

/// Refuses a second key for an email that already has one, unless the
/// caller says it means it (`--another-key`): every key an email holds
/// approves and asks as that person, so a quietly added one is a way in.
pub fn refuse_second_key(ws: &Workspace, email: &str, another: bool) -> Result<(), EngineError> {
    if another {
        return Ok(());
    }
    let store = ws.open_store()?;
    let held: Vec<KeyRecord> = store
        .keys()?
        .into_iter()
        .filter(|k| k.email.eq_ignore_ascii_case(email))
        .collect();
    if let Some(k) = held.first() {
        return Err(EngineError::usage(format!(
            "{email} already has a key: `{}` (keyid {}); a second one would approve and ask as {email} too",
            k.name,
            &k.keyid[..k.keyid.len().min(16)]
        ))
        .hint("if that is meant (a new machine, a rotation), say so with --another-key"));
    }
    Ok(())
}

/// Reads a private key of this workspace.
pub fn load_private(ws: &Workspace, name: &str) -> Result<(PrivateKey, KeyRecord), EngineError> {
    let rec = ws.open_store()?.key(name)?.ok_or_else(|| {
        EngineError::usage(format!("no key named `{name}`"))
            .hint("`stella key list` shows the keys; `stella key gen NAME --email EMAIL` makes one")
    })?;
    if !rec.private {
        return Err(EngineError::usage(format!(
            "key `{name}` is {}'s public key (imported); only its owner can sign with it",
            rec.email
        )));
    }
    let path = ws.keys_dir().join(format!("{name}.key"));
    let pem = std::fs::read_to_string(&path)
        .map_err(|e| EngineError::error(format!("cannot read {}: {e}", path.display())))?;
    let key = PrivateKey::from_pem(&pem)
        .map_err(|e| EngineError::error(format!("{}: {e}", path.display())))?;
    if key.public().keyid() != rec.keyid {
        return Err(EngineError::error(format!(
            "{} does not hold the key the store knows as `{name}` (keyid {}); it was replaced",
            path.display(),
            rec.keyid
        )));
    }
    Ok((key, rec))
}

fn write_private(path: &Path, pem: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(pem.as_bytes())?;
    f.sync_all()
}

/// Generates a key pair: the private half to `.stella/keys/NAME.key`
/// (0600), the record to the store.
pub fn create_key(
    ws: &Workspace,
    name: &str,
    email: &str,
) -> Result<(PublicKey, std::path::PathBuf), EngineError> {
    ws.ensure_state_dirs()?;
    let key = PrivateKey::generate().map_err(EngineError::error)?;
    let public = key.public();
    refuse_existing(ws, name, public.keyid())?;
    let path = ws.keys_dir().join(format!("{name}.key"));
    write_private(&path, &key.to_pem())
        .map_err(|e| EngineError::error(format!("cannot write {}: {e}", path.display())))?;
    let rec = KeyRecord {
        name: name.to_owned(),
        email: email.to_owned(),
        keyid: public.keyid().to_owned(),
        public_pem: public.to_pem(),
        private: true,
        added_at: Utc::now(),
    };
    if let Err(e) = ws.open_store().and_then(|mut s| s.add_key(&rec)) {
        // Nothing half-made: without its record the file is an orphan.
        let _ = std::fs::remove_file(&path);
        return Err(e.into());
    }
    Ok((public, path))
}

/// The name of the workspace's sealing key.
pub const SEALING_KEY: &str = "workspace";

/// The key capsules are sealed with: `.stella/keys/workspace.key`, made by
/// `stella init`, or now if an older workspace has none.
pub fn sealing_key(ws: &Workspace, workspace_name: &str) -> Result<PrivateKey, EngineError> {
    if ws.open_store()?.key(SEALING_KEY)?.is_some() {
        return load_private(ws, SEALING_KEY).map(|(k, _)| k);
    }
    let email = format!("sealing@{}.workspace", workspace_name.to_ascii_lowercase());
    create_key(ws, SEALING_KEY, &email)?;
    tracing::info!("created the workspace's sealing key `{SEALING_KEY}` ({email})");
    load_private(ws, SEALING_KEY).map(|(k, _)| k)
}

/// The sealing key's private half, read only (`EngineHandle::sealing_key`
/// makes it when missing).
pub fn load_sealing_key(ws: &Workspace) -> Result<PrivateKey, EngineError> {
    load_private(ws, SEALING_KEY).map(|(k, _)| k)
}

/// Every key this workspace trusts, for verifying capsules.
pub fn trusted(ws: &Workspace) -> Result<Vec<crate::capsule::verify::Trusted>, EngineError> {
    ws.open_store()?
        .keys()?
        .into_iter()
        .map(|k| match PublicKey::from_pem(&k.public_pem) {
            Ok(key) => Ok(crate::capsule::verify::Trusted { name: k.name, key }),
            Err(e) => Err(EngineError::error(format!(
                "key `{}` in the store: {e}",
                k.name
            ))),
        })
        .collect()
}

/// Who asks for a decision that acts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Asker {
    /// A key of this workspace, by name: whoever holds its private half
    /// signs the request, and is its owner's email.
    Key(String),
    /// No key: the operating-system account of the real uid, recorded as
    /// unverified.
    #[default]
    Account,
}

impl Asker {
    /// `--key NAME`, or the account.
    pub fn from_key(key: Option<String>) -> Asker {
        key.map_or(Asker::Account, Asker::Key)
    }
}

/// A requester ready to sign what it asks: its identity is known before
/// the gates run (four-eyes needs it), the signature is made once the
/// decision's clock and digest are.
pub struct Prover {
    identity: String,
    key: Option<PrivateKey>,
    uid: Option<u32>,
}

/// The operating-system account of the real uid (not `$USER`, which
/// anyone can set): (uid, name).
pub fn os_account() -> (u32, String) {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name);
    (uid.as_raw(), name)
}

/// Loads what `asker` proves itself with: the named key's private half and
/// its owner's email from the store, or the account.
pub fn prove(ws: &Workspace, asker: &Asker) -> Result<Prover, EngineError> {
    match asker {
        Asker::Key(name) => {
            if name == SEALING_KEY {
                return Err(EngineError::usage(format!(
                    "`{SEALING_KEY}` is the workspace's sealing key; it seals capsules and asks for nothing"
                ))
                .hint("sign the request with your own key: `--key NAME` (`stella key list`)"));
            }
            let (key, rec) = load_private(ws, name)?;
            Ok(Prover {
                identity: rec.email,
                key: Some(key),
                uid: None,
            })
        }
        Asker::Account => {
            let (uid, name) = os_account();
            Ok(Prover {
                identity: name,
                key: None,
                uid: Some(uid),
            })
        }
    }
}

impl Prover {
    /// Whether the requester holds a key of the workspace.
    pub fn verified(&self) -> bool {
        self.key.is_some()
    }

    /// How the requester is recorded in `requested_by`: the key owner's
    /// email, or `unverified: uid NAME`.
    pub fn requested_by(&self) -> String {
        if self.verified() {
            self.identity.clone()
        } else {
            format!(
                "{}{}",
                crate::domain::requester::UNVERIFIED_PREFIX,
                self.identity
            )
        }
    }

    /// Signs the request, with a fresh nonce; the record the capsule holds.
    pub fn sign(
        &self,
        asked: &crate::domain::requester::Asked<'_>,
    ) -> Result<crate::domain::requester::Requester, EngineError> {
        use crate::domain::requester::Requester;
        use base64::Engine as _;
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce)
            .map_err(|e| EngineError::error(format!("no randomness for a request nonce: {e}")))?;
        let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let Some(key) = &self.key else {
            return Ok(Requester {
                identity: self.identity.clone(),
                keyid: None,
                public_key: None,
                signature: None,
                uid: self.uid,
                nonce,
                verified: false,
            });
        };
        let message = Requester::message(asked, &nonce, &self.identity);
        let public = key.public();
        Ok(Requester {
            identity: self.identity.clone(),
            keyid: Some(public.keyid().to_owned()),
            public_key: Some(public.to_pem()),
            signature: Some(base64::engine::general_purpose::STANDARD.encode(key.sign(&message))),
            uid: None,
            nonce,
            verified: true,
        })
    }
}
