//! Objects as files under a root directory.

mod write;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use weir_core::backend::{BackendError, ObjectStore};

use crate::Durability;
use write::{TEMPORARY_PREFIX, write_objects};

/// Objects as files: key `a/b/c.jsonl` is `<root>/a/b/c.jsonl`.
#[derive(Debug, Clone)]
pub struct LocalObjectStore {
    root: PathBuf,
    durability: Durability,
    /// Whether the root's filesystem still takes unnamed files (see
    /// [`write`]); shared by the store's clones.
    unnamed: Arc<AtomicBool>,
}

impl LocalObjectStore {
    /// A store rooted at `root` (created if missing), durable on disk.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BackendError> {
        Self::open_with(root, Durability::Disk)
    }

    pub fn open_with(
        root: impl Into<PathBuf>,
        durability: Durability,
    ) -> Result<Self, BackendError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| {
            BackendError::permanent(format!("creating the object root {}", root.display()), e)
        })?;
        Ok(Self {
            root,
            durability,
            unnamed: Arc::new(AtomicBool::new(true)),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How far an object is durable when a write returns.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The file of a key, or an error when the key could leave the root: only
    /// plain relative segments are allowed (no `..`, `.`, absolute paths,
    /// empty segments or backslashes).
    fn path_of(&self, key: &str) -> Result<PathBuf, BackendError> {
        // Checked on the key's own segments: `Path::components` would
        // silently drop interior `.` segments.
        let plain = !key.is_empty()
            && !key.starts_with('/')
            && !key.contains('\\')
            && !key.contains('\0')
            && key
                .split('/')
                .all(|segment| !matches!(segment, "" | "." | ".."));
        if !plain {
            return Err(BackendError::permanent(
                format!("object key {key:?}"),
                "refused: a key must be relative segments without `.` or `..`",
            ));
        }
        let relative = Path::new(key);
        debug_assert!(
            relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        );
        Ok(self.root.join(relative))
    }
}

fn io_error(what: String, e: std::io::Error) -> BackendError {
    use std::io::ErrorKind::*;
    match e.kind() {
        Interrupted | WouldBlock | TimedOut => BackendError::retryable(what, e),
        _ => BackendError::permanent(what, e),
    }
}

impl ObjectStore for LocalObjectStore {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), BackendError> {
        self.put_all(vec![(key.to_owned(), body)]).await
    }

    /// All in one blocking task: a batch's objects cost one hand-over to
    /// the blocking pool (when there is one), not one each.
    async fn put_all(&self, objects: Vec<(String, Vec<u8>)>) -> Result<(), BackendError> {
        let paths = objects
            .into_iter()
            .map(|(key, body)| Ok((self.path_of(&key)?, body)))
            .collect::<Result<Vec<_>, BackendError>>()?;
        let (root, durability, unnamed) =
            (self.root.clone(), self.durability, self.unnamed.clone());
        durability
            .run_blocking(move || write_objects(&root, &paths, durability, &unnamed))
            .await
            .map_err(|e| BackendError::retryable("writing objects", e))?
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let path = self.path_of(key)?;
        let what = || format!("reading object {}", path.display());
        let file = path.clone();
        let read = self
            .durability
            .run_blocking(move || std::fs::read(file))
            .await
            .map_err(|e| BackendError::retryable(what(), e))?;
        match read {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(what(), e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(format!("deleting object {}", path.display()), e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, BackendError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        let what = format!("listing objects under {}", root.display());
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            collect_keys(&root, &root, &prefix, &mut keys)?;
            keys.sort();
            Ok(keys)
        })
        .await
        .map_err(|e| BackendError::retryable(what.clone(), e))?
        .map_err(|e| io_error(what, e))
    }

    /// One directory read, not a walk of every key below.
    async fn list_level(&self, prefix: &str) -> Result<Vec<String>, BackendError> {
        let dir = match prefix.strip_suffix('/') {
            Some(level) => self.path_of(level)?,
            None if prefix.is_empty() => self.root.clone(),
            None => {
                return Err(BackendError::permanent(
                    format!("listing a level at {prefix:?}"),
                    "a level's prefix ends in `/`",
                ));
            }
        };
        let prefix = prefix.to_owned();
        let what = format!("listing objects under {}", dir.display());
        tokio::task::spawn_blocking(move || level_of(&dir, &prefix))
            .await
            .map_err(|e| BackendError::retryable(what.clone(), e))?
            .map_err(|e| io_error(what, e))
    }
}

/// The keys and deeper levels in `dir`, as [`ObjectStore::list_level`] names them.
fn level_of(dir: &Path, prefix: &str) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut level = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if entry.file_type()?.is_dir() {
            level.push(format!("{prefix}{name}/"));
        } else if !is_temporary(&entry.path()) {
            level.push(format!("{prefix}{name}"));
        }
    }
    level.sort();
    Ok(level)
}

fn collect_keys(
    root: &Path,
    dir: &Path,
    prefix: &str,
    keys: &mut Vec<String>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let Ok(relative) = path.strip_prefix(root) else {
            continue;
        };
        let key = relative
            .to_string_lossy()
            .replace(std::path::MAIN_SEPARATOR, "/");
        if entry.file_type()?.is_dir() {
            // Descend only where keys under the prefix can be.
            if prefix.starts_with(&format!("{key}/"))
                || key.starts_with(prefix)
                || prefix.is_empty()
            {
                collect_keys(root, &path, prefix, keys)?;
            }
        } else if key.starts_with(prefix) && !is_temporary(&path) {
            keys.push(key);
        }
    }
    Ok(())
}

/// Named temporary files not renamed over their key yet.
fn is_temporary(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(TEMPORARY_PREFIX))
}
