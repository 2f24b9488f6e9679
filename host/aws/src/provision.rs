//! Creates Weir's AWS resources as `deploy/` declares them: for tests
//! against a local AWS-compatible server and the local AWS loop. Idempotent:
//! what exists is left as it is.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_kinesis::types::StreamStatus;
use aws_sdk_sqs::types::QueueAttributeName;
use weir_core::backend::BackendError;

use crate::error::{backend_error, build_error};
use crate::{AwsClients, AwsSettings, SHARD_INDEX};

/// The seed's DLQ retention: 14 days.
const DLQ_RETENTION_SECONDS: &str = "1209600";

/// Creates the buckets, tables (with TTL and the `ShardIndex` GSI), queue and
/// stream (`shards` shards) that do not exist yet, and waits for the stream.
pub async fn create_all(
    clients: &AwsClients,
    settings: &AwsSettings,
    shards: i32,
) -> Result<(), BackendError> {
    for bucket in [&settings.raw_bucket, &settings.processed_bucket] {
        create_bucket(clients, bucket).await?;
    }
    create_table(
        clients,
        &settings.metadata_table,
        ("batch_id", Some("processed_at")),
        true,
    )
    .await?;
    create_table(
        clients,
        &settings.metrics_table,
        ("partition_key", Some("timestamp")),
        false,
    )
    .await?;
    create_table(
        clients,
        &settings.checkpoints_table,
        ("checkpoint_id", None),
        false,
    )
    .await?;
    create_table(clients, &settings.registry_table, ("pk", Some("sk")), false).await?;
    for table in [&settings.metadata_table, &settings.metrics_table] {
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name("ttl")
            .build()
            .map_err(|e| build_error("a TTL specification", e))?;
        clients
            .dynamodb
            .update_time_to_live()
            .table_name(table.as_str())
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(|e| backend_error(format!("enabling TTL on {table}"), e))?;
    }
    clients
        .sqs
        .create_queue()
        .queue_name(&settings.dead_letter_queue)
        .attributes(
            QueueAttributeName::MessageRetentionPeriod,
            DLQ_RETENTION_SECONDS,
        )
        .send()
        .await
        .map_err(|e| backend_error(format!("creating queue {}", settings.dead_letter_queue), e))?;
    create_stream(clients, &settings.stream, shards).await
}

async fn create_bucket(clients: &AwsClients, bucket: &str) -> Result<(), BackendError> {
    match clients.s3.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
            }) =>
        {
            Ok(())
        }
        Err(e) => Err(backend_error(format!("creating bucket {bucket}"), e)),
    }
}

fn key(name: &str, key_type: KeyType) -> Result<KeySchemaElement, BackendError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .map_err(|e| build_error("a key schema", e))
}

fn string_attribute(name: &str) -> Result<AttributeDefinition, BackendError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| build_error("an attribute definition", e))
}

async fn create_table(
    clients: &AwsClients,
    table: &str,
    (hash, range): (&str, Option<&str>),
    shard_index: bool,
) -> Result<(), BackendError> {
    let mut request = clients
        .dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(hash, KeyType::Hash)?)
        .attribute_definitions(string_attribute(hash)?);
    if let Some(range) = range {
        request = request
            .key_schema(key(range, KeyType::Range)?)
            .attribute_definitions(string_attribute(range)?);
    }
    if shard_index {
        let index = GlobalSecondaryIndex::builder()
            .index_name(SHARD_INDEX)
            .key_schema(key("shard_id", KeyType::Hash)?)
            .key_schema(key("processed_at", KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(|e| build_error("the ShardIndex", e))?;
        request = request
            .attribute_definitions(string_attribute("shard_id")?)
            .global_secondary_indexes(index);
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(backend_error(format!("creating table {table}"), e)),
    }
}

async fn create_stream(
    clients: &AwsClients,
    stream: &str,
    shards: i32,
) -> Result<(), BackendError> {
    match clients
        .kinesis
        .create_stream()
        .stream_name(stream)
        .shard_count(shards)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(backend_error(format!("creating stream {stream}"), e)),
    }
    for _ in 0..100 {
        let summary = clients
            .kinesis
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .map_err(|e| backend_error(format!("describing stream {stream}"), e))?;
        if summary
            .stream_description_summary()
            .is_some_and(|d| d.stream_status() == &StreamStatus::Active)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BackendError::retryable(
        format!("stream {stream}"),
        "not active after 10 s",
    ))
}
