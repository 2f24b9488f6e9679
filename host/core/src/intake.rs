//! Intake: from a stream record's bytes to a validated record, or a refusal
//! with a precise reason.
//!
//! Order of checks: size, UTF-8, nesting depth (scanned before parsing, so a
//! hostile record cannot make the parser recurse), one JSON object, then the
//! fields: `event_type` (a non-empty string usable as a partition value),
//! `timestamp` (RFC 3339 with any offset, normalised to UTC; the arrival time
//! when absent and the fallback is on), `tenant_id` (optional; letters, digits,
//! `_`, `-`, `.`), and the fields each known event type requires. Unknown event
//! types pass with the common checks only.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use crate::Record;
use crate::partition::Partition;
use crate::time;

/// Intake limits and choices.
#[derive(Debug, Clone)]
pub struct IntakeSettings {
    /// Kinesis allows 1 MiB per record.
    pub max_record_bytes: usize,
    /// Deepest nesting of arrays and objects accepted.
    pub max_depth: usize,
    /// Use the arrival time when a record has no `timestamp` (otherwise refuse it).
    pub arrival_time_fallback: bool,
}

impl Default for IntakeSettings {
    fn default() -> Self {
        Self {
            max_record_bytes: 1 << 20,
            max_depth: 32,
            arrival_time_fallback: true,
        }
    }
}

/// Why intake refused a record: `kind` for filtering, `reason` for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: &'static str,
    pub reason: String,
}

impl Refusal {
    fn new(kind: &'static str, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }
}

/// A record that passed intake.
#[derive(Debug, Clone)]
pub struct Accepted<'a> {
    pub record: Record<'a>,
    pub event_type: Cow<'a, str>,
    /// `tenant_id`, or `default`.
    pub tenant: Cow<'a, str>,
    pub event_time: DateTime<Utc>,
    pub partition: Partition,
}

/// The tenant of records that name none.
pub const DEFAULT_TENANT: &str = "default";

/// Decodes a Lambda event's base64 `data`.
pub fn decode_base64(data: &str) -> Result<Vec<u8>, Refusal> {
    STANDARD
        .decode(data)
        .map_err(|e| Refusal::new("not-base64", format!("record data is not base64: {e}")))
}

/// Takes one record through intake. `arrival_time`: RFC 3339 UTC.
pub fn accept<'a>(
    bytes: &'a [u8],
    arrival_time: &str,
    settings: &IntakeSettings,
) -> Result<Accepted<'a>, Refusal> {
    if bytes.is_empty() {
        return Err(Refusal::new("empty", "record data is empty"));
    }
    if bytes.len() > settings.max_record_bytes {
        return Err(Refusal::new(
            "too-large",
            format!(
                "record of {} bytes exceeds the limit of {} bytes",
                bytes.len(),
                settings.max_record_bytes
            ),
        ));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Refusal::new("not-utf8", format!("record data is not UTF-8: {e}")))?;
    let depth = nesting_depth(text);
    if depth > settings.max_depth {
        return Err(Refusal::new(
            "too-deep",
            format!(
                "record nests {depth} levels deep; the limit is {}",
                settings.max_depth
            ),
        ));
    }
    let record = Record::parse(text).map_err(|why| {
        let kind = if why.starts_with("not a JSON object") {
            "not-object"
        } else {
            "not-json"
        };
        Refusal::new(kind, format!("record is {why}"))
    })?;

    let event_type = match record.get_str("event_type") {
        Ok(Some(t)) if !t.trim().is_empty() => t,
        Ok(Some(_)) => return Err(Refusal::new("invalid-field", "field `event_type` is empty")),
        Ok(None) => return Err(Refusal::new("missing-field", "missing field `event_type`")),
        Err(raw) => {
            return Err(Refusal::new(
                "invalid-field",
                format!("field `event_type` must be a string, got {raw}"),
            ));
        }
    };
    let event_time = match record.get_str("timestamp") {
        Ok(Some(t)) => time::parse_rfc3339(&t)
            .map_err(|e| Refusal::new("invalid-field", format!("field `timestamp`: {e}")))?,
        Ok(None) if settings.arrival_time_fallback => time::parse_rfc3339(arrival_time)
            .map_err(|e| Refusal::new("invalid-field", format!("arrival time: {e}")))?,
        Ok(None) => return Err(Refusal::new("missing-field", "missing field `timestamp`")),
        Err(raw) => {
            return Err(Refusal::new(
                "invalid-field",
                format!("field `timestamp` must be an RFC 3339 string, got {raw}"),
            ));
        }
    };
    let tenant = match record.get_str("tenant_id") {
        Ok(None) => Cow::Borrowed(DEFAULT_TENANT),
        Ok(Some(t)) if is_valid_tenant(&t) => t,
        Ok(Some(t)) => {
            return Err(Refusal::new(
                "invalid-field",
                format!(
                    "field `tenant_id` {t:?}: use 1 to 128 letters, digits, `_`, `-` or `.`, not only dots"
                ),
            ));
        }
        Err(raw) => {
            return Err(Refusal::new(
                "invalid-field",
                format!("field `tenant_id` must be a string, got {raw}"),
            ));
        }
    };
    check_type_fields(&record, &event_type)?;
    let partition = Partition::new(&event_type, event_time)
        .map_err(|why| Refusal::new("bad-partition", why))?;
    Ok(Accepted {
        record,
        event_type,
        tenant,
        event_time,
        partition,
    })
}

fn is_valid_tenant(t: &str) -> bool {
    (1..=128).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !t.bytes().all(|b| b == b'.')
}

/// What a field of a known event type must be.
#[derive(Clone, Copy)]
enum Expect {
    String,
    Number,
    Present,
}

/// The fields each known event type requires (the seeds' producers send them).
fn required_fields(event_type: &str) -> &'static [(&'static str, Expect)] {
    match event_type {
        "transaction" => &[("amount", Expect::Number)],
        "user_action" => &[("user_id", Expect::String), ("action", Expect::String)],
        "metric" => &[("metric_name", Expect::String), ("value", Expect::Number)],
        "system_event" => &[("severity", Expect::Present)],
        "sensor_reading" => &[
            ("sensorId", Expect::String),
            ("temperature", Expect::Number),
            ("humidity", Expect::Number),
        ],
        _ => &[],
    }
}

fn check_type_fields(record: &Record<'_>, event_type: &str) -> Result<(), Refusal> {
    for (field, expect) in required_fields(event_type) {
        // A system event may name its severity `level`.
        let raw = record.get(field).or_else(|| {
            (*field == "severity")
                .then(|| record.get("level"))
                .flatten()
        });
        let Some(raw) = raw else {
            return Err(Refusal::new(
                "missing-field",
                format!("{event_type} event: missing field `{field}`"),
            ));
        };
        let ok = match expect {
            Expect::String => raw.get().starts_with('"'),
            Expect::Number => is_number(raw),
            Expect::Present => raw.get() != "null",
        };
        if !ok {
            let wanted = match expect {
                Expect::String => "a string",
                Expect::Number => "a number",
                Expect::Present => "a value",
            };
            return Err(Refusal::new(
                "invalid-field",
                format!(
                    "{event_type} event: field `{field}` must be {wanted}, got {}",
                    abbreviate(raw.get())
                ),
            ));
        }
    }
    Ok(())
}

fn is_number(raw: &RawValue) -> bool {
    let text = raw.get();
    text.starts_with(|c: char| c == '-' || c.is_ascii_digit())
        && text.parse::<f64>().is_ok_and(f64::is_finite)
}

fn abbreviate(text: &str) -> Cow<'_, str> {
    const MAX: usize = 64;
    if text.len() <= MAX {
        return Cow::Borrowed(text);
    }
    Cow::Owned(format!("{}…", &text[..text.floor_char_boundary(MAX)]))
}

/// The deepest nesting of arrays and objects, outside strings.
fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARRIVAL: &str = "2024-01-15T10:30:05Z";

    fn check(bytes: &[u8]) -> Result<Accepted<'_>, Refusal> {
        accept(bytes, ARRIVAL, &IntakeSettings::default())
    }

    fn kind(bytes: &[u8]) -> &'static str {
        check(bytes).map(|_| "accepted").unwrap_or_else(|r| r.kind)
    }

    #[test]
    fn a_good_record_is_accepted_and_partitioned_in_utc() {
        let bytes = br#"{"event_type":"transaction","timestamp":"2024-01-15T23:30:00-02:00","amount":12.5,"tenant_id":"acme"}"#;
        let a = check(bytes).unwrap();
        assert_eq!(a.event_type, "transaction");
        assert_eq!(a.tenant, "acme");
        assert_eq!(
            a.partition.as_str(),
            "event_type=transaction/year=2024/month=01/day=16/hour=01"
        );
        let a = check(br#"{"event_type":"page_view"}"#).unwrap();
        assert_eq!(a.tenant, DEFAULT_TENANT);
        assert_eq!(
            crate::time::format_utc(a.event_time),
            ARRIVAL,
            "arrival time is the fallback"
        );
    }

    #[test]
    fn the_hostile_corpus_is_refused_with_precise_kinds() {
        let deep = format!(
            "{{\"event_type\":\"x\",\"a\":{}1{}}}",
            "[".repeat(40),
            "]".repeat(40)
        );
        let huge = format!(
            "{{\"event_type\":\"x\",\"pad\":\"{}\"}}",
            "x".repeat(1 << 20)
        );
        let cases: Vec<(&[u8], &str)> = vec![
            (b"", "empty"),
            (&[0xff, 0xfe, 0x7b, 0x7d], "not-utf8"),
            (b"not json", "not-json"),
            (b"{\"event_type\":\"x\"", "not-json"),
            (b"{\"event_type\":\"x\",\"v\":NaN}", "not-json"),
            (b"[1,2,3]", "not-object"),
            (b"\"just a string\"", "not-object"),
            (b"{}", "missing-field"),
            (b"{\"event_type\":7}", "invalid-field"),
            (b"{\"event_type\":\"  \"}", "invalid-field"),
            (
                b"{\"event_type\":\"x\",\"timestamp\":\"yesterday\"}",
                "invalid-field",
            ),
            (
                b"{\"event_type\":\"x\",\"timestamp\":1705314600}",
                "invalid-field",
            ),
            (
                b"{\"event_type\":\"x\",\"tenant_id\":\"../../etc\"}",
                "invalid-field",
            ),
            (
                b"{\"event_type\":\"x\",\"tenant_id\":\"a/b\"}",
                "invalid-field",
            ),
            (
                b"{\"event_type\":\"x\",\"tenant_id\":\"..\"}",
                "invalid-field",
            ),
            (b"{\"event_type\":\"x\",\"tenant_id\":42}", "invalid-field"),
            (b"{\"event_type\":\"transaction\"}", "missing-field"),
            (
                b"{\"event_type\":\"transaction\",\"amount\":\"12\"}",
                "invalid-field",
            ),
            (
                b"{\"event_type\":\"metric\",\"metric_name\":\"cpu\",\"value\":null}",
                "invalid-field",
            ),
            (
                b"{\"event_type\":\"sensor_reading\",\"sensorId\":\"s\",\"temperature\":1}",
                "missing-field",
            ),
            (deep.as_bytes(), "too-deep"),
            (huge.as_bytes(), "too-large"),
        ];
        for (bytes, expected) in cases {
            let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned();
            assert_eq!(kind(bytes), expected, "{shown}: {:?}", check(bytes).err());
        }
    }

    #[test]
    fn path_traversal_in_event_type_is_encoded_not_followed() {
        let a = check(br#"{"event_type":"../../etc/passwd"}"#).unwrap();
        assert!(
            a.partition
                .as_str()
                .starts_with("event_type=%2E%2E%2F%2E%2E%2Fetc%2Fpasswd/"),
            "{}",
            a.partition.as_str()
        );
        let long = format!("{{\"event_type\":\"{}\"}}", "e".repeat(200));
        assert_eq!(kind(long.as_bytes()), "bad-partition");
    }

    #[test]
    fn reasons_name_the_field_and_what_was_expected() {
        let r = check(br#"{"event_type":"transaction","amount":"12"}"#).unwrap_err();
        assert_eq!(
            r.reason,
            "transaction event: field `amount` must be a number, got \"12\""
        );
        let r = check(br#"{"event_type":"user_action","user_id":"u"}"#).unwrap_err();
        assert_eq!(r.reason, "user_action event: missing field `action`");
        let no_fallback = IntakeSettings {
            arrival_time_fallback: false,
            ..Default::default()
        };
        let r = accept(br#"{"event_type":"x"}"#, ARRIVAL, &no_fallback).unwrap_err();
        assert_eq!(r.reason, "missing field `timestamp`");
    }

    #[test]
    fn system_events_may_name_their_severity_level_and_strings_hide_brackets() {
        assert_eq!(
            kind(br#"{"event_type":"system_event","level":"warn"}"#),
            "accepted"
        );
        // Brackets inside strings do not count as nesting.
        let text = format!(
            "{{\"event_type\":\"x\",\"s\":\"{}\\\"{}\"}}",
            "[".repeat(100),
            "{".repeat(100)
        );
        assert_eq!(kind(text.as_bytes()), "accepted");
    }

    #[test]
    fn base64_data_is_decoded_or_refused() {
        assert_eq!(decode_base64("eyJhIjoxfQ==").unwrap(), br#"{"a":1}"#);
        assert_eq!(decode_base64("not base64!").unwrap_err().kind, "not-base64");
    }
}
