//! Weir's plugin runtime: runs untrusted WebAssembly components safely and fast.
//!
//! This is the only crate that knows wasmtime, and its `bindings` module holds the only
//! `bindgen!`s (one per contract version); everything it returns is in
//! `weir-core` types.
//!
//! Design:
//! - One [`Runtime`] (one wasmtime `Engine`) per process, with epoch interruption
//!   and a pooling allocator. A background thread ticks the epoch.
//! - A plugin version is compiled once, ever: the compiled artifact is cached on
//!   disk, keyed by the component's SHA-256 and the engine's settings, and
//!   pre-instantiated in memory ([`Plugin`]).
//! - Each batch runs in a fresh `Store` with its own memory limit and CPU
//!   deadline. A trap, a limit hit or an output that breaks the contract turns
//!   into per-record rejections naming the plugin and the cause; the host goes on.
//! - Repeated faults of one plugin version open its [`breaker`].
//! - Every contract version in `wit/` that [`SUPPORTED_CONTRACTS`] lists is
//!   run; a plugin is called through the newest it exports.

mod bindings;
pub mod breaker;
mod cache;
mod contract;
mod engine;
mod error;
mod invoke;
mod limits;
mod lower_events;
mod outputs;
mod plugin;
pub mod router;
mod sandbox;
mod schemas;
mod slots;
mod wasi_sync;

pub use breaker::BreakerSettings;
pub use contract::{SUPPORTED_CONTRACTS, is_supported_contract};
pub use engine::{Runtime, RuntimeSettings};
pub use error::LoadError;
pub use invoke::{BatchReport, Fault};
pub use limits::Limits;
pub use plugin::{Plugin, PluginInfo};
pub use sandbox::PrintedLine;
