//! Raw-stage lines: the record as produced, with its stream metadata added.

use serde::Deserialize;
use serde_json::Value;
use weir_core::Record;
use weir_core::stream::{SequenceNumber, StreamRecord};

/// The member the raw stage adds to each record.
pub(crate) const KINESIS_FIELD: &str = "kinesis_metadata";

/// Appends one raw line: the record's members and `kinesis_metadata`
/// {sequence_number, partition_key, shard_id, arrival_time}. The record's bytes
/// are copied as they are unless it spans lines or already has that member.
pub(crate) fn write_raw_line(out: &mut Vec<u8>, record: &Record<'_>, source: &StreamRecord) {
    if let Some(text) = record
        .one_line_text()
        .filter(|_| !record.contains_key(KINESIS_FIELD))
    {
        // Everything but the closing brace, whitespace included: the reader
        // gives back the record byte for byte.
        out.extend_from_slice(&text.as_bytes()[..text.len() - 1]);
        if !record.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(b"\"kinesis_metadata\":");
        write_metadata(out, source);
        out.push(b'}');
    } else {
        let mut map = record.to_map();
        let mut metadata = Vec::new();
        write_metadata(&mut metadata, source);
        let metadata: Value = serde_json::from_slice(&metadata).unwrap_or_default();
        map.insert(KINESIS_FIELD.to_owned(), metadata);
        let _ = serde_json::to_writer(&mut *out, &Value::Object(map));
    }
    out.push(b'\n');
}

/// `{sequence_number, partition_key, shard_id, arrival_time}`, written
/// directly: this runs once per record.
fn write_metadata(out: &mut Vec<u8>, source: &StreamRecord) {
    // Serialising a string into a Vec cannot fail.
    out.extend_from_slice(b"{\"sequence_number\":\"");
    out.extend_from_slice(source.sequence_number.as_str().as_bytes());
    out.extend_from_slice(b"\",\"partition_key\":");
    let _ = serde_json::to_writer(&mut *out, &source.partition_key);
    out.extend_from_slice(b",\"shard_id\":");
    let _ = serde_json::to_writer(&mut *out, &source.shard_id);
    out.extend_from_slice(b",\"arrival_time\":");
    let _ = serde_json::to_writer(&mut *out, &source.arrival_time);
    out.push(b'}');
}

#[derive(Deserialize)]
struct KinesisMetadata {
    sequence_number: String,
    partition_key: String,
    shard_id: String,
    arrival_time: String,
}

/// Undoes [`write_raw_line`]: the stream record a raw line came from, its
/// data the record as produced (byte for byte when the line was written
/// verbatim), so the transformer of two-stage mode sees what single-stage
/// enrichment sees. The error says what is wrong with the line.
pub(crate) fn read_raw_line(line: &str) -> Result<StreamRecord, String> {
    let record = Record::parse(line)?;
    let (last_key, metadata) = record
        .members()
        .last()
        .ok_or("the line has no kinesis_metadata member")?;
    if last_key != KINESIS_FIELD
        || record
            .members()
            .filter(|(k, _)| *k == KINESIS_FIELD)
            .count()
            != 1
    {
        return Err(format!(
            "the line's last member is not its one {KINESIS_FIELD}"
        ));
    }
    let stream: KinesisMetadata = serde_json::from_str(metadata.get())
        .map_err(|e| format!("{KINESIS_FIELD} is not Weir's: {e}"))?;
    // Where the metadata's key starts: cut there and close the object.
    let value_at = metadata.get().as_ptr() as usize - line.as_ptr() as usize;
    let key_at = line[..value_at]
        .rfind(&format!("\"{KINESIS_FIELD}\""))
        .ok_or("kinesis_metadata key not found")?;
    let before = &line[..key_at];
    let data = match before.strip_suffix(',') {
        Some(members) => format!("{members}}}"),
        None if before.trim_end().ends_with('{') => format!("{before}}}"),
        // A key is written escaped: the record was rebuilt, rebuild it back.
        None => {
            let mut map = record.to_map();
            map.remove(KINESIS_FIELD);
            Value::Object(map).to_string()
        }
    };
    let sequence_number: SequenceNumber = stream
        .sequence_number
        .parse()
        .map_err(|e| format!("{KINESIS_FIELD}.sequence_number: {e}"))?;
    Ok(StreamRecord {
        shard_id: stream.shard_id,
        sequence_number,
        partition_key: stream.partition_key,
        data: data.into_bytes(),
        arrival_time: stream.arrival_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn raw_lines_read_back_as_their_stream_records() {
        for text in [
            r#"{"event_type":"metric","value":3}"#,
            "{}",
            "{ }",
            r#"{ "a" : [1, {"kinesis_metadata": 2}] }"#,
        ] {
            let record = Record::parse(text).unwrap();
            let mut out = Vec::new();
            write_raw_line(&mut out, &record, &source());
            let line = std::str::from_utf8(&out).unwrap().trim_end();
            let back = read_raw_line(line).unwrap();
            assert_eq!(std::str::from_utf8(&back.data).unwrap(), text, "verbatim");
            assert_eq!(back.sequence_number, source().sequence_number);
            assert_eq!(
                (back.shard_id, back.partition_key, back.arrival_time),
                (
                    source().shard_id,
                    source().partition_key,
                    source().arrival_time
                )
            );
        }
        let pretty = Record::parse("{\n \"a\": 1\n}").unwrap();
        let mut out = Vec::new();
        write_raw_line(&mut out, &pretty, &source());
        let back = read_raw_line(std::str::from_utf8(&out).unwrap().trim_end()).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&back.data).unwrap(),
            json!({"a": 1})
        );
        for bad in [
            "not json",
            r#"{"a":1}"#,
            r#"{"kinesis_metadata":{"sequence_number":"1"},"a":1}"#,
            r#"{"kinesis_metadata":"x"}"#,
        ] {
            assert!(read_raw_line(bad).is_err(), "{bad}");
        }
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
