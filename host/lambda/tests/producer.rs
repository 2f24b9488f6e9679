//! The producer function on the embedded stream, whose per-shard limits
//! throttle like Kinesis: every record ends up on the stream, throttled ones
//! retried, and bad requests are refused with the field named.

use std::collections::HashMap;

use weir_core::stream::{StartingPosition, StreamSource};
use weir_embedded::{EmbeddedStream, SqliteState, StreamSettings};
use weir_lambda::producer::{ProduceRequest, produce};

#[tokio::test]
async fn every_generated_record_reaches_the_stream_despite_throttling() {
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteState::open(dir.path().join("weir.db")).unwrap();
    let settings = StreamSettings {
        shard_count: 2,
        max_records_per_second: 150,
        ..StreamSettings::new("produced")
    };
    let stream = EmbeddedStream::open(state, settings).await.unwrap();
    let request: ProduceRequest =
        serde_json::from_str(r#"{"count": 600, "tenants": ["acme", "globex"]}"#).unwrap();
    let stats = produce(&stream, &request).await.unwrap();
    assert_eq!((stats.sent, stats.gave_up, stats.refused), (600, 0, 0));
    assert!(
        stats.throttled > 0 && stats.retried == stats.throttled,
        "{stats:?}"
    );
    assert_eq!(stats.shards.values().sum::<u64>(), 600);

    let mut tenants: HashMap<String, usize> = HashMap::new();
    for shard in stream.shards().await.unwrap() {
        let read = stream
            .read(&shard, &StartingPosition::TrimHorizon, 1000)
            .await
            .unwrap();
        for record in read.records {
            let event: serde_json::Value = serde_json::from_slice(&record.data).unwrap();
            *tenants
                .entry(event["tenant_id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    assert_eq!(tenants["acme"] + tenants["globex"], 600);
}

#[tokio::test]
async fn bad_requests_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteState::open(dir.path().join("weir.db")).unwrap();
    let stream = EmbeddedStream::open(state, StreamSettings::new("produced"))
        .await
        .unwrap();
    let unknown: ProduceRequest =
        serde_json::from_str(r#"{"types": ["transaction", "nope"]}"#).unwrap();
    assert!(
        produce(&stream, &unknown)
            .await
            .unwrap_err()
            .contains("unknown event type `nope`")
    );
    let many: ProduceRequest = serde_json::from_str(r#"{"count": 20000}"#).unwrap();
    assert!(
        produce(&stream, &many)
            .await
            .unwrap_err()
            .contains("count 20000")
    );
    assert!(
        serde_json::from_str::<ProduceRequest>(r#"{"cuont": 1}"#).is_err(),
        "unknown fields are refused"
    );
    let default = produce(&stream, &ProduceRequest::default()).await.unwrap();
    assert_eq!(
        default.sent, 10,
        "`{{}}` puts ten events, as the seed's producer is invoked"
    );
}
