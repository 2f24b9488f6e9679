//! Weir's embedded backends: everything the pipeline needs on one machine with
//! nothing installed.
//!
//! - [`LocalObjectStore`]: objects as files under a root directory, written
//!   atomically (temporary file, then rename), never outside the root.
//! - [`SqliteState`]: one SQLite database (bundled, no server) for dead letters,
//!   batch metadata, the stream and checkpoints; the plugin registry joins it.
//! - [`EmbeddedRegistry`]: plugin versions (components in the object store),
//!   bindings with their history, the audit log.
//! - [`EmbeddedStream`]: Kinesis semantics (shards by MD5 hash-key range,
//!   sequence numbers, checkpoints, retention, per-shard write limits) in it.
//!
//! SQLite calls block, so they run on tokio's blocking pool; the connection is
//! shared behind a mutex (SQLite serialises writers anyway).

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

pub use objects::LocalObjectStore;
pub use registry::{EmbeddedRegistry, sha256_hex};
pub use state::SqliteState;
pub use stream::{Clock, EmbeddedStream, StreamSettings};
