//! Finding a workspace (the folder holding `stella.toml`) and the paths
//! stella keeps under `.stella/`.

use std::path::{Path, PathBuf};

use crate::config::{CONFIG_FILE, Config, ConfigError};
use crate::store::{EvidenceStore, Store, StoreError};

/// The folder under the workspace root that holds stella's own state.
pub const STATE_DIR: &str = ".stella";

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("not inside a stella workspace (no {CONFIG_FILE} in {} or any folder above it)", .searched.display())]
    NotFound { searched: PathBuf },
    #[error("{} has no {CONFIG_FILE}", .dir.display())]
    NoConfig { dir: PathBuf },
    #[error("cannot create {}: {source}", .path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// `explicit` (from `--workspace` or `STELLA_WORKSPACE`) must hold a
    /// `stella.toml`; otherwise search upward from `start`, as git does.
    pub fn find(explicit: Option<&Path>, start: &Path) -> Result<Workspace, WorkspaceError> {
        if let Some(dir) = explicit {
            let dir = absolute(dir, start);
            return if dir.join(CONFIG_FILE).is_file() {
                Ok(Workspace { root: dir })
            } else {
                Err(WorkspaceError::NoConfig { dir })
            };
        }
        let start = absolute(start, start);
        start
            .ancestors()
            .find(|d| d.join(CONFIG_FILE).is_file())
            .map(|d| Workspace {
                root: d.to_path_buf(),
            })
            .ok_or(WorkspaceError::NotFound { searched: start })
    }

    /// A workspace at `root`, whether or not it exists yet (for `init`).
    pub fn at(root: PathBuf) -> Workspace {
        Workspace { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    pub fn db_path(&self) -> PathBuf {
        self.state_dir().join("stella.db")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.state_dir().join("logs")
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.state_dir().join("keys")
    }

    pub fn evidence(&self) -> EvidenceStore {
        EvidenceStore::new(self.state_dir().join("evidence"))
    }

    pub fn load_config(&self) -> Result<Config, ConfigError> {
        Config::load(&self.config_path())
    }

    /// Creates `.stella/` and its folders if missing (keys 0700).
    pub fn ensure_state_dirs(&self) -> Result<(), WorkspaceError> {
        for dir in [
            self.state_dir(),
            self.logs_dir(),
            self.keys_dir(),
            self.state_dir().join("evidence").join("sha256"),
        ] {
            std::fs::create_dir_all(&dir).map_err(|source| WorkspaceError::Create {
                path: dir.clone(),
                source,
            })?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let keys = self.keys_dir();
            std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700))
                .map_err(|source| WorkspaceError::Create { path: keys, source })?;
        }
        Ok(())
    }

    pub fn open_store(&self) -> Result<Store, StoreError> {
        Store::open(&self.db_path())
    }

    /// The store for reading only: what `status`, lists, `show` and the
    /// workbench's data load use. Its connection is opened
    /// `SQLITE_OPEN_READ_ONLY`, and `ReadStore` hands out `&Store` only,
    /// while every write method of `Store` takes `&mut self`: a read can
    /// neither call a write nor, through `conn()`, commit one.
    ///
    /// A store that is missing or on an older schema is created or
    /// migrated once (a schema change, not a change of what it records),
    /// then reopened read-only; on a read-only disk it is read as
    /// `Store::open` reads it there (SQLite's immutable snapshot).
    pub fn read_store(&self) -> Result<ReadStore, StoreError> {
        let path = self.db_path();
        if let Ok(store) = Store::open_reader(&path) {
            return Ok(ReadStore(store));
        }
        // Missing, older, or where SQLite cannot even read-lock (a
        // read-only folder holding a WAL database): opened as
        // `Store::open` does — created or migrated where it can be, else
        // its immutable snapshot reader — then read through this type.
        let store = Store::open(&path)?;
        match Store::open_reader(&path) {
            Ok(reader) => Ok(ReadStore(reader)),
            Err(_) => Ok(ReadStore(store)),
        }
    }
}

/// A read-only view of the store: derefs to `Store` for its reading
/// methods; there is no `DerefMut`, so its `&mut self` writers are out of
/// reach.
pub struct ReadStore(Store);

impl std::ops::Deref for ReadStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.0
    }
}

fn absolute(p: &Path, base: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    joined.canonicalize().unwrap_or(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_store_refuses_writes_and_brings_an_old_schema_up_first() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::at(dir.path().to_owned());
        ws.ensure_state_dirs().unwrap();
        // Missing: created once, then read only.
        let store = ws.read_store().unwrap();
        assert!(store.promotions(None).unwrap().is_empty());
        let e = store
            .conn()
            .execute(
                "INSERT INTO locks (environment, promotion_id, holder, pid, acquired_at) VALUES ('dev', 1, 'x', 1, 'now')",
                [],
            )
            .unwrap_err();
        assert!(e.to_string().contains("readonly"), "{e}");
        drop(store);
        // An older schema is migrated before it is read.
        let conn = rusqlite::Connection::open(ws.db_path()).unwrap();
        conn.pragma_update(None, "user_version", Store::schema_version() - 1)
            .unwrap();
        // The newest migration undone: 0012's table.
        conn.execute_batch("DROP TABLE promotion_members").unwrap();
        drop(conn);
        let store = ws.read_store().unwrap();
        let v: i64 = store
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, Store::schema_version());
    }

    #[test]
    fn finds_the_workspace_above() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join(CONFIG_FILE), "").unwrap();
        let deep = root.join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(Workspace::find(None, &deep).unwrap().root(), root);
        assert_eq!(
            Workspace::find(Some(Path::new("../..")), &deep)
                .err()
                .map(|e| e.to_string()),
            Some(format!("{} has no {CONFIG_FILE}", root.join("a").display()))
        );
        assert_eq!(Workspace::find(Some(&root), &deep).unwrap().root(), root);
    }
}
