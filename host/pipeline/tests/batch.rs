//! One batch through the whole record path, on the embedded backends with real
//! compiled plugins.

mod common;

use chrono::{DateTime, Utc};
use serde_json::Value;
use weir_core::backend::{DeadLetterFilter, MetadataStore, ObjectStore};
use weir_core::stream::{SequenceNumber, StreamRecord};
use weir_embedded::{LocalObjectStore, SqliteState};
use weir_pipeline::{BatchResult, Mode, Pipeline, PipelineSettings};
use weir_runtime::router::Router;

const SHARD: &str = "shardId-000000000000";

fn record(seq: u64, data: &[u8]) -> StreamRecord {
    StreamRecord {
        shard_id: SHARD.into(),
        sequence_number: SequenceNumber::from_u64(seq),
        partition_key: format!("pk-{}", seq % 3),
        data: data.to_vec(),
        arrival_time: "2024-01-15T10:30:05.000Z".into(),
    }
}

fn now() -> DateTime<Utc> {
    weir_core::time::parse_rfc3339("2024-01-15T10:31:00Z").unwrap()
}

fn router() -> Router {
    common::router(&[
        ("transaction", "transaction"),
        ("metric", "metric"),
        ("hostile", "hostile"),
    ])
}

type LocalPipeline = Pipeline<LocalObjectStore, SqliteState, SqliteState>;

/// A two-stage pipeline with its state under `dir`.
fn two_stage(dir: &std::path::Path) -> (SqliteState, LocalPipeline) {
    let state = SqliteState::open(dir.join("weir.db")).unwrap();
    let settings = PipelineSettings {
        mode: Mode::TwoStage,
        ..Default::default()
    };
    let pipeline = common::pipeline(
        LocalObjectStore::open(dir.join("objects")).unwrap(),
        &state,
        router(),
        settings,
    );
    (state, pipeline)
}

/// A two-stage pipeline under `dir` that has run [`batch`]'s raw stage.
async fn two_stage_after_a_batch(
    dir: &std::path::Path,
) -> (SqliteState, LocalPipeline, BatchResult) {
    let (state, pipeline) = two_stage(dir);
    let raw = pipeline
        .process_batch(SHARD, &batch(), now())
        .await
        .unwrap();
    (state, pipeline, raw)
}

/// A batch with good records of bound and unbound types and the hostile corpus.
fn batch() -> Vec<StreamRecord> {
    let items: Vec<&[u8]> = vec![
        br#"{"event_type":"transaction","timestamp":"2024-01-15T10:30:00Z","amount":1500,"tenant_id":"acme"}"#,
        br#"{"event_type":"metric","timestamp":"2024-01-15T11:59:00+01:00","metric_name":"cpu","value":150}"#,
        br#"{"event_type":"page_view","timestamp":"2024-01-15T10:30:00Z","page":"/"}"#,
        br#"{"event_type":"hostile","timestamp":"2024-01-15T10:30:00Z","attack":"drop"}"#,
        br#"{"event_type":"hostile","timestamp":"2024-01-15T10:30:00Z","attack":"invalid-json"}"#,
        b"not json",
        &[0xff, 0xfe, 0x00],
        br#"{"event_type":"transaction","timestamp":"2024-01-15T10:30:00Z"}"#,
        br#"{"event_type":"../../escape","timestamp":"2024-01-15T10:30:00Z"}"#,
        br#"{"event_type":"x","tenant_id":"../../etc"}"#,
    ];
    items
        .iter()
        .enumerate()
        .map(|(i, data)| record(100 + i as u64, data))
        .collect()
}

async fn lines(store: &LocalObjectStore, prefix: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for key in store.list(prefix).await.unwrap() {
        let body = store.get(&key).await.unwrap().unwrap();
        for line in String::from_utf8(body).unwrap().lines() {
            all.push(serde_json::from_str(line).unwrap());
        }
    }
    all
}

#[tokio::test]
async fn every_record_is_written_dropped_or_dead_lettered_and_nothing_leaves_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let objects = LocalObjectStore::open(dir.path().join("objects")).unwrap();
    let state = SqliteState::open(dir.path().join("state/weir.db")).unwrap();
    let pipeline = common::pipeline(objects, &state, router(), PipelineSettings::default());
    let records = batch();
    let result = pipeline
        .process_batch(SHARD, &records, now())
        .await
        .unwrap();
    let c = &result.counts;
    assert_eq!(result.batch_id, "shardId-000000000000-100-109");
    assert_eq!(
        (c.records, c.accepted, c.refused_at_intake),
        (10, 6, 4),
        "{c:?}"
    );
    assert_eq!(
        (
            c.enriched,
            c.passed_through,
            c.dropped,
            c.rejected_by_plugins
        ),
        (2, 2, 1, 1),
        "{c:?}"
    );
    assert!(c.is_balanced(true), "{c:?}");

    // Raw stage: every accepted record, with its stream metadata, by partition.
    let raw = lines(&pipeline.objects, "raw/").await;
    assert_eq!(raw.len(), 6);
    assert!(
        raw.iter()
            .all(|l| l["kinesis_metadata"]["shard_id"] == SHARD)
    );
    // Processed stage: enriched and passed-through records in the envelope.
    let processed = lines(&pipeline.objects, "processed/").await;
    assert_eq!(processed.len() as u32, c.outputs);
    let tx = processed
        .iter()
        .find(|l| l["enriched_data"]["event_type"] == "transaction")
        .unwrap();
    assert_eq!(tx["enriched_data"]["is_high_value"], true);
    assert_eq!(tx["metadata"]["plugin"], "transaction@1.0.0");
    let page = processed
        .iter()
        .find(|l| l["enriched_data"]["event_type"] == "page_view")
        .unwrap();
    assert_eq!(
        page["metadata"]["plugin"],
        Value::Null,
        "passed through unenriched"
    );

    // Partitions come from the event time in UTC; the traversal attempt is encoded.
    let keys = pipeline.objects.list("").await.unwrap();
    assert!(
        keys.iter().any(
            |k| k.starts_with("processed/event_type=metric/year=2024/month=01/day=15/hour=10/")
        ),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.contains("event_type=%2E%2E%2F%2E%2E%2Fescape/")),
        "{keys:?}"
    );
    let escaped = dir.path().join("escape");
    assert!(!escaped.exists());
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries.len(), 2, "only objects/ and state/: {entries:?}");

    // Dead letters: exact bytes, stage, kind, plugin.
    let letters = state
        .dead_letters(DeadLetterFilter::default())
        .await
        .unwrap();
    assert_eq!(letters.len() as u32, c.dead_lettered());
    let by_seq = |seq: &str| {
        letters
            .iter()
            .find(|(_, l)| l.sequence_number == seq)
            .map(|(_, l)| l.clone())
            .unwrap()
    };
    assert_eq!(by_seq("105").kind, "not-json");
    assert_eq!(by_seq("106").payload, vec![0xff, 0xfe, 0x00]);
    assert_eq!(by_seq("106").kind, "not-utf8");
    assert_eq!(by_seq("107").kind, "missing-field");
    assert_eq!(by_seq("109").kind, "invalid-field");
    let plugin_letter = by_seq("104");
    assert_eq!(
        (plugin_letter.stage.as_str(), plugin_letter.kind.as_str()),
        ("enrich", "invalid-output")
    );
    assert_eq!(plugin_letter.plugin.as_deref(), Some("hostile@6.6.6"));

    // Metadata, with lineage.
    let batches = pipeline
        .metadata
        .batches_for_shard(SHARD, 10)
        .await
        .unwrap();
    assert_eq!(batches.len(), 1);
    let m = &batches[0];
    assert_eq!(
        (m.total_records, m.success_records, m.failed_records),
        (10, 5, 5)
    );
    assert_eq!(m.object_keys, result.object_keys);
    assert_eq!(
        m.plugin_versions,
        ["hostile@6.6.6", "metric@1.0.0", "transaction@1.0.0"]
    );
    assert_eq!(m.ttl, now().timestamp() + 30 * 24 * 3600);
}

#[tokio::test]
async fn a_retried_batch_overwrites_its_objects_instead_of_duplicating_records() {
    let dir = tempfile::tempdir().unwrap();
    let objects = LocalObjectStore::open(dir.path().join("objects")).unwrap();
    let state = SqliteState::open(dir.path().join("state/weir.db")).unwrap();
    let pipeline = common::pipeline(objects, &state, router(), PipelineSettings::default());
    let records = batch();
    let first = pipeline
        .process_batch(SHARD, &records, now())
        .await
        .unwrap();
    let second = pipeline
        .process_batch(SHARD, &records, now())
        .await
        .unwrap();
    assert_eq!(first.object_keys, second.object_keys);
    assert_eq!(lines(&pipeline.objects, "raw/").await.len(), 6);
    assert_eq!(
        lines(&pipeline.objects, "processed/").await.len() as u32,
        first.counts.outputs
    );
    let processed = lines(&pipeline.objects, "processed/").await;
    let ids: std::collections::HashSet<&str> = processed
        .iter()
        .map(|l| l["record_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), processed.len(), "record ids are unique");
}

async fn sorted(mut lines: Vec<Value>) -> Vec<Value> {
    lines.sort_by_key(|l| l["record_id"].as_str().unwrap_or_default().to_owned());
    lines
}

#[tokio::test]
async fn two_stage_mode_gives_the_output_of_single_stage_mode() {
    let single_dir = tempfile::tempdir().unwrap();
    let single_state = SqliteState::open(single_dir.path().join("weir.db")).unwrap();
    let single = common::pipeline(
        LocalObjectStore::open(single_dir.path().join("objects")).unwrap(),
        &single_state,
        router(),
        PipelineSettings::default(),
    );
    let expected = single.process_batch(SHARD, &batch(), now()).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (state, pipeline, raw) = two_stage_after_a_batch(dir.path()).await;
    assert!(raw.counts.is_balanced(false));
    assert!(
        pipeline
            .objects
            .list("processed/")
            .await
            .unwrap()
            .is_empty(),
        "the batch writes raw objects only"
    );
    let mut counts = raw.counts.clone();
    for raw_key in raw.raw_keys() {
        let transformed = pipeline
            .transform_object(raw_key, now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(transformed.batch_id, raw_key);
        assert!(
            transformed.counts.is_balanced(true),
            "{:?}",
            transformed.counts
        );
        counts.add_enrichment(&transformed.counts);
    }
    assert_eq!(counts, expected.counts);
    assert_eq!(
        sorted(lines(&pipeline.objects, "processed/").await).await,
        sorted(lines(&single.objects, "processed/").await).await,
        "same envelopes, record ids and keys"
    );
    assert_eq!(
        pipeline.objects.list("processed/").await.unwrap(),
        single.objects.list("processed/").await.unwrap()
    );
    let letters = |s: &SqliteState| {
        let s = s.clone();
        async move {
            let mut kinds: Vec<(String, String)> = s
                .dead_letters(DeadLetterFilter::default())
                .await
                .unwrap()
                .into_iter()
                .map(|(_, l)| (l.stage, l.sequence_number))
                .collect();
            kinds.sort();
            kinds
        }
    };
    assert_eq!(letters(&state).await, letters(&single_state).await);
}

#[tokio::test]
async fn the_transformer_dead_letters_corrupt_raw_lines_and_refuses_other_keys() {
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteState::open(dir.path().join("weir.db")).unwrap();
    let pipeline = common::pipeline(
        LocalObjectStore::open(dir.path().join("objects")).unwrap(),
        &state,
        router(),
        PipelineSettings {
            mode: Mode::TwoStage,
            ..Default::default()
        },
    );
    let raw = pipeline
        .process_batch(SHARD, &batch()[..1], now())
        .await
        .unwrap();
    let key = raw.raw_keys().next().unwrap().to_owned();
    let mut body = pipeline.objects.get(&key).await.unwrap().unwrap();
    body.extend_from_slice(b"{\"tampered\":true}\n\n");
    pipeline.objects.put(&key, body).await.unwrap();

    let result = pipeline
        .transform_object(&key, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            result.counts.records,
            result.counts.refused_at_intake,
            result.counts.enriched
        ),
        (2, 1, 1)
    );
    let letters = state
        .dead_letters(DeadLetterFilter {
            stage: Some("transform".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].1.kind, "corrupt-raw-line");
    assert_eq!(letters[0].1.payload, br#"{"tampered":true}"#);
    assert!(
        letters[0].1.reason.contains("line 2 of raw/"),
        "{}",
        letters[0].1.reason
    );

    for bad in [
        "processed/x.jsonl",
        "../etc/passwd",
        &key.replace("raw/", "processed/"),
    ] {
        let e = pipeline.transform_object(bad, now()).await.unwrap_err();
        assert!(
            !e.retryable && e.to_string().contains("not a raw object key"),
            "{e}"
        );
    }
    let missing = key.replace(".jsonl", "9.jsonl");
    let gone = pipeline.transform_object(&missing, now()).await.unwrap();
    assert!(gone.is_none(), "a missing raw object is nothing to do");
}

#[tokio::test]
async fn the_raw_stage_records_per_minute_metrics_once_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteState::open(dir.path().join("weir.db")).unwrap();
    let pipeline = common::pipeline(
        LocalObjectStore::open(dir.path().join("objects")).unwrap(),
        &state,
        Router::new(),
        PipelineSettings::default(),
    );
    let sensor = |seq: u64, time: &str, temperature: f64| {
        StreamRecord {
        partition_key: "sensor-7".into(),
        ..record(
            seq,
            format!(r#"{{"event_type":"sensor","timestamp":"{time}","temperature":{temperature},"unit":"C"}}"#).as_bytes(),
        )
    }
    };
    let records = [
        sensor(1, "2024-01-15T10:30:01Z", 20.0),
        sensor(2, "2024-01-15T10:30:31Z", 24.0),
        sensor(3, "2024-01-15T10:31:02Z", 30.0),
    ];
    pipeline
        .process_batch(SHARD, &records[..2], now())
        .await
        .unwrap();
    // Retried, then the next batch: no double counting.
    pipeline
        .process_batch(SHARD, &records[..2], now())
        .await
        .unwrap();
    pipeline
        .process_batch(SHARD, &records[2..], now())
        .await
        .unwrap();
    let minutes = pipeline
        .metadata
        .minute_metrics("sensor-7", 10)
        .await
        .unwrap();
    assert_eq!(minutes.len(), 2);
    assert_eq!(
        (minutes[0].minute.as_str(), minutes[0].records),
        ("2024-01-15T10:31:00Z", 1)
    );
    let t = minutes[1].readings["temperature"];
    assert_eq!(
        (minutes[1].records, t.count, t.min, t.max, t.sum),
        (2, 2, 20.0, 24.0, 44.0)
    );
    assert!(!minutes[1].readings.contains_key("unit"));
    assert!(minutes[1].ttl > now().timestamp() + 29 * 24 * 3600);
    assert_eq!(
        pipeline
            .metadata
            .minute_metrics("sensor-7", 1)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        pipeline
            .metadata
            .minute_metrics("other", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Several raw objects transformed together (a batch's, as `weir serve`
/// and the bench do, or an S3 notification batch's): a result per key, in
/// order, `None` for an object that is gone, and a metadata entry per object.
#[tokio::test]
async fn raw_objects_transformed_together_each_get_their_result_and_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (state, pipeline, raw) = two_stage_after_a_batch(dir.path()).await;
    let mut keys: Vec<String> = raw.raw_keys().map(str::to_owned).collect();
    assert!(keys.len() >= 2, "{keys:?}");
    let missing = keys[0].replace(".jsonl", "-gone.jsonl");
    keys.insert(1, missing);
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();

    let results = pipeline.transform_objects(&key_refs, now()).await.unwrap();
    assert_eq!(results.len(), keys.len());
    assert!(results[1].is_none(), "the missing object");
    let mut counts = raw.counts.clone();
    for (key, result) in keys.iter().zip(&results) {
        if let Some(result) = result {
            assert_eq!(&result.batch_id, key);
            assert!(result.counts.is_balanced(true), "{:?}", result.counts);
            counts.add_enrichment(&result.counts);
        }
    }
    assert!(counts.is_balanced(true), "{counts:?}");
    let entries: Vec<String> = state
        .batches_for_shard(SHARD, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.batch_id)
        .collect();
    for (key, result) in keys.iter().zip(&results) {
        assert_eq!(entries.contains(key), result.is_some(), "{key}");
    }
}

/// Log lines, collected from a subscriber for one thread.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_plugin_fault_is_logged_with_its_batch_and_an_open_breaker_once() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let state = SqliteState::open(dir.path().join("weir.db")).unwrap();
    let pipeline = common::pipeline(
        LocalObjectStore::open(dir.path().join("objects")).unwrap(),
        &state,
        common::router(&[("hostile", "hostile")]),
        PipelineSettings::default(),
    );
    let panics = br#"{"event_type":"hostile","timestamp":"2024-01-15T10:30:00Z","attack":"panic","tenant_id":"acme"}"#;
    // The breaker opens after 5 faulted calls (the default); the sixth batch is turned away.
    for seq in 1000..1006 {
        let result = pipeline
            .process_batch(SHARD, &[record(seq, panics)], now())
            .await
            .unwrap();
        assert_eq!(result.counts.rejected_by_plugins, 1, "{:?}", result.counts);
    }

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let faults: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("plugin fault"))
        .collect();
    assert_eq!(faults.len(), 5, "one warning per call that ran:\n{text}");
    for (line, seq) in faults.iter().zip(1000..) {
        assert!(line.contains("WARN"), "{line}");
        assert!(
            line.contains(&format!("{SHARD}-{seq}-{seq}")),
            "names the batch: {line}"
        );
        for what in [
            "hostile@6.6.6",
            "acme",
            "event_type=\"hostile\"",
            "fault=trapped: wasm trap",
            // What the plugin printed: Rust's panic message.
            "its stderr: thread '<unnamed>'",
            "panicked at hostile/src/lib.rs",
            "hostile plugin panics on purpose",
            "dead-lettered",
        ] {
            assert!(line.contains(what), "{what} missing: {line}");
        }
    }
    // And the plugin's stderr, a line a log line, at warn.
    let printed = text
        .lines()
        .filter(|l| l.contains("weir::plugin") && l.contains("stream=stderr"))
        .filter(|l| l.contains("WARN") && l.contains("hostile plugin panics on purpose"))
        .count();
    assert_eq!(printed, 5, "{text}");
    let opened: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("circuit breaker open"))
        .collect();
    assert_eq!(opened.len(), 1, "{text}");
    assert!(
        opened[0].contains("ERROR") && opened[0].contains("consecutive_faults=5"),
        "{}",
        opened[0]
    );
}

/// The host's intake checks only the seeds' fields (a transaction's
/// `amount`); the plugin's input schema says more (`currency` is a string),
/// and a payload that breaks it is dead-lettered at the enrich stage, whole,
/// with the schema's reason, while its neighbours are enriched.
#[tokio::test]
async fn a_payload_that_breaks_the_plugins_input_schema_is_dead_lettered_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let objects = LocalObjectStore::open(dir.path().join("objects")).unwrap();
    let state = SqliteState::open(dir.path().join("state/weir.db")).unwrap();
    let pipeline = common::pipeline(objects, &state, router(), PipelineSettings::default());
    let bad: &[u8] =
        br#"{"event_type":"transaction","timestamp":"2024-01-15T10:30:00Z","amount":5,"currency":5}"#;
    let records = vec![
        record(
            1,
            br#"{"event_type":"transaction","timestamp":"2024-01-15T10:30:00Z","amount":5,"currency":"EUR"}"#,
        ),
        record(2, bad),
    ];
    let result = pipeline
        .process_batch(SHARD, &records, now())
        .await
        .unwrap();
    let c = &result.counts;
    assert_eq!(
        (c.accepted, c.enriched, c.rejected_by_plugins),
        (2, 1, 1),
        "{c:?}"
    );
    assert!(c.is_balanced(true), "{c:?}");
    let letters = state
        .dead_letters(DeadLetterFilter::default())
        .await
        .unwrap();
    let [(_, letter)] = &letters[..] else {
        panic!("{letters:?}")
    };
    assert_eq!(letter.payload, bad);
    assert_eq!(
        (letter.stage.as_str(), letter.kind.as_str()),
        ("enrich", "invalid-field")
    );
    assert_eq!(letter.plugin.as_deref(), Some("transaction@1.0.0"));
    assert!(
        letter.reason.contains("input schema of transaction@1.0.0")
            && letter
                .reason
                .contains("/currency: 5 is not of type \"string\""),
        "{}",
        letter.reason
    );
    let processed = lines(&pipeline.objects, "processed/").await;
    assert_eq!(processed.len(), 1);
    assert_eq!(processed[0]["enriched_data"]["currency"], "EUR");
}
