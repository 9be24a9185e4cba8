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
