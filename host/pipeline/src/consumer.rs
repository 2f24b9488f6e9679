//! Consuming a stream: every shard from its checkpoint, in batches.
//!
//! A batch is up to `batch_size` records, or fewer once the oldest waiting
//! record has waited `batching_window` (Lambda's event source mapping: the
//! seeds use 100 records and 5 s). A shard's checkpoint moves only after
//! [`Pipeline::process_batch`] returned `Ok`, so a crash replays at most the
//! batch in flight, and its deterministic object keys make the replay
//! overwrite, not duplicate. Shards are consumed concurrently, one task each.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;
use weir_core::backend::{BackendError, DeadLetterQueue, MetadataStore, ObjectStore};
use weir_core::stream::{StartingPosition, StreamSource};

use crate::{BatchCounts, Mode, Pipeline};

/// How a consumer batches and polls.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// The checkpoint owner's name.
    pub name: String,
    pub batch_size: usize,
    pub batching_window: Duration,
    /// How often an idle shard is read again.
    pub poll_interval: Duration,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            name: "weir".into(),
            batch_size: 100,
            batching_window: Duration::from_secs(5),
            poll_interval: Duration::from_millis(200),
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
    for shard in stream.shards().await? {
        loop {
            let from = position(stream, &settings.name, &shard).await?;
            let read = stream.read(&shard, &from, settings.batch_size).await?;
            if read.records.is_empty() {
                break;
            }
            report.add(&process(stream, pipeline, settings, &shard, &read.records).await?);
        }
    }
    Ok(report)
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

async fn process<S, O, D, M>(
    stream: &S,
    pipeline: &Pipeline<O, D, M>,
    settings: &ConsumerSettings,
    shard: &str,
    records: &[weir_core::stream::StreamRecord],
) -> Result<ConsumeReport, BackendError>
where
    S: StreamSource,
    O: ObjectStore,
    D: DeadLetterQueue,
    M: MetadataStore,
{
    let result = pipeline.process_batch(shard, records, Utc::now()).await?;
    let mut counts = result.counts.clone();
    let mut objects_written = result.object_keys.len() as u32;
    if pipeline.settings.mode == Mode::TwoStage {
        // What an S3 notification does on AWS, before the checkpoint so a
        // crash replays both stages.
        for raw_key in result.raw_keys() {
            let transformed = pipeline
                .transform_object(raw_key, Utc::now())
                .await?
                .ok_or_else(|| {
                    BackendError::retryable(raw_key, "the raw object just written is gone")
                })?;
            counts.add_enrichment(&transformed.counts);
            objects_written += transformed.object_keys.len() as u32;
        }
    }
    if let Some(last) = records.last() {
        stream
            .set_checkpoint(&settings.name, shard, last.sequence_number.clone())
            .await?;
    }
    Ok(ConsumeReport {
        batches: 1,
        counts,
        objects_written,
    })
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
    for shard in stream.shards().await? {
        let (stream, pipeline, settings, stop) = (
            stream.clone(),
            pipeline.clone(),
            settings.clone(),
            stop_rx.clone(),
        );
        tasks.spawn(
            async move { consume_shard(&*stream, &pipeline, &settings, &shard, stop).await },
        );
    }
    shutdown.await;
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

async fn consume_shard<S, O, D, M>(
    stream: &S,
    pipeline: &Pipeline<O, D, M>,
    settings: &ConsumerSettings,
    shard: &str,
    mut stop: watch::Receiver<bool>,
) -> ConsumeReport
where
    S: StreamSource,
    O: ObjectStore,
    D: DeadLetterQueue,
    M: MetadataStore,
{
    let mut report = ConsumeReport::default();
    let mut waiting_since: Option<Instant> = None;
    let mut failures = 0u32;
    while !*stop.borrow() {
        let step = async {
            let from = position(stream, &settings.name, shard).await?;
            let read = stream.read(shard, &from, settings.batch_size).await?;
            let full = read.records.len() >= settings.batch_size;
            let waited = waiting_since.is_some_and(|t| t.elapsed() >= settings.batching_window);
            if read.records.is_empty() {
                waiting_since = None;
                return Ok(None);
            }
            if !full && !waited {
                waiting_since.get_or_insert_with(Instant::now);
                return Ok(None);
            }
            waiting_since = None;
            process(stream, pipeline, settings, shard, &read.records)
                .await
                .map(Some)
        };
        match step.await {
            Ok(Some(batch)) => {
                failures = 0;
                report.add(&batch);
                continue;
            }
            Ok(None) => {}
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
