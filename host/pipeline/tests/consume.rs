//! Consuming the embedded stream: checkpoints, crash and replay, the service loop.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use weir_core::backend::{BackendError, MetadataStore, ObjectStore};
use weir_core::stream::{PutRecord, PutResult, StreamSink, StreamSource};
use weir_embedded::{EmbeddedStream, LocalObjectStore, SqliteState, StreamSettings};
use weir_pipeline::{ConsumerSettings, Mode, Pipeline, PipelineSettings, drain, serve};

async fn produce(stream: &EmbeddedStream, n: usize) {
    produce_numbered(stream, 0..n).await;
}

/// Records numbered `ns` (the `n` field), half transactions, half metrics.
async fn produce_numbered(stream: &EmbeddedStream, ns: std::ops::Range<usize>) {
    let records = ns
        .map(|i| {
            let event = if i % 2 == 0 {
                json!({"event_type": "transaction", "timestamp": "2024-01-15T10:30:00Z", "amount": i, "n": i})
            } else {
                json!({"event_type": "metric", "timestamp": "2024-01-15T10:30:00Z", "metric_name": "m", "value": i, "n": i})
            };
            PutRecord { partition_key: format!("key-{i}"), data: event.to_string().into_bytes() }
        })
        .collect();
    let results = stream.put_records(records).await.unwrap();
    assert!(
        results
            .iter()
            .all(|r| matches!(r, PutResult::Accepted { .. }))
    );
}

/// The `n` of every processed record, as a set, checking none repeats.
async fn processed_ns(store: &LocalObjectStore) -> HashSet<u64> {
    let mut seen = HashSet::new();
    for key in store.list("processed/").await.unwrap() {
        let body = store.get(&key).await.unwrap().unwrap();
        for line in String::from_utf8(body).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let n = v["enriched_data"]["n"].as_u64().unwrap();
            assert!(seen.insert(n), "record {n} written twice");
        }
    }
    seen
}

struct Setup {
    _dir: tempfile::TempDir,
    stream: EmbeddedStream,
    state: SqliteState,
    root: std::path::PathBuf,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteState::open(dir.path().join("state/weir.db")).unwrap();
    let stream = EmbeddedStream::open(state.clone(), StreamSettings::new("events"))
        .await
        .unwrap();
    let root = dir.path().join("objects");
    Setup {
        _dir: dir,
        stream,
        state,
        root,
    }
}

fn pipeline<O: ObjectStore>(
    objects: O,
    state: &SqliteState,
) -> Pipeline<O, SqliteState, SqliteState> {
    let router = common::router(&[("transaction", "transaction"), ("metric", "metric")]);
    common::pipeline(objects, state, router, PipelineSettings::default())
}

#[tokio::test]
async fn drain_processes_every_shard_once_and_resumes_from_checkpoints() {
    let s = setup().await;
    produce(&s.stream, 250).await;
    let p = pipeline(LocalObjectStore::open(&s.root).unwrap(), &s.state);
    let settings = ConsumerSettings {
        batch_size: 100,
        ..Default::default()
    };
    let report = drain(&s.stream, &p, &settings).await.unwrap();
    assert_eq!(report.counts.records, 250);
    assert!(report.counts.is_balanced(true));
    assert!(
        report.batches >= 3,
        "batches of at most 100 per shard: {}",
        report.batches
    );
    assert_eq!(processed_ns(&p.objects).await.len(), 250);
    for shard in s.stream.shards().await.unwrap() {
        assert!(s.stream.checkpoint("weir", &shard).await.unwrap().is_some());
    }
    // Nothing new: nothing processed again.
    assert_eq!(drain(&s.stream, &p, &settings).await.unwrap().batches, 0);
    produce(&s.stream, 10).await;
    assert_eq!(
        drain(&s.stream, &p, &settings)
            .await
            .unwrap()
            .counts
            .records,
        10
    );
}

#[tokio::test]
async fn drain_in_two_stage_mode_transforms_every_raw_object_before_checkpointing() {
    let s = setup().await;
    produce(&s.stream, 120).await;
    let router = common::router(&[("transaction", "transaction"), ("metric", "metric")]);
    let settings = PipelineSettings {
        mode: Mode::TwoStage,
        ..Default::default()
    };
    let p = common::pipeline(
        LocalObjectStore::open(&s.root).unwrap(),
        &s.state,
        router,
        settings,
    );
    let report = drain(&s.stream, &p, &ConsumerSettings::default())
        .await
        .unwrap();
    assert_eq!(report.counts.records, 120);
    assert!(report.counts.is_balanced(true), "{:?}", report.counts);
    assert_eq!(report.counts.enriched, 120);
    assert_eq!(processed_ns(&p.objects).await.len(), 120);
}

struct CrashingStore {
    inner: LocalObjectStore,
    puts: AtomicUsize,
    fail_at: usize,
}

impl ObjectStore for CrashingStore {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), BackendError> {
        if self.puts.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
            return Err(BackendError::retryable(
                format!("writing {key}"),
                "simulated crash",
            ));
        }
        self.inner.put(key, body).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.inner.get(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.inner.delete(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, BackendError> {
        self.inner.list(prefix).await
    }
}

#[tokio::test]
async fn a_crash_mid_batch_replays_without_losing_or_duplicating_records() {
    let s = setup().await;
    produce(&s.stream, 300).await;
    // Two batches of 50 (~8 objects) are made durable together: the 9th
    // object fails the second group of the first shard.
    let settings = ConsumerSettings {
        batch_size: 50,
        batches_per_commit: 2,
        ..Default::default()
    };
    let crashing = CrashingStore {
        inner: LocalObjectStore::open(&s.root).unwrap(),
        puts: AtomicUsize::new(0),
        fail_at: 9,
    };
    let before_crash = pipeline(crashing, &s.state);
    let err = drain(&s.stream, &before_crash, &settings)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("simulated crash"));
    let partial = processed_ns(&before_crash.objects.inner).await.len();
    assert!(
        partial > 0 && partial < 300,
        "the crash came mid-way: {partial}"
    );

    // Restart: a new pipeline resumes from the checkpoints.
    let after = pipeline(LocalObjectStore::open(&s.root).unwrap(), &s.state);
    let report = drain(&s.stream, &after, &settings).await.unwrap();
    assert!(
        report.counts.records < 300,
        "only unfinished batches are replayed"
    );
    let ns = processed_ns(&after.objects).await;
    assert_eq!(ns.len(), 300, "every record exactly once");
}

/// A shard behind catches up several batches per commit; each batch is the
/// one it would have been alone: the same records, objects, keys and
/// metadata, and the same checkpoints.
#[tokio::test]
async fn catching_up_in_groups_writes_what_one_batch_at_a_time_writes() {
    let mut outcomes = Vec::new();
    for batches_per_commit in [1, 4] {
        let s = setup().await;
        produce(&s.stream, 1_030).await;
        let p = pipeline(LocalObjectStore::open(&s.root).unwrap(), &s.state);
        let settings = ConsumerSettings {
            batch_size: 100,
            batches_per_commit,
            ..Default::default()
        };
        let report = drain(&s.stream, &p, &settings).await.unwrap();
        assert_eq!(report.counts.records, 1_030);
        assert!(report.counts.is_balanced(true), "{:?}", report.counts);
        assert_eq!(processed_ns(&p.objects).await.len(), 1_030);
        let mut batches = Vec::new();
        let mut checkpoints = Vec::new();
        for shard in s.stream.shards().await.unwrap() {
            for b in s.state.batches_for_shard(&shard, 1_000).await.unwrap() {
                batches.push((
                    b.batch_id,
                    b.total_records,
                    b.success_records,
                    b.object_keys,
                ));
            }
            checkpoints.push(s.stream.checkpoint("weir", &shard).await.unwrap());
        }
        batches.sort();
        let keys = p.objects.list("").await.unwrap();
        outcomes.push((report.batches, batches, checkpoints, keys));
    }
    let (alone, grouped) = (&outcomes[0], &outcomes[1]);
    assert!(alone.0 >= 11, "batches of at most 100: {}", alone.0);
    assert_eq!(alone.0, grouped.0, "as many batches");
    assert_eq!(
        alone.1, grouped.1,
        "the same batches, with the same objects"
    );
    assert_eq!(alone.2, grouped.2, "the same checkpoints");
    assert_eq!(alone.3, grouped.3, "the same object keys");
}

#[tokio::test]
async fn serve_consumes_as_records_arrive_and_stops_cleanly() {
    let s = setup().await;
    let settings = ConsumerSettings {
        batch_size: 100,
        batching_window: Duration::from_millis(50),
        poll_interval: Duration::from_millis(10),
        ..Default::default()
    };
    let p = Arc::new(pipeline(LocalObjectStore::open(&s.root).unwrap(), &s.state));
    let stream = Arc::new(s.stream.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(serve(stream, p.clone(), settings, async {
        let _ = stop_rx.await;
    }));
    // Fewer records than a batch: the batching window lets them through.
    produce(&s.stream, 30).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while processed_ns(&p.objects).await.len() < 30 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "serve did not process the records"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A backlog: full batches, several per commit, then the rest.
    produce_numbered(&s.stream, 30..480).await;
    while processed_ns(&p.objects).await.len() < 480 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "serve did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(());
    let report = service.await.unwrap().unwrap();
    assert_eq!(report.counts.records, 480);
    assert_eq!(processed_ns(&p.objects).await.len(), 480);
}

#[tokio::test]
async fn a_consumer_with_telemetry_counts_records_latency_and_plugins_for_prometheus() {
    use weir_pipeline::telemetry::Telemetry;
    let s = setup().await;
    produce(&s.stream, 40).await;
    let mut broken = s
        .stream
        .put_records(vec![PutRecord {
            partition_key: "bad".into(),
            data: b"not json".to_vec(),
        }])
        .await
        .unwrap();
    assert!(matches!(broken.remove(0), PutResult::Accepted { .. }));
    let objects = LocalObjectStore::open(&s.root).unwrap();
    let telemetry = Arc::new(Telemetry::new());
    let settings = ConsumerSettings {
        batch_size: 10,
        telemetry: Some(telemetry.clone()),
        ..Default::default()
    };
    let report = drain(&s.stream, &pipeline(objects, &s.state), &settings)
        .await
        .unwrap();
    let text = telemetry.render_prometheus();
    let value = |line_start: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_else(|| panic!("no `{line_start}` in\n{text}"))
            .rsplit_once(' ')
            .unwrap()
            .1
            .parse()
            .unwrap()
    };
    assert_eq!(value("weir_records_in_total "), 41.0);
    assert_eq!(value("weir_records_written_total "), 40.0);
    assert_eq!(value("weir_records_dead_lettered_total "), 1.0);
    assert_eq!(value("weir_batches_total "), f64::from(report.batches));
    assert!(value("weir_bytes_in_total ") > 40.0 * 50.0);
    assert!(value("weir_batch_duration_seconds{quantile=\"0.99\"} ") > 0.0);
    assert!(
        value("weir_batch_duration_seconds{quantile=\"0.5\"} ")
            <= value("weir_batch_duration_seconds{quantile=\"0.99\"} ")
    );
    assert_eq!(
        value("weir_plugin_records_total{plugin=\"transaction@1.0.0\"} "),
        20.0
    );
    assert_eq!(
        value("weir_plugin_records_total{plugin=\"metric@1.0.0\"} "),
        20.0
    );
    assert_eq!(
        value("weir_plugin_faults_total{plugin=\"metric@1.0.0\"} "),
        0.0
    );
    assert!(value("weir_plugin_peak_memory_bytes{plugin=\"metric@1.0.0\"} ") > 0.0);
    assert!(text.contains("# TYPE weir_records_in_total counter"));
    assert!(text.contains("# TYPE weir_batch_duration_seconds summary"));
}
