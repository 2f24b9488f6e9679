//! Hot swap: activations in the registry reach a running pipeline without a
//! restart; a batch finishes on the bindings it started with; every output
//! names the version (and the config) that produced it.

mod common;

use chrono::{DateTime, Utc};
use serde_json::Value;
use weir_core::backend::ObjectStore;
use weir_core::registry::{BindingKey, Change, PluginVersion, Registry};
use weir_core::stream::{SequenceNumber, StreamRecord};
use weir_embedded::{EmbeddedRegistry, LocalObjectStore, SqliteState, sha256_hex};
use weir_pipeline::{PipelineSettings, RegistryRouter};
use weir_runtime::router::{Route, Router};
use weir_runtime::{Runtime, RuntimeSettings};
use weir_testkit::build::{repo_plugin, shared_cache_dir};

fn now() -> DateTime<Utc> {
    weir_core::time::parse_rfc3339("2024-01-15T10:31:00Z").unwrap()
}

/// Three transactions (1500, 50, 700) for `tenant`, from sequence `first`.
fn batch(first: u64, tenant: &str) -> Vec<StreamRecord> {
    [1500, 50, 700]
        .iter()
        .enumerate()
        .map(|(i, amount)| StreamRecord {
            shard_id: "shardId-000000000000".into(),
            sequence_number: SequenceNumber::from_u64(first + i as u64),
            partition_key: format!("k{i}"),
            data: format!(r#"{{"event_type":"transaction","timestamp":"2024-01-15T10:30:00Z","amount":{amount},"tenant_id":"{tenant}"}}"#)
                .into_bytes(),
            arrival_time: "2024-01-15T10:30:05.000Z".into(),
        })
        .collect()
}

/// The processed lines of the batch whose keys end with `-{first}-{last}`.
async fn outputs(objects: &LocalObjectStore, first: u64, last: u64) -> Vec<Value> {
    let mut lines = Vec::new();
    for key in objects.list("processed/").await.unwrap() {
        if key.ends_with(&format!("-{first}-{last}.jsonl")) {
            let body = objects.get(&key).await.unwrap().unwrap();
            for line in String::from_utf8(body).unwrap().lines() {
                lines.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    lines
}

#[tokio::test]
async fn activations_reach_the_running_pipeline_and_in_flight_batches_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteState::open(dir.path().join("weir.db")).unwrap();
    let objects = LocalObjectStore::open(dir.path().join("objects")).unwrap();
    let registry = EmbeddedRegistry::open(state.clone(), objects.clone())
        .await
        .unwrap();
    let component = std::fs::read(repo_plugin("transaction")).unwrap();
    let sha256 = sha256_hex(&component);
    let version = PluginVersion {
        name: "transaction".into(),
        version: "1.0.0".into(),
        sha256: sha256.clone(),
        size: component.len() as u64,
        contract: "weir:plugin@0.1.0".into(),
        event_types: vec!["transaction".into()],
        uploader: "alice".into(),
        uploaded_at: "2024-01-15T10:00:00Z".into(),
        notes: String::new(),
        tenant: None,
    };
    let change = Change {
        actor: "alice",
        at: "2024-01-15T10:00:00Z",
    };
    registry
        .add_version(version, component, None, change)
        .await
        .unwrap();

    let pipeline = common::pipeline(
        objects.clone(),
        &state,
        Router::new(),
        PipelineSettings::default(),
    );
    let runtime = Runtime::new(RuntimeSettings {
        cache_dir: Some(shared_cache_dir()),
        ..Default::default()
    })
    .unwrap();
    let mut follower = RegistryRouter::new(registry.clone(), runtime, Router::new());
    assert_eq!(follower.refresh(&pipeline.router).await.unwrap(), Some(0));
    assert_eq!(
        follower.refresh(&pipeline.router).await.unwrap(),
        None,
        "nothing changed"
    );

    // No binding yet: passed through.
    let r = pipeline
        .process_batch("shardId-000000000000", &batch(1, "acme"), now())
        .await
        .unwrap();
    assert_eq!(r.counts.passed_through, 3);

    let default = BindingKey {
        tenant: None,
        event_type: "transaction".into(),
    };
    registry
        .activate(&default, &sha256, vec![], None, change)
        .await
        .unwrap();
    let in_flight = pipeline.router.snapshot();
    assert_eq!(follower.refresh(&pipeline.router).await.unwrap(), Some(1));
    assert!(
        matches!(in_flight.resolve("acme", "transaction"), Route::PassThrough),
        "a running batch keeps its bindings"
    );
    let r = pipeline
        .process_batch("shardId-000000000000", &batch(4, "acme"), now())
        .await
        .unwrap();
    assert_eq!(
        (r.counts.enriched, r.plugin_versions.clone()),
        (3, vec!["transaction@1.0.0".to_owned()])
    );
    let high: Vec<bool> = outputs(&objects, 4, 6)
        .await
        .iter()
        .map(|l| l["enriched_data"]["is_high_value"].as_bool().unwrap())
        .collect();
    assert_eq!(high, [true, false, false]);
    assert!(
        outputs(&objects, 4, 6)
            .await
            .iter()
            .all(|l| l["metadata"]["plugin"] == "transaction@1.0.0")
    );

    // acme gets its own threshold; other tenants keep the default binding.
    let acme = BindingKey {
        tenant: Some("acme".into()),
        event_type: "transaction".into(),
    };
    let config = vec![("high_value_threshold".to_owned(), "500".to_owned())];
    registry
        .activate(&acme, &sha256, config, Some(0), change)
        .await
        .unwrap();
    assert_eq!(follower.refresh(&pipeline.router).await.unwrap(), Some(2));
    pipeline
        .process_batch("shardId-000000000000", &batch(7, "acme"), now())
        .await
        .unwrap();
    pipeline
        .process_batch("shardId-000000000000", &batch(10, "globex"), now())
        .await
        .unwrap();
    let acme_high: Vec<bool> = outputs(&objects, 7, 9)
        .await
        .iter()
        .map(|l| l["enriched_data"]["is_high_value"].as_bool().unwrap())
        .collect();
    let globex_high: Vec<bool> = outputs(&objects, 10, 12)
        .await
        .iter()
        .map(|l| l["enriched_data"]["is_high_value"].as_bool().unwrap())
        .collect();
    assert_eq!(acme_high, [true, false, true], "700 is high for acme now");
    assert_eq!(globex_high, [true, false, false]);
}
