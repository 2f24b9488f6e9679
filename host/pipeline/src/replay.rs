//! Replay (backfill): re-runs enrichment over the raw objects of an event
//! type in a time range, with whatever bindings the pipeline's router has
//! (a chosen version over the live ones), and writes the processed objects
//! under the keys live processing gave them: a replay overwrites its own
//! earlier output, and replaying twice writes the same objects.

use chrono::{DateTime, Duration, Timelike, Utc};
use weir_core::backend::{BackendError, DeadLetterQueue, MetadataStore, ObjectStore};
use weir_core::partition::Partition;

use crate::{BatchCounts, Pipeline};

/// What to replay: an event type's raw objects in the hours from `from`
/// (inclusive) to `to` (exclusive), by the partition hour of their records.
#[derive(Debug, Clone)]
pub struct ReplayRange {
    pub event_type: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// How far a replay got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayProgress {
    pub objects_done: usize,
    pub objects_total: usize,
    /// Objects listed but gone when read (rolled back meanwhile).
    pub objects_missing: usize,
    pub counts: BatchCounts,
}

fn start_of_hour(time: DateTime<Utc>) -> DateTime<Utc> {
    time.with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(time)
}

/// Raw objects replayed per write of their outputs and metadata.
const REPLAY_CHUNK: usize = 16;

impl ReplayRange {
    /// The raw prefixes of each hour in the range.
    pub fn prefixes(&self) -> Result<Vec<String>, String> {
        if self.to <= self.from {
            return Err(format!(
                "the range {} .. {} is empty: --to must be after --from",
                self.from, self.to
            ));
        }
        let hours = (self.to - self.from).num_hours();
        if hours > 24 * 366 {
            return Err(format!(
                "{hours} hours is more than a year: replay a year at a time"
            ));
        }
        let mut prefixes = Vec::new();
        let mut hour = start_of_hour(self.from);
        while hour < self.to {
            let partition = Partition::new(&self.event_type, hour)?;
            prefixes.push(format!("raw/{}/", partition.as_str()));
            hour += Duration::hours(1);
        }
        Ok(prefixes)
    }
}

impl<O: ObjectStore, D: DeadLetterQueue, M: MetadataStore> Pipeline<O, D, M> {
    /// Replays the range's raw objects in key order, calling `progress`
    /// after each. Stops at the first backend error (replaying again redoes
    /// only work that writes the same objects).
    pub async fn replay(
        &self,
        range: &ReplayRange,
        processed_at: DateTime<Utc>,
        mut progress: impl FnMut(&ReplayProgress),
    ) -> Result<ReplayProgress, BackendError> {
        let prefixes = range
            .prefixes()
            .map_err(|why| BackendError::permanent("planning a replay", why))?;
        let mut keys = Vec::new();
        for prefix in &prefixes {
            keys.extend(self.objects.list(prefix).await?);
        }
        keys.sort();
        let mut done = ReplayProgress {
            objects_total: keys.len(),
            ..Default::default()
        };
        progress(&done);
        // A few objects per write of their outputs and metadata.
        for chunk in keys.chunks(REPLAY_CHUNK) {
            let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let results = self.transform_objects(&chunk, processed_at).await?;
            for (key, result) in chunk.iter().zip(results) {
                match result {
                    Some(result) => done.counts.add(&result.counts),
                    None => done.objects_missing += 1,
                }
                done.objects_done += 1;
                tracing::debug!(key = %key, done = done.objects_done, total = done.objects_total, "replayed");
            }
            progress(&done);
        }
        Ok(done)
    }
}
