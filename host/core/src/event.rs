//! The host's view of one event handed to a plugin, and how a JSON payload
//! becomes one.

use crate::{Record, time};

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

/// Where a payload came from: what the stream (or the tool) knows about it.
#[derive(Debug, Clone, Copy)]
pub struct StreamContext<'a> {
    pub tenant: &'a str,
    pub partition_key: &'a str,
    pub sequence_number: &'a str,
    /// RFC 3339 UTC.
    pub arrival_time: &'a str,
    /// RFC 3339 UTC.
    pub processing_time: &'a str,
}

impl PluginEvent {
    /// Builds the event of a parsed record: `event_type` must be a non-empty
    /// string, and `timestamp`, when present, an RFC 3339 time (normalised to
    /// UTC); a record without one takes its arrival time. The error names the
    /// field at fault.
    pub fn from_payload(record: &Record<'_>, ctx: StreamContext<'_>) -> Result<Self, String> {
        let event_type = match record.get_str("event_type") {
            Ok(Some(t)) if !t.is_empty() => t.into_owned(),
            Ok(Some(_)) => {
                return Err("field `event_type` must be a non-empty string, got \"\"".into());
            }
            Err(raw) => {
                return Err(format!(
                    "field `event_type` must be a non-empty string, got {raw}"
                ));
            }
            Ok(None) => return Err("missing field `event_type`".into()),
        };
        let event_time = match record.get_str("timestamp") {
            Ok(Some(t)) => time::normalise(&t).map_err(|e| format!("field `timestamp`: {e}"))?,
            Err(raw) => {
                return Err(format!(
                    "field `timestamp` must be an RFC 3339 string, got {raw}"
                ));
            }
            Ok(None) => ctx.arrival_time.to_owned(),
        };
        Ok(Self {
            payload: record.text().to_owned(),
            event_type,
            tenant: ctx.tenant.to_owned(),
            partition_key: ctx.partition_key.to_owned(),
            sequence_number: ctx.sequence_number.to_owned(),
            arrival_time: ctx.arrival_time.to_owned(),
            event_time,
            processing_time: ctx.processing_time.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: StreamContext<'static> = StreamContext {
        tenant: "acme",
        partition_key: "pk",
        sequence_number: "7",
        arrival_time: "2024-01-15T10:30:05Z",
        processing_time: "2024-01-15T10:31:00Z",
    };

    fn event(text: &str) -> Result<PluginEvent, String> {
        PluginEvent::from_payload(&Record::parse(text).unwrap(), CTX)
    }

    #[test]
    fn timestamp_is_normalised_and_arrival_is_the_fallback() {
        let e =
            event(r#"{"event_type":"metric","timestamp":"2024-01-15T12:00:00+02:00"}"#).unwrap();
        assert_eq!(e.event_time, "2024-01-15T10:00:00Z");
        assert_eq!(e.tenant, "acme");
        let e = event(r#"{"event_type":"metric"}"#).unwrap();
        assert_eq!(e.event_time, CTX.arrival_time);
    }

    #[test]
    fn bad_fields_are_named() {
        assert!(
            event(r#"{"timestamp":"2024-01-15T10:00:00Z"}"#)
                .unwrap_err()
                .contains("event_type")
        );
        assert!(
            event(r#"{"event_type":3}"#)
                .unwrap_err()
                .contains("event_type")
        );
        assert!(
            event(r#"{"event_type":"x","timestamp":"soon"}"#)
                .unwrap_err()
                .contains("timestamp")
        );
        assert!(
            event(r#"{"event_type":"x","timestamp":17}"#)
                .unwrap_err()
                .contains("timestamp")
        );
    }
}
