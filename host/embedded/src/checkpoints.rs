//! Checkpoints of the state database on a thread of their own.
//!
//! SQLite's automatic checkpoint runs inside the commit that grew the WAL
//! past its limit, under the connection's lock, which every shard's batches
//! commit under: on two cores the other shard waited the whole checkpoint,
//! 6-8 ms, a few times a run (`weir bench pipeline`'s worker, lock waits
//! timed). Instead the connection's WAL hook wakes a thread that checkpoints
//! through a connection of its own: in WAL mode a passive checkpoint copies
//! committed pages into the database while writers go on appending.
//!
//! If that thread falls behind (or is gone), the commit that finds the WAL
//! [`Thresholds::inline_pages`] long checkpoints it itself, as SQLite would,
//! so the WAL never grows without bound.
//!
//! With one core there is no thread: the checkpoint would take that core
//! in the middle of a batch all the same (a checkpoint is one SQLite call,
//! which cannot yield; at nice 10 it still runs a scheduler tick at a time),
//! and did: the one-core p99 went from 1.6-1.8 to 1.8-2.2 ms (6 alternating
//! runs each).

use std::ffi::c_int;
use std::path::Path;
use std::sync::mpsc::{SyncSender, TrySendError};

use rusqlite::Connection;

/// WAL lengths, in pages, that set off a checkpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thresholds {
    /// Wake the checkpoint thread.
    pub(crate) background_pages: c_int,
    /// Checkpoint in the commit itself.
    pub(crate) inline_pages: c_int,
}

impl Thresholds {
    /// ~16 MiB of WAL: with SQLite's default (1,000 pages) re-copying pages
    /// took much of the pipeline's time.
    const PAGES: c_int = 4_000;

    /// On the thread past [`Self::PAGES`] where this process may use more
    /// than one core, inline at four times that; with one core, inline.
    pub(crate) fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::for_cores(cores)
    }

    fn for_cores(cores: usize) -> Self {
        if cores > 1 {
            Self {
                background_pages: Self::PAGES,
                inline_pages: 4 * Self::PAGES,
            }
        } else {
            Self {
                background_pages: c_int::MAX,
                inline_pages: Self::PAGES,
            }
        }
    }

    fn in_background(self) -> bool {
        self.background_pages < self.inline_pages
    }
}

/// Hooks `state`, the connection that writes the database at `path`, to
/// checkpoint it past `thresholds`, starting the checkpoint thread if they
/// call for one. The thread ends when `state` is closed (its hook holds the
/// thread's wake-up).
pub(crate) fn start(
    path: &Path,
    state: &mut Connection,
    thresholds: Thresholds,
) -> Result<(), StartError> {
    let wake = if thresholds.in_background() {
        Some(spawn(path)?)
    } else {
        None
    };
    let database = path.display().to_string();
    state
        .wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: c_int| {
            if pages >= thresholds.inline_pages {
                // The commit stands whatever happens here (an error returned
                // would report it failed); the next commit tries again.
                report(&database, wal.checkpoint());
            } else if pages >= thresholds.background_pages
                && let Some(wake) = &wake
            {
                match wake.try_send(()) {
                    // Full: a checkpoint is already asked for.
                    Ok(()) | Err(TrySendError::Full(())) => {}
                    // Gone: the commits checkpoint at the inline threshold.
                    Err(TrySendError::Disconnected(())) => {}
                }
            }
            Ok(())
        }))
        .map_err(StartError::Open)
}

/// Starts the thread that checkpoints the database at `path` through a
/// connection of its own when woken.
fn spawn(path: &Path) -> Result<SyncSender<()>, StartError> {
    let own = Connection::open(path).map_err(StartError::Open)?;
    own.execute_batch("PRAGMA busy_timeout = 5000;")
        .map_err(StartError::Open)?;
    let (wake, requests) = std::sync::mpsc::sync_channel::<()>(1);
    let database = path.display().to_string();
    std::thread::Builder::new()
        .name("weir-checkpoint".into())
        .spawn(move || {
            crate::lower_priority("checkpoint");
            while requests.recv().is_ok() {
                report(
                    &database,
                    own.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())),
                );
            }
        })
        .map_err(StartError::Thread)?;
    Ok(wake)
}

/// Logs a failed checkpoint. Busy is not a failure: the other side (the
/// thread, or a commit past the inline threshold) is checkpointing.
fn report(database: &str, result: rusqlite::Result<()>) {
    match result {
        Ok(()) => {}
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DatabaseBusy =>
        {
            tracing::debug!(database, "checkpoint skipped: another is running");
        }
        Err(e) => {
            tracing::warn!(database, error = %e, "checkpoint failed; tried again at the next");
        }
    }
}

#[derive(Debug)]
pub(crate) enum StartError {
    Open(rusqlite::Error),
    Thread(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A database in WAL mode, and its path.
    fn wal_database(dir: &Path) -> (std::path::PathBuf, Connection) {
        let path = dir.join("state.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE t (body BLOB NOT NULL);",
        )
        .unwrap();
        (path, c)
    }

    fn main_file_bytes(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    /// Commits ~400 KB, 100 pages and more, in 50 commits.
    fn write_pages(c: &Connection) {
        for _ in 0..50 {
            c.execute("INSERT INTO t (body) VALUES (zeroblob(8000))", [])
                .unwrap();
        }
    }

    #[test]
    fn the_thread_copies_the_wal_into_the_database_without_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut c) = wal_database(dir.path());
        let before = main_file_bytes(&path);
        let thresholds = Thresholds {
            background_pages: 10,
            inline_pages: c_int::MAX,
        };
        start(&path, &mut c, thresholds).unwrap();
        write_pages(&c);
        // Until a checkpoint the pages are in the WAL only; the thread's
        // checkpoint grows the main file.
        let deadline = Instant::now() + Duration::from_secs(10);
        while main_file_bytes(&path) < before + 300_000 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(main_file_bytes(&path) >= before + 300_000);
    }

    #[test]
    fn a_commit_checkpoints_itself_past_the_inline_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut c) = wal_database(dir.path());
        // No checkpoint thread could be woken in time: the background
        // threshold is never reached.
        let thresholds = Thresholds {
            background_pages: c_int::MAX,
            inline_pages: 10,
        };
        start(&path, &mut c, thresholds).unwrap();
        write_pages(&c);
        assert!(
            main_file_bytes(&path) >= 300_000,
            "checkpointed by the commits"
        );
    }

    #[test]
    fn with_one_core_commits_checkpoint_themselves_and_no_thread_starts() {
        let one = Thresholds::for_cores(1);
        assert!(!one.in_background());
        assert_eq!(one.inline_pages, Thresholds::PAGES);
        let two = Thresholds::for_cores(2);
        assert!(two.in_background());
        assert_eq!(
            (two.background_pages, two.inline_pages),
            (Thresholds::PAGES, 4 * Thresholds::PAGES)
        );
    }

    #[test]
    fn below_both_thresholds_the_wal_keeps_the_pages() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut c) = wal_database(dir.path());
        let before = main_file_bytes(&path);
        start(&path, &mut c, Thresholds::for_cores(2)).unwrap();
        write_pages(&c);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(main_file_bytes(&path), before);
    }
}
