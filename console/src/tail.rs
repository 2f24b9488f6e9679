//! The live tail: a binding's most recent processed records and dead
//! letters, for the console. A seam of its own, as not every backend can
//! show dead letters without taking them (an SQS queue cannot): the embedded
//! backends implement it.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde_json::Value;
use weir_core::backend::{BackendError, DeadLetter, ObjectStore};
use weir_core::partition::Partition;
use weir_embedded::{LocalObjectStore, SqliteState};

/// What a binding did lately, newest first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recent {
    /// Processed records (output envelopes).
    pub records: Vec<Value>,
    pub dead_letters: Vec<DeadLetter>,
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

/// The tail of the embedded backends: processed objects on disk, dead
/// letters in SQLite. It lists the event type's processed objects (newest
/// partitions first) on each call: fine for one machine's data.
#[derive(Debug, Clone)]
pub struct EmbeddedTail {
    pub objects: LocalObjectStore,
    pub state: SqliteState,
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

impl EmbeddedTail {
    async fn records(
        &self,
        event_type: &str,
        tenant: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Value>, BackendError> {
        let mut keys = self.objects.list(&processed_prefix(event_type)?).await?;
        keys.sort_unstable_by(|a, b| b.cmp(a));
        let mut records = Vec::new();
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
        Ok(records)
    }
}

impl Tail for EmbeddedTail {
    fn recent<'a>(
        &'a self,
        event_type: &'a str,
        tenant: Option<&'a str>,
        limit: usize,
    ) -> Pending<'a> {
        Box::pin(async move {
            let records = self.records(event_type, tenant, limit).await?;
            let dead_letters = self
                .state
                .recent_dead_letters(event_type, tenant, limit)
                .await?
                .into_iter()
                .map(|(_, letter)| letter)
                .collect();
            Ok(Recent {
                records,
                dead_letters,
            })
        })
    }
}
