//! Raw-stage lines: the record as produced, with its stream metadata added.

use serde_json::{Value, json};
use weir_core::Record;
use weir_core::stream::StreamRecord;

/// The member the raw stage adds to each record.
pub(crate) const KINESIS_FIELD: &str = "kinesis_metadata";

/// Appends one raw line: the record's members and `kinesis_metadata`
/// {sequence_number, partition_key, shard_id, arrival_time}. The record's bytes
/// are copied as they are unless it spans lines or already has that member.
pub(crate) fn write_raw_line(out: &mut Vec<u8>, record: &Record<'_>, source: &StreamRecord) {
    let metadata = json!({
        "sequence_number": source.sequence_number.as_str(),
        "partition_key": source.partition_key,
        "shard_id": source.shard_id,
        "arrival_time": source.arrival_time,
    });
    if let Some(text) = record
        .one_line_text()
        .filter(|_| !record.contains_key(KINESIS_FIELD))
    {
        out.extend_from_slice(text[..text.len() - 1].trim_end().as_bytes());
        if !record.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(b"\"kinesis_metadata\":");
        // Serialising a JSON value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &metadata);
        out.push(b'}');
    } else {
        let mut map = record.to_map();
        map.insert(KINESIS_FIELD.to_owned(), metadata);
        let _ = serde_json::to_writer(&mut *out, &Value::Object(map));
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::stream::SequenceNumber;

    fn source() -> StreamRecord {
        StreamRecord {
            shard_id: "shardId-000000000000".into(),
            sequence_number: SequenceNumber::from_u64(7),
            partition_key: "user-1".into(),
            data: Vec::new(),
            arrival_time: "2024-01-15T10:30:00.000Z".into(),
        }
    }

    fn line(text: &str) -> Value {
        let record = Record::parse(text).unwrap();
        let mut out = Vec::new();
        write_raw_line(&mut out, &record, &source());
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "one line");
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn stream_metadata_is_added_to_the_record() {
        let v = line(r#"{"event_type":"metric","value":3}"#);
        assert_eq!(v["value"], 3);
        assert_eq!(v["kinesis_metadata"]["sequence_number"], "7");
        assert_eq!(v["kinesis_metadata"]["partition_key"], "user-1");
        assert_eq!(
            line("{}")["kinesis_metadata"]["shard_id"],
            "shardId-000000000000"
        );
    }

    #[test]
    fn pretty_records_and_collisions_are_rebuilt() {
        let v = line("{\n \"a\": 1\n}");
        assert_eq!(v["a"], 1);
        let v = line(r#"{"kinesis_metadata":"spoofed","a":2}"#);
        assert_eq!(
            v["kinesis_metadata"]["sequence_number"], "7",
            "the stream's metadata wins"
        );
    }
}
