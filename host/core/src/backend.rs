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

    /// One level below `prefix` (which ends in `/`, or is empty), sorted: the
    /// keys there, and each deeper level once, as its prefix ending in `/`
    /// (S3's listing with a delimiter). A reader walks partitions with it,
    /// newest first, without listing every key of a stage. The default lists
    /// every key under the prefix; stores override it with a cheaper call.
    fn list_level(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, BackendError>> + Send {
        async move {
            let mut level: Vec<String> = self
                .list(prefix)
                .await?
                .into_iter()
                .map(
                    |key| match key.strip_prefix(prefix).and_then(|rest| rest.find('/')) {
                        Some(end) => key[..prefix.len() + end + 1].to_owned(),
                        None => key,
                    },
                )
                .collect();
            // Sorted keys keep a level's keys together: its prefix repeats in a run.
            level.dedup();
            Ok(level)
        }
    }

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

impl DeadLetterFilter {
    /// Whether a letter passes the filter's stage, kind, shard and reason
    /// (its `id` and `limit` choose among the letters that pass): for a queue
    /// that cannot filter on its own side, such as SQS.
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        let is =
            |wanted: &Option<String>, value: &str| wanted.as_deref().is_none_or(|w| w == value);
        is(&self.stage, &letter.stage)
            && is(&self.kind, &letter.kind)
            && is(&self.shard_id, &letter.shard_id)
            && self
                .reason_contains
                .as_deref()
                .is_none_or(|text| letter.reason.contains(text))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn letter() -> DeadLetter {
        DeadLetter {
            payload: b"{}".to_vec(),
            reason: "missing field `timestamp`".into(),
            kind: "missing-field".into(),
            stage: "validation".into(),
            plugin: None,
            shard_id: "shardId-000000000001".into(),
            sequence_number: "7".into(),
            partition_key: "user-1".into(),
            failed_at: "2026-11-25T04:00:00Z".into(),
        }
    }

    /// Keys only: what the default `list_level` reads.
    struct Keys(Vec<&'static str>);

    impl ObjectStore for Keys {
        async fn put(&self, _: &str, _: Vec<u8>) -> Result<(), BackendError> {
            unreachable!("only listed")
        }
        async fn get(&self, _: &str) -> Result<Option<Vec<u8>>, BackendError> {
            unreachable!("only listed")
        }
        async fn list(&self, prefix: &str) -> Result<Vec<String>, BackendError> {
            let mut keys: Vec<String> = self
                .0
                .iter()
                .filter(|k| k.starts_with(prefix))
                .map(|k| k.to_string())
                .collect();
            keys.sort();
            Ok(keys)
        }
        async fn delete(&self, _: &str) -> Result<(), BackendError> {
            unreachable!("only listed")
        }
    }

    #[test]
    fn a_level_lists_its_keys_and_each_deeper_level_once() {
        let store = Keys(vec![
            "p/a/1.jsonl",
            "p/a/2.jsonl",
            "p/a.jsonl",
            "p/b/c/3.jsonl",
            "p/top.jsonl",
            "q/x.jsonl",
        ]);
        let level = |prefix: &str| {
            let future = store.list_level(prefix);
            answer_now(future).unwrap()
        };
        assert_eq!(level("p/"), ["p/a.jsonl", "p/a/", "p/b/", "p/top.jsonl"]);
        assert_eq!(level("p/b/"), ["p/b/c/"]);
        assert_eq!(level(""), ["p/", "q/"]);
        assert!(level("r/").is_empty());
    }

    /// Polls a future that never waits (the store above answers at once).
    fn answer_now<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("the store waited"),
        }
    }

    #[test]
    fn a_filter_matches_on_every_field_it_names_and_only_those() {
        let letter = letter();
        assert!(DeadLetterFilter::default().matches(&letter));
        let named = DeadLetterFilter {
            stage: Some("validation".into()),
            kind: Some("missing-field".into()),
            shard_id: Some("shardId-000000000001".into()),
            reason_contains: Some("`timestamp`".into()),
            ..Default::default()
        };
        assert!(named.matches(&letter));
        for other in [
            DeadLetterFilter {
                stage: Some("enrich".into()),
                ..named.clone()
            },
            DeadLetterFilter {
                kind: Some("not-json".into()),
                ..named.clone()
            },
            DeadLetterFilter {
                shard_id: Some("shardId-000000000000".into()),
                ..named.clone()
            },
            DeadLetterFilter {
                reason_contains: Some("Timestamp".into()),
                ..named.clone()
            },
        ] {
            assert!(!other.matches(&letter), "{other:?}");
        }
    }
}
