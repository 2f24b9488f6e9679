//! The output envelope, built natively by the host.
//!
//! Every processed record is one JSON Lines line in the seed's shape:
//! `original_data`, `enriched_data`, `record_id`, `processed_timestamp`, and
//! `metadata` {`source`, `processing_stage`, `version`}, to which Weir adds
//! lineage: the plugin version that produced the line and the record's stream
//! position. Plugins return only what they add; doing the rest here keeps the
//! per-record work inside the sandbox small (SHA-256 runs on the CPU's SHA
//! instructions natively, not in wasm).

use std::io::Write;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::{PluginRef, Record};

/// The fixed part of every envelope's `metadata`, and where the record came from.
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeContext<'a> {
    /// `metadata.source`, e.g. `kinesis-stream`.
    pub source: &'a str,
    pub shard_id: &'a str,
    /// RFC 3339 UTC; the same for every record of a batch.
    pub processed_timestamp: &'a str,
    /// The plugin that produced the line; `None` for records passed through.
    pub plugin: Option<&'a PluginRef>,
}

/// `metadata.processing_stage` of processed records.
pub const PROCESSING_STAGE: &str = "transformed";
/// `metadata.version`: the envelope format's version (the seed's `1.0`).
pub const ENVELOPE_VERSION: &str = "1.0";

/// The record id: hex SHA-256 over the record's stream position (shard, sequence
/// number), the index of the output within its input (fan-out) and the payload.
/// Stable across retries of a batch, distinct for distinct records.
pub fn record_id(
    shard_id: &str,
    sequence_number: &str,
    output_index: usize,
    payload: &str,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(shard_id.as_bytes());
    hasher.update(b"\n");
    hasher.update(sequence_number.as_bytes());
    hasher.update(b"\n");
    hasher.update(decimal(output_index, &mut [0; 20]));
    hasher.update(b"\n");
    hasher.update(payload.as_bytes());
    hex(&hasher.finalize())
}

/// `n` in decimal digits, written into `buf`: no allocation per record.
fn decimal(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[start..];
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// The original record as it goes into `original_data`: its bytes verbatim,
/// line breaks between tokens turned into spaces (pretty-printed input must
/// not break JSON Lines).
#[derive(Debug, Clone, Copy)]
pub struct Original<'a> {
    pub record: &'a Record<'a>,
    pub sequence_number: &'a str,
}

/// Appends one enriched line: `enriched_data` is the original object with the
/// plugin's `added` fields merged over it.
pub fn write_enriched(
    out: &mut Vec<u8>,
    original: Original<'_>,
    added: &crate::JsonObject,
    record_id: &str,
    ctx: EnvelopeContext<'_>,
) {
    write_head(out, original);
    out.extend_from_slice(b",\"enriched_data\":");
    let record = original.record;
    let added_keys = added.keys();
    let text = record.text().trim();
    let collides = added_keys.iter().any(|k| record.contains_key(k));
    if !collides {
        // The common case: the original's bytes and the plugin's, without
        // re-serialising either.
        push_record_text(out, record, &text[..text.len() - 1]);
        let members = added.members();
        if !members.is_empty() {
            if !record.is_empty() {
                out.push(b',');
            }
            // A JsonObject is one line by construction.
            out.extend_from_slice(members.as_bytes());
        }
    } else {
        // A plugin overrides fields of the record: the original's members
        // but those, then the plugin's, still as raw text.
        out.push(b'{');
        let mut first = true;
        for (key, raw) in record.members() {
            let overridden = added_keys.iter().any(|k| k == key);
            // Of repeated keys only the last counts, as JSON readers take it.
            let last = record.get(key).is_some_and(|v| std::ptr::eq(v, raw));
            if overridden || !last {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            write_json(out, key);
            out.push(b':');
            push_record_text(out, record, raw.get());
        }
        let members = added.members();
        if !members.is_empty() {
            if !first {
                out.push(b',');
            }
            out.extend_from_slice(members.as_bytes());
        }
    }
    out.push(b'}');
    write_tail(out, original, record_id, ctx);
}

/// Appends one line whose `enriched_data` is a whole record the plugin emitted.
pub fn write_emitted(
    out: &mut Vec<u8>,
    original: Original<'_>,
    record: &Map<String, Value>,
    record_id: &str,
    ctx: EnvelopeContext<'_>,
) {
    write_head(out, original);
    out.extend_from_slice(b",\"enriched_data\":");
    write_json(out, record);
    write_tail(out, original, record_id, ctx);
}

/// Appends the output lines of one outcome (one for `Enrich`, one per record for
/// `Emit`, none for `Drop` and `Reject`) and returns how many it wrote.
pub fn write_outcome(
    out: &mut Vec<u8>,
    original: Original<'_>,
    outcome: &crate::Outcome,
    ctx: EnvelopeContext<'_>,
) -> usize {
    match outcome {
        crate::Outcome::Enrich(added) => {
            let id = record_id(
                ctx.shard_id,
                original.sequence_number,
                0,
                original.record.text(),
            );
            write_enriched(out, original, added, &id, ctx);
            1
        }
        crate::Outcome::Emit(records) => {
            for (i, record) in records.iter().enumerate() {
                let id = record_id(
                    ctx.shard_id,
                    original.sequence_number,
                    i,
                    original.record.text(),
                );
                write_emitted(out, original, record, &id, ctx);
            }
            records.len()
        }
        crate::Outcome::Drop(_) | crate::Outcome::Reject(_) => 0,
    }
}

fn write_head(out: &mut Vec<u8>, original: Original<'_>) {
    out.extend_from_slice(b"{\"original_data\":");
    push_record_text(out, original.record, original.record.text().trim());
}

/// Appends `json`, a part of `record`'s text, on one line.
fn push_record_text(out: &mut Vec<u8>, record: &Record<'_>, json: &str) {
    if record.is_one_line() {
        out.extend_from_slice(json.as_bytes());
    } else {
        push_one_line(out, json);
    }
}

/// Appends JSON text on one line. Inside valid JSON a line break can only be
/// whitespace between tokens (in strings it must be escaped), so turning it
/// into a space keeps the value and JSON Lines intact: pretty-printed input
/// needs no re-serialising.
fn push_one_line(out: &mut Vec<u8>, json: &str) {
    let bytes = json.as_bytes();
    let start = out.len();
    out.extend_from_slice(bytes);
    // `contains` on bytes is memchr, several times faster than a loop over
    // both bytes at once, and this runs over every record twice.
    if bytes.contains(&b'\n') || bytes.contains(&b'\r') {
        for b in &mut out[start..] {
            if matches!(b, b'\n' | b'\r') {
                *b = b' ';
            }
        }
    }
}

fn write_tail(
    out: &mut Vec<u8>,
    original: Original<'_>,
    record_id: &str,
    ctx: EnvelopeContext<'_>,
) {
    out.extend_from_slice(b",\"record_id\":\"");
    out.extend_from_slice(record_id.as_bytes());
    out.extend_from_slice(b"\",\"processed_timestamp\":");
    write_json(out, ctx.processed_timestamp);
    out.extend_from_slice(b",\"metadata\":{\"source\":");
    write_json(out, ctx.source);
    // Written with `write!` into a Vec, which cannot fail.
    let _ = write!(
        out,
        ",\"processing_stage\":\"{PROCESSING_STAGE}\",\"version\":\"{ENVELOPE_VERSION}\",\"shard_id\":"
    );
    write_json(out, ctx.shard_id);
    out.extend_from_slice(b",\"sequence_number\":");
    write_json(out, original.sequence_number);
    out.extend_from_slice(b",\"plugin\":");
    match ctx.plugin {
        Some(plugin) => write_json(out, &plugin.to_string()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"}}\n");
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Serialising a `serde_json::Value` or a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn enriched_line_merges_added_fields_over_the_original() {
        let text = r#"{"event_type":"transaction","amount":5,"currency":"EUR"}"#;
        let added =
            crate::JsonObject::parse(r#"{"amount_category":"micro","currency":"USD"}"#.into())
                .unwrap();
        let plugin = PluginRef {
            name: "transaction".into(),
            version: "1.0.0".into(),
        };
        let ctx = EnvelopeContext {
            source: "kinesis-stream",
            shard_id: "shardId-000000000000",
            processed_timestamp: "2024-01-15T10:31:00Z",
            plugin: Some(&plugin),
        };
        let mut out = Vec::new();
        let record = Record::parse(text).unwrap();
        let original = Original {
            record: &record,
            sequence_number: "42",
        };
        write_enriched(&mut out, original, &added, "abc", ctx);
        assert_eq!(out.last(), Some(&b'\n'));
        let line: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            line["original_data"],
            serde_json::from_str::<Value>(text).unwrap()
        );
        assert_eq!(line["enriched_data"]["currency"], "USD");
        assert_eq!(line["enriched_data"]["amount"], 5);
        assert_eq!(line["enriched_data"]["amount_category"], "micro");
        assert_eq!(line["metadata"]["plugin"], "transaction@1.0.0");
        assert_eq!(line["metadata"]["processing_stage"], "transformed");
        assert_eq!(line["metadata"]["sequence_number"], "42");
        assert_eq!(line["record_id"], "abc");
    }

    #[test]
    fn pretty_printed_originals_stay_on_one_line() {
        let text = "{\n  \"a\": 1\n}";
        let ctx = EnvelopeContext {
            source: "s",
            shard_id: "x",
            processed_timestamp: "t",
            plugin: None,
        };
        let mut out = Vec::new();
        let record = Record::parse(text).unwrap();
        let original = Original {
            record: &record,
            sequence_number: "1",
        };
        write_emitted(&mut out, original, &object(json!({"b": 2})), "id", ctx);
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        let line: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["original_data"]["a"], 1);
        assert_eq!(line["enriched_data"], json!({"b": 2}));
        assert_eq!(line["metadata"]["plugin"], Value::Null);
    }

    #[test]
    fn originals_are_spliced_on_one_line_and_overridden_fields_dropped() {
        let ctx = EnvelopeContext {
            source: "s",
            shard_id: "x",
            processed_timestamp: "t",
            plugin: None,
        };
        for (text, added, expected) in [
            (
                r#"{"a":1, "b":"x"}"#,
                json!({"c": true}),
                json!({"a": 1, "b": "x", "c": true}),
            ),
            (r#"{ }"#, json!({"c": 1}), json!({"c": 1})),
            (r#"{"a":1}"#, json!({}), json!({"a": 1})),
            (
                r#"{"a":1,"b":2}"#,
                json!({"a": "new"}),
                json!({"a": "new", "b": 2}),
            ),
            (
                "{\n \"a\": [1,\n 2],\r\n \"b\": \"x\\ny\"\n}",
                json!({"b": "new", "c": 3}),
                json!({"a": [1, 2], "b": "new", "c": 3}),
            ),
            (
                "{\n \"a\": {\"k\":\n 1}\n}",
                json!({"c": 3}),
                json!({"a": {"k": 1}, "c": 3}),
            ),
            (
                r#"{"a":1,"b":2,"a":3}"#,
                json!({"b": 0}),
                json!({"a": 3, "b": 0}),
            ),
        ] {
            let mut out = Vec::new();
            let record = Record::parse(text).unwrap();
            let original = Original {
                record: &record,
                sequence_number: "1",
            };
            let added = crate::JsonObject::from_map(&object(added));
            write_enriched(&mut out, original, &added, "id", ctx);
            assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "{text}");
            let line: Value =
                serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(line["enriched_data"], expected, "{text}");
            let original: Value = serde_json::from_str(text).unwrap();
            assert_eq!(line["original_data"], original, "{text}");
        }
    }

    #[test]
    fn output_indexes_are_hashed_in_decimal() {
        for n in [0, 7, 10, 12345, usize::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }

    #[test]
    fn record_ids_are_stable_and_distinct() {
        let a = record_id("shard-1", "100", 0, "{}");
        assert_eq!(a, record_id("shard-1", "100", 0, "{}"));
        assert_eq!(a.len(), 64);
        assert_ne!(a, record_id("shard-1", "100", 1, "{}"));
        assert_ne!(a, record_id("shard-2", "100", 0, "{}"));
        assert_ne!(a, record_id("shard-1", "101", 0, "{}"));
    }
}
