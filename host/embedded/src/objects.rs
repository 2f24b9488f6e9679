//! Objects as files under a root directory.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use tempfile::NamedTempFile;
use weir_core::backend::{BackendError, ObjectStore};

use crate::Durability;

/// Objects as files: key `a/b/c.jsonl` is `<root>/a/b/c.jsonl`.
#[derive(Debug, Clone)]
pub struct LocalObjectStore {
    root: PathBuf,
    durability: Durability,
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
        Ok(Self { root, durability })
    }

    pub fn root(&self) -> &Path {
        &self.root
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

/// Writes the objects, each through a temporary file renamed over it: a
/// reader (or a crash) sees an old object or the new one, never a torn one.
/// On [`Durability::Disk`] each file's bytes are on disk before its rename,
/// and the renames (entries in their directories) before this returns. In
/// phases, all files at a time, so that a journaling filesystem commits a
/// few times per batch rather than once per file: the first sync of a phase
/// commits the others' metadata with it. Fails on the first object it cannot
/// write, naming it.
fn write_objects(
    root: &Path,
    objects: &[(PathBuf, Vec<u8>)],
    durability: Durability,
) -> Result<(), BackendError> {
    let failed = |what: &str, path: &Path| {
        let what = format!("{what} {}", path.display());
        move |e: std::io::Error| io_error(what, e)
    };
    let sync = durability == Durability::Disk;
    // The directories whose entries change, when they are to be synced.
    let mut dirs = BTreeSet::new();
    let mut written = Vec::with_capacity(objects.len());
    for (path, body) in objects {
        let dir = path.parent().unwrap_or(Path::new("."));
        let (tmp, created) = write_temporary(dir, body).map_err(failed("writing object", path))?;
        written.push((tmp, path));
        if sync {
            dirs.insert(dir.to_owned());
        }
        if sync && created {
            // The new directories' own entries, up to the root.
            dirs.extend(
                dir.ancestors()
                    .skip(1)
                    .take_while(|a| a.starts_with(root))
                    .map(Path::to_owned),
            );
        }
    }
    if sync {
        for (tmp, path) in &written {
            tmp.as_file()
                .sync_all()
                .map_err(failed("syncing object", path))?;
        }
    }
    for (tmp, path) in written {
        tmp.persist(path)
            .map_err(|e| e.error)
            .map_err(failed("writing object", path))?;
    }
    for dir in &dirs {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(failed("syncing directory", dir))?;
    }
    Ok(())
}

/// A temporary file in `dir` holding `body`, and whether `dir` had to be made.
fn write_temporary(dir: &Path, body: &[u8]) -> std::io::Result<(NamedTempFile, bool)> {
    // The partition's directory exists for all but an hour's first object:
    // make it only when the temporary file cannot be made without it (a
    // `create_dir_all` per object was two syscalls per object for nothing).
    let (mut tmp, created) = match NamedTempFile::new_in(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            (NamedTempFile::new_in(dir)?, true)
        }
        made => (made?, false),
    };
    tmp.write_all(body)?;
    Ok((tmp, created))
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
        let path = self.path_of(key)?;
        let what = format!("writing object {}", path.display());
        let (root, durability) = (self.root.clone(), self.durability);
        durability
            .run_blocking(move || write_objects(&root, &[(path, body)], durability))
            .await
            .map_err(|e| BackendError::retryable(what, e))?
    }

    /// All in one blocking task: a batch's objects cost one hand-over to
    /// the blocking pool (when there is one), not one each.
    async fn put_all(&self, objects: Vec<(String, Vec<u8>)>) -> Result<(), BackendError> {
        let paths = objects
            .into_iter()
            .map(|(key, body)| Ok((self.path_of(&key)?, body)))
            .collect::<Result<Vec<_>, BackendError>>()?;
        let (root, durability) = (self.root.clone(), self.durability);
        durability
            .run_blocking(move || write_objects(&root, &paths, durability))
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

/// Files `write_atomically` has not renamed yet (tempfile's `.tmp` prefix).
fn is_temporary(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(".tmp"))
}
