//! Operational metrics: records in, written, dropped and dead-lettered,
//! bytes, batch latency (p50/p95/p99), iterator age, and per plugin version
//! invocations, faults, time and memory. A service keeps them in a
//! [`Telemetry`] and serves them as Prometheus text; a Lambda function writes
//! each batch's as a CloudWatch embedded-metric-format document
//! ([`emf_document`]) to its log.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use weir_core::stream::StreamRecord;

use crate::{BatchResult, PluginUsage};

/// What one batch did, as metrics see it.
#[derive(Debug, Clone)]
pub struct BatchObservation {
    pub result: BatchResult,
    /// Wall time of the batch, output durable.
    pub latency: Duration,
    pub bytes_in: u64,
    /// How long the batch's oldest record waited on the stream, in ms.
    pub iterator_age_ms: u64,
}

impl BatchObservation {
    /// The observation of `result`, made of `records` and done `latency`
    /// after it started, at `now`.
    pub fn new(
        result: BatchResult,
        records: &[StreamRecord],
        latency: Duration,
        now: DateTime<Utc>,
    ) -> Self {
        let iterator_age_ms = records
            .iter()
            .filter_map(|r| weir_core::time::parse_rfc3339(&r.arrival_time).ok())
            .map(|arrived| (now - arrived).num_milliseconds().max(0) as u64)
            .max()
            .unwrap_or(0);
        Self {
            result,
            latency,
            bytes_in: records.iter().map(|r| r.data.len() as u64).sum(),
            iterator_age_ms,
        }
    }
}

/// A per-plugin metric: name, type, help, and its value of a plugin's use.
type PluginFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&PluginUsage) -> String,
);

/// How many recent batch latencies the quantiles are computed over.
const LATENCY_WINDOW: usize = 1024;

#[derive(Debug, Default)]
struct Totals {
    batches: u64,
    records_in: u64,
    written: u64,
    dropped: u64,
    dead_lettered: u64,
    bytes_in: u64,
    latency_sum: Duration,
    recent_latencies: VecDeque<Duration>,
    iterator_age_ms: u64,
    plugins: BTreeMap<String, PluginUsage>,
}

/// A service's metrics since it started.
#[derive(Debug, Default)]
pub struct Telemetry {
    totals: Mutex<Totals>,
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64()
}

/// A label value, escaped as Prometheus text requires.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Telemetry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn observe(&self, batch: &BatchObservation) {
        let c = &batch.result.counts;
        let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        t.batches += 1;
        t.records_in += u64::from(c.records);
        t.written += u64::from(c.outputs);
        t.dropped += u64::from(c.dropped);
        t.dead_lettered += u64::from(c.dead_lettered());
        t.bytes_in += batch.bytes_in;
        t.latency_sum += batch.latency;
        if t.recent_latencies.len() == LATENCY_WINDOW {
            t.recent_latencies.pop_front();
        }
        t.recent_latencies.push_back(batch.latency);
        t.iterator_age_ms = batch.iterator_age_ms;
        for (plugin, usage) in &batch.result.plugin_usage {
            let total = t.plugins.entry(plugin.clone()).or_default();
            total.invocations += usage.invocations;
            total.records += usage.records;
            total.faults += usage.faults;
            total.elapsed += usage.elapsed;
            total.peak_memory_bytes = total.peak_memory_bytes.max(usage.peak_memory_bytes);
        }
    }

    /// The metrics as Prometheus text (exposition format 0.0.4).
    pub fn render_prometheus(&self) -> String {
        let t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "weir_batches_total",
            "counter",
            "Batches processed, output durable.",
            t.batches.to_string(),
        );
        metric(
            "weir_records_in_total",
            "counter",
            "Records taken from the stream.",
            t.records_in.to_string(),
        );
        metric(
            "weir_records_written_total",
            "counter",
            "Output records written to the processed stage.",
            t.written.to_string(),
        );
        metric(
            "weir_records_dropped_total",
            "counter",
            "Records a plugin dropped on purpose.",
            t.dropped.to_string(),
        );
        metric(
            "weir_records_dead_lettered_total",
            "counter",
            "Records sent to the dead-letter queue.",
            t.dead_lettered.to_string(),
        );
        metric(
            "weir_bytes_in_total",
            "counter",
            "Bytes of records taken from the stream.",
            t.bytes_in.to_string(),
        );
        metric(
            "weir_iterator_age_milliseconds",
            "gauge",
            "How long the last batch's oldest record waited on the stream.",
            t.iterator_age_ms.to_string(),
        );
        let mut sorted: Vec<Duration> = t.recent_latencies.iter().copied().collect();
        sorted.sort_unstable();
        let _ = writeln!(
            out,
            "# HELP weir_batch_duration_seconds Batch latency, output durable (quantiles over the last {LATENCY_WINDOW} batches).\n# TYPE weir_batch_duration_seconds summary"
        );
        for q in [0.5, 0.95, 0.99] {
            let _ = writeln!(
                out,
                "weir_batch_duration_seconds{{quantile=\"{q}\"}} {}",
                quantile(&sorted, q)
            );
        }
        let _ = writeln!(
            out,
            "weir_batch_duration_seconds_sum {}",
            t.latency_sum.as_secs_f64()
        );
        let _ = writeln!(out, "weir_batch_duration_seconds_count {}", t.batches);
        let families: [PluginFamily; 5] = [
            (
                "weir_plugin_invocations_total",
                "counter",
                "Plugin calls.",
                |u| u.invocations.to_string(),
            ),
            (
                "weir_plugin_records_total",
                "counter",
                "Records given to the plugin.",
                |u| u.records.to_string(),
            ),
            (
                "weir_plugin_faults_total",
                "counter",
                "Plugin calls a fault took down.",
                |u| u.faults.to_string(),
            ),
            (
                "weir_plugin_seconds_total",
                "counter",
                "Time in the plugin, instantiation included.",
                |u| u.elapsed.as_secs_f64().to_string(),
            ),
            (
                "weir_plugin_peak_memory_bytes",
                "gauge",
                "The most linear memory the plugin had.",
                |u| u.peak_memory_bytes.to_string(),
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (plugin, usage) in &t.plugins {
                let _ = writeln!(
                    out,
                    "{name}{{plugin=\"{}\"}} {}",
                    label(plugin),
                    value(usage)
                );
            }
        }
        out
    }
}

/// A batch's metrics as CloudWatch embedded metric format: one JSON document
/// for the batch (dimension `Function`) and one per plugin version
/// (dimensions `Function`, `Plugin`), each a line of the function's log.
pub fn emf_document(function: &str, batch: &BatchObservation, now: DateTime<Utc>) -> Vec<Value> {
    let c = &batch.result.counts;
    let timestamp = now.timestamp_millis();
    let mut documents = vec![json!({
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": "Weir",
                "Dimensions": [["Function"]],
                "Metrics": [
                    { "Name": "RecordsIn", "Unit": "Count" },
                    { "Name": "RecordsWritten", "Unit": "Count" },
                    { "Name": "RecordsDropped", "Unit": "Count" },
                    { "Name": "RecordsDeadLettered", "Unit": "Count" },
                    { "Name": "BytesIn", "Unit": "Bytes" },
                    { "Name": "BatchLatency", "Unit": "Milliseconds" },
                    { "Name": "IteratorAge", "Unit": "Milliseconds" }
                ]
            }]
        },
        "Function": function,
        "BatchId": batch.result.batch_id,
        "RecordsIn": c.records,
        "RecordsWritten": c.outputs,
        "RecordsDropped": c.dropped,
        "RecordsDeadLettered": c.dead_lettered(),
        "BytesIn": batch.bytes_in,
        "BatchLatency": batch.latency.as_secs_f64() * 1e3,
        "IteratorAge": batch.iterator_age_ms,
    })];
    for (plugin, usage) in &batch.result.plugin_usage {
        documents.push(json!({
            "_aws": {
                "Timestamp": timestamp,
                "CloudWatchMetrics": [{
                    "Namespace": "Weir",
                    "Dimensions": [["Function", "Plugin"]],
                    "Metrics": [
                        { "Name": "PluginInvocations", "Unit": "Count" },
                        { "Name": "PluginFaults", "Unit": "Count" },
                        { "Name": "PluginTime", "Unit": "Milliseconds" },
                        { "Name": "PluginPeakMemory", "Unit": "Bytes" }
                    ]
                }]
            },
            "Function": function,
            "Plugin": plugin,
            "PluginInvocations": usage.invocations,
            "PluginFaults": usage.faults,
            "PluginTime": usage.elapsed.as_secs_f64() * 1e3,
            "PluginPeakMemory": usage.peak_memory_bytes,
        }));
    }
    documents
}
