//! One batch through the record path.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use weir_core::backend::{
    BackendError, BatchMetadata, DeadLetter, DeadLetterQueue, METADATA_TTL_SECONDS, MetadataStore,
    ObjectStore,
};
use weir_core::intake::{self, Accepted, IntakeSettings};
use weir_core::metrics::{METRICS_TTL_SECONDS, MinuteAggregator, MinuteMetrics};
use weir_core::partition::{Partition, Stage, object_key};
use weir_core::stream::{SequenceNumber, StreamRecord};
use weir_core::time;
use weir_runtime::router::SharedRouter;

use crate::enrich::{EnrichContext, enrich};
use crate::raw::write_raw_line;

/// Where enrichment happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Enrich in the same batch as the raw stage: lowest latency.
    #[default]
    SingleStage,
    /// As the seed: a batch writes raw objects only; the transformer
    /// ([`Pipeline::transform_object`]) enriches each raw object once it is
    /// written (on AWS, on its S3 notification).
    TwoStage,
}

/// How the pipeline runs.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub intake: IntakeSettings,
    /// `metadata.source` of output envelopes (the seed's `kinesis-stream`).
    pub source: String,
    pub mode: Mode,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            intake: IntakeSettings::default(),
            source: "kinesis-stream".into(),
            mode: Mode::default(),
        }
    }
}

/// Where every record of a batch went. In a balanced batch
/// `records = accepted + refused_at_intake` and, when enriching,
/// `accepted = enriched + dropped + rejected_by_plugins + passed_through`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchCounts {
    pub records: u32,
    pub accepted: u32,
    pub refused_at_intake: u32,
    /// Inputs a plugin enriched or fanned out.
    pub enriched: u32,
    /// Output lines written to the processed stage (fan-out counts each).
    pub outputs: u32,
    /// Dropped on purpose by a plugin.
    pub dropped: u32,
    pub rejected_by_plugins: u32,
    /// Event types without a binding: written unenriched.
    pub passed_through: u32,
}

impl BatchCounts {
    pub fn dead_lettered(&self) -> u32 {
        self.refused_at_intake + self.rejected_by_plugins
    }

    /// Whether every record is accounted for.
    pub fn is_balanced(&self, enriched_stage: bool) -> bool {
        let intake = self.records == self.accepted + self.refused_at_intake;
        let enrich = self.accepted
            == self.enriched + self.dropped + self.rejected_by_plugins + self.passed_through;
        intake && (!enriched_stage || enrich)
    }

    /// Adds another batch's counts.
    pub fn add(&mut self, o: &BatchCounts) {
        self.records += o.records;
        self.accepted += o.accepted;
        self.refused_at_intake += o.refused_at_intake;
        self.add_enrichment(o);
    }

    /// Adds what enrichment did in another run over the same records (the
    /// transformer of two-stage mode), so the sum reads as one stage.
    pub fn add_enrichment(&mut self, o: &BatchCounts) {
        self.enriched += o.enriched;
        self.outputs += o.outputs;
        self.dropped += o.dropped;
        self.rejected_by_plugins += o.rejected_by_plugins;
        self.passed_through += o.passed_through;
    }
}

/// What a batch produced.
#[derive(Debug, Clone)]
pub struct BatchResult {
    /// `{shard}-{first}-{last}` (a raw object's key for the transformer): the
    /// same for every attempt.
    pub batch_id: String,
    pub counts: BatchCounts,
    pub object_keys: Vec<String>,
    pub plugin_versions: Vec<String>,
    /// How each plugin version was used, by `name@version`.
    pub plugin_usage: BTreeMap<String, PluginUsage>,
}

/// One plugin version's work in a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginUsage {
    /// Calls (one per tenant and event type in the batch).
    pub invocations: u32,
    pub records: u32,
    /// Calls a fault took down (trap, limit, invalid output).
    pub faults: u32,
    pub elapsed: std::time::Duration,
    pub peak_memory_bytes: usize,
}

impl BatchResult {
    fn empty() -> Self {
        Self {
            batch_id: String::new(),
            counts: BatchCounts::default(),
            object_keys: Vec::new(),
            plugin_versions: Vec::new(),
            plugin_usage: BTreeMap::new(),
        }
    }

    /// The raw objects written, for the transformer of two-stage mode.
    pub fn raw_keys(&self) -> impl Iterator<Item = &str> {
        let prefix = format!("{}/", Stage::Raw.as_str());
        self.object_keys
            .iter()
            .map(String::as_str)
            .filter(move |k| k.starts_with(&prefix))
    }
}

/// The record path, over an object store, a dead-letter queue and a metadata
/// store.
#[derive(Debug)]
pub struct Pipeline<O, D, M> {
    pub objects: O,
    pub dead_letters: D,
    pub metadata: M,
    /// Swappable while running (hot swap); each batch uses one snapshot.
    pub router: SharedRouter,
    pub settings: PipelineSettings,
}

/// The output buffer of a partition. Looked up by reference: the partition is
/// cloned once per batch and partition, not once per record.
pub(crate) fn bucket<'m>(
    objects: &'m mut BTreeMap<Partition, Vec<u8>>,
    partition: &Partition,
) -> &'m mut Vec<u8> {
    if !objects.contains_key(partition) {
        objects.insert(partition.clone(), Vec::new());
    }
    objects.get_mut(partition).expect("inserted above")
}

/// A batch worked out in memory and not yet written: what
/// [`Pipeline::persist`] makes durable.
pub(crate) struct Prepared {
    result: BatchResult,
    objects: Vec<(String, Vec<u8>)>,
    dead_letters: Vec<DeadLetter>,
    metadata: BatchMetadata,
    metrics: Vec<MinuteMetrics>,
    enrich_stage: bool,
}

/// The span of a batch: shard, batch id, sequence range and size.
pub(crate) fn batch_span(run: &Run<'_>, records: usize) -> tracing::Span {
    tracing::info_span!(
        "batch",
        shard_id = run.shard_id,
        batch_id = %run.batch_id,
        first_sequence = run.first_seq,
        last_sequence = run.last_seq,
        records,
    )
}

/// One run of the record path: which batch, which stages.
pub(crate) struct Run<'a> {
    pub batch_id: String,
    pub shard_id: &'a str,
    pub first_seq: &'a str,
    pub last_seq: &'a str,
    pub write_raw: bool,
    pub enrich: bool,
    /// Records refused before intake (corrupt raw lines), already letters.
    pub refused: Vec<DeadLetter>,
}

impl<O: ObjectStore, D: DeadLetterQueue, M: MetadataStore> Pipeline<O, D, M> {
    /// Processes one batch of a shard's records, oldest first. `Ok` means its
    /// objects, dead letters, metadata and metrics are durable: checkpoint
    /// after it. An `Err` is a backend failure: retry the batch (its objects
    /// are overwritten, not duplicated).
    pub async fn process_batch(
        &self,
        shard_id: &str,
        records: &[StreamRecord],
        processed_at: DateTime<Utc>,
    ) -> Result<BatchResult, BackendError> {
        self.process_batch_with_refusals(shard_id, records, Vec::new(), processed_at)
            .await
    }

    /// [`Self::process_batch`] for a batch some of whose records could not be
    /// read at all (a Lambda record whose data is not base64): their letters
    /// are sent with the batch's and count in it as refused at intake.
    pub async fn process_batch_with_refusals(
        &self,
        shard_id: &str,
        records: &[StreamRecord],
        refused: Vec<DeadLetter>,
        processed_at: DateTime<Utc>,
    ) -> Result<BatchResult, BackendError> {
        let sequences = records.iter().map(|r| r.sequence_number.clone()).chain(
            refused
                .iter()
                .filter_map(|l| l.sequence_number.parse::<SequenceNumber>().ok()),
        );
        let (first_seq, last_seq) = match (sequences.clone().min(), sequences.max()) {
            (Some(first), Some(last)) => (first, last),
            _ if refused.is_empty() => return Ok(BatchResult::empty()),
            _ => (SequenceNumber::from_u64(0), SequenceNumber::from_u64(0)),
        };
        let run = self.batch_run(shard_id, &first_seq, &last_seq, refused);
        self.run(run, records, processed_at).await
    }

    /// Consecutive batches of one shard, oldest first, each processed as
    /// [`Self::process_batch`] would (its own objects, keys, dead letters,
    /// metadata and metrics) but made durable together: one write of all
    /// their objects, whose syncs wait together, and one transaction for
    /// their metadata. `Ok` means all of them are durable: checkpoint after
    /// the last; its results are in the batches' order. An `Err` leaves none
    /// of them written: retry them all.
    pub async fn process_batches(
        &self,
        shard_id: &str,
        batches: &[&[StreamRecord]],
        processed_at: DateTime<Utc>,
    ) -> Result<Vec<BatchResult>, BackendError> {
        let mut prepared = Vec::with_capacity(batches.len());
        for records in batches {
            let sequences = records.iter().map(|r| &r.sequence_number);
            let (Some(first_seq), Some(last_seq)) = (sequences.clone().min(), sequences.max())
            else {
                continue;
            };
            let run = self.batch_run(shard_id, first_seq, last_seq, Vec::new());
            let span = batch_span(&run, records.len());
            prepared.push(span.in_scope(|| self.prepare(run, records, processed_at))?);
        }
        let mut persisted = self.persist(prepared).await?.into_iter();
        // An empty batch has nothing to persist, and an empty result.
        Ok(batches
            .iter()
            .map(|records| {
                if records.is_empty() {
                    BatchResult::empty()
                } else {
                    persisted.next().expect("one result per batch persisted")
                }
            })
            .collect())
    }

    /// The run of a batch of stream records from `first_seq` to `last_seq`.
    fn batch_run<'a>(
        &self,
        shard_id: &'a str,
        first_seq: &'a SequenceNumber,
        last_seq: &'a SequenceNumber,
        refused: Vec<DeadLetter>,
    ) -> Run<'a> {
        Run {
            batch_id: format!("{shard_id}-{first_seq}-{last_seq}"),
            shard_id,
            first_seq: first_seq.as_str(),
            last_seq: last_seq.as_str(),
            write_raw: true,
            enrich: self.settings.mode == Mode::SingleStage,
            refused,
        }
    }

    /// Runs a batch inside its span (`batch`: shard, batch id, sequence
    /// range), so every log line of the batch, a plugin's included, names it.
    pub(crate) async fn run(
        &self,
        run: Run<'_>,
        records: &[StreamRecord],
        processed_at: DateTime<Utc>,
    ) -> Result<BatchResult, BackendError> {
        use tracing::Instrument as _;
        let span = batch_span(&run, records.len());
        let prepared = span.in_scope(|| self.prepare(run, records, processed_at))?;
        let mut results = self.persist(vec![prepared]).instrument(span).await?;
        Ok(results.pop().expect("one batch in, one out"))
    }

    /// Works a batch out in memory: intake, the raw stage, enrichment, the
    /// objects, dead letters and metadata to write. Nothing is written yet.
    pub(crate) fn prepare(
        &self,
        run: Run<'_>,
        records: &[StreamRecord],
        processed_at: DateTime<Utc>,
    ) -> Result<Prepared, BackendError> {
        let Run {
            batch_id,
            shard_id,
            first_seq,
            last_seq,
            write_raw,
            enrich: enrich_stage,
            refused,
        } = run;
        let processed = time::format_utc(processed_at);

        let mut counts = BatchCounts {
            records: (records.len() + refused.len()) as u32,
            ..Default::default()
        };
        let mut dead_letters = refused;
        let letter = |source: &StreamRecord,
                      stage: &str,
                      kind: String,
                      reason: String,
                      plugin: Option<String>| {
            DeadLetter {
                payload: source.data.clone(),
                reason,
                kind,
                stage: stage.to_owned(),
                plugin,
                shard_id: source.shard_id.clone(),
                sequence_number: source.sequence_number.to_string(),
                partition_key: source.partition_key.clone(),
                failed_at: processed.clone(),
            }
        };

        // Intake and the raw stage, with the partition keys' minute metrics.
        let mut accepted: Vec<(Accepted<'_>, &StreamRecord)> = Vec::with_capacity(records.len());
        let mut raw: BTreeMap<Partition, Vec<u8>> = BTreeMap::new();
        let mut metrics = MinuteAggregator::default();
        for source in records {
            match intake::accept(&source.data, &source.arrival_time, &self.settings.intake) {
                Ok(record) => {
                    if write_raw {
                        write_raw_line(bucket(&mut raw, &record.partition), &record.record, source);
                        metrics.add(&source.partition_key, record.event_time, &record.record);
                    }
                    accepted.push((record, source));
                }
                Err(refusal) => {
                    tracing::debug!(sequence = %source.sequence_number, kind = refusal.kind, "refused at intake");
                    dead_letters.push(letter(
                        source,
                        "intake",
                        refusal.kind.to_owned(),
                        refusal.reason,
                        None,
                    ));
                }
            }
        }
        counts.accepted = accepted.len() as u32;
        counts.refused_at_intake = counts.records - counts.accepted;

        let mut processed_objects: BTreeMap<Partition, Vec<u8>> = BTreeMap::new();
        let mut plugin_usage = BTreeMap::new();
        if enrich_stage {
            let router = self.router.snapshot();
            let ctx = EnrichContext {
                router: &router,
                source: &self.settings.source,
                shard_id,
                processed: &processed,
            };
            let rejections = enrich(
                &ctx,
                &accepted,
                &mut processed_objects,
                &mut counts,
                &mut plugin_usage,
            );
            for r in rejections {
                dead_letters.push(letter(
                    r.source,
                    "enrich",
                    r.kind,
                    r.message,
                    Some(r.plugin),
                ));
            }
        }

        let mut objects = Vec::new();
        let mut object_keys = Vec::new();
        let mut partitions = BTreeSet::new();
        for (stage, bodies) in [(Stage::Raw, raw), (Stage::Processed, processed_objects)] {
            for (partition, body) in bodies {
                let key = object_key(stage, &partition, shard_id, first_seq, last_seq)
                    .map_err(|why| BackendError::permanent(format!("batch {batch_id}"), why))?;
                object_keys.push(key.clone());
                objects.push((key, body));
                partitions.insert(partition);
            }
        }
        let plugin_versions: Vec<String> = plugin_usage.keys().cloned().collect();
        let metadata = BatchMetadata {
            batch_id: batch_id.clone(),
            processed_at: processed.clone(),
            shard_id: shard_id.to_owned(),
            total_records: counts.records,
            success_records: counts.records - counts.dead_lettered(),
            failed_records: counts.dead_lettered(),
            partitions_count: partitions.len() as u32,
            ttl: processed_at.timestamp() + METADATA_TTL_SECONDS,
            plugin_versions: plugin_versions.clone(),
            object_keys: object_keys.clone(),
        };
        let metrics = metrics.finish(&batch_id, processed_at.timestamp() + METRICS_TTL_SECONDS);
        Ok(Prepared {
            result: BatchResult {
                batch_id,
                counts,
                object_keys,
                plugin_versions,
                plugin_usage,
            },
            objects,
            dead_letters,
            metadata,
            metrics,
            enrich_stage,
        })
    }

    /// Makes prepared batches durable together, in this order, before the
    /// caller checkpoints: their objects (one `put_all`), their dead letters,
    /// their metadata and metrics (one `record_batches`). On a failure every
    /// object they wrote is deleted again.
    pub(crate) async fn persist(
        &self,
        prepared: Vec<Prepared>,
    ) -> Result<Vec<BatchResult>, BackendError> {
        let mut objects = Vec::new();
        let mut dead_letters = Vec::new();
        let mut metadata = Vec::with_capacity(prepared.len());
        let mut done = Vec::with_capacity(prepared.len());
        for p in prepared {
            objects.extend(p.objects);
            dead_letters.extend(p.dead_letters);
            metadata.push((p.metadata, p.metrics));
            done.push((p.result, p.enrich_stage));
        }
        let durable = async {
            self.objects.put_all(objects).await?;
            if !dead_letters.is_empty() {
                self.dead_letters.send(dead_letters).await?;
            }
            self.metadata.record_batches(metadata).await
        };
        if let Err(e) = durable.await {
            for (result, _) in &done {
                self.roll_back(&result.batch_id, &result.object_keys).await;
            }
            return Err(e);
        }
        Ok(done
            .into_iter()
            .map(|(result, enrich_stage)| {
                let counts = &result.counts;
                debug_assert!(counts.is_balanced(enrich_stage), "{counts:?}");
                tracing::info!(
                    batch_id = result.batch_id,
                    plugin_versions = ?result.plugin_versions,
                    records = counts.records,
                    accepted = counts.accepted,
                    outputs = counts.outputs,
                    dropped = counts.dropped,
                    dead_lettered = counts.dead_lettered(),
                    passed_through = counts.passed_through,
                    "batch done"
                );
                result
            })
            .collect())
    }

    /// Deletes the objects a failed attempt wrote. A retry may cover other
    /// records (Lambda retries from the lowest failed sequence number, with
    /// whatever arrived since, or bisects), so its keys can differ: objects
    /// left behind would hold the same records twice.
    async fn roll_back(&self, batch_id: &str, object_keys: &[String]) {
        for key in object_keys {
            if let Err(e) = self.objects.delete(key).await {
                tracing::error!(batch_id, key, error = %e, "could not delete an object of a failed batch; its records may appear twice once the batch is retried: delete it by hand");
            }
        }
    }
}
