//! The live tail: a binding's most recent processed records and dead
//! letters, for the console. A seam of its own, as not every backend can
//! show dead letters without taking them: SQS cannot show a message without
//! hiding it from every other reader, so the tail on AWS shows records only
//! and says where the dead letters are.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde_json::Value;
use weir_core::backend::{BackendError, DeadLetter, ObjectStore};
use weir_core::partition::{ObjectKey, Partition};
use weir_embedded::SqliteState;

/// What a binding did lately, newest first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recent {
    /// Processed records (output envelopes).
    pub records: Vec<Value>,
    pub dead_letters: Vec<DeadLetter>,
    /// Where the dead letters are, when the tail cannot show them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letters_elsewhere: Option<String>,
}

type Pending<'a> = Pin<Box<dyn Future<Output = Result<Recent, BackendError>> + Send + 'a>>;

/// Recent activity of an event type, for every tenant or one.
pub trait Tail: Send + Sync + 'static {
    fn recent<'a>(
        &'a self,
        event_type: &'a str,
        tenant: Option<&'a str>,
        limit: usize,
    ) -> Pending<'a>;
}

/// Where a tail finds dead letters.
#[derive(Debug, Clone)]
pub enum DeadLetterSource {
    /// The embedded state, newest first.
    Embedded(SqliteState),
    /// Somewhere the tail cannot read without taking them: the text says
    /// where (and how to read them).
    Elsewhere(String),
}

/// The tail of any object store: the event type's processed partitions
/// walked newest first, one level at a time (a partition's newest batches
/// first), so a call reads the newest partitions, not a listing of every
/// object the stage holds.
#[derive(Debug, Clone)]
pub struct ObjectTail<O> {
    pub objects: O,
    pub dead_letters: DeadLetterSource,
}

/// `processed/event_type=…/`, the event type encoded as partitions are.
fn processed_prefix(event_type: &str) -> Result<String, BackendError> {
    let partition = Partition::new(event_type, chrono::DateTime::UNIX_EPOCH)
        .map_err(|why| BackendError::permanent("the tail's event type", why))?;
    let event_part = partition.as_str().split('/').next().unwrap_or_default();
    Ok(format!("processed/{event_part}/"))
}

fn record_tenant(record: &Value) -> &str {
    record["enriched_data"]["tenant_id"]
        .as_str()
        .unwrap_or("default")
}

impl<O: ObjectStore> ObjectTail<O> {
    async fn records(
        &self,
        event_type: &str,
        tenant: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Value>, BackendError> {
        let mut records = Vec::new();
        // A stack of levels: the newest (largest) sibling on top.
        let mut levels = vec![processed_prefix(event_type)?];
        while let Some(level) = levels.pop() {
            let (deeper, mut keys): (Vec<String>, Vec<String>) = self
                .objects
                .list_level(&level)
                .await?
                .into_iter()
                .partition(|entry| entry.ends_with('/'));
            keys.sort_by_cached_key(|key| std::cmp::Reverse(newest_record(key)));
            for key in keys {
                let Some(body) = self.objects.get(&key).await? else {
                    continue;
                };
                let text = String::from_utf8_lossy(&body);
                for line in text.lines().rev() {
                    let Ok(record) = serde_json::from_str::<Value>(line) else {
                        continue;
                    };
                    if tenant.is_none_or(|t| record_tenant(&record) == t) {
                        records.push(record);
                        if records.len() == limit {
                            return Ok(records);
                        }
                    }
                }
            }
            levels.extend(deeper);
        }
        Ok(records)
    }
}

/// How new a batch's object is: its last sequence number, compared as a
/// number (longer is larger; embedded sequence numbers are not padded).
fn newest_record(key: &str) -> (usize, String) {
    let last = ObjectKey::parse(key)
        .map(|k| k.last_sequence)
        .unwrap_or_default();
    (last.len(), last)
}

impl<O: ObjectStore + 'static> Tail for ObjectTail<O> {
    fn recent<'a>(
        &'a self,
        event_type: &'a str,
        tenant: Option<&'a str>,
        limit: usize,
    ) -> Pending<'a> {
        Box::pin(async move {
            let records = self.records(event_type, tenant, limit).await?;
            let mut recent = Recent {
                records,
                ..Default::default()
            };
            match &self.dead_letters {
                DeadLetterSource::Embedded(state) => {
                    recent.dead_letters = state
                        .recent_dead_letters(event_type, tenant, limit)
                        .await?
                        .into_iter()
                        .map(|(_, letter)| letter)
                        .collect();
                }
                DeadLetterSource::Elsewhere(place) => {
                    recent.dead_letters_elsewhere = Some(place.clone());
                }
            }
            Ok(recent)
        })
    }
}
