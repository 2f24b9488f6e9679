//! The Lambda handlers on event files, against the embedded backends and real
//! compiled plugins: partial batch failures as Lambda defines them, rollback
//! of a failed attempt, and the two-stage transformer on S3 notifications.

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use serde_json::Value;
use weir_core::backend::{BackendError, DeadLetterFilter, ObjectStore};
use weir_embedded::{LocalObjectStore, SqliteState};
use weir_lambda::kinesis::{self, KinesisEvent};
use weir_lambda::{s3, samples};
use weir_pipeline::{Mode, Pipeline, PipelineSettings};
use weir_testkit::example_router;

const ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/weir";
const SHARD: &str = "shardId-000000000003";

/// The local store, whose writes fail while `down` is set: S3 unavailable.
#[derive(Debug)]
struct FlakyStore {
    inner: LocalObjectStore,
    down: AtomicBool,
    /// Writes that succeed before the store goes down.
    puts_before_down: std::sync::atomic::AtomicUsize,
}

impl ObjectStore for FlakyStore {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), BackendError> {
        if self.down.load(Ordering::SeqCst) {
            let left = self.puts_before_down.load(Ordering::SeqCst);
            if left == 0 {
                return Err(BackendError::retryable(key, "503 Slow Down"));
            }
            self.puts_before_down.store(left - 1, Ordering::SeqCst);
        }
        self.inner.put(key, body).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, BackendError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.inner.delete(key).await
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    state: SqliteState,
    pipeline: Pipeline<FlakyStore, SqliteState, SqliteState>,
}

fn setup(mode: Mode) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteState::open(dir.path().join("weir.db")).unwrap();
    let objects = FlakyStore {
        inner: LocalObjectStore::open(dir.path().join("objects")).unwrap(),
        down: AtomicBool::new(false),
        puts_before_down: 0.into(),
    };
    let pipeline = Pipeline {
        objects,
        dead_letters: state.clone(),
        metadata: state.clone(),
        router: example_router(&[("transaction", "transaction"), ("metric", "metric")]).into(),
        settings: PipelineSettings {
            mode,
            ..Default::default()
        },
    };
    Setup {
        _dir: dir,
        state,
        pipeline,
    }
}

fn now() -> DateTime<Utc> {
    weir_core::time::parse_rfc3339("2024-01-15T10:31:00Z").unwrap()
}

/// Good records and poison ones, as Lambda would deliver them; one record's
/// data is made not base64 by hand (Kinesis never sends that, a file may).
fn event() -> KinesisEvent {
    let records: Vec<(String, Vec<u8>)> = [
        r#"{"event_type":"transaction","timestamp":"2024-01-15T10:30:00Z","amount":1500}"#,
        r#"{"event_type":"metric","timestamp":"2024-01-15T10:30:00Z","metric_name":"cpu","value":50}"#,
        "not json",
        r#"{"event_type":"transaction"}"#,
        r#"{"event_type":"page_view","timestamp":"2024-01-15T10:30:00Z"}"#,
        "placeholder",
    ]
    .iter()
    .enumerate()
    .map(|(i, text)| (format!("user-{i}"), text.as_bytes().to_vec()))
    .collect();
    let mut value = samples::kinesis_event(ARN, SHARD, &records, 10, now());
    value["Records"][5]["kinesis"]["data"] = Value::from("%%% not base64 %%%");
    serde_json::from_value(value).unwrap()
}

#[tokio::test]
async fn poison_records_are_dead_lettered_and_not_reported() {
    let s = setup(Mode::SingleStage);
    let handled = kinesis::handle(&s.pipeline, event(), now()).await;
    assert!(
        handled.response.batch_item_failures.is_empty(),
        "{:?}",
        handled.response
    );
    assert_eq!(handled.batches.len(), 1);
    let counts = &handled.batches[0].counts;
    assert_eq!((counts.records, counts.refused_at_intake), (6, 3));
    assert!(counts.is_balanced(true));
    assert_eq!(
        handled.batches[0].batch_id,
        format!(
            "{SHARD}-{}-{}",
            samples::sequence_number(10),
            samples::sequence_number(15)
        )
    );
    let letters = s
        .state
        .dead_letters(DeadLetterFilter::default())
        .await
        .unwrap();
    let mut kinds: Vec<(&str, &str)> = letters
        .iter()
        .map(|(_, l)| (l.kind.as_str(), l.sequence_number.as_str()))
        .collect();
    kinds.sort();
    let seq = samples::sequence_number;
    assert_eq!(
        kinds,
        [
            ("missing-field", seq(13).as_str()),
            ("not-base64", seq(15).as_str()),
            ("not-json", seq(12).as_str()),
        ]
    );
    let not_base64 = letters
        .iter()
        .find(|(_, l)| l.kind == "not-base64")
        .unwrap();
    assert_eq!(
        not_base64.1.payload, b"%%% not base64 %%%",
        "the data as delivered"
    );
    assert_eq!(not_base64.1.shard_id, SHARD);
    assert_eq!(
        s.pipeline.objects.list("processed/").await.unwrap().len(),
        3
    );
}

#[tokio::test]
async fn a_backend_failure_reports_the_lowest_sequence_number_and_rolls_back() {
    let s = setup(Mode::SingleStage);
    // The first object lands, the second write fails: S3 went away mid-batch.
    s.pipeline
        .objects
        .puts_before_down
        .store(1, Ordering::SeqCst);
    s.pipeline.objects.down.store(true, Ordering::SeqCst);
    let handled = kinesis::handle(&s.pipeline, event(), now()).await;
    let failures: Vec<Option<String>> = handled
        .response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failures, [Some(samples::sequence_number(10))]);
    assert_eq!(handled.failures.len(), 1);
    assert!(
        handled.failures[0].1.contains("503"),
        "{:?}",
        handled.failures
    );
    assert!(
        s.pipeline.objects.list("").await.unwrap().is_empty(),
        "the object written before the failure was rolled back"
    );
    assert!(
        s.state
            .dead_letters(DeadLetterFilter::default())
            .await
            .unwrap()
            .is_empty()
    );

    // Lambda retries from the reported record, here with one more record
    // arrived: a different batch, so different keys. Nothing appears twice.
    s.pipeline.objects.down.store(false, Ordering::SeqCst);
    let mut retry = event();
    let more = samples::kinesis_event(
        ARN,
        SHARD,
        &[("user-9".into(), br#"{"event_type":"metric","timestamp":"2024-01-15T10:30:09Z","metric_name":"m","value":1}"#.to_vec())],
        16,
        now(),
    );
    retry.records.extend(
        serde_json::from_value::<KinesisEvent>(more)
            .unwrap()
            .records,
    );
    let handled = kinesis::handle(&s.pipeline, retry, now()).await;
    assert!(handled.response.batch_item_failures.is_empty());
    let mut lines = 0;
    for key in s.pipeline.objects.list("processed/").await.unwrap() {
        let body = s.pipeline.objects.get(&key).await.unwrap().unwrap();
        lines += body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
    }
    assert_eq!(lines, 4, "3 good records and the new one, once each");
}

#[tokio::test]
async fn the_s3_handler_transforms_raw_objects_and_skips_everything_else() {
    let s = setup(Mode::TwoStage);
    let handled = kinesis::handle(&s.pipeline, event(), now()).await;
    assert!(handled.response.batch_item_failures.is_empty());
    assert!(
        s.pipeline
            .objects
            .list("processed/")
            .await
            .unwrap()
            .is_empty(),
        "two-stage: raw only"
    );
    let raw_keys: Vec<String> = handled.batches[0].raw_keys().map(str::to_owned).collect();
    assert_eq!(raw_keys.len(), 3);

    let mut keys: Vec<(String, u64)> = raw_keys.iter().map(|k| (k.clone(), 1)).collect();
    keys.push((
        "processed/event_type=metric/year=2024/month=01/day=15/hour=10/x-1-2.jsonl".into(),
        1,
    ));
    let gone = raw_keys[0]
        .replace(".jsonl", "7.jsonl")
        .replace(&samples::sequence_number(15), &samples::sequence_number(16));
    keys.push((gone.clone(), 1));
    let mut event = samples::s3_event("weir-raw", &keys, now());
    event["Records"][0]["eventName"] = Value::from("ObjectRemoved:Delete");
    let event = serde_json::from_value(event).unwrap();

    let transformed = s3::handle(&s.pipeline, event, now()).await.unwrap();
    assert_eq!(transformed.results.len(), 2);
    let skipped: Vec<&str> = transformed
        .skipped
        .iter()
        .map(|(_, why)| why.as_str())
        .collect();
    assert_eq!(
        skipped,
        [
            "ObjectRemoved:Delete is not a creation",
            "not a raw object key",
            "no such object"
        ]
    );
    let processed = s.pipeline.objects.list("processed/").await.unwrap();
    assert_eq!(processed.len(), 2);
    for result in &transformed.results {
        assert!(result.counts.is_balanced(true));
        assert!(result.batch_id.starts_with("raw/"));
    }

    // The store failing is an error: Lambda retries the invocation.
    s.pipeline.objects.down.store(true, Ordering::SeqCst);
    let event = serde_json::from_value(samples::s3_event("weir-raw", &keys[1..2], now())).unwrap();
    let e = s3::handle(&s.pipeline, event, now()).await.unwrap_err();
    assert!(e.retryable, "{e}");
}

#[tokio::test]
async fn each_batch_yields_its_cloudwatch_embedded_metric_documents() {
    let s = setup(Mode::SingleStage);
    // Handled 12 s after the records arrived on the stream.
    let later = now() + chrono::Duration::seconds(12);
    let handled = kinesis::handle(&s.pipeline, event(), later).await;
    assert_eq!(handled.observations.len(), 1);
    let documents =
        weir_pipeline::telemetry::emf_document("weir-processor", &handled.observations[0], later);
    // The batch's, then one per plugin version it used.
    assert_eq!(documents.len(), 3, "{documents:#?}");
    let batch = &documents[0];
    let directive = &batch["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "Weir");
    assert_eq!(directive["Dimensions"], serde_json::json!([["Function"]]));
    let names: Vec<&str> = directive["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    for name in &names {
        assert!(
            batch.get(*name).is_some(),
            "every declared metric has a value: {name}"
        );
    }
    assert_eq!(batch["_aws"]["Timestamp"], later.timestamp_millis());
    assert_eq!(batch["Function"], "weir-processor");
    assert_eq!(batch["RecordsIn"], 6);
    assert_eq!(batch["RecordsDeadLettered"], 3);
    assert_eq!(
        batch["RecordsWritten"], 3,
        "two enriched, one passed through"
    );
    assert_eq!(batch["IteratorAge"], 12_000);
    let plugins: Vec<&str> = documents[1..]
        .iter()
        .map(|d| d["Plugin"].as_str().unwrap())
        .collect();
    assert_eq!(plugins, ["metric@1.0.0", "transaction@1.0.0"]);
    assert_eq!(documents[1]["PluginInvocations"], 1);
    assert_eq!(
        documents[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([["Function", "Plugin"]])
    );
}
