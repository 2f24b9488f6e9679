//! The live tail: a binding's newest records and dead letters, on the
//! embedded backends and on S3 (moto).

use axum::http::StatusCode;
use weir_console::ConsoleSettings;
use weir_console::tail::{DeadLetterSource, ObjectTail};
use weir_core::backend::ObjectStore;

use crate::common::{Fixture, component, fixture, fixture_on};

#[tokio::test]
async fn the_live_tail_shows_a_bindings_newest_records_and_dead_letters_to_whom_it_may() {
    use weir_core::stream::{SequenceNumber, StreamRecord};
    use weir_pipeline::{Pipeline, PipelineSettings};
    use weir_runtime::router::Router;
    let f = fixture().await;
    // A pipeline writing where the console's tail reads.
    let state = weir_embedded::SqliteState::open(f.dir.path().join("state/weir.db")).unwrap();
    let objects = weir_embedded::LocalObjectStore::open(f.dir.path().join("objects")).unwrap();
    let mut router = Router::new();
    router.bind_declared(&f.console.runtime.load(&component("transaction")).unwrap());
    let pipeline = Pipeline {
        objects,
        dead_letters: state.clone(),
        metadata: state,
        router: router.into(),
        settings: PipelineSettings::default(),
    };
    let payloads = [
        r#"{"event_type":"transaction","timestamp":"2024-01-15T10:30:00Z","amount":5,"tenant_id":"acme"}"#,
        r#"{"event_type":"transaction","timestamp":"2024-01-15T10:30:00Z","amount":6,"tenant_id":"globex"}"#,
        r#"{"event_type":"transaction","timestamp":"2024-01-15T10:30:00Z","amount":"lots","tenant_id":"acme"}"#,
        r#"{"event_type":"transaction","timestamp":"2024-01-15T10:30:00Z","amount":7,"tenant_id":"acme"}"#,
        "not json at all",
    ];
    let records: Vec<StreamRecord> = payloads
        .iter()
        .enumerate()
        .map(|(i, data)| StreamRecord {
            shard_id: "shardId-000000000000".into(),
            sequence_number: SequenceNumber::from_u64(i as u64 + 1),
            partition_key: "k".into(),
            data: data.as_bytes().to_vec(),
            arrival_time: "2024-01-15T10:30:05.000Z".into(),
        })
        .collect();
    pipeline
        .process_batch("shardId-000000000000", &records, chrono::Utc::now())
        .await
        .unwrap();

    let mine = f
        .api(
            "GET",
            "/api/v1/tail/acme/transaction",
            Some(&f.tenant_a),
            None,
        )
        .await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text());
    let mine = mine.json();
    let amounts: Vec<i64> = mine["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["enriched_data"]["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, [7, 5], "acme's records, newest first");
    let letters = mine["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["kind"], "invalid-field");
    // A tenant on the default binding still sees only its own.
    let via_default = f
        .api(
            "GET",
            "/api/v1/tail/*/transaction?limit=10",
            Some(&f.tenant_a),
            None,
        )
        .await
        .json();
    assert_eq!(via_default["records"].as_array().unwrap().len(), 2);
    let everyone = f
        .api("GET", "/api/v1/tail/*/transaction", Some(&f.admin), None)
        .await
        .json();
    assert_eq!(everyone["records"].as_array().unwrap().len(), 3);
    let limited = f
        .api(
            "GET",
            "/api/v1/tail/*/transaction?limit=1",
            Some(&f.admin),
            None,
        )
        .await
        .json();
    assert_eq!(limited["records"].as_array().unwrap().len(), 1);
    assert_eq!(
        f.api(
            "GET",
            "/api/v1/tail/acme/transaction",
            Some(&f.tenant_b),
            None
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
}

/// Batches' objects of transactions over three hours and two days, one
/// record each, `amount` numbering them from oldest to newest; the embedded
/// sequence numbers are not padded, so `99` is older than `100`.
async fn spread_over_partitions(objects: &impl ObjectStore) {
    let objects_by_age = [
        ("day=14/hour=23", "shardId-000000000001-1-9", 1),
        ("day=15/hour=09", "shardId-000000000000-10-19", 2),
        ("day=15/hour=09", "shardId-000000000001-20-29", 3),
        ("day=15/hour=10", "shardId-000000000001-99-99", 4),
        ("day=15/hour=10", "shardId-000000000000-100-120", 5),
    ];
    for (partition, batch, amount) in objects_by_age {
        let key = format!(
            "processed/event_type=transaction/year=2024/month=01/{partition}/{batch}.jsonl"
        );
        let line = serde_json::json!({
            "enriched_data": { "tenant_id": "acme", "amount": amount }
        });
        objects
            .put(&key, format!("{line}\n").into_bytes())
            .await
            .unwrap();
    }
    // Another event type's objects are not the tail's.
    let other = "processed/event_type=metric/year=2024/month=01/day=15/hour=11/shardId-000000000000-200-200.jsonl";
    objects
        .put(other, b"{\"enriched_data\":{\"amount\":0}}\n".to_vec())
        .await
        .unwrap();
}

async fn tail_amounts<R: weir_core::registry::Registry + 'static>(
    f: &Fixture<R>,
    limit: usize,
) -> (Vec<i64>, serde_json::Value) {
    let path = format!("/api/v1/tail/*/transaction?limit={limit}");
    let answer = f.api("GET", &path, Some(&f.admin), None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let body = answer.json();
    let amounts = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["enriched_data"]["amount"].as_i64().unwrap())
        .collect();
    (amounts, body)
}

#[tokio::test]
async fn the_live_tail_walks_partitions_and_batches_newest_first() {
    let f = fixture().await;
    let objects = weir_embedded::LocalObjectStore::open(f.dir.path().join("objects")).unwrap();
    spread_over_partitions(&objects).await;
    assert_eq!(tail_amounts(&f, 20).await.0, [5, 4, 3, 2, 1]);
    assert_eq!(tail_amounts(&f, 2).await.0, [5, 4]);
}

#[tokio::test]
async fn the_live_tail_on_aws_reads_s3_newest_first_and_says_where_the_dead_letters_are() {
    use weir_aws::{AwsBackends, AwsClients, AwsSettings, provision};
    use weir_testkit::moto;
    let clients = AwsClients::for_local_endpoint(&moto::endpoint()).await;
    let settings = AwsSettings::with_prefix(&moto::unique_prefix());
    provision::create_all(&clients, &settings, 1).await.unwrap();
    let backends = AwsBackends::connect(&clients, &settings).await.unwrap();
    spread_over_partitions(&backends.objects).await;
    let mut f = fixture_on(
        tempfile::tempdir().unwrap(),
        backends.registry,
        ConsoleSettings::default(),
    )
    .await;
    let console = std::sync::Arc::into_inner(f.console).expect("the only handle");
    f.console = std::sync::Arc::new(console.with_tail(ObjectTail {
        objects: backends.objects,
        dead_letters: DeadLetterSource::Elsewhere("in the SQS queue".into()),
    }));

    let (amounts, body) = tail_amounts(&f, 20).await;
    assert_eq!(amounts, [5, 4, 3, 2, 1]);
    assert_eq!(body["dead_letters"], serde_json::json!([]));
    assert_eq!(body["dead_letters_elsewhere"], "in the SQS queue");
    assert_eq!(tail_amounts(&f, 3).await.0, [5, 4, 3]);
}
