//! The embedded backend's key store: `keys.json` in the data directory,
//! readable and writable only by its owner (0600), changed under an
//! exclusive `flock` of `keys.lock` and replaced atomically (written to a
//! temporary file, synced, renamed, the directory synced). It lives outside
//! the storage engine so that `cubed keys` can change it while a server has
//! the engine open; servers re-read it (see `service::auth`).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::model::access::KeyRecord;
use crate::storage::{KeyStore, StoreError};

/// The key file of one data directory.
pub struct KeyFile {
    dir: PathBuf,
}

/// The file's format: a version and the records.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Document {
    version: u32,
    keys: Vec<KeyRecord>,
}

use crate::limits::MAX_KEY_FILE_BYTES as MAX_FILE_BYTES;

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Engine(format!("{what} {}: {e}", path.display()))
}

impl KeyFile {
    /// The key file of `dir` (created with the directory on first write).
    pub fn in_dir(dir: &Path) -> Self {
        KeyFile {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("keys.json")
    }

    fn read(&self) -> Result<Document, StoreError> {
        self.read_doc(self.dir.join("keys.lock").exists())
    }

    /// With `made_here` (keys were made in this directory once: the lock
    /// file stays), a missing key file is damage, never "no keys", which
    /// would open the server.
    fn read_doc(&self, made_here: bool) -> Result<Document, StoreError> {
        let path = self.path();
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && made_here => {
                return Err(StoreError::Corrupt(format!(
                    "{} is missing, though keys were made in {} (keys.lock exists; \
                     restore the file, or delete keys.lock to start without keys)",
                    path.display(),
                    self.dir.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Document::default()),
            Err(e) => return Err(io("reading", &path, e)),
        };
        let len = file.metadata().map_err(|e| io("reading", &path, e))?.len();
        if len > MAX_FILE_BYTES {
            return Err(StoreError::Corrupt(format!(
                "{} is larger than {MAX_FILE_BYTES} bytes",
                path.display()
            )));
        }
        serde_json::from_reader(std::io::BufReader::new(file))
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))
    }

    /// Runs `change` on the document under the lock and writes the result.
    fn change<T>(&self, change: impl FnOnce(&mut Document) -> T) -> Result<T, StoreError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io("creating", &self.dir, e))?;
        let lock_path = self.dir.join("keys.lock");
        let made_here = lock_path.exists() && self.path().exists();
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("opening", &lock_path, e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io("locking", &lock_path, e.into()))?;
        let mut doc = self.read_doc(made_here)?;
        doc.version = 1;
        let out = change(&mut doc);
        let text = serde_json::to_vec_pretty(&doc)
            .map_err(|e| StoreError::Engine(format!("encoding keys: {e}")))?;
        let tmp = self.dir.join("keys.json.tmp");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| io("writing", &tmp, e))?;
            f.write_all(&text).map_err(|e| io("writing", &tmp, e))?;
            f.sync_all().map_err(|e| io("syncing", &tmp, e))?;
        }
        let path = self.path();
        std::fs::rename(&tmp, &path).map_err(|e| io("replacing", &path, e))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("syncing", &self.dir, e))?;
        // The lock is released when `lock` is dropped.
        drop(lock);
        Ok(out)
    }
}

impl KeyStore for KeyFile {
    fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self.read()?.keys)
    }

    fn add_key(&self, record: KeyRecord) -> Result<(), StoreError> {
        let id = record.id.clone();
        let added = self.change(move |doc| {
            if doc.keys.iter().any(|k| k.id == record.id) {
                false
            } else {
                doc.keys.push(record);
                true
            }
        })?;
        if added {
            Ok(())
        } else {
            Err(StoreError::Engine(format!("a key with id {id} exists")))
        }
    }

    fn revoke_key(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.change(|doc| {
            match doc
                .keys
                .iter_mut()
                .find(|k| k.id == id && k.revoked_ms.is_none())
            {
                Some(k) => {
                    k.revoked_ms = Some(now_ms);
                    true
                }
                None => false,
            }
        })
    }
}
