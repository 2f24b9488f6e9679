//! The seams between the pipeline and where its data lives.
//!
//! Small async traits, each with an embedded implementation (`weir-embedded`:
//! local files and SQLite) and an AWS one. The pipeline is generic over them, so
//! the backends are chosen in one place, the binary that wires everything, and
//! no AWS or SQLite type reaches the pipeline.
//!
//! Each method returns a `Send` future so the pipeline can run on a
//! multi-threaded executor. Failures are [`BackendError`]s: an infrastructure
//! problem, never a record's fault, so the pipeline retries or fails the batch;
//! it never dead-letters records because a backend failed.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::metrics::MinuteMetrics;

/// A backend failed. `retryable`: whether trying again may succeed (a timeout,
/// throttling, a 5xx) as opposed to a permanent fault (a missing bucket, no
/// permission, a corrupt database) that needs an operator.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct BackendError {
    pub what: String,
    pub retryable: bool,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl BackendError {
    pub fn retryable(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            what: what.into(),
            retryable: true,
            source: source.into(),
        }
    }

    pub fn permanent(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            what: what.into(),
            retryable: false,
            source: source.into(),
        }
    }
}

/// Objects by key (`raw/…`, `processed/…`; see [`crate::partition`]).
pub trait ObjectStore: Send + Sync {
    /// Writes the object, replacing any: readers see the old or the new
    /// object, never half of one. A key that could leave the store's root is
    /// refused (permanent error), whoever built it.
    fn put(
        &self,
        key: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// The object, or `None` when there is none.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, BackendError>> + Send;

    /// The keys under a prefix, sorted.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, BackendError>> + Send;

    /// Deletes the object; deleting a missing object is not an error.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Writes several objects, each as [`Self::put`] does (a batch's objects:
    /// a store can write them in one go or concurrently). On an error some
    /// may have been written.
    fn put_all(
        &self,
        objects: Vec<(String, Vec<u8>)>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send {
        async move {
            for (key, body) in objects {
                self.put(&key, body).await?;
            }
            Ok(())
        }
    }
}

/// A record Weir did not write, with everything needed to understand and
/// redrive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The record's original bytes.
    #[serde(with = "payload_bytes")]
    pub payload: Vec<u8>,
    /// What went wrong, for a person.
    pub reason: String,
    /// The error kind, for filtering (`not-json`, `missing-field`, `cpu-limit`, …).
    pub kind: String,
    /// Where it failed: `intake`, `validation`, `enrich`, …
    pub stage: String,
    /// The plugin version involved, if any (`name@version`).
    pub plugin: Option<String>,
    pub shard_id: String,
    pub sequence_number: String,
    /// The stream partition key, so a redrive keeps the record's shard and order.
    pub partition_key: String,
    /// RFC 3339 UTC.
    pub failed_at: String,
}

/// Dead letters as JSON keep the payload readable when it is UTF-8 text and
/// base64 otherwise: `{"text": "..."}` or `{"base64": "..."}`.
mod payload_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Payload {
        Text(String),
        Base64(String),
    }

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Payload::Text(text.to_owned()),
            Err(_) => Payload::Base64(STANDARD.encode(bytes)),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Payload::deserialize(d)? {
            Payload::Text(text) => Ok(text.into_bytes()),
            Payload::Base64(b64) => STANDARD.decode(b64).map_err(serde::de::Error::custom),
        }
    }
}

/// Which dead letters to read back.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    pub stage: Option<String>,
    pub kind: Option<String>,
    pub shard_id: Option<String>,
    /// Substring of the reason.
    pub reason_contains: Option<String>,
    /// One letter by its id.
    pub id: Option<i64>,
    pub limit: Option<usize>,
}

/// Where records Weir cannot handle go, with their payload and reason.
pub trait DeadLetterQueue: Send + Sync {
    /// Stores the letters durably, all or none.
    fn send(
        &self,
        letters: Vec<DeadLetter>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// The metadata of one processed batch (the seed's table, plus lineage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMetadata {
    pub batch_id: String,
    /// RFC 3339 UTC.
    pub processed_at: String,
    pub shard_id: String,
    pub total_records: u32,
    pub success_records: u32,
    pub failed_records: u32,
    pub partitions_count: u32,
    /// Unix seconds after which the entry may be deleted (30 days by default).
    pub ttl: i64,
    /// Plugin versions used (`name@version`).
    pub plugin_versions: Vec<String>,
    /// Object keys written.
    pub object_keys: Vec<String>,
}

/// How long batch metadata is kept: the seed's 30 days.
pub const METADATA_TTL_SECONDS: i64 = 30 * 24 * 3600;

/// Batch metadata, queryable by shard (the seed's `ShardIndex`), and the
/// per-minute metrics of partition keys.
pub trait MetadataStore: Send + Sync {
    /// Records a batch and its per-minute metrics rows (the seed's metrics
    /// table), together. Recording the same `batch_id` and `processed_at`
    /// again replaces the entry, and a metrics row with the same partition
    /// key, minute and batch id replaces the old one (a retried batch).
    fn record_batch(
        &self,
        batch: &BatchMetadata,
        metrics: Vec<MinuteMetrics>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Records several batches, as [`Self::record_batch`] does each (a store
    /// may do it in one write; each batch is recorded whole or not at all).
    fn record_batches(
        &self,
        batches: Vec<(BatchMetadata, Vec<MinuteMetrics>)>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send {
        async move {
            for (batch, metrics) in batches {
                self.record_batch(&batch, metrics).await?;
            }
            Ok(())
        }
    }

    /// The shard's batches, newest first.
    fn batches_for_shard(
        &self,
        shard_id: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<BatchMetadata>, BackendError>> + Send;

    /// A partition key's minutes, merged over batches, newest first.
    fn minute_metrics(
        &self,
        partition_key: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<MinuteMetrics>, BackendError>> + Send;
}
