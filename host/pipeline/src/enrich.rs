//! The enrich stage: accepted records through their bindings, into output
//! envelopes by partition.

use std::borrow::Cow;
use std::collections::BTreeMap;

use weir_core::OutcomeView;
use weir_core::envelope::{self, EnvelopeContext, Original};
use weir_core::intake::Accepted;
use weir_core::partition::Partition;
use weir_core::registry::{SHADOW_SAMPLES, ShadowSample, ShadowTally};
use weir_core::stream::StreamRecord;
use weir_core::{JsonObject, Outcome, PluginEvent, PluginRef, RejectionKind, time};
use weir_runtime::Fault;
use weir_runtime::router::{Router, Shadow};

use crate::batch::{BatchCounts, PluginUsage, bucket};

/// A record a plugin rejected: the record, the error kind, the message and
/// the plugin version.
pub(crate) struct PluginRejection<'r> {
    pub source: &'r StreamRecord,
    pub kind: String,
    pub message: String,
    pub plugin: String,
}

/// What enrichment needs besides the records.
pub(crate) struct EnrichContext<'c> {
    pub router: &'c Router,
    pub source: &'c str,
    pub shard_id: &'c str,
    pub processed: &'c str,
}

fn kind_name(kind: RejectionKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Runs the accepted records through their bindings, per (tenant, event
/// type), and writes their processed lines by partition. Returns the records
/// plugins rejected, for the dead-letter queue.
pub(crate) fn enrich<'r>(
    ctx: &EnrichContext<'_>,
    accepted: &[(Accepted<'_>, &'r StreamRecord)],
    out: &mut BTreeMap<Partition, Vec<u8>>,
    counts: &mut BatchCounts,
    plugin_usage: &mut BTreeMap<String, PluginUsage>,
) -> Vec<PluginRejection<'r>> {
    let mut rejections = Vec::new();
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
        let route = ctx.router.resolve(tenant, event_type);
        let Some(binding) = route.binding() else {
            let envelope_ctx = EnvelopeContext {
                source: ctx.source,
                shard_id: ctx.shard_id,
                processed_timestamp: ctx.processed,
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
                    envelope_ctx,
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
                    processing_time: Cow::Borrowed(ctx.processed),
                }
            })
            .collect();
        let report = binding
            .plugin
            .process(&binding.config, &events, &binding.limits);
        if let Some(shadow) = ctx.router.resolve_shadow(tenant, event_type) {
            compare_in_shadow(shadow, &events, &report.outcomes);
        }
        let plugin = binding.plugin.info().plugin_ref();
        if let Some(fault) = &report.fault {
            warn_of_fault(fault, &plugin, tenant, event_type, members.len());
        }
        let usage = plugin_usage.entry(plugin.to_string()).or_default();
        usage.invocations += 1;
        usage.records += members.len() as u32;
        usage.faults += u32::from(report.fault.is_some());
        usage.elapsed += report.elapsed;
        usage.peak_memory_bytes = usage.peak_memory_bytes.max(report.peak_memory_bytes);
        let envelope_ctx = EnvelopeContext {
            source: ctx.source,
            shard_id: ctx.shard_id,
            processed_timestamp: ctx.processed,
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
                        envelope_ctx,
                    ) as u32;
                }
                Outcome::Drop(_) => counts.dropped += 1,
                Outcome::Reject(r) => {
                    counts.rejected_by_plugins += 1;
                    rejections.push(PluginRejection {
                        source,
                        kind: kind_name(r.kind),
                        message: r.message.clone(),
                        plugin: plugin.to_string(),
                    });
                }
            }
        }
    }
    rejections
}

/// Once per faulted call (inside the batch's span, which names the batch).
/// An open circuit breaker is logged by the runtime when it opens, not with
/// every batch it turns away.
fn warn_of_fault(
    fault: &Fault,
    plugin: &PluginRef,
    tenant: &str,
    event_type: &str,
    records: usize,
) {
    if matches!(fault, Fault::CircuitOpen(_)) {
        return;
    }
    tracing::warn!(
        plugin = %plugin,
        tenant,
        event_type,
        records,
        %fault,
        "plugin fault: the call's records are dead-lettered with this reason"
    );
}

/// Runs the candidate on its share of the events and tallies how its
/// outcomes compare with the active version's. Nothing it returns is written.
fn compare_in_shadow(shadow: &Shadow, events: &[PluginEvent<'_>], active: &[Outcome]) {
    let seen: Vec<usize> = (0..events.len())
        .filter(|&i| shadow.sees(&events[i].sequence_number))
        .collect();
    if seen.is_empty() {
        return;
    }
    let candidate_events: Vec<PluginEvent<'_>> = seen.iter().map(|&i| events[i].clone()).collect();
    let candidate = shadow
        .plugin
        .process(&shadow.config, &candidate_events, &shadow.limits);
    if let Some(fault) = candidate
        .fault
        .as_ref()
        .filter(|f| !matches!(f, Fault::CircuitOpen(_)))
    {
        tracing::warn!(
            plugin = %shadow.plugin.info().plugin_ref(),
            records = candidate_events.len(),
            %fault,
            "shadow candidate fault: counted as rejected in its tally; nothing of it is written"
        );
    }
    let mut tally = ShadowTally::default();
    for (&i, theirs) in seen.iter().zip(&candidate.outcomes) {
        let ours = &active[i];
        tally.compared += 1;
        if ours.same_as(theirs) {
            tally.identical += 1;
            continue;
        }
        if matches!(theirs, Outcome::Reject(_)) {
            tally.candidate_rejected += 1;
        } else {
            tally.differing += 1;
        }
        if tally.samples.len() < SHADOW_SAMPLES {
            let json =
                |o: &Outcome| serde_json::to_string(&OutcomeView::from(o)).unwrap_or_default();
            tally.samples.push(ShadowSample {
                sequence_number: events[i].sequence_number.to_string(),
                active: json(ours),
                candidate: json(theirs),
            });
        }
    }
    shadow.record(tally);
}
