//! The pipeline on the AWS backends (moto): the Lambda handlers as Lambda
//! would run them, and the service consumer over Kinesis with checkpoints in
//! DynamoDB.

mod common;

use chrono::Utc;
use weir_aws::{AwsBackends, AwsClients, AwsSettings, provision};
use weir_core::backend::MetadataStore;
use weir_core::stream::{PutRecord, StreamSink, StreamSource};
use weir_lambda::{kinesis, s3, samples};
use weir_pipeline::{ConsumerSettings, Mode, Pipeline, PipelineSettings, drain};
use weir_testkit::{example_router, moto};

type AwsPipeline =
    Pipeline<weir_aws::S3ObjectStore, weir_aws::SqsDeadLetterQueue, weir_aws::DynamoMetadataStore>;

async fn setup(mode: Mode) -> (AwsSettings, AwsPipeline, weir_aws::KinesisStream) {
    let clients = AwsClients::for_local_endpoint(&moto::endpoint()).await;
    let settings = AwsSettings::with_prefix(&moto::unique_prefix());
    provision::create_all(&clients, &settings, 2).await.unwrap();
    let backends = AwsBackends::connect(&clients, &settings).await.unwrap();
    let pipeline = Pipeline {
        objects: backends.objects,
        dead_letters: backends.dead_letters,
        metadata: backends.metadata,
        router: example_router(&[("transaction", "transaction"), ("metric", "metric")]).into(),
        settings: PipelineSettings {
            mode,
            ..Default::default()
        },
    };
    (settings, pipeline, backends.stream)
}

fn events(n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let event = if i % 2 == 0 {
                format!(r#"{{"event_type":"transaction","timestamp":"2024-01-15T10:30:00Z","amount":{i},"n":{i}}}"#)
            } else {
                format!(r#"{{"event_type":"metric","timestamp":"2024-01-15T10:30:00Z","metric_name":"m","value":{i},"n":{i}}}"#)
            };
            (format!("key-{i}"), event.into_bytes())
        })
        .collect()
}

async fn processed_lines(pipeline: &AwsPipeline) -> usize {
    common::line_count(&pipeline.objects, "processed/").await
}

#[tokio::test]
async fn the_lambda_handlers_run_both_stages_on_s3_dynamodb_and_sqs() {
    let (settings, pipeline, _) = setup(Mode::TwoStage).await;
    let mut records = events(20);
    records.push(("poison".into(), b"not json".to_vec()));
    let arn = format!(
        "arn:aws:kinesis:us-east-1:123456789012:stream/{}",
        settings.stream
    );
    let event = samples::kinesis_event(&arn, "shardId-000000000000", &records, 1, Utc::now());
    let handled = kinesis::handle(
        &pipeline,
        serde_json::from_value(event).unwrap(),
        Utc::now(),
    )
    .await;
    assert!(
        handled.response.batch_item_failures.is_empty(),
        "{:?}",
        handled.failures
    );
    let raw_keys: Vec<(String, u64)> = handled.batches[0]
        .raw_keys()
        .map(|k| (k.to_owned(), 1))
        .collect();
    assert_eq!(raw_keys.len(), 2);

    let s3_event = samples::s3_event(&settings.raw_bucket, &raw_keys, Utc::now());
    let transformed = s3::handle(
        &pipeline,
        serde_json::from_value(s3_event).unwrap(),
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(transformed.results.len(), 2);
    assert_eq!(processed_lines(&pipeline).await, 20);
    let batches = pipeline
        .metadata
        .batches_for_shard("shardId-000000000000", 10)
        .await
        .unwrap();
    assert_eq!(
        batches.len(),
        3,
        "the raw stage's batch and each transform's"
    );
    let raw = batches
        .iter()
        .find(|b| !b.batch_id.starts_with("raw/"))
        .unwrap();
    assert_eq!((raw.total_records, raw.failed_records), (21, 1));
    let transforms = batches.iter().filter(|b| b.batch_id.starts_with("raw/"));
    assert_eq!(transforms.map(|b| b.total_records).sum::<u32>(), 20);
    let minutes = pipeline.metadata.minute_metrics("key-3", 5).await.unwrap();
    assert_eq!(minutes[0].readings["value"].sum, 3.0);
}

#[tokio::test]
async fn the_service_consumer_drains_kinesis_and_resumes_from_dynamodb_checkpoints() {
    let (_, pipeline, stream) = setup(Mode::SingleStage).await;
    let put = |records: Vec<(String, Vec<u8>)>| {
        records
            .into_iter()
            .map(|(partition_key, data)| PutRecord {
                partition_key,
                data,
            })
            .collect::<Vec<_>>()
    };
    stream.put_records(put(events(30))).await.unwrap();
    let settings = ConsumerSettings {
        batch_size: 8,
        ..Default::default()
    };
    let report = drain(&stream, &pipeline, &settings).await.unwrap();
    assert_eq!(report.counts.records, 30);
    assert!(report.counts.is_balanced(true));
    assert_eq!(processed_lines(&pipeline).await, 30);
    for shard in stream.shards().await.unwrap() {
        assert!(stream.checkpoint("weir", &shard).await.unwrap().is_some());
    }
    // Nothing new: nothing again. New records: only they.
    assert_eq!(
        drain(&stream, &pipeline, &settings).await.unwrap().batches,
        0
    );
    stream.put_records(put(events(5))).await.unwrap();
    assert_eq!(
        drain(&stream, &pipeline, &settings)
            .await
            .unwrap()
            .counts
            .records,
        5
    );
}

/// A one-shard stream of its own, beside the setup's resources.
async fn one_shard_stream(
    settings: &AwsSettings,
    suffix: &str,
) -> (AwsClients, weir_aws::KinesisStream) {
    let clients = AwsClients::for_local_endpoint(&moto::endpoint()).await;
    let name = format!("{}-{suffix}", settings.stream);
    clients
        .kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let checkpoints =
        weir_aws::DynamoCheckpoints::new(clients.dynamodb.clone(), &settings.checkpoints_table);
    let stream = weir_aws::KinesisStream::new(clients.kinesis.clone(), &name, checkpoints);
    (clients, stream)
}

/// Splits `parent` in the middle of the hash-key range.
async fn split_in_two(clients: &AwsClients, stream: &weir_aws::KinesisStream, parent: &str) {
    clients
        .kinesis
        .split_shard()
        .stream_name(stream.name())
        .shard_to_split(parent)
        .new_starting_hash_key((1u128 << 127).to_string())
        .send()
        .await
        .unwrap();
}

/// Metric records `from..from + n`, keyed `key-{i % keys}`.
fn metric_records(from: usize, n: usize, keys: usize) -> Vec<PutRecord> {
    (from..from + n)
        .map(|i| PutRecord {
            partition_key: format!("key-{}", i % keys),
            data: format!(
                r#"{{"event_type":"metric","timestamp":"2024-01-15T10:30:00Z","metric_name":"m","value":{i}}}"#
            )
            .into_bytes(),
        })
        .collect()
}

#[tokio::test]
async fn after_a_split_the_children_are_read_once_the_parent_is_done() {
    let (settings, pipeline, _) = setup(Mode::SingleStage).await;
    let (clients, split) = one_shard_stream(&settings, "split").await;
    let put = |from: usize, n: usize| metric_records(from, n, 4);
    split.put_records(put(0, 20)).await.unwrap();
    let parent = split.shards().await.unwrap().remove(0);
    split_in_two(&clients, &split, &parent).await;
    split.put_records(put(20, 20)).await.unwrap();

    let lineage = split.lineage().await.unwrap();
    assert_eq!(lineage.len(), 3);
    let children: Vec<_> = lineage
        .iter()
        .filter(|s| s.parents == [parent.clone()])
        .collect();
    assert_eq!(children.len(), 2, "{lineage:?}");

    let report = drain(
        &split,
        &pipeline,
        &ConsumerSettings {
            batch_size: 7,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.counts.records, 40);
    assert_eq!(processed_lines(&pipeline).await, 40);
    // The parent's batches were all done before any child's.
    let last_parent = pipeline
        .metadata
        .batches_for_shard(&parent, 100)
        .await
        .unwrap()[0]
        .processed_at
        .clone();
    for child in children {
        for batch in pipeline
            .metadata
            .batches_for_shard(&child.shard_id, 100)
            .await
            .unwrap()
        {
            assert!(
                batch.processed_at >= last_parent,
                "{} before {last_parent}",
                batch.processed_at
            );
        }
    }
}

#[tokio::test]
async fn serve_follows_a_split_made_while_it_runs() {
    let (settings, pipeline, _) = setup(Mode::SingleStage).await;
    let (clients, stream) = one_shard_stream(&settings, "live").await;
    let stream = std::sync::Arc::new(stream);
    let pipeline = std::sync::Arc::new(pipeline);
    let records = |from: usize| metric_records(from, 10, 10);
    let wait_for = |n: usize| {
        let pipeline = pipeline.clone();
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while processed_lines(&pipeline).await < n {
                assert!(
                    std::time::Instant::now() < deadline,
                    "served {} of {n}",
                    processed_lines(&pipeline).await
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    let consumer = ConsumerSettings {
        batching_window: std::time::Duration::from_millis(50),
        poll_interval: std::time::Duration::from_millis(50),
        shard_refresh: std::time::Duration::from_millis(200),
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(weir_pipeline::serve(
        stream.clone(),
        pipeline.clone(),
        consumer,
        async {
            let _ = stopped.await;
        },
    ));
    stream.put_records(records(0)).await.unwrap();
    wait_for(10).await;
    let parent = stream.shards().await.unwrap().remove(0);
    split_in_two(&clients, &stream, &parent).await;
    stream.put_records(records(10)).await.unwrap();
    wait_for(20).await;
    stop.send(()).unwrap();
    let report = service.await.unwrap().unwrap();
    assert_eq!(report.counts.records, 20);
    assert_eq!(processed_lines(&pipeline).await, 20, "nothing twice");
}

#[tokio::test]
async fn a_replay_rewrites_processed_objects_in_s3_with_a_chosen_version() {
    use weir_core::backend::ObjectStore;
    use weir_runtime::router::Binding;
    let (settings, pipeline, _) = setup(Mode::SingleStage).await;
    let arn = format!(
        "arn:aws:kinesis:us-east-1:123456789012:stream/{}",
        settings.stream
    );
    let event = samples::kinesis_event(&arn, "shardId-000000000000", &events(10), 1, Utc::now());
    let handled = kinesis::handle(
        &pipeline,
        serde_json::from_value(event).unwrap(),
        Utc::now(),
    )
    .await;
    assert!(handled.response.batch_item_failures.is_empty());
    let before = processed_lines(&pipeline).await;

    let mut router = example_router(&[("transaction", "transaction"), ("metric", "metric")]);
    let tagger = weir_runtime::Runtime::new(weir_runtime::RuntimeSettings {
        cache_dir: Some(weir_testkit::build::shared_cache_dir()),
        ..Default::default()
    })
    .unwrap()
    .load_file(weir_testkit::build::repo_plugin("tagger"))
    .unwrap();
    router.bind(
        None,
        "transaction",
        Binding {
            plugin: tagger,
            config: vec![("tag".into(), "aws-backfill".into())],
            limits: Default::default(),
        },
    );
    pipeline.router.replace(router);
    let range = weir_pipeline::ReplayRange {
        event_type: "transaction".into(),
        from: weir_core::time::parse_rfc3339("2024-01-15T10:00:00Z").unwrap(),
        to: weir_core::time::parse_rfc3339("2024-01-15T11:00:00Z").unwrap(),
    };
    let done = pipeline.replay(&range, Utc::now(), |_| {}).await.unwrap();
    assert_eq!((done.objects_done, done.counts.records), (1, 5));
    assert_eq!(
        processed_lines(&pipeline).await,
        before,
        "rewritten, not added to"
    );
    for key in pipeline
        .objects
        .list("processed/event_type=transaction/")
        .await
        .unwrap()
    {
        let body = pipeline.objects.get(&key).await.unwrap().unwrap();
        for line in String::from_utf8(body).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["metadata"]["plugin"], "tagger@2.0.0");
            assert_eq!(v["enriched_data"]["tag"], "aws-backfill");
        }
    }
    // The metrics' objects were not in the range's event type: untouched.
    for key in pipeline
        .objects
        .list("processed/event_type=metric/")
        .await
        .unwrap()
    {
        let body = String::from_utf8(pipeline.objects.get(&key).await.unwrap().unwrap()).unwrap();
        assert!(body.contains("metric@1.0.0"));
    }
}
