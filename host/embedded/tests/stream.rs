//! The embedded stream, on a real SQLite database, with a controlled clock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weir_core::stream::{
    PutRecord, PutResult, SequenceNumber, StartingPosition, StreamSink, StreamSource,
};
use weir_embedded::{EmbeddedStream, SqliteState, StreamSettings};

/// A clock the test moves by hand.
#[derive(Clone)]
struct TestClock(Arc<Mutex<SystemTime>>);

impl TestClock {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(
            UNIX_EPOCH + Duration::from_secs(1_705_314_600),
        )))
    }
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
    fn clock(&self) -> weir_embedded::Clock {
        let me = self.clone();
        Arc::new(move || *me.0.lock().unwrap())
    }
}

/// A one-shard stream: every record in one place, in order.
fn one_shard() -> StreamSettings {
    StreamSettings {
        shard_count: 1,
        ..StreamSettings::new("events")
    }
}

fn record(key: &str, data: &str) -> PutRecord {
    PutRecord {
        partition_key: key.to_owned(),
        data: data.as_bytes().to_vec(),
    }
}

async fn stream(
    dir: &std::path::Path,
    clock: &TestClock,
    settings: StreamSettings,
) -> EmbeddedStream {
    let state = SqliteState::open(dir.join("weir.db")).unwrap();
    EmbeddedStream::open_with_clock(state, settings, clock.clock())
        .await
        .unwrap()
}

fn accepted(result: &PutResult) -> (String, SequenceNumber) {
    match result {
        PutResult::Accepted {
            shard_id,
            sequence_number,
        } => (shard_id.clone(), sequence_number.clone()),
        other => panic!("expected accepted, got {other:?}"),
    }
}

#[tokio::test]
async fn records_go_to_the_shard_owning_their_md5_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let s = stream(dir.path(), &clock, StreamSettings::new("events")).await;
    assert_eq!(
        s.shards().await.unwrap(),
        ["shardId-000000000000", "shardId-000000000001"]
    );
    // MD5("a") = 0cc175b9...: the lower half. MD5("abc") = 90015098...: the upper half.
    let results = s
        .put_records(vec![record("a", "1"), record("abc", "2"), record("a", "3")])
        .await
        .unwrap();
    let (shard_a, first) = accepted(&results[0]);
    let (shard_abc, _) = accepted(&results[1]);
    let (shard_a2, third) = accepted(&results[2]);
    assert_eq!(
        (shard_a.as_str(), shard_abc.as_str()),
        ("shardId-000000000000", "shardId-000000000001")
    );
    assert_eq!(shard_a, shard_a2);
    assert!(third > first, "sequence numbers increase within a shard");

    let read = s
        .read("shardId-000000000000", &StartingPosition::TrimHorizon, 10)
        .await
        .unwrap();
    let data: Vec<&[u8]> = read.records.iter().map(|r| r.data.as_slice()).collect();
    assert_eq!(data, [b"1".as_slice(), b"3"]);
    assert_eq!(read.records[0].arrival_time, "2024-01-15T10:30:00.000Z");
    assert_eq!(read.next, StartingPosition::AfterSequenceNumber(third));
}

#[tokio::test]
async fn each_shard_is_throttled_per_second_like_kinesis() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let s = stream(dir.path(), &clock, StreamSettings::new("events")).await;
    let batch: Vec<PutRecord> = (0..1001).map(|i| record("a", &i.to_string())).collect();
    let results = s.put_records(batch).await.unwrap();
    assert!(
        results[..1000]
            .iter()
            .all(|r| matches!(r, PutResult::Accepted { .. }))
    );
    assert_eq!(
        results[1000],
        PutResult::Throttled {
            shard_id: "shardId-000000000000".into()
        }
    );
    // The other shard has its own budget.
    assert!(matches!(
        s.put_records(vec![record("abc", "x")]).await.unwrap()[0],
        PutResult::Accepted { .. }
    ));
    // The next second, the shard accepts again.
    clock.advance(Duration::from_secs(1));
    assert!(matches!(
        s.put_records(vec![record("a", "y")]).await.unwrap()[0],
        PutResult::Accepted { .. }
    ));

    // The byte budget: 1 MiB per shard and second.
    clock.advance(Duration::from_secs(1));
    let big = "x".repeat(600 << 10);
    let results = s
        .put_records(vec![record("a", &big), record("a", &big)])
        .await
        .unwrap();
    assert!(matches!(results[0], PutResult::Accepted { .. }));
    assert!(matches!(results[1], PutResult::Throttled { .. }));
}

#[tokio::test]
async fn bad_records_are_refused_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let s = stream(dir.path(), &clock, StreamSettings::new("events")).await;
    let results = s
        .put_records(vec![record("", "x"), record("k", "ok")])
        .await
        .unwrap();
    assert!(
        matches!(&results[0], PutResult::Refused { reason } if reason.contains("partition key"))
    );
    assert!(matches!(results[1], PutResult::Accepted { .. }));
}

#[tokio::test]
async fn reads_continue_from_where_they_stopped_and_from_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let s = stream(dir.path(), &clock, one_shard()).await;
    let shard = "shardId-000000000000";
    let latest = s.read(shard, &StartingPosition::Latest, 10).await.unwrap();
    assert!(latest.records.is_empty());
    s.put_records((0..5).map(|i| record("k", &format!("early-{i}"))).collect())
        .await
        .unwrap();
    clock.advance(Duration::from_secs(60));
    s.put_records((0..3).map(|i| record("k", &format!("late-{i}"))).collect())
        .await
        .unwrap();

    // LATEST taken before the puts sees all of them.
    let all = s.read(shard, &latest.next, 100).await.unwrap();
    assert_eq!(all.records.len(), 8);
    // Paging with `next` visits every record once, in order.
    let mut seen = Vec::new();
    let mut position = StartingPosition::TrimHorizon;
    loop {
        let page = s.read(shard, &position, 3).await.unwrap();
        if page.records.is_empty() {
            break;
        }
        seen.extend(
            page.records
                .iter()
                .map(|r| String::from_utf8(r.data.clone()).unwrap()),
        );
        position = page.next;
    }
    assert_eq!(seen.len(), 8);
    assert_eq!(seen[0], "early-0");
    assert_eq!(seen[7], "late-2");
    let at = s
        .read(
            shard,
            &StartingPosition::AtTimestamp("2024-01-15T10:30:30Z".into()),
            10,
        )
        .await
        .unwrap();
    assert_eq!(at.records.len(), 3);
    assert!(
        s.read("shardId-000000000009", &StartingPosition::TrimHorizon, 1)
            .await
            .unwrap_err()
            .to_string()
            .contains("no shard")
    );
}

#[tokio::test]
async fn checkpoints_persist_and_never_go_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let shard = "shardId-000000000001";
    {
        let s = stream(dir.path(), &clock, StreamSettings::new("events")).await;
        assert_eq!(s.checkpoint("serve", shard).await.unwrap(), None);
        s.set_checkpoint("serve", shard, SequenceNumber::from_u64(10))
            .await
            .unwrap();
        s.set_checkpoint("serve", shard, SequenceNumber::from_u64(7))
            .await
            .unwrap();
        s.set_checkpoint("other", shard, SequenceNumber::from_u64(3))
            .await
            .unwrap();
    }
    let s = stream(dir.path(), &clock, StreamSettings::new("events")).await;
    assert_eq!(
        s.checkpoint("serve", shard).await.unwrap(),
        Some(SequenceNumber::from_u64(10))
    );
    assert_eq!(
        s.checkpoint("other", shard).await.unwrap(),
        Some(SequenceNumber::from_u64(3))
    );
}

#[tokio::test]
async fn retention_deletes_old_records_and_sequence_numbers_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let s = stream(dir.path(), &clock, one_shard()).await;
    let old = s.put_records(vec![record("k", "old")]).await.unwrap();
    let (_, old_seq) = accepted(&old[0]);
    clock.advance(Duration::from_secs(25 * 3600));
    let new = s.put_records(vec![record("k", "new")]).await.unwrap();
    assert_eq!(s.apply_retention().await.unwrap(), 1);
    let left = s
        .read("shardId-000000000000", &StartingPosition::TrimHorizon, 10)
        .await
        .unwrap();
    assert_eq!(left.records.len(), 1);
    assert_eq!(left.records[0].data, b"new");
    let newer = s.put_records(vec![record("k", "newer")]).await.unwrap();
    assert!(accepted(&newer[0]).1 > accepted(&new[0]).1 && accepted(&new[0]).1 > old_seq);
}

#[tokio::test]
async fn an_existing_stream_keeps_its_shard_count() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    stream(dir.path(), &clock, StreamSettings::new("events")).await;
    let state = SqliteState::open(dir.path().join("weir.db")).unwrap();
    let settings = StreamSettings {
        shard_count: 4,
        ..StreamSettings::new("events")
    };
    let err = EmbeddedStream::open_with_clock(state, settings, clock.clock())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("exists with 2 shards, not 4"),
        "{err}"
    );
}
