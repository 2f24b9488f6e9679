//! What became of one record once a plugin (or the host on its behalf) was done.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The outcome of one event, validated by the host: every JSON text a plugin
/// returned has been parsed and checked against the output limits.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Fields to merge into the record's `enriched_data`.
    Enrich(crate::JsonObject),
    /// Whole records, each the `enriched_data` of its own output envelope.
    Emit(Vec<Map<String, Value>>),
    /// Dropped on purpose by the plugin, with its reason.
    Drop(String),
    /// Refused: the record goes to the dead-letter queue with this reason.
    Reject(Rejection),
}

/// Why a record was refused, by the plugin or by the host on the plugin's behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectionKind {
    // Said by the plugin.
    MissingField,
    InvalidField,
    Unsupported,
    BadConfig,
    Internal,
    // Said by the host about the plugin.
    /// The plugin trapped (panic, unreachable, stack overflow).
    PluginTrap,
    /// The plugin ran past its CPU time budget for the batch.
    CpuLimit,
    /// The plugin tried to grow its memory past its limit.
    MemoryLimit,
    /// The plugin's output broke the contract: not JSON, not an object, too big,
    /// or the wrong number of outcomes.
    InvalidOutput,
    /// The plugin refused the whole batch.
    BatchError,
    /// The plugin version faulted repeatedly and its circuit breaker is open.
    CircuitOpen,
}

impl RejectionKind {
    /// Faults of the plugin itself (as opposed to refusals of a record): these
    /// count towards its circuit breaker.
    pub fn is_plugin_fault(self) -> bool {
        matches!(
            self,
            Self::PluginTrap | Self::CpuLimit | Self::MemoryLimit | Self::InvalidOutput
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub kind: RejectionKind,
    pub message: String,
}

impl Rejection {
    pub fn new(kind: RejectionKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            serde_json::to_value(self.kind)
                .map_err(|_| std::fmt::Error)?
                .as_str()
                .unwrap_or("?"),
            self.message
        )
    }
}

/// An outcome as people and the console see it: JSON tagged by `outcome`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OutcomeView {
    Enrich { fields: Map<String, Value> },
    Emit { records: Vec<Map<String, Value>> },
    Drop { reason: String },
    Reject { kind: String, message: String },
}

impl From<&Outcome> for OutcomeView {
    fn from(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Enrich(fields) => Self::Enrich {
                fields: fields.to_map(),
            },
            Outcome::Emit(records) => Self::Emit {
                records: records.clone(),
            },
            Outcome::Drop(reason) => Self::Drop {
                reason: reason.clone(),
            },
            Outcome::Reject(r) => Self::Reject {
                kind: serde_json::to_value(r.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                message: r.message.clone(),
            },
        }
    }
}

impl Outcome {
    /// Whether two versions came to the same outcome: the same fields or
    /// records whatever their order, the same reason to drop, or a
    /// rejection of the same kind (messages name the plugin, so they differ).
    pub fn same_as(&self, other: &Outcome) -> bool {
        match (self, other) {
            (Outcome::Enrich(a), Outcome::Enrich(b)) => a.to_map() == b.to_map(),
            (Outcome::Emit(a), Outcome::Emit(b)) => a == b,
            (Outcome::Drop(a), Outcome::Drop(b)) => a == b,
            (Outcome::Reject(a), Outcome::Reject(b)) => a.kind == b.kind,
            _ => false,
        }
    }
}
