//! Weir's embedded backends: everything the pipeline needs on one machine with
//! nothing installed.
//!
//! - [`LocalObjectStore`]: objects as files under a root directory, written
//!   atomically (a file without a name, then linked at its key), never outside
//!   the root.
//! - [`SqliteState`]: one SQLite database (bundled, no server) for dead letters,
//!   batch metadata, the stream and checkpoints; the plugin registry joins it.
//!   The metrics table has a database of its own beside it.
//! - [`EmbeddedRegistry`]: plugin versions (components in the object store),
//!   bindings with their history, the audit log.
//! - [`EmbeddedStream`]: Kinesis semantics (shards by MD5 hash-key range,
//!   sequence numbers, checkpoints, retention, per-shard write limits) in it.
//!
//! File and SQLite calls block: they run on tokio's blocking pool when they
//! wait for the disk, inline when nothing is fsynced
//! (`Durability::run_blocking`). A database's connection is shared behind a
//! mutex (SQLite serialises writers anyway).

mod checkpoints;
mod key_metrics;
mod objects;
mod registry;
mod state;
mod stream;

/// How far a write is durable when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// On disk (fsync; SQLite `synchronous = FULL`): survives a power loss.
    /// The default, as a checkpoint promises it.
    #[default]
    Disk,
    /// Handed to the OS (no fsync; SQLite `synchronous = NORMAL`): survives
    /// the process crashing, not the machine. For scratch pipelines and
    /// benchmarks against tools that never fsync.
    Os,
}

impl Durability {
    /// Runs file or database work that blocks. When it waits for the disk
    /// (fsync), on tokio's blocking pool. When nothing is fsynced it is a copy
    /// into the page cache, tens of microseconds, less than handing it to a
    /// pool thread and back costs: it runs inline. (Measured with `weir bench
    /// pipeline`, tmpfs, no fsync: two-stage one core 34,000 → 46,000
    /// records/s, single-stage two cores 105,000-119,000 → 124,000-150,000.)
    pub(crate) async fn run_blocking<T: Send + 'static>(
        self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        match self {
            Durability::Os => Ok(work()),
            Durability::Disk => tokio::task::spawn_blocking(work).await,
        }
    }
}

/// A database connection's lock. A panic while it was held leaves nothing
/// half-done that SQLite itself does not roll back, so a poisoned lock is
/// taken as it is.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Lowers the calling thread's CPU priority to nice 10, below the batches'
/// (on Linux the nice value is the calling thread's, not the process's), for
/// the background threads: the metrics flush, the checkpoints. Where that is
/// refused, the thread runs as is.
pub(crate) fn lower_priority(thread: &str) {
    if let Err(e) = rustix::process::setpriority_process(None, 10) {
        tracing::debug!(thread, error = %e, "background thread keeps its priority");
    }
}

pub use objects::LocalObjectStore;
pub use registry::{EmbeddedRegistry, sha256_hex};
pub use state::SqliteState;
pub use stream::{Clock, EmbeddedStream, StreamSettings};
