//! The journal of multi-step operations, so that after a restart an operation in flight is
//! resumed or rolled back rather than repeated. Behind a trait: a local file now, a Kubernetes
//! object later.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;

use super::operation::Operation;

/// A failed journal read or write.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read journal {}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("journal {} is corrupt: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("failed to write journal {}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("journal lock poisoned")]
    Poisoned,
}

/// Durable storage of the operations in flight.
#[async_trait]
pub trait Journal: Send + Sync + std::fmt::Debug {
    /// Every operation recorded and not yet removed.
    async fn load(&self) -> Result<Vec<Operation>, Error>;
    /// Record (or update) an operation; durable when it returns.
    async fn save(&self, op: &Operation) -> Result<(), Error>;
    /// Forget a finished operation.
    async fn remove(&self, id: &str) -> Result<(), Error>;
    /// Whether an operator approved the operation (for operations a policy marked as needing
    /// approval).
    async fn approved(&self, id: &str) -> Result<bool, Error>;
}

/// Journal in memory, for simulations and tests.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    ops: Mutex<BTreeMap<String, Operation>>,
    approvals: Mutex<std::collections::BTreeSet<String>>,
}

impl MemoryJournal {
    /// Approve an operation (what an operator does through the API or `kubectl annotate`).
    pub fn approve(&self, id: &str) -> Result<(), Error> {
        self.approvals.lock().map_err(|_| Error::Poisoned)?.insert(id.to_owned());
        Ok(())
    }
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn load(&self) -> Result<Vec<Operation>, Error> {
        Ok(self.ops.lock().map_err(|_| Error::Poisoned)?.values().cloned().collect())
    }
    async fn save(&self, op: &Operation) -> Result<(), Error> {
        self.ops.lock().map_err(|_| Error::Poisoned)?.insert(op.id.clone(), op.clone());
        Ok(())
    }
    async fn remove(&self, id: &str) -> Result<(), Error> {
        self.ops.lock().map_err(|_| Error::Poisoned)?.remove(id);
        Ok(())
    }
    async fn approved(&self, id: &str) -> Result<bool, Error> {
        Ok(self.approvals.lock().map_err(|_| Error::Poisoned)?.contains(id))
    }
}

/// Journal in a local JSON file, rewritten atomically (temporary file, fsync, rename).
#[derive(Debug)]
pub struct FileJournal {
    path: PathBuf,
    ops: Mutex<BTreeMap<String, Operation>>,
}

impl FileJournal {
    /// Open the journal at `path`, reading what a previous run left there.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let ops = match std::fs::read(path) {
            Ok(bytes) if bytes.is_empty() => BTreeMap::new(),
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Corrupt { path: path.to_owned(), message: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(Error::Read { path: path.to_owned(), source }),
        };
        Ok(Self { path: path.to_owned(), ops: Mutex::new(ops) })
    }

    fn write(&self, ops: &BTreeMap<String, Operation>) -> Result<(), Error> {
        let err = |source| Error::Write { path: self.path.clone(), source };
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(err)?;
        let bytes = serde_json::to_vec_pretty(ops).map_err(|e| err(std::io::Error::other(e)))?;
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        // The rename is durable once the directory is synced.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn update(&self, f: impl FnOnce(&mut BTreeMap<String, Operation>)) -> Result<(), Error> {
        let mut ops = self.ops.lock().map_err(|_| Error::Poisoned)?;
        let mut next = ops.clone();
        f(&mut next);
        self.write(&next)?;
        *ops = next;
        Ok(())
    }
}

#[async_trait]
impl Journal for FileJournal {
    async fn load(&self) -> Result<Vec<Operation>, Error> {
        Ok(self.ops.lock().map_err(|_| Error::Poisoned)?.values().cloned().collect())
    }
    async fn save(&self, op: &Operation) -> Result<(), Error> {
        self.update(|ops| {
            ops.insert(op.id.clone(), op.clone());
        })
    }
    async fn remove(&self, id: &str) -> Result<(), Error> {
        self.update(|ops| {
            ops.remove(id);
        })
    }
    /// An operator approves by setting `"approved": true` on the operation in the journal file
    /// (`autopilot` rewrites the file atomically, so edit it while the agent is stopped, or use
    /// the Kubernetes journal).
    async fn approved(&self, id: &str) -> Result<bool, Error> {
        let path = &self.path;
        let on_disk: BTreeMap<String, serde_json::Value> = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Corrupt { path: path.clone(), message: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(Error::Read { path: path.clone(), source }),
        };
        Ok(on_disk.get(id).and_then(|o| o.get("approved")).and_then(serde_json::Value::as_bool).unwrap_or(false))
    }
}
