//! The generated host bindings of the plugin contract, and their conversion to
//! `weir-core` types at the edge. Nothing generated leaves this module's parent.
//!
//! The host calls every contract version through the types generated for the
//! oldest: wasmtime checks a function's types by their shape (fields, cases,
//! names), and the versions share every type but the events'. The newer
//! versions' bindings are for their imports (`log`) and their events' type.

pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/weir-plugin-0.1.0",
        world: "enricher-plugin",
    });
}

pub(crate) mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../../wit/weir-plugin-0.2.0",
        world: "enricher-plugin",
    });
}

pub(crate) use v0_1::weir::plugin::log::Level as LogLevel;
pub(crate) use v0_1::weir::plugin::types::{
    Batch as WitBatch, Outcome as WitOutcome, PluginInfo as WitPluginInfo,
    RejectionKind as WitRejectionKind,
};

use wasmtime::component::{ComponentType, Lower, TypedFunc};

use weir_core::{PluginEvent, RejectionKind};

/// The contract's `event` record, borrowed from the host's event: lowered into
/// the guest straight from the host's strings, with no copy on the host side
/// (the generated `WitEvent` owns its strings). Field names and types are
/// checked against the component's function type when the function is looked up.
#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct EventRef<'a> {
    #[component(name = "payload")]
    payload: &'a str,
    #[component(name = "partition-key")]
    partition_key: &'a str,
    #[component(name = "sequence-number")]
    sequence_number: &'a str,
    #[component(name = "arrival-time")]
    arrival_time: &'a str,
    #[component(name = "event-time")]
    event_time: &'a str,
}

impl<'a> EventRef<'a> {
    /// The fields in the record's order.
    pub(crate) fn fields(&self) -> [&'a str; 5] {
        [
            self.payload,
            self.partition_key,
            self.sequence_number,
            self.arrival_time,
            self.event_time,
        ]
    }
}

impl<'a> From<&'a PluginEvent<'_>> for EventRef<'a> {
    fn from(e: &'a PluginEvent<'_>) -> Self {
        EventRef {
            payload: &e.payload,
            partition_key: &e.partition_key,
            sequence_number: &e.sequence_number,
            arrival_time: &e.arrival_time,
            event_time: &e.event_time,
        }
    }
}

/// `enricher.process`, called with borrowed events lowered as `Events`
/// (the contract version's own form).
pub(crate) type ProcessFunc<'a, Events> =
    TypedFunc<(&'a WitBatch, Events), (Result<Vec<WitOutcome>, String>,)>;

/// `enricher.describe`.
pub(crate) type DescribeFunc = TypedFunc<(), (WitPluginInfo,)>;

impl WitBatch {
    /// The batch record of events that share `first`'s tenant, event type and
    /// processing time.
    pub(crate) fn of(first: &PluginEvent<'_>, config: &[(String, String)]) -> Self {
        WitBatch {
            tenant: first.tenant.to_string(),
            event_type: first.event_type.to_string(),
            processing_time: first.processing_time.to_string(),
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
