//! Weir's domain types, shared by the runtime, the pipeline and the tools.
//!
//! What a plugin sees ([`PluginEvent`]), what becomes of each record
//! ([`Outcome`], [`Rejection`]), and the output envelope the host builds natively
//! ([`envelope`]). No wasmtime and no AWS here: the runtime converts its generated
//! bindings into these types at its edge, so nothing generated leaks further.

pub mod backend;
pub mod envelope;
mod event;
pub mod intake;
mod json_object;
mod json_str;
pub mod metrics;
mod outcome;
pub mod partition;
mod record;
pub mod registry;
pub mod stream;
pub mod time;

pub use event::{PluginEvent, StreamContext};
pub use json_object::JsonObject;
pub use json_str::BorrowedStr;
pub use outcome::{Outcome, OutcomeView, Rejection, RejectionKind};
pub use record::Record;

/// A plugin version as the host names it in logs, rejections and lineage:
/// `name@version`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PluginRef {
    pub name: String,
    pub version: String,
}

impl std::fmt::Display for PluginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}
