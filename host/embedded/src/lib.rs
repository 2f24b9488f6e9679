//! Weir's embedded backends: everything the pipeline needs on one machine with
//! nothing installed.
//!
//! - [`LocalObjectStore`]: objects as files under a root directory, written
//!   atomically (temporary file, then rename), never outside the root.
//! - [`SqliteState`]: one SQLite database (bundled, no server) for dead letters
//!   and batch metadata; stream, checkpoints and the plugin registry join it.
//!
//! SQLite calls block, so they run on tokio's blocking pool; the connection is
//! shared behind a mutex (SQLite serialises writers anyway).

mod objects;
mod state;

pub use objects::LocalObjectStore;
pub use state::SqliteState;
