//! The Kinesis handler: one event source mapping batch through the pipeline.

use std::collections::BTreeMap;

use aws_lambda_events::streams::KinesisEventResponse;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use weir_core::backend::{DeadLetter, DeadLetterQueue, MetadataStore, ObjectStore};
use weir_core::intake::decode_base64;
use weir_core::stream::{SequenceNumber, StreamRecord};
use weir_core::time;
use weir_pipeline::telemetry::BatchObservation;
use weir_pipeline::{BatchResult, Pipeline};

/// A Kinesis event as Lambda delivers it. Deserialised here rather than with
/// `aws_lambda_events`' type, whose base64 field fails the whole event on one
/// bad record: Weir dead-letters that record and processes the rest.
#[derive(Debug, Clone, Deserialize)]
pub struct KinesisEvent {
    #[serde(rename = "Records", default)]
    pub records: Vec<KinesisEventRecord>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KinesisEventRecord {
    /// `shardId-…:sequence`: the only place an event names its shard.
    #[serde(rename = "eventID", default)]
    pub event_id: Option<String>,
    pub kinesis: KinesisRecord,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KinesisRecord {
    pub partition_key: String,
    pub sequence_number: String,
    /// Base64 of the record's bytes.
    pub data: String,
    /// Unix seconds, with milliseconds.
    #[serde(default)]
    pub approximate_arrival_timestamp: Option<f64>,
}

/// The shard named when an event record has no `eventID`.
pub const UNKNOWN_SHARD: &str = "shardId-unknown";

/// What the handler did: Lambda's response, and each shard batch's result.
#[derive(Debug)]
pub struct Handled {
    pub response: KinesisEventResponse,
    pub batches: Vec<BatchResult>,
    /// Each batch's metrics, for the function's log (EMF).
    pub observations: Vec<BatchObservation>,
    /// Shards whose batch failed, with the error: reported for retry.
    pub failures: Vec<(String, String)>,
}

#[derive(Default)]
struct ShardBatch {
    records: Vec<StreamRecord>,
    unreadable: Vec<DeadLetter>,
    /// The lowest sequence number, as the event spelled it.
    lowest: Option<(SequenceNumber, String)>,
}

fn shard_of(event_id: Option<&str>) -> &str {
    event_id
        .and_then(|id| id.split_once(':'))
        .map(|(shard, _)| shard)
        .filter(|shard| !shard.is_empty())
        .unwrap_or(UNKNOWN_SHARD)
}

/// A record refused at intake, as a dead letter.
fn refused(
    k: &KinesisRecord,
    shard_id: &str,
    failed_at: &str,
    kind: &str,
    reason: String,
) -> DeadLetter {
    DeadLetter {
        payload: k.data.clone().into_bytes(),
        reason,
        kind: kind.to_owned(),
        stage: "intake".into(),
        plugin: None,
        shard_id: shard_id.to_owned(),
        sequence_number: k.sequence_number.clone(),
        partition_key: k.partition_key.clone(),
        failed_at: failed_at.to_owned(),
    }
}

/// Records' arrival times as text. Records that arrive in the same
/// millisecond (most of a busy shard's) share the text made for the first
/// (a copy, where formatting took ~0.45% of a one-core run, `perf`).
struct ArrivalTimes {
    fallback: DateTime<Utc>,
    last: Option<(DateTime<Utc>, String)>,
}

impl ArrivalTimes {
    fn new(fallback: DateTime<Utc>) -> Self {
        Self {
            fallback,
            last: None,
        }
    }

    /// `seconds` (Unix, with milliseconds) as RFC 3339, or the fallback's.
    fn text(&mut self, seconds: Option<f64>) -> String {
        let at = seconds
            .filter(|s| s.is_finite())
            .and_then(|s| DateTime::from_timestamp_millis((s * 1000.0).round() as i64))
            .unwrap_or(self.fallback);
        match &self.last {
            Some((last, text)) if *last == at => text.clone(),
            _ => {
                let text = time::format_utc(at);
                self.last = Some((at, text.clone()));
                text
            }
        }
    }
}

/// Processes a Kinesis event, one pipeline batch per shard (Lambda sends one
/// shard per invocation; hand-made files may mix). Records that cannot be
/// processed (not base64, not JSON, invalid, rejected by a plugin) are
/// dead-lettered and not reported. A shard whose batch fails on a backend
/// reports its lowest sequence number, so Lambda retries the batch from
/// there; the failed attempt's objects were rolled back.
pub async fn handle<O, D, M>(
    pipeline: &Pipeline<O, D, M>,
    event: KinesisEvent,
    now: DateTime<Utc>,
) -> Handled
where
    O: ObjectStore,
    D: DeadLetterQueue,
    M: MetadataStore,
{
    let failed_at = time::format_utc(now);
    let mut shards: BTreeMap<String, ShardBatch> = BTreeMap::new();
    let mut arrivals = ArrivalTimes::new(now);
    // A record's strings are moved, not copied, where they can be: per
    // record, the shard's name is made once and the partition key not again.
    for KinesisEventRecord {
        event_id,
        kinesis: k,
    } in event.records
    {
        let shard_id = shard_of(event_id.as_deref());
        if !shards.contains_key(shard_id) {
            shards.insert(shard_id.to_owned(), ShardBatch::default());
        }
        let batch = shards.get_mut(shard_id).expect("inserted above");
        let sequence_number = match k.sequence_number.parse::<SequenceNumber>() {
            Ok(n) => n,
            Err(why) => {
                let reason = format!("sequenceNumber: {why}");
                let letter = refused(&k, shard_id, &failed_at, "invalid-field", reason);
                batch.unreadable.push(letter);
                continue;
            }
        };
        if batch
            .lowest
            .as_ref()
            .is_none_or(|(low, _)| sequence_number < *low)
        {
            batch.lowest = Some((sequence_number.clone(), k.sequence_number.clone()));
        }
        match decode_base64(&k.data) {
            Ok(data) => batch.records.push(StreamRecord {
                shard_id: shard_id.to_owned(),
                sequence_number,
                arrival_time: arrivals.text(k.approximate_arrival_timestamp),
                partition_key: k.partition_key,
                data,
            }),
            Err(refusal) => {
                let letter = refused(&k, shard_id, &failed_at, refusal.kind, refusal.reason);
                batch.unreadable.push(letter);
            }
        }
    }

    let mut handled = Handled {
        response: KinesisEventResponse::default(),
        batches: Vec::new(),
        observations: Vec::new(),
        failures: Vec::new(),
    };
    for (shard_id, batch) in shards {
        let started = std::time::Instant::now();
        match pipeline
            .process_batch_with_refusals(&shard_id, &batch.records, batch.unreadable, now)
            .await
        {
            Ok(result) => {
                let observed =
                    BatchObservation::new(result.clone(), &batch.records, started.elapsed(), now);
                handled.observations.push(observed);
                handled.batches.push(result);
            }
            Err(e) => {
                // Retry from the first record: the whole batch failed and was
                // rolled back. With nothing sequenced there is nothing Lambda
                // could retry from: the error is all there is to report.
                let identifier = batch.lowest.map(|(_, spelled)| spelled).unwrap_or_default();
                tracing::error!(shard_id, retry_from = identifier, error = %e, retryable = e.retryable, "batch failed; reporting it for retry");
                handled.response.add_failure(identifier);
                handled.failures.push((shard_id, e.to_string()));
            }
        }
    }
    handled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_times_read_the_same_whether_formatted_or_reused() {
        let fallback = time::parse_rfc3339("2024-01-15T10:30:00Z").unwrap();
        let mut arrivals = ArrivalTimes::new(fallback);
        let at = 1_705_314_605.123; // 2024-01-15T10:30:05.123Z
        let first = arrivals.text(Some(at));
        assert_eq!(first, "2024-01-15T10:30:05.123Z");
        // The same millisecond (the text reused): the same text.
        assert_eq!(arrivals.text(Some(at + 0.0002)), first);
        assert_eq!(arrivals.text(Some(at + 0.001)), "2024-01-15T10:30:05.124Z");
        // Missing or not a number: the fallback, then a real time again.
        assert_eq!(arrivals.text(None), "2024-01-15T10:30:00Z");
        assert_eq!(arrivals.text(Some(f64::NAN)), "2024-01-15T10:30:00Z");
        assert_eq!(arrivals.text(Some(at)), first);
    }
}
