//! The host's view of one event handed to a plugin.

/// One decoded, validated stream record, as a plugin receives it.
/// Times are RFC 3339 UTC strings (see [`crate::time`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginEvent {
    /// The record's JSON object text, exactly as produced.
    pub payload: String,
    pub event_type: String,
    pub tenant: String,
    pub partition_key: String,
    pub sequence_number: String,
    pub arrival_time: String,
    pub event_time: String,
    pub processing_time: String,
}
