//! Where backups live, behind a small trait so object storage can follow. The filesystem
//! implementation writes atomically: into a temporary file, synced, then renamed, so a crash
//! leaves either the old state or the new one, never half a file.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// A place that stores named blobs (`backups/<id>/manifest.json`, segment files).
pub trait Storage: Send + Sync {
    /// Write `name` whole, atomically.
    fn put(&self, name: &str, write: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>) -> std::io::Result<()>;
    /// Read `name`.
    fn get(&self, name: &str) -> std::io::Result<Box<dyn Read + Send>>;
    /// Whether `name` exists (a finished, renamed file).
    fn exists(&self, name: &str) -> bool;
    /// Names directly under `prefix/` (under the root for `""`).
    fn list(&self, prefix: &str) -> std::io::Result<Vec<String>>;
    /// Delete `prefix` and everything under it (a backup, for retention); absent is not an error.
    fn remove_all(&self, prefix: &str) -> std::io::Result<()>;
}

/// Backups in a directory.
#[derive(Debug, Clone)]
pub struct FsStorage {
    root: PathBuf,
}

impl FsStorage {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, name: &str) -> std::io::Result<PathBuf> {
        // Names are ours, but never let one climb out of the root.
        if name.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad storage name {name:?}")));
        }
        Ok(self.root.join(name))
    }
}

fn sync_dir(dir: &Path) {
    // Durability of the rename; not every filesystem lets a directory be opened and synced.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Storage for FsStorage {
    fn put(&self, name: &str, write: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>) -> std::io::Result<()> {
        let path = self.path(name)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| self.root.clone());
        fs::create_dir_all(&dir)?;
        let tmp = path.with_extension("tmp");
        let file = File::create(&tmp)?;
        let mut out = BufWriter::new(file);
        let written = write(&mut out).and_then(|()| out.flush());
        let file = match (written, out.into_inner()) {
            (Ok(()), Ok(f)) => f,
            (Err(e), _) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
            (Ok(()), Err(e)) => {
                let _ = fs::remove_file(&tmp);
                return Err(e.into_error());
            }
        };
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(&dir);
        Ok(())
    }

    fn get(&self, name: &str) -> std::io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(std::io::BufReader::new(File::open(self.path(name)?)?)))
    }

    fn exists(&self, name: &str) -> bool {
        self.path(name).is_ok_and(|p| p.is_file())
    }

    fn list(&self, prefix: &str) -> std::io::Result<Vec<String>> {
        let dir = if prefix.is_empty() { self.root.clone() } else { self.path(prefix)? };
        let mut names = Vec::new();
        match fs::read_dir(&dir) {
            Ok(entries) => {
                for e in entries {
                    let name = e?.file_name().to_string_lossy().into_owned();
                    if !name.ends_with(".tmp") {
                        names.push(name);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        names.sort();
        Ok(names)
    }

    fn remove_all(&self, prefix: &str) -> std::io::Result<()> {
        match fs::remove_dir_all(self.path(prefix)?) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => {
                sync_dir(&self.root);
                other
            }
        }
    }
}
