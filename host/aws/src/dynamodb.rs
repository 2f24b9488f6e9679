//! DynamoDB: the seed's batch metadata table (ShardIndex GSI) and metrics
//! table, and stream checkpoints.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use weir_core::backend::{BackendError, BatchMetadata, MetadataStore};
use weir_core::metrics::{MinuteMetrics, merge_minutes};
use weir_core::stream::SequenceNumber;

use crate::error::{backend_error, build_error};

/// The GSI of the metadata table that finds a shard's batches.
pub const SHARD_INDEX: &str = "ShardIndex";

/// DynamoDB's limit of items per BatchWriteItem.
const BATCH_WRITE_ITEMS: usize = 25;

/// The metadata and metrics tables.
#[derive(Debug, Clone)]
pub struct DynamoMetadataStore {
    client: Client,
    metadata_table: String,
    metrics_table: String,
}

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn list(values: &[String]) -> AttributeValue {
    AttributeValue::L(values.iter().map(|v| s(v.clone())).collect())
}

pub(crate) fn get_s(item: &Item, name: &str) -> String {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

pub(crate) fn get_n<T: std::str::FromStr + Default>(item: &Item, name: &str) -> T {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

pub(crate) fn get_list(item: &Item, name: &str) -> Vec<String> {
    item.get(name)
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
        .unwrap_or_default()
}

fn metadata_item(b: &BatchMetadata) -> Item {
    HashMap::from([
        ("batch_id".to_owned(), s(&b.batch_id)),
        ("processed_at".to_owned(), s(&b.processed_at)),
        ("shard_id".to_owned(), s(&b.shard_id)),
        ("total_records".to_owned(), n(b.total_records)),
        ("success_records".to_owned(), n(b.success_records)),
        ("failed_records".to_owned(), n(b.failed_records)),
        ("partitions_count".to_owned(), n(b.partitions_count)),
        ("ttl".to_owned(), n(b.ttl)),
        ("plugin_versions".to_owned(), list(&b.plugin_versions)),
        ("object_keys".to_owned(), list(&b.object_keys)),
    ])
}

fn metadata_of(item: &Item) -> BatchMetadata {
    BatchMetadata {
        batch_id: get_s(item, "batch_id"),
        processed_at: get_s(item, "processed_at"),
        shard_id: get_s(item, "shard_id"),
        total_records: get_n(item, "total_records"),
        success_records: get_n(item, "success_records"),
        failed_records: get_n(item, "failed_records"),
        partitions_count: get_n(item, "partitions_count"),
        ttl: get_n(item, "ttl"),
        plugin_versions: get_list(item, "plugin_versions"),
        object_keys: get_list(item, "object_keys"),
    }
}

/// The metrics table's sort key: the minute first, so a key's rows sort by
/// time, then the batch, so a retried batch overwrites its own row.
fn metrics_sort_key(row: &MinuteMetrics) -> String {
    format!("{}#{}", row.minute, row.batch_id)
}

fn metrics_item(row: &MinuteMetrics) -> Item {
    // Readings as JSON text: DynamoDB numbers stop at 1e126, JSON's do not.
    let readings = serde_json::to_string(&row.readings).unwrap_or_else(|_| "{}".to_owned());
    HashMap::from([
        ("partition_key".to_owned(), s(&row.partition_key)),
        ("timestamp".to_owned(), s(metrics_sort_key(row))),
        ("minute".to_owned(), s(&row.minute)),
        ("batch_id".to_owned(), s(&row.batch_id)),
        ("records".to_owned(), n(row.records)),
        ("readings".to_owned(), s(readings)),
        ("ttl".to_owned(), n(row.ttl)),
    ])
}

fn metrics_of(item: &Item) -> MinuteMetrics {
    MinuteMetrics {
        partition_key: get_s(item, "partition_key"),
        minute: get_s(item, "minute"),
        batch_id: get_s(item, "batch_id"),
        records: get_n(item, "records"),
        readings: serde_json::from_str(&get_s(item, "readings")).unwrap_or_default(),
        ttl: get_n(item, "ttl"),
    }
}

impl DynamoMetadataStore {
    pub fn new(
        client: Client,
        metadata_table: impl Into<String>,
        metrics_table: impl Into<String>,
    ) -> Self {
        Self {
            client,
            metadata_table: metadata_table.into(),
            metrics_table: metrics_table.into(),
        }
    }

    /// Writes items with BatchWriteItem, 25 at a time, resending what DynamoDB
    /// leaves unprocessed (throttling) with exponential backoff.
    async fn batch_put(&self, table: &str, items: Vec<Item>) -> Result<(), BackendError> {
        let what = || format!("writing to DynamoDB table {table}");
        for chunk in items.chunks(BATCH_WRITE_ITEMS) {
            let mut requests = chunk
                .iter()
                .map(|item| {
                    let put = PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map_err(|e| build_error(what(), e))?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<_>, BackendError>>()?;
            let mut attempt = 0u32;
            while !requests.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(table, requests)
                    .send()
                    .await
                    .map_err(|e| backend_error(what(), e))?;
                requests = out
                    .unprocessed_items()
                    .and_then(|u| u.get(table))
                    .cloned()
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                attempt += 1;
                if attempt > 8 {
                    return Err(BackendError::retryable(
                        what(),
                        format!(
                            "{} items still unprocessed after {attempt} attempts",
                            requests.len()
                        ),
                    ));
                }
                tokio::time::sleep(crate::backoff(attempt, Duration::from_millis(50))).await;
            }
        }
        Ok(())
    }
}

impl MetadataStore for DynamoMetadataStore {
    /// Metrics rows first, then the batch's entry: an entry never points at
    /// metrics that are missing, and a retry rewrites the same items.
    async fn record_batch(
        &self,
        batch: &BatchMetadata,
        metrics: Vec<MinuteMetrics>,
    ) -> Result<(), BackendError> {
        let rows = metrics.iter().map(metrics_item).collect();
        self.batch_put(&self.metrics_table, rows).await?;
        self.client
            .put_item()
            .table_name(&self.metadata_table)
            .set_item(Some(metadata_item(batch)))
            .send()
            .await
            .map_err(|e| {
                backend_error(
                    format!(
                        "recording batch {} in {}",
                        batch.batch_id, self.metadata_table
                    ),
                    e,
                )
            })?;
        Ok(())
    }

    async fn batches_for_shard(
        &self,
        shard_id: &str,
        limit: usize,
    ) -> Result<Vec<BatchMetadata>, BackendError> {
        let mut batches = Vec::new();
        let mut start = None;
        while batches.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.metadata_table)
                .index_name(SHARD_INDEX)
                .key_condition_expression("shard_id = :shard")
                .expression_attribute_values(":shard", s(shard_id))
                .scan_index_forward(false)
                .limit(i32::try_from(limit - batches.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| {
                    backend_error(format!("querying {} by shard", self.metadata_table), e)
                })?;
            batches.extend(page.items().iter().map(metadata_of));
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        batches.truncate(limit);
        Ok(batches)
    }

    async fn minute_metrics(
        &self,
        partition_key: &str,
        limit: usize,
    ) -> Result<Vec<MinuteMetrics>, BackendError> {
        // Newest first; a minute may have rows from several batches, so read
        // until `limit` minutes are complete (one more minute seen).
        let mut rows: Vec<MinuteMetrics> = Vec::new();
        let mut minutes = 0;
        let mut start = None;
        'pages: loop {
            let page = self
                .client
                .query()
                .table_name(&self.metrics_table)
                .key_condition_expression("partition_key = :key")
                .expression_attribute_values(":key", s(partition_key))
                .scan_index_forward(false)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| backend_error(format!("querying {}", self.metrics_table), e))?;
            for item in page.items() {
                let row = metrics_of(item);
                if rows.last().is_none_or(|last| last.minute != row.minute) {
                    minutes += 1;
                    if minutes > limit {
                        break 'pages;
                    }
                }
                rows.push(row);
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        Ok(merge_minutes(rows))
    }
}

/// Stream checkpoints: one item per (consumer, stream, shard), moved forward
/// only, by a conditional write.
#[derive(Debug, Clone)]
pub struct DynamoCheckpoints {
    client: Client,
    table: String,
}

/// Sequence numbers as fixed-width text, so DynamoDB's string comparison is
/// integer comparison (DynamoDB numbers keep 38 digits; Kinesis's have 56).
fn sortable(sequence: &SequenceNumber) -> String {
    format!("{:0>129}", sequence.as_str())
}

impl DynamoCheckpoints {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn id(consumer: &str, stream: &str, shard_id: &str) -> String {
        format!("{consumer}|{stream}|{shard_id}")
    }

    pub async fn get(
        &self,
        consumer: &str,
        stream: &str,
        shard_id: &str,
    ) -> Result<Option<SequenceNumber>, BackendError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("checkpoint_id", s(Self::id(consumer, stream, shard_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend_error(format!("reading checkpoint from {}", self.table), e))?;
        Ok(item
            .item()
            .map(|i| get_s(i, "sequence_number"))
            .and_then(|text| text.parse().ok()))
    }

    /// Moves the checkpoint forward; a write that would move it back (a
    /// slower consumer of the same name) is a no-op.
    pub async fn set(
        &self,
        consumer: &str,
        stream: &str,
        shard_id: &str,
        sequence: &SequenceNumber,
    ) -> Result<(), BackendError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("checkpoint_id", s(Self::id(consumer, stream, shard_id)))
            .item("sequence_number", s(sequence.as_str()))
            .item("sequence_sort", s(sortable(sequence)))
            .condition_expression("attribute_not_exists(checkpoint_id) OR sequence_sort < :sort")
            .expression_attribute_values(":sort", s(sortable(sequence)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(backend_error(
                format!("writing checkpoint to {}", self.table),
                e,
            )),
        }
    }
}
