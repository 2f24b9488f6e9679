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
    Event as WitEvent, Outcome as WitOutcome, PluginInfo as WitPluginInfo,
    RejectionKind as WitRejectionKind,
};

use weir_core::{PluginEvent, RejectionKind};

impl From<&PluginEvent> for WitEvent {
    fn from(e: &PluginEvent) -> Self {
        WitEvent {
            payload: e.payload.clone(),
            event_type: e.event_type.clone(),
            tenant: e.tenant.clone(),
            partition_key: e.partition_key.clone(),
            sequence_number: e.sequence_number.clone(),
            arrival_time: e.arrival_time.clone(),
            event_time: e.event_time.clone(),
            processing_time: e.processing_time.clone(),
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
