//! Consuming a stream: every shard from its checkpoint, in batches.
//!
//! A batch is up to `batch_size` records, or fewer once the oldest waiting
//! record has waited `batching_window` (Lambda's event source mapping: the
//! seeds use 100 records and 5 s). A shard's checkpoint moves only after
//! [`Pipeline::process_batch`] returned `Ok`, so a crash replays at most the
//! batch in flight, and its deterministic object keys make the replay
//! overwrite, not duplicate. Shards are consumed concurrently, one task each;
//! after a resharding a child shard waits until its parents are read to
//! their end, so each partition key's records stay in order, and the service
//! looks for new shards every `shard_refresh`.
//!
//! A shard behind by more than a batch (a backlog, a restart, the demo)
//! catches up `batches_per_commit` full batches at a time: each its own batch
//! as above, but made durable together, so their syncs and commits are
//! shared, and checkpointed once after the last. Only full batches are
//! grouped, so each has the records, and the keys, it would have had alone.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;
use weir_core::backend::{BackendError, DeadLetterQueue, MetadataStore, ObjectStore};
use weir_core::stream::{ShardLineage, StartingPosition, StreamSource, parents_first};

use crate::telemetry::BatchObservation;
use crate::{BatchCounts, BatchResult, Mode, Pipeline};

/// How a consumer batches and polls.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// The checkpoint owner's name.
    pub name: String,
    pub batch_size: usize,
    pub batching_window: Duration,
    /// How many full batches of a shard behind are made durable together
    /// (1: each on its own).
    pub batches_per_commit: usize,
    /// How often an idle shard is read again.
    pub poll_interval: Duration,
    /// How often the service looks for new shards (after a resharding).
    pub shard_refresh: Duration,
    /// Where each batch's metrics go, if anywhere.
    pub telemetry: Option<std::sync::Arc<crate::telemetry::Telemetry>>,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            name: "weir".into(),
            batch_size: 100,
            batching_window: Duration::from_secs(5),
            batches_per_commit: 10,
            poll_interval: Duration::from_millis(200),
            shard_refresh: Duration::from_secs(10),
            telemetry: None,
        }
    }
}

/// What a consumer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumeReport {
    pub batches: u32,
    pub counts: BatchCounts,
    pub objects_written: u32,
}

/// `12 batches: 1200 records, 1100 enriched, 60 passed through, 20 dropped,
/// 20 dead-lettered`: the summary the commands print.
impl std::fmt::Display for ConsumeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.counts;
        write!(
            f,
            "{} batches: {} records, {} enriched, {} passed through, {} dropped, {} dead-lettered",
            self.batches,
            c.records,
            c.enriched,
            c.passed_through,
            c.dropped,
            c.dead_lettered()
        )
    }
}

impl ConsumeReport {
    fn add(&mut self, other: &ConsumeReport) {
        self.batches += other.batches;
        self.objects_written += other.objects_written;
        self.counts.add(&other.counts);
    }
}

/// Processes every shard from its checkpoint until nothing is left, ignoring
/// the batching window: the way to catch up (the demo, tests, a backfill).
pub async fn drain<S, O, D, M>(
    stream: &S,
    pipeline: &Pipeline<O, D, M>,
    settings: &ConsumerSettings,
) -> Result<ConsumeReport, BackendError>
where
    S: StreamSource,
    O: ObjectStore,
    D: DeadLetterQueue,
    M: MetadataStore,
{
    let mut report = ConsumeReport::default();
    // Parents first: a partition key's records before a resharding are read
    // before its records after.
    for shard in parents_first(stream.lineage().await?) {
        let shard = shard.shard_id;
        loop {
            let from = position(stream, &settings.name, &shard).await?;
            let read = stream.read(&shard, &from, settings.read_limit()).await?;
            if read.records.is_empty() {
                break;
            }
            // The last, short batch alone, as one batch at a time would.
            let batches = settings.full_batches(&read.records);
            let batches = if batches.is_empty() {
                vec![&read.records[..]]
            } else {
                batches
            };
            report.add(&process(stream, pipeline, settings, &shard, &batches).await?);
        }
    }
    Ok(report)
}

impl ConsumerSettings {
    /// How many records a shard's read asks for.
    fn read_limit(&self) -> usize {
        self.batch_size.max(1) * self.batches_per_commit.max(1)
    }

    /// The full batches at the front of `records` (at most
    /// `batches_per_commit`); none when there is not a full batch.
    fn full_batches<'r, T>(&self, records: &'r [T]) -> Vec<&'r [T]> {
        records
            .chunks_exact(self.batch_size.max(1))
            .take(self.batches_per_commit.max(1))
            .collect()
    }
}

async fn position<S: StreamSource>(
    stream: &S,
    consumer: &str,
    shard: &str,
) -> Result<StartingPosition, BackendError> {
    Ok(match stream.checkpoint(consumer, shard).await? {
        Some(sequence) => StartingPosition::AfterSequenceNumber(sequence),
        None => StartingPosition::TrimHorizon,
    })
}

/// Processes consecutive batches of a shard, makes them durable together,
/// then moves the checkpoint past the last.
async fn process<S, O, D, M>(
    stream: &S,
    pipeline: &Pipeline<O, D, M>,
    settings: &ConsumerSettings,
    shard: &str,
    batches: &[&[weir_core::stream::StreamRecord]],
) -> Result<ConsumeReport, BackendError>
where
    S: StreamSource,
    O: ObjectStore,
    D: DeadLetterQueue,
    M: MetadataStore,
{
    let started = std::time::Instant::now();
    let results = pipeline.process_batches(shard, batches, Utc::now()).await?;
    let mut report = ConsumeReport::default();
    for result in &results {
        report.batches += 1;
        report.counts.add(&result.counts);
        report.objects_written += result.object_keys.len() as u32;
    }
    if pipeline.settings.mode == Mode::TwoStage {
        // What an S3 notification does on AWS, before the checkpoint so a
        // crash replays both stages.
        // The raw objects together: one write of their outputs and metadata.
        let raw_keys: Vec<&str> = results.iter().flat_map(BatchResult::raw_keys).collect();
        let transformed = pipeline.transform_objects(&raw_keys, Utc::now()).await?;
        for (raw_key, transformed) in raw_keys.iter().zip(transformed) {
            let transformed = transformed.ok_or_else(|| {
                BackendError::retryable(*raw_key, "the raw object just written is gone")
            })?;
            report.counts.add_enrichment(&transformed.counts);
            report.objects_written += transformed.object_keys.len() as u32;
        }
    }
    if let Some(telemetry) = &settings.telemetry {
        // Each batch waited for the whole group to be durable.
        for (result, records) in results.into_iter().zip(batches) {
            let observed = BatchObservation::new(result, records, started.elapsed(), Utc::now());
            telemetry.observe(&observed);
        }
    }
    if let Some(last) = batches.last().and_then(|records| records.last()) {
        stream
            .set_checkpoint(&settings.name, shard, last.sequence_number.clone())
            .await?;
    }
    Ok(report)
}

/// Consumes every shard until `shutdown` resolves, then finishes the batch in
/// flight and returns. A backend failure is retried with backoff (the batch
/// is read again from the checkpoint); it does not stop the service.
pub async fn serve<S, O, D, M>(
    stream: Arc<S>,
    pipeline: Arc<Pipeline<O, D, M>>,
    settings: ConsumerSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<ConsumeReport, BackendError>
where
    S: StreamSource + 'static,
    O: ObjectStore + 'static,
    D: DeadLetterQueue + 'static,
    M: MetadataStore + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let finished = Arc::new(Finished::default());
    let mut started: HashSet<String> = HashSet::new();
    let mut spawn_new = |lineage: Vec<ShardLineage>,
                         tasks: &mut tokio::task::JoinSet<ConsumeReport>| {
        let listed: HashSet<String> = lineage.iter().map(|s| s.shard_id.clone()).collect();
        for shard in parents_first(lineage) {
            if !started.insert(shard.shard_id.clone()) {
                continue;
            }
            // Parents past the retention period are gone: nothing to wait for.
            let parents: Vec<String> = shard
                .parents
                .into_iter()
                .filter(|p| listed.contains(p))
                .collect();
            let (stream, pipeline, settings, stop, finished) = (
                stream.clone(),
                pipeline.clone(),
                settings.clone(),
                stop_rx.clone(),
                finished.clone(),
            );
            let id = shard.shard_id;
            tracing::info!(shard = id, ?parents, "consuming shard");
            tasks.spawn(async move {
                let shard = ShardTask {
                    id: &id,
                    parents: &parents,
                    finished: &finished,
                };
                consume_shard(&*stream, &pipeline, &settings, shard, stop).await
            });
        }
    };
    spawn_new(stream.lineage().await?, &mut tasks);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(settings.shard_refresh) => match stream.lineage().await {
                Ok(lineage) => spawn_new(lineage, &mut tasks),
                Err(e) => tracing::warn!(error = %e, "listing shards failed; trying again later"),
            },
        }
    }
    let _ = stop_tx.send(true);
    let mut report = ConsumeReport::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(shard_report) => report.add(&shard_report),
            Err(e) => tracing::error!(error = %e, "a shard consumer task failed"),
        }
    }
    Ok(report)
}

/// Shards read to their end (closed after a resharding), so their children
/// may start.
#[derive(Debug, Default)]
struct Finished {
    shards: std::sync::Mutex<HashSet<String>>,
}

impl Finished {
    fn mark(&self, shard: &str) {
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        shards.insert(shard.to_owned());
    }

    fn all(&self, parents: &[String]) -> bool {
        let shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        parents.iter().all(|p| shards.contains(p))
    }
}

/// A shard to consume, with the parents it waits for.
struct ShardTask<'a> {
    id: &'a str,
    parents: &'a [String],
    finished: &'a Finished,
}

/// What one step of a shard's loop did.
enum Step {
    Batch(ConsumeReport),
    Idle,
    /// A closed shard, read to its end.
    Ended,
}

async fn consume_shard<S, O, D, M>(
    stream: &S,
    pipeline: &Pipeline<O, D, M>,
    settings: &ConsumerSettings,
    task: ShardTask<'_>,
    mut stop: watch::Receiver<bool>,
) -> ConsumeReport
where
    S: StreamSource,
    O: ObjectStore,
    D: DeadLetterQueue,
    M: MetadataStore,
{
    let shard = task.id;
    let mut report = ConsumeReport::default();
    // A child waits for its parents, so each partition key stays in order.
    while !task.finished.all(task.parents) {
        tokio::select! {
            () = tokio::time::sleep(settings.poll_interval) => {}
            _ = stop.changed() => return report,
        }
        if *stop.borrow() {
            return report;
        }
    }
    let mut waiting_since: Option<Instant> = None;
    let mut failures = 0u32;
    while !*stop.borrow() {
        let step = async {
            let from = position(stream, &settings.name, shard).await?;
            let read = stream.read(shard, &from, settings.read_limit()).await?;
            let full = settings.full_batches(&read.records);
            let waited = waiting_since.is_some_and(|t| t.elapsed() >= settings.batching_window);
            if read.records.is_empty() {
                waiting_since = None;
                return Ok(if read.shard_ended {
                    Step::Ended
                } else {
                    Step::Idle
                });
            }
            if !full.is_empty() {
                waiting_since = None;
                return process(stream, pipeline, settings, shard, &full)
                    .await
                    .map(Step::Batch);
            }
            // A closed shard's last records will never make a fuller batch.
            if !waited && !read.shard_ended {
                waiting_since.get_or_insert_with(Instant::now);
                return Ok(Step::Idle);
            }
            waiting_since = None;
            process(stream, pipeline, settings, shard, &[&read.records[..]])
                .await
                .map(Step::Batch)
        };
        match step.await {
            Ok(Step::Batch(batch)) => {
                failures = 0;
                report.add(&batch);
                continue;
            }
            Ok(Step::Ended) => {
                tracing::info!(
                    shard,
                    "shard closed and read to its end; its children carry on"
                );
                task.finished.mark(shard);
                return report;
            }
            Ok(Step::Idle) => {}
            Err(e) => {
                failures += 1;
                tracing::error!(shard, error = %e, retryable = e.retryable, failures, "batch failed; retrying from the checkpoint");
            }
        }
        let pause = settings.poll_interval * 2u32.pow(failures.min(5));
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
    report
}
