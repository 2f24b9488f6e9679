//! One batch through the record path.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use weir_core::backend::{
    BackendError, BatchMetadata, DeadLetter, DeadLetterQueue, METADATA_TTL_SECONDS, MetadataStore,
    ObjectStore,
};
use weir_core::envelope::{self, EnvelopeContext, Original};
use weir_core::intake::{self, Accepted, IntakeSettings};
use weir_core::partition::{Partition, Stage, object_key};
use weir_core::stream::StreamRecord;
use weir_core::{JsonObject, Outcome, PluginEvent, RejectionKind, time};
use weir_runtime::router::Router;

use crate::raw::write_raw_line;

/// How the pipeline runs.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub intake: IntakeSettings,
    /// `metadata.source` of output envelopes (the seed's `kinesis-stream`).
    pub source: String,
    /// Single-stage: enrich in the same batch. Off: write the raw stage only
    /// (two-stage mode enriches raw objects later).
    pub enrich: bool,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            intake: IntakeSettings::default(),
            source: "kinesis-stream".into(),
            enrich: true,
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
}

/// What a batch produced.
#[derive(Debug, Clone)]
pub struct BatchResult {
    /// `{shard}-{first}-{last}`: the same for every attempt of the batch.
    pub batch_id: String,
    pub counts: BatchCounts,
    pub object_keys: Vec<String>,
    pub plugin_versions: Vec<String>,
}

/// The record path, over an object store, a dead-letter queue and a metadata
/// store.
#[derive(Debug)]
pub struct Pipeline<O, D, M> {
    pub objects: O,
    pub dead_letters: D,
    pub metadata: M,
    pub router: Router,
    pub settings: PipelineSettings,
}

/// The output buffer of a partition. Looked up by reference: the partition is
/// cloned once per batch and partition, not once per record.
fn bucket<'m>(
    objects: &'m mut BTreeMap<Partition, Vec<u8>>,
    partition: &Partition,
) -> &'m mut Vec<u8> {
    if !objects.contains_key(partition) {
        objects.insert(partition.clone(), Vec::new());
    }
    objects.get_mut(partition).expect("inserted above")
}

fn kind_name(kind: RejectionKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl<O: ObjectStore, D: DeadLetterQueue, M: MetadataStore> Pipeline<O, D, M> {
    /// Processes one batch of a shard's records, oldest first. `Ok` means its
    /// objects, dead letters and metadata are durable: checkpoint after it. An
    /// `Err` is a backend failure: retry the batch (its objects are
    /// overwritten, not duplicated).
    pub async fn process_batch(
        &self,
        shard_id: &str,
        records: &[StreamRecord],
        processed_at: DateTime<Utc>,
    ) -> Result<BatchResult, BackendError> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(BatchResult {
                batch_id: String::new(),
                counts: BatchCounts::default(),
                object_keys: Vec::new(),
                plugin_versions: Vec::new(),
            });
        };
        let (first_seq, last_seq) = (
            first.sequence_number.as_str(),
            last.sequence_number.as_str(),
        );
        let batch_id = format!("{shard_id}-{first_seq}-{last_seq}");
        let processed = time::format_utc(processed_at);
        let span = tracing::info_span!(
            "batch",
            shard_id,
            first_seq,
            last_seq,
            records = records.len()
        );
        let _guard = span.enter();

        let mut counts = BatchCounts {
            records: records.len() as u32,
            ..Default::default()
        };
        let mut dead_letters = Vec::new();
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

        // Intake and the raw stage.
        let mut accepted: Vec<(Accepted<'_>, &StreamRecord)> = Vec::with_capacity(records.len());
        let mut raw: BTreeMap<Partition, Vec<u8>> = BTreeMap::new();
        for source in records {
            match intake::accept(&source.data, &source.arrival_time, &self.settings.intake) {
                Ok(record) => {
                    write_raw_line(bucket(&mut raw, &record.partition), &record.record, source);
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
        let mut plugin_versions = BTreeSet::new();
        if self.settings.enrich {
            self.enrich(
                &accepted,
                shard_id,
                &processed,
                &mut processed_objects,
                &mut counts,
                &mut plugin_versions,
                |s, kind, reason, plugin| {
                    dead_letters.push(letter(s, "enrich", kind, reason, Some(plugin)));
                },
            );
        }

        // Durable, in this order, before the caller checkpoints.
        let mut object_keys = Vec::new();
        let mut partitions = BTreeSet::new();
        for (stage, objects) in [(Stage::Raw, raw), (Stage::Processed, processed_objects)] {
            for (partition, body) in objects {
                let key = object_key(stage, &partition, shard_id, first_seq, last_seq)
                    .map_err(|why| BackendError::permanent(format!("batch {batch_id}"), why))?;
                self.objects.put(&key, body).await?;
                object_keys.push(key);
                partitions.insert(partition);
            }
        }
        if !dead_letters.is_empty() {
            self.dead_letters.send(dead_letters).await?;
        }
        let plugin_versions: Vec<String> = plugin_versions.into_iter().collect();
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
        self.metadata.record_batch(&metadata).await?;
        debug_assert!(counts.is_balanced(self.settings.enrich), "{counts:?}");
        tracing::info!(
            accepted = counts.accepted,
            outputs = counts.outputs,
            dropped = counts.dropped,
            dead_lettered = counts.dead_lettered(),
            passed_through = counts.passed_through,
            "batch done"
        );
        Ok(BatchResult {
            batch_id,
            counts,
            object_keys,
            plugin_versions,
        })
    }

    /// Runs the accepted records through their bindings, per (tenant, event
    /// type), and writes their processed lines by partition.
    #[allow(clippy::too_many_arguments)]
    fn enrich(
        &self,
        accepted: &[(Accepted<'_>, &StreamRecord)],
        shard_id: &str,
        processed: &str,
        out: &mut BTreeMap<Partition, Vec<u8>>,
        counts: &mut BatchCounts,
        plugin_versions: &mut BTreeSet<String>,
        mut reject: impl FnMut(&StreamRecord, String, String, String),
    ) {
        let mut groups: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        for (i, (record, _)) in accepted.iter().enumerate() {
            groups
                .entry((&record.tenant, &record.event_type))
                .or_default()
                .push(i);
        }
        let empty = JsonObject::from_map(&serde_json::Map::new());
        let pass_through = Outcome::Enrich(empty);
        for ((tenant, event_type), members) in groups {
            let route = self.router.resolve(tenant, event_type);
            let Some(binding) = route.binding() else {
                let ctx = EnvelopeContext {
                    source: &self.settings.source,
                    shard_id,
                    processed_timestamp: processed,
                    plugin: None,
                };
                for &i in &members {
                    let (record, source) = &accepted[i];
                    let original = Original {
                        record: &record.record,
                        sequence_number: source.sequence_number.as_str(),
                    };
                    envelope::write_outcome(
                        bucket(out, &record.partition),
                        original,
                        &pass_through,
                        ctx,
                    );
                    counts.passed_through += 1;
                    counts.outputs += 1;
                }
                continue;
            };
            let event_times: Vec<String> = members
                .iter()
                .map(|&i| time::format_utc(accepted[i].0.event_time))
                .collect();
            let events: Vec<PluginEvent<'_>> = members
                .iter()
                .zip(&event_times)
                .map(|(&i, event_time)| {
                    let (record, source) = &accepted[i];
                    PluginEvent {
                        payload: Cow::Borrowed(record.record.text()),
                        event_type: Cow::Borrowed(event_type),
                        tenant: Cow::Borrowed(tenant),
                        partition_key: Cow::Borrowed(&source.partition_key),
                        sequence_number: Cow::Borrowed(source.sequence_number.as_str()),
                        arrival_time: Cow::Borrowed(&source.arrival_time),
                        event_time: Cow::Borrowed(event_time),
                        processing_time: Cow::Borrowed(processed),
                    }
                })
                .collect();
            let report = binding
                .plugin
                .process(&binding.config, &events, &binding.limits);
            let plugin = binding.plugin.info().plugin_ref();
            plugin_versions.insert(plugin.to_string());
            let ctx = EnvelopeContext {
                source: &self.settings.source,
                shard_id,
                processed_timestamp: processed,
                plugin: Some(&plugin),
            };
            for (&i, outcome) in members.iter().zip(&report.outcomes) {
                let (record, source) = &accepted[i];
                let original = Original {
                    record: &record.record,
                    sequence_number: source.sequence_number.as_str(),
                };
                match outcome {
                    Outcome::Enrich(_) | Outcome::Emit(_) => {
                        counts.enriched += 1;
                        counts.outputs += envelope::write_outcome(
                            bucket(out, &record.partition),
                            original,
                            outcome,
                            ctx,
                        ) as u32;
                    }
                    Outcome::Drop(_) => counts.dropped += 1,
                    Outcome::Reject(r) => {
                        counts.rejected_by_plugins += 1;
                        reject(
                            source,
                            kind_name(r.kind),
                            r.message.clone(),
                            plugin.to_string(),
                        );
                    }
                }
            }
        }
    }
}
