//! The host's view of one event handed to a plugin, and how a JSON payload
//! becomes one.

use std::borrow::Cow;

use crate::{Record, time};

/// One decoded, validated stream record, as a plugin receives it.
/// Times are RFC 3339 UTC strings (see [`crate::time`]).
///
/// It borrows what it can from the record's text and from the batch (tenant,
/// times), so building one costs no copies of the payload; `into_owned` makes
/// a free-standing one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginEvent<'a> {
    /// The record's JSON object text, exactly as produced.
    pub payload: Cow<'a, str>,
    pub event_type: Cow<'a, str>,
    pub tenant: Cow<'a, str>,
    pub partition_key: Cow<'a, str>,
    pub sequence_number: Cow<'a, str>,
    pub arrival_time: Cow<'a, str>,
    pub event_time: Cow<'a, str>,
    pub processing_time: Cow<'a, str>,
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

impl<'a> PluginEvent<'a> {
    /// Builds the event of a parsed record: `event_type` must be a non-empty
    /// string, and `timestamp`, when present, an RFC 3339 time (normalised to
    /// UTC); a record without one takes its arrival time. The error names the
    /// field at fault.
    pub fn from_payload(record: &Record<'a>, ctx: StreamContext<'a>) -> Result<Self, String> {
        let event_type = match record.get_str("event_type") {
            Ok(Some(t)) if !t.is_empty() => t,
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
            Ok(Some(t)) => time::normalise_cow(t).map_err(|e| format!("field `timestamp`: {e}"))?,
            Err(raw) => {
                return Err(format!(
                    "field `timestamp` must be an RFC 3339 string, got {raw}"
                ));
            }
            Ok(None) => Cow::Borrowed(ctx.arrival_time),
        };
        Ok(Self {
            payload: Cow::Borrowed(record.text()),
            event_type,
            tenant: Cow::Borrowed(ctx.tenant),
            partition_key: Cow::Borrowed(ctx.partition_key),
            sequence_number: Cow::Borrowed(ctx.sequence_number),
            arrival_time: Cow::Borrowed(ctx.arrival_time),
            event_time,
            processing_time: Cow::Borrowed(ctx.processing_time),
        })
    }

    /// The same event, owning all its strings.
    pub fn into_owned(self) -> PluginEvent<'static> {
        PluginEvent {
            payload: Cow::Owned(self.payload.into_owned()),
            event_type: Cow::Owned(self.event_type.into_owned()),
            tenant: Cow::Owned(self.tenant.into_owned()),
            partition_key: Cow::Owned(self.partition_key.into_owned()),
            sequence_number: Cow::Owned(self.sequence_number.into_owned()),
            arrival_time: Cow::Owned(self.arrival_time.into_owned()),
            event_time: Cow::Owned(self.event_time.into_owned()),
            processing_time: Cow::Owned(self.processing_time.into_owned()),
        }
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

    fn event(text: &str) -> Result<PluginEvent<'static>, String> {
        PluginEvent::from_payload(&Record::parse(text).unwrap(), CTX).map(PluginEvent::into_owned)
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
