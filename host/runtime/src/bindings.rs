//! The generated host bindings of the plugin contract, and their conversion to
//! `weir-core` types at the edge. Nothing generated leaves this module's parent.

pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/weir-plugin-0.1.0",
        world: "enricher-plugin",
    });
}

pub(crate) use v0_1::EnricherPluginPre;
pub(crate) use v0_1::weir::plugin::log::Level as LogLevel;
pub(crate) use v0_1::weir::plugin::types::{
    Batch as WitBatch, Event as WitEvent, Outcome as WitOutcome, PluginInfo as WitPluginInfo,
    RejectionKind as WitRejectionKind,
};

use weir_core::{PluginEvent, RejectionKind};

impl From<&PluginEvent> for WitEvent {
    fn from(e: &PluginEvent) -> Self {
        WitEvent {
            payload: e.payload.clone(),
            partition_key: e.partition_key.clone(),
            sequence_number: e.sequence_number.clone(),
            arrival_time: e.arrival_time.clone(),
            event_time: e.event_time.clone(),
        }
    }
}

impl WitBatch {
    /// The batch record of events that share `first`'s tenant, event type and
    /// processing time.
    pub(crate) fn of(first: &PluginEvent, config: &[(String, String)]) -> Self {
        WitBatch {
            tenant: first.tenant.clone(),
            event_type: first.event_type.clone(),
            processing_time: first.processing_time.clone(),
            config: config.to_vec(),
        }
    }
}

impl From<WitRejectionKind> for RejectionKind {
    fn from(kind: WitRejectionKind) -> Self {
        match kind {
            WitRejectionKind::MissingField => RejectionKind::MissingField,
            WitRejectionKind::InvalidField => RejectionKind::InvalidField,
            WitRejectionKind::Unsupported => RejectionKind::Unsupported,
            WitRejectionKind::BadConfig => RejectionKind::BadConfig,
            WitRejectionKind::Internal => RejectionKind::Internal,
        }
    }
}
