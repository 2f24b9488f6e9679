//! Replay (backfill): a chosen version re-run over a time range of raw
//! objects, rewriting processed objects in place.

mod common;

use chrono::{DateTime, Utc};
use serde_json::Value;
use weir_core::backend::ObjectStore;
use weir_core::stream::{SequenceNumber, StreamRecord};
use weir_embedded::{LocalObjectStore, SqliteState};
use weir_pipeline::PipelineSettings;
use weir_runtime::{Runtime, RuntimeSettings};
use weir_testkit::build::{repo_plugin, shared_cache_dir};

fn now() -> DateTime<Utc> {
    weir_core::time::parse_rfc3339("2024-01-15T10:31:00Z").unwrap()
}

/// Transactions of acme and globex at 10:30 and 11:30, from sequence `first`.
fn two_hours(first: u64) -> Vec<StreamRecord> {
    [("acme", "10"), ("globex", "10"), ("acme", "11"), ("globex", "11")]
        .iter()
        .enumerate()
        .map(|(i, (tenant, hour))| StreamRecord {
            shard_id: "shardId-000000000000".into(),
            sequence_number: SequenceNumber::from_u64(first + i as u64),
            partition_key: format!("k{i}"),
            data: format!(r#"{{"event_type":"transaction","timestamp":"2024-01-15T{hour}:30:00Z","amount":700,"tenant_id":"{tenant}"}}"#)
                .into_bytes(),
            arrival_time: "2024-01-15T11:30:05.000Z".into(),
        })
        .collect()
}

/// Every processed object's key and body.
async fn processed(objects: &LocalObjectStore) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for key in objects.list("processed/").await.unwrap() {
        let body = objects.get(&key).await.unwrap().unwrap();
        all.push((key, String::from_utf8(body).unwrap()));
    }
    all
}

#[tokio::test]
async fn a_replay_reruns_a_chosen_version_over_a_time_range_idempotently() {
    use weir_pipeline::ReplayRange;
    use weir_runtime::router::Binding;

    let dir = tempfile::tempdir().unwrap();
    let state = SqliteState::open(dir.path().join("weir.db")).unwrap();
    let objects = LocalObjectStore::open(dir.path().join("objects")).unwrap();
    let live = common::pipeline(
        objects.clone(),
        &state,
        common::router(&[("transaction", "transaction")]),
        PipelineSettings::default(),
    );
    live.process_batch("shardId-000000000000", &two_hours(1), now())
        .await
        .unwrap();
    let before = processed(&objects).await;
    assert!(before.iter().all(|(_, body)| !body.contains("tagger")));

    // Replay 10:00-11:00 with the tagger for acme; the rest keeps its bindings.
    let mut router = common::router(&[("transaction", "transaction")]);
    let runtime = Runtime::new(RuntimeSettings {
        cache_dir: Some(shared_cache_dir()),
        ..Default::default()
    })
    .unwrap();
    let tagger = runtime.load_file(repo_plugin("tagger")).unwrap();
    router.bind(
        Some("acme"),
        "transaction",
        Binding {
            plugin: tagger,
            config: vec![("tag".into(), "backfill".into())],
            limits: Default::default(),
        },
    );
    let replaying = common::pipeline(objects.clone(), &state, router, PipelineSettings::default());
    let range = ReplayRange {
        event_type: "transaction".into(),
        from: weir_core::time::parse_rfc3339("2024-01-15T10:00:00Z").unwrap(),
        to: weir_core::time::parse_rfc3339("2024-01-15T11:00:00Z").unwrap(),
    };
    let mut seen = Vec::new();
    let done = replaying
        .replay(&range, now(), |p| {
            seen.push((p.objects_done, p.objects_total))
        })
        .await
        .unwrap();
    assert_eq!((done.objects_done, done.objects_total), (1, 1));
    assert_eq!(
        seen,
        [(0, 1), (1, 1)],
        "progress before and after each object"
    );
    assert_eq!((done.counts.records, done.counts.enriched), (2, 2));

    let after = processed(&objects).await;
    assert_eq!(
        after.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        before.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        "the same objects, rewritten in place"
    );
    for (key, body) in &after {
        for line in body.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let replayed = key.contains("hour=10") && v["enriched_data"]["tenant_id"] == "acme";
            let expected = if replayed {
                "tagger@2.0.0"
            } else {
                "transaction@1.0.0"
            };
            assert_eq!(v["metadata"]["plugin"], expected, "{key}: {line}");
            if replayed {
                assert_eq!(v["enriched_data"]["tag"], "backfill");
            }
        }
    }
    // Twice is the same as once.
    replaying.replay(&range, now(), |_| {}).await.unwrap();
    assert_eq!(processed(&objects).await, after);

    let empty = ReplayRange {
        to: range.from,
        ..range.clone()
    };
    assert!(replaying.replay(&empty, now(), |_| {}).await.is_err());
}
