//! Writing a batch's objects so that a reader (or a crash) sees an old
//! object or the new one, never a torn one.
//!
//! Each object's bytes go to a file without a name first, and the file is
//! then linked at its key: on Linux an unnamed file (`O_TMPFILE`, linked by
//! its descriptor), elsewhere, or where the filesystem or kernel refuses
//! that, a named temporary file renamed over the key. The unnamed file costs
//! less (no temporary entry to make and then rename away: 20 objects per
//! batch of 100 records, the write path's largest cost, went from ~15 to
//! ~12.5 µs each on tmpfs) and leaves nothing behind after a crash.

use std::collections::BTreeSet;
use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tempfile::NamedTempFile;
use weir_core::backend::BackendError;

use super::io_error;
use crate::Durability;

/// New objects are readable as files made by any other program are: mode
/// 0666 less the process's umask (tempfile's own default is 0600).
const OBJECT_MODE: u32 = 0o666;

/// Prefix of the named temporary files (the listing skips them).
pub(super) const TEMPORARY_PREFIX: &str = ".tmp";

/// Writes the objects. On [`Durability::Disk`] each file's bytes are on disk
/// before it is linked, and the links (entries in their directories) before
/// this returns. In phases, all files at a time, their syncs waiting
/// together (`sync_together`), so that a journaling filesystem commits a few
/// times per batch rather than once per file. Fails on the first object it
/// cannot write, naming it.
///
/// `unnamed` says whether unnamed files still work under this root; it is
/// cleared the first time the filesystem or kernel refuses one.
pub(super) fn write_objects(
    root: &Path,
    objects: &[(PathBuf, Vec<u8>)],
    durability: Durability,
    unnamed: &AtomicBool,
) -> Result<(), BackendError> {
    // Only on an error: the message names the file, and formatting its
    // path for every object that succeeds would cost a batch ~40 formats.
    let failed = |what: &str, path: &Path, e: std::io::Error| {
        io_error(format!("{what} {}", path.display()), e)
    };
    let sync = durability == Durability::Disk;
    // The directories whose entries change, when they are to be synced.
    let mut dirs = BTreeSet::new();
    let mut staged = Vec::with_capacity(objects.len());
    for (path, body) in objects {
        let dir = path.parent().unwrap_or(Path::new("."));
        let (file, created) =
            stage(dir, body, unnamed).map_err(|e| failed("writing object", path, e))?;
        staged.push((file, path));
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
        sync_together(&staged, |(file, path)| {
            file.file()
                .sync_all()
                .map_err(|e| failed("syncing object", path, e))
        })?;
    }
    for (file, path) in staged {
        file.publish(path, unnamed)
            .map_err(|e| failed("writing object", path, e))?;
    }
    let dirs: Vec<_> = dirs.into_iter().collect();
    sync_together(&dirs, |dir| {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| failed("syncing directory", dir, e))
    })
}

/// At most this many syncs wait at once.
const SYNCS_AT_ONCE: usize = 8;

/// A sync that takes longer waited for a device, and the others are worth
/// threads of their own. Starting a thread costs ~20 µs; a sync that finds
/// nothing to wait for (tmpfs, or the page cache already clean) ~1 µs.
const WAITED_FOR_A_DEVICE: Duration = Duration::from_micros(50);

/// Runs `sync` on every item; when the first waited for a device, the others
/// several at a time on threads of their own. Syncs that wait together share
/// the filesystem's journal commits and the device's queue, where one after
/// another each waits for its own: a batch's 20 objects and 10 directories
/// on ext4 took 4.6-5.6 ms synced in turn, 2.9-3.0 ms 4 at a time, 2.7-2.8
/// ms 10 at a time (a model of the batch, this VM's disk). Where syncs cost
/// nothing, threads would double a batch's time (tmpfs, measured): they run
/// in turn. Returns the first failure.
fn sync_together<T: Sync>(
    items: &[T],
    sync: impl Fn(&T) -> Result<(), BackendError> + Sync,
) -> Result<(), BackendError> {
    let Some((first, rest)) = items.split_first() else {
        return Ok(());
    };
    let started = Instant::now();
    sync(first)?;
    if rest.len() <= 1 || started.elapsed() < WAITED_FOR_A_DEVICE {
        return rest.iter().try_for_each(&sync);
    }
    let per_thread = rest.len().div_ceil(SYNCS_AT_ONCE);
    let sync = &sync;
    std::thread::scope(|scope| {
        let mut waiting = Vec::new();
        for share in rest.chunks(per_thread) {
            let work = move || share.iter().try_for_each(sync);
            match std::thread::Builder::new()
                .name("weir-sync".into())
                .spawn_scoped(scope, work)
            {
                Ok(thread) => waiting.push(thread),
                // No thread to be had: this one syncs its share itself.
                Err(_) => share.iter().try_for_each(sync)?,
            }
        }
        waiting.into_iter().try_for_each(|thread| {
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    })
}

/// An object's bytes, written, not yet at its key.
enum Staged {
    /// A file without a name, linked at the key on publishing.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Unnamed(File),
    /// A temporary file beside the key, renamed over it on publishing.
    Named(NamedTempFile),
}

/// The staged bytes of `body` in `dir`, and whether `dir` had to be made.
fn stage(dir: &Path, body: &[u8], unnamed: &AtomicBool) -> std::io::Result<(Staged, bool)> {
    // The partition's directory exists for all but an hour's first object:
    // make it only when the file cannot be made without it (a
    // `create_dir_all` per object was two syscalls per object for nothing).
    match stage_in_existing(dir, body, unnamed) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            Ok((stage_in_existing(dir, body, unnamed)?, true))
        }
        staged => Ok((staged?, false)),
    }
}

fn stage_in_existing(dir: &Path, body: &[u8], unnamed: &AtomicBool) -> std::io::Result<Staged> {
    #[cfg(target_os = "linux")]
    if unnamed.load(Ordering::Relaxed) {
        match unnamed_file(dir) {
            Ok(mut file) => {
                file.write_all(body)?;
                return Ok(Staged::Unnamed(file));
            }
            Err(e) if unnamed_refused(&e) => stop_unnamed(unnamed, dir, &e),
            Err(e) => return Err(e),
        }
    }
    let mut file = temporary_builder().tempfile_in(dir)?;
    file.write_all(body)?;
    Ok(Staged::Named(file))
}

fn temporary_builder() -> tempfile::Builder<'static, 'static> {
    let mut builder = tempfile::Builder::new();
    builder
        .prefix(TEMPORARY_PREFIX)
        .permissions(Permissions::from_mode(OBJECT_MODE));
    builder
}

fn stop_unnamed(unnamed: &AtomicBool, dir: &Path, error: &std::io::Error) {
    if unnamed.swap(false, Ordering::Relaxed) {
        tracing::info!(
            dir = %dir.display(),
            %error,
            "unnamed files refused here: objects go through named temporary files from now on"
        );
    }
}

impl Staged {
    fn file(&self) -> &File {
        match self {
            Staged::Unnamed(file) => file,
            Staged::Named(file) => file.as_file(),
        }
    }

    /// Puts the file at `path`, replacing what was there in one step.
    fn publish(self, path: &Path, unnamed: &AtomicBool) -> std::io::Result<()> {
        match self {
            Staged::Named(file) => file.persist(path).map(drop).map_err(|e| e.error),
            #[cfg(target_os = "linux")]
            Staged::Unnamed(file) => publish_unnamed(&file, path, unnamed),
            #[cfg(not(target_os = "linux"))]
            Staged::Unnamed(_) => unreachable!("unnamed files are made on Linux only"),
        }
    }
}

#[cfg(target_os = "linux")]
fn unnamed_file(dir: &Path) -> std::io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        dir,
        OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(OBJECT_MODE),
    )?;
    Ok(File::from(fd))
}

/// The filesystem cannot make unnamed files (`EOPNOTSUPP`), or the kernel
/// predates them and took the flag for a directory open (`EISDIR`, `EINVAL`).
#[cfg(target_os = "linux")]
fn unnamed_refused(error: &std::io::Error) -> bool {
    use rustix::io::Errno;
    [Errno::OPNOTSUPP, Errno::ISDIR, Errno::INVAL]
        .iter()
        .any(|errno| error.raw_os_error() == Some(errno.raw_os_error()))
}

/// Links the unnamed `file` at `path`. A link never replaces an entry, so an
/// object written again (a retried batch) is linked under a temporary name
/// and renamed over the old one.
#[cfg(target_os = "linux")]
fn publish_unnamed(file: &File, path: &Path, unnamed: &AtomicBool) -> std::io::Result<()> {
    match link(file, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let dir = path.parent().unwrap_or(Path::new("."));
            temporary_builder()
                .make_in(dir, |temporary| link(file, temporary))?
                .persist(path)
                .map_err(|e| e.error)
        }
        // Kernels before 6.10 link a descriptor (`AT_EMPTY_PATH`) only for a
        // privileged process: link through /proc once, then stop making
        // unnamed files (the /proc link costs what the rename saves).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            link_through_proc(file, path)?;
            stop_unnamed(unnamed, path.parent().unwrap_or(path), &e);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(target_os = "linux")]
fn link(file: &File, path: &Path) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, CWD};
    rustix::fs::linkat(file, "", CWD, path, AtFlags::EMPTY_PATH)?;
    Ok(())
}

#[cfg(target_os = "linux")]
fn link_through_proc(file: &File, path: &Path) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, CWD};
    use std::os::fd::AsRawFd;
    let by_descriptor = format!("/proc/self/fd/{}", file.as_raw_fd());
    rustix::fs::linkat(
        CWD,
        by_descriptor.as_str(),
        CWD,
        path,
        AtFlags::SYMLINK_FOLLOW,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().mode() & 0o777
    }

    /// Both ways of staging: writing, overwriting, no temporary file left,
    /// the mode of a file any program makes.
    #[test]
    fn objects_are_written_and_replaced_whole_either_way() {
        for unnamed_first in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let unnamed = AtomicBool::new(unnamed_first);
            let key_dir = dir.path().join("raw/event_type=a/hour=01");
            let path = key_dir.join("shard-1-5.jsonl");
            for body in [&b"first\n"[..], b"second, longer\n", b""] {
                let objects = [(path.clone(), body.to_vec())];
                write_objects(dir.path(), &objects, Durability::Disk, &unnamed).unwrap();
                assert_eq!(std::fs::read(&path).unwrap(), body);
            }
            let entries: Vec<_> = std::fs::read_dir(&key_dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(
                entries,
                ["shard-1-5.jsonl"],
                "unnamed first: {unnamed_first}"
            );
            let reference = dir.path().join("made-by-std");
            std::fs::write(&reference, b"x").unwrap();
            assert_eq!(
                mode(&path),
                mode(&reference),
                "unnamed first: {unnamed_first}"
            );
            // Named temporary files are never traded back for unnamed ones.
            // (Whether unnamed ones keep working depends on the machine's
            // filesystem and kernel.)
            if !unnamed_first {
                assert!(!unnamed.load(Ordering::Relaxed));
            }
        }
    }

    /// Every item synced once, in turn or on threads, and a failure
    /// reported, whichever item fails.
    #[test]
    fn syncs_run_once_each_and_report_a_failure() {
        use std::sync::atomic::AtomicUsize;
        for first_waits in [Duration::ZERO, WAITED_FOR_A_DEVICE * 2] {
            for failing in [None, Some(0), Some(7), Some(29)] {
                let synced: Vec<AtomicUsize> = (0..30).map(|_| AtomicUsize::new(0)).collect();
                let on_sync_threads = AtomicUsize::new(0);
                let items: Vec<usize> = (0..30).collect();
                let result = sync_together(&items, |&i| {
                    if i == 0 {
                        std::thread::sleep(first_waits);
                    }
                    synced[i].fetch_add(1, Ordering::Relaxed);
                    if std::thread::current().name() == Some("weir-sync") {
                        on_sync_threads.fetch_add(1, Ordering::Relaxed);
                    }
                    match failing {
                        Some(f) if f == i => Err(BackendError::permanent(
                            format!("syncing item {i}"),
                            "refused",
                        )),
                        _ => Ok(()),
                    }
                });
                let case = format!("first waits {first_waits:?}, failing {failing:?}");
                if !first_waits.is_zero() && failing != Some(0) {
                    // A slow first sync sends the others to threads.
                    assert!(on_sync_threads.load(Ordering::Relaxed) > 0, "{case}");
                }
                match failing {
                    None => {
                        result.unwrap();
                        assert!(
                            synced.iter().all(|n| n.load(Ordering::Relaxed) == 1),
                            "{case}"
                        );
                    }
                    Some(f) => {
                        let err = result.unwrap_err();
                        assert!(
                            err.to_string().contains(&format!("item {f}")),
                            "{case}: {err}"
                        );
                        assert!(
                            synced.iter().all(|n| n.load(Ordering::Relaxed) <= 1),
                            "{case}"
                        );
                    }
                }
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_unnamed_file_can_be_linked_through_proc() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = match unnamed_file(dir.path()) {
            Err(e) if unnamed_refused(&e) => {
                eprintln!("skipped: this filesystem makes no unnamed files ({e})");
                return;
            }
            made => made.unwrap(),
        };
        file.write_all(b"linked").unwrap();
        let path = dir.path().join("object");
        link_through_proc(&file, &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"linked");
    }

    /// A write that fails names nothing at the key: no partial object.
    #[test]
    fn a_failed_write_leaves_the_old_object() {
        let dir = tempfile::tempdir().unwrap();
        let unnamed = AtomicBool::new(true);
        let path = dir.path().join("a/object");
        write_objects(
            dir.path(),
            &[(path.clone(), b"old".to_vec())],
            Durability::Os,
            &unnamed,
        )
        .unwrap();
        // The second object's directory is a file: the batch fails before
        // any object is published.
        std::fs::write(dir.path().join("blocked"), b"").unwrap();
        let objects = [
            (path.clone(), b"new".to_vec()),
            (dir.path().join("blocked/object"), b"x".to_vec()),
        ];
        let err = write_objects(dir.path(), &objects, Durability::Os, &unnamed).unwrap_err();
        assert!(err.to_string().contains("blocked/object"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }
}
