//! Event files as Lambda delivers them, for `weir events` and the tests.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use weir_core::stream::StreamRecord;
use weir_core::time;

/// The first 34 digits of the sample sequence numbers: real Kinesis sequence
/// numbers have 56 digits, beyond any machine integer, and the samples keep
/// them so.
const SEQUENCE_PREFIX: &str = "4959033827149025660855969253836157";

/// The sample sequence number `n` (56 digits).
pub fn sequence_number(n: u64) -> String {
    format!("{SEQUENCE_PREFIX}{n:022}")
}

/// A Kinesis event of `records` (partition key, bytes) from one shard, as
/// Lambda's event source mapping delivers it. Sequence numbers start at
/// [`sequence_number`]`(first)`.
pub fn kinesis_event(
    stream_arn: &str,
    shard_id: &str,
    records: &[(String, Vec<u8>)],
    first: u64,
    arrival: DateTime<Utc>,
) -> Value {
    let records: Vec<StreamRecord> = records
        .iter()
        .zip(first..)
        .map(|((partition_key, data), n)| StreamRecord {
            shard_id: shard_id.to_owned(),
            sequence_number: sequence_number(n)
                .parse()
                .expect("sample sequence numbers are digits"),
            partition_key: partition_key.clone(),
            data: data.clone(),
            arrival_time: time::format_utc(arrival),
        })
        .collect();
    kinesis_event_of(stream_arn, &records)
}

/// The Kinesis event Lambda would deliver for records read from a stream:
/// what the event source mapping builds from GetRecords.
pub fn kinesis_event_of(stream_arn: &str, records: &[StreamRecord]) -> Value {
    let region = stream_arn.split(':').nth(3).unwrap_or("us-east-1");
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            let arrival = time::parse_rfc3339(&r.arrival_time).map_or(0, |t| t.timestamp_millis());
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number.as_str(),
                    "data": STANDARD.encode(&r.data),
                    "approximateArrivalTimestamp": arrival as f64 / 1000.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{}:{}", r.shard_id, r.sequence_number),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/weir-stream-processor",
                "awsRegion": region,
                "eventSourceARN": stream_arn,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// Encodes a key as S3 notifications do: URL-encoded, `/` kept, `+` for
/// space.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 16);
    for byte in key.bytes() {
        match byte {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An S3 event announcing `keys` as created in `bucket`.
pub fn s3_event(bucket: &str, keys: &[(String, u64)], at: DateTime<Utc>) -> Value {
    let records: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(i, (key, size))| {
            json!({
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": time::format_utc(at),
                "eventName": "ObjectCreated:Put",
                "userIdentity": { "principalId": "AWS:weir-stream-processor" },
                "requestParameters": { "sourceIPAddress": "127.0.0.1" },
                "responseElements": {},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "weir-raw-objects",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": { "principalId": "weir" },
                        "arn": format!("arn:aws:s3:::{bucket}"),
                    },
                    "object": {
                        "key": encode_key(key),
                        "size": size,
                        "sequencer": format!("{:016X}", i),
                    },
                },
            })
        })
        .collect();
    json!({ "Records": records })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinesis::KinesisEvent;
    use aws_lambda_events::s3::S3Event;

    #[test]
    fn samples_parse_as_the_handlers_read_them() {
        let at = Utc::now();
        let kinesis = kinesis_event(
            "arn:aws:kinesis:eu-west-1:123456789012:stream/weir",
            "shardId-000000000001",
            &[("k".into(), b"{}".to_vec()), ("k".into(), b"\xff".to_vec())],
            7,
            at,
        );
        let event: KinesisEvent = serde_json::from_value(kinesis).unwrap();
        assert_eq!(event.records.len(), 2);
        assert_eq!(event.records[1].kinesis.sequence_number.len(), 56);
        assert_eq!(event.records[1].kinesis.sequence_number, sequence_number(8));

        let key = "raw/event_type=a b/year=2024/x+y.jsonl".to_owned();
        let s3: S3Event = serde_json::from_value(s3_event("raw", &[(key.clone(), 3)], at)).unwrap();
        let spelled = s3.records[0].s3.object.key.clone().unwrap();
        assert_eq!(spelled, "raw/event_type%3Da+b/year%3D2024/x%2By.jsonl");
        assert_eq!(crate::s3::decode_key(&spelled), Some(key));
    }
}
