//! Putting records on a stream the way Kinesis asks producers to: batches,
//! per-record results, and only the throttled records retried, with
//! exponential backoff and full jitter, ahead of newer records so each
//! partition key keeps its order. Shared by the producer function and
//! `weir produce`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use weir_core::backend::BackendError;
use weir_core::stream::{PutRecord, PutResult, StreamSink};

use crate::sampler::{EVENT_TYPES, Sampler, partition_key};

/// What happened to the records put so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PutStats {
    pub sent: u64,
    /// Throttled answers (a record throttled twice counts twice).
    pub throttled: u64,
    pub retried: u64,
    /// Refused by the stream (too large, no partition key): not retried.
    pub refused: u64,
    /// Throttled on every attempt.
    pub gave_up: u64,
    /// Records accepted per shard.
    pub shards: BTreeMap<String, u64>,
}

struct Pending {
    record: PutRecord,
    attempts: u32,
}

/// A queue of records to put, with their attempts.
pub struct Putter {
    queue: VecDeque<Pending>,
    pub stats: PutStats,
    max_attempts: u32,
    rng: StdRng,
}

impl std::fmt::Debug for Putter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Putter")
            .field("queued", &self.queue.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// Exponential backoff with full jitter: a random wait in
/// `[0, min(2 s, 50 ms · 2^attempt)]`, so retrying producers spread out.
fn backoff(attempt: u32, rng: &mut StdRng) -> Duration {
    let ceiling = 50u64.saturating_mul(1 << attempt.min(16)).min(2_000);
    Duration::from_millis(rng.random_range(0..=ceiling))
}

impl Putter {
    /// `seed` seeds the jitter (a fixed seed gives repeatable runs).
    pub fn new(max_attempts: u32, seed: u64) -> Self {
        Self {
            queue: VecDeque::new(),
            stats: PutStats::default(),
            max_attempts: max_attempts.max(1),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn push(&mut self, record: PutRecord) {
        self.queue.push_back(Pending {
            record,
            attempts: 0,
        });
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Puts up to `batch` records from the front of the queue; throttled ones
    /// go back to the front after a backoff. An `Err` is the whole call
    /// failing: the records stay queued.
    pub async fn put_next<S: StreamSink>(
        &mut self,
        sink: &S,
        batch: usize,
    ) -> Result<(), BackendError> {
        let taken: Vec<Pending> = self
            .queue
            .drain(..self.queue.len().min(batch.max(1)))
            .collect();
        let results = match sink
            .put_records(taken.iter().map(|p| p.record.clone()).collect())
            .await
        {
            Ok(results) => results,
            Err(e) => {
                for pending in taken.into_iter().rev() {
                    self.queue.push_front(pending);
                }
                return Err(e);
            }
        };
        let mut retry = Vec::new();
        let mut worst_attempt = None;
        for (mut pending, result) in taken.into_iter().zip(results) {
            match result {
                PutResult::Accepted { shard_id, .. } => {
                    self.stats.sent += 1;
                    *self.stats.shards.entry(shard_id).or_default() += 1;
                }
                PutResult::Refused { reason } => {
                    self.stats.refused += 1;
                    tracing::warn!(
                        reason,
                        partition_key = pending.record.partition_key,
                        "record refused by the stream"
                    );
                }
                PutResult::Throttled { .. } => {
                    self.stats.throttled += 1;
                    pending.attempts += 1;
                    if pending.attempts >= self.max_attempts {
                        self.stats.gave_up += 1;
                    } else {
                        self.stats.retried += 1;
                        worst_attempt = Some(worst_attempt.unwrap_or(0).max(pending.attempts));
                        retry.push(pending);
                    }
                }
            }
        }
        // Ahead of newer records and in their own order.
        for pending in retry.into_iter().rev() {
            self.queue.push_front(pending);
        }
        if let Some(attempt) = worst_attempt {
            tokio::time::sleep(backoff(attempt, &mut self.rng)).await;
        }
        Ok(())
    }
}

/// The producer function's event (every field optional): `{}` puts 10
/// generated events of every type.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProduceRequest {
    pub count: u32,
    pub types: Vec<String>,
    /// `tenant_id`s to spread the events over; none: no `tenant_id`.
    pub tenants: Vec<String>,
    pub seed: u64,
    pub max_attempts: u32,
}

impl Default for ProduceRequest {
    fn default() -> Self {
        Self {
            count: 10,
            types: EVENT_TYPES.map(String::from).to_vec(),
            tenants: Vec::new(),
            seed: 1,
            max_attempts: 8,
        }
    }
}

/// The most records one invocation puts.
pub const MAX_PRODUCE_COUNT: u32 = 10_000;

/// The seed's producer function: generates the requested events and puts
/// them on the stream in batches of up to 500. A bad request is an `Err`
/// naming the field; a stream failure too.
pub async fn produce<S: StreamSink>(
    sink: &S,
    request: &ProduceRequest,
) -> Result<PutStats, String> {
    if request.count > MAX_PRODUCE_COUNT {
        return Err(format!(
            "count {} is over the limit of {MAX_PRODUCE_COUNT}",
            request.count
        ));
    }
    if let Some(t) = request
        .types
        .iter()
        .find(|t| !EVENT_TYPES.contains(&t.as_str()))
    {
        return Err(format!(
            "types: unknown event type `{t}`; choose from {}",
            EVENT_TYPES.join(", ")
        ));
    }
    if request.types.is_empty() {
        return Err("types: give at least one event type".into());
    }
    let mut sampler = Sampler::new(request.seed);
    let mut putter = Putter::new(request.max_attempts, request.seed);
    for n in 0..request.count as usize {
        let mut event = sampler.event(&request.types[n % request.types.len()]);
        if !request.tenants.is_empty() {
            event["tenant_id"] = request.tenants[n % request.tenants.len()].clone().into();
        }
        putter.push(PutRecord {
            partition_key: partition_key(&event),
            data: event.to_string().into_bytes(),
        });
    }
    while putter.queued() > 0 {
        putter
            .put_next(sink, 500)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(putter.stats)
}
