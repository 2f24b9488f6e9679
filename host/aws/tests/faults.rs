//! Faults on AWS (moto), with records Kinesis really returned: a bucket that
//! does not exist, a table that rejects, a queue that is gone. The Kinesis
//! handler reports the batch for retry from its lowest sequence number and
//! rolls back what it wrote; once the fault is fixed, the retry writes every
//! record once and the poison records reach the dead-letter queue.

mod common;

use chrono::Utc;
use weir_aws::{
    AwsBackends, AwsClients, AwsSettings, DynamoMetadataStore, Encryption, S3ObjectStore,
    SqsDeadLetterQueue, provision,
};
use weir_core::backend::{DeadLetterQueue, MetadataStore, ObjectStore};
use weir_core::stream::{PutRecord, StartingPosition, StreamSink, StreamSource};
use weir_lambda::kinesis::{self, KinesisEvent};
use weir_lambda::samples;
use weir_pipeline::{Pipeline, PipelineSettings};
use weir_testkit::{example_router, moto};

fn pipeline<O: ObjectStore, D: DeadLetterQueue, M: MetadataStore>(
    objects: O,
    dead_letters: D,
    metadata: M,
) -> Pipeline<O, D, M> {
    Pipeline {
        objects,
        dead_letters,
        metadata,
        router: example_router(&[("transaction", "transaction")]).into(),
        settings: PipelineSettings::default(),
    }
}

async fn keys(clients: &AwsClients, bucket: &str) -> usize {
    let out = clients
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    out.contents().len()
}

#[tokio::test]
async fn backend_faults_are_reported_for_retry_rolled_back_and_lose_nothing() {
    let clients = AwsClients::for_local_endpoint(&moto::endpoint()).await;
    let settings = AwsSettings::with_prefix(&moto::unique_prefix());
    provision::create_all(&clients, &settings, 1).await.unwrap();
    let good = AwsBackends::connect(&clients, &settings).await.unwrap();

    // Produce to Kinesis, and build the Lambda event from what it returns.
    let mut records: Vec<PutRecord> = (0..10)
        .map(|i| PutRecord {
            partition_key: format!("user-{i}"),
            data: format!(
                r#"{{"event_type":"transaction","timestamp":"2024-01-15T10:30:00Z","amount":{}}}"#,
                i * 300
            )
            .into_bytes(),
        })
        .collect();
    records.push(PutRecord {
        partition_key: "p".into(),
        data: b"not json".to_vec(),
    });
    records.push(PutRecord {
        partition_key: "p".into(),
        data: br#"{"event_type":"transaction"}"#.to_vec(),
    });
    good.stream.put_records(records).await.unwrap();
    let shard = good.stream.shards().await.unwrap().remove(0);
    let read = good
        .stream
        .read(&shard, &StartingPosition::TrimHorizon, 100)
        .await
        .unwrap();
    assert_eq!(read.records.len(), 12);
    let arn = format!(
        "arn:aws:kinesis:us-east-1:123456789012:stream/{}",
        settings.stream
    );
    let event = samples::kinesis_event_of(&arn, &read.records);
    let event = || serde_json::from_value::<KinesisEvent>(event.clone()).unwrap();
    let lowest = read.records[0].sequence_number.to_string();
    let objects = || {
        S3ObjectStore::new(
            clients.s3.clone(),
            &settings.raw_bucket,
            &settings.processed_bucket,
            Encryption::BucketDefault,
        )
    };
    let metadata = || {
        DynamoMetadataStore::new(
            clients.dynamodb.clone(),
            &settings.metadata_table,
            &settings.metrics_table,
        )
    };
    let queue_url = common::queue_url(&clients.sqs, &settings.dead_letter_queue).await;
    let letters = || SqsDeadLetterQueue::new(clients.sqs.clone(), &queue_url, objects());

    // A queue that is gone.
    let gone = clients
        .sqs
        .create_queue()
        .queue_name(format!("{}-gone", settings.dead_letter_queue))
        .send()
        .await
        .unwrap();
    let gone_url = gone.queue_url().unwrap().to_owned();
    clients
        .sqs
        .delete_queue()
        .queue_url(&gone_url)
        .send()
        .await
        .unwrap();
    let faults = [
        (
            "a bucket that does not exist",
            pipeline_boxed(pipeline(
                S3ObjectStore::new(
                    clients.s3.clone(),
                    format!("{}-missing", settings.raw_bucket),
                    &settings.processed_bucket,
                    Encryption::BucketDefault,
                ),
                letters(),
                metadata(),
            )),
        ),
        (
            "a table that rejects",
            pipeline_boxed(pipeline(
                objects(),
                letters(),
                DynamoMetadataStore::new(
                    clients.dynamodb.clone(),
                    format!("{}-missing", settings.metadata_table),
                    &settings.metrics_table,
                ),
            )),
        ),
        (
            "a queue that is gone",
            pipeline_boxed(pipeline(
                objects(),
                SqsDeadLetterQueue::new(clients.sqs.clone(), &gone_url, objects()),
                metadata(),
            )),
        ),
    ];
    for (fault, run) in faults {
        let handled = run(event()).await;
        let failures: Vec<Option<String>> = handled
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(
            failures,
            [Some(lowest.clone())],
            "{fault}: retry from the first record"
        );
        assert_eq!(
            keys(&clients, &settings.raw_bucket).await,
            0,
            "{fault}: rolled back"
        );
        assert_eq!(
            keys(&clients, &settings.processed_bucket).await,
            0,
            "{fault}: rolled back"
        );
    }

    // Fixed: the retry writes everything once; the poison reaches SQS.
    let fixed = pipeline(objects(), letters(), metadata());
    let handled = kinesis::handle(&fixed, event(), Utc::now()).await;
    assert!(
        handled.response.batch_item_failures.is_empty(),
        "{:?}",
        handled.failures
    );
    let lines = common::line_count(&fixed.objects, "processed/").await;
    assert_eq!(lines, 10);
    // Dead letters are at least once: the attempt that failed on the table
    // had sent them already (SQS cannot take a message back). Their shard
    // and sequence number identify them; both poison records are there.
    let poison: std::collections::BTreeSet<String> = common::receive_all(&clients.sqs, &queue_url)
        .await
        .iter()
        .map(|m| {
            m.message_attributes().unwrap()["sequence_number"]
                .string_value()
                .unwrap()
                .to_owned()
        })
        .collect();
    let expected: std::collections::BTreeSet<String> = read.records[10..]
        .iter()
        .map(|r| r.sequence_number.to_string())
        .collect();
    assert_eq!(poison, expected, "the poison records, none lost");
    let batches = fixed.metadata.batches_for_shard(&shard, 10).await.unwrap();
    assert_eq!(
        (
            batches.len(),
            batches[0].total_records,
            batches[0].failed_records
        ),
        (1, 12, 2)
    );
}

type Response = aws_lambda_events::streams::KinesisEventResponse;
type Handling = std::pin::Pin<Box<dyn std::future::Future<Output = Response>>>;
type Handler = Box<dyn FnOnce(KinesisEvent) -> Handling>;

/// A pipeline as a function of the event, so pipelines over different
/// backend types fit in one list.
fn pipeline_boxed<O, D, M>(pipeline: Pipeline<O, D, M>) -> Handler
where
    O: ObjectStore + 'static,
    D: DeadLetterQueue + 'static,
    M: MetadataStore + 'static,
{
    Box::new(move |event| {
        Box::pin(async move { kinesis::handle(&pipeline, event, Utc::now()).await.response })
    })
}
