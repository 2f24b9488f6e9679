//! Kinesis Data Streams: PutRecords with per-record results, GetRecords
//! through shard iterators, checkpoints in DynamoDB.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::{Blob, DateTime as AwsDateTime};
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use weir_core::backend::BackendError;
use weir_core::stream::{
    PutRecord, PutResult, ReadBatch, SequenceNumber, ShardLineage, StartingPosition, StreamRecord,
    StreamSink, StreamSource, check_put_record,
};
use weir_core::time;

use crate::dynamodb::DynamoCheckpoints;
use crate::error::{backend_error, build_error};

/// Kinesis's limit of records per PutRecords call.
const PUT_RECORDS_MAX: usize = 500;

/// A stream, read through cached shard iterators (GetShardIterator is limited
/// to 5 calls per second per shard, so a consumer that polls keeps the
/// iterator GetRecords handed back).
#[derive(Debug)]
pub struct KinesisStream {
    client: Client,
    stream: String,
    checkpoints: DynamoCheckpoints,
    /// Per shard: the position the cached iterator reads from, and it.
    iterators: Mutex<HashMap<String, (StartingPosition, String)>>,
}

impl KinesisStream {
    pub fn new(client: Client, stream: impl Into<String>, checkpoints: DynamoCheckpoints) -> Self {
        Self {
            client,
            stream: stream.into(),
            checkpoints,
            iterators: Mutex::new(HashMap::new()),
        }
    }

    pub fn name(&self) -> &str {
        &self.stream
    }

    fn cached_iterator(&self, shard_id: &str, from: &StartingPosition) -> Option<String> {
        let iterators = self.iterators.lock().unwrap_or_else(|p| p.into_inner());
        iterators
            .get(shard_id)
            .filter(|(position, _)| position == from)
            .map(|(_, iterator)| iterator.clone())
    }

    async fn new_iterator(
        &self,
        shard_id: &str,
        from: &StartingPosition,
    ) -> Result<String, BackendError> {
        let mut request = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(shard_id);
        request = match from {
            StartingPosition::TrimHorizon => {
                request.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            StartingPosition::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            StartingPosition::AtTimestamp(at) => {
                let at = time::parse_rfc3339(at).map_err(|e| {
                    BackendError::permanent(format!("reading {shard_id} at {at}"), e)
                })?;
                request
                    .shard_iterator_type(ShardIteratorType::AtTimestamp)
                    .timestamp(AwsDateTime::from_millis(at.timestamp_millis()))
            }
            StartingPosition::AfterSequenceNumber(seq) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq.as_str()),
        };
        let out = request.send().await.map_err(|e| {
            backend_error(format!("opening shard {shard_id} of {}", self.stream), e)
        })?;
        out.shard_iterator().map(str::to_owned).ok_or_else(|| {
            BackendError::retryable(format!("shard {shard_id}"), "no shard iterator")
        })
    }
}

fn arrival(at: Option<&AwsDateTime>) -> String {
    let at = at
        .and_then(|t| chrono::DateTime::from_timestamp_millis(t.to_millis().ok()?))
        .unwrap_or_else(chrono::Utc::now);
    time::format_utc(at)
}

impl StreamSink for KinesisStream {
    async fn put_records(&self, records: Vec<PutRecord>) -> Result<Vec<PutResult>, BackendError> {
        let mut results: Vec<Option<PutResult>> = vec![None; records.len()];
        // Refused here what Kinesis would refuse for the whole call.
        let mut sendable = Vec::new();
        for (i, record) in records.into_iter().enumerate() {
            match check_put_record(&record) {
                Ok(()) => sendable.push((i, record)),
                Err(reason) => results[i] = Some(PutResult::Refused { reason }),
            }
        }
        for chunk in sendable.chunks(PUT_RECORDS_MAX) {
            let entries = chunk
                .iter()
                .map(|(_, r)| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(&r.partition_key)
                        .data(Blob::new(r.data.clone()))
                        .build()
                        .map_err(|e| build_error("a PutRecords entry", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .put_records()
                .stream_name(&self.stream)
                .set_records(Some(entries))
                .send()
                .await
                .map_err(|e| backend_error(format!("putting records on {}", self.stream), e))?;
            for ((i, _), entry) in chunk.iter().zip(out.records()) {
                results[*i] = Some(match (entry.error_code(), entry.sequence_number()) {
                    (None, Some(seq)) => match seq.parse::<SequenceNumber>() {
                        Ok(sequence_number) => PutResult::Accepted {
                            shard_id: entry.shard_id().unwrap_or_default().to_owned(),
                            sequence_number,
                        },
                        Err(reason) => PutResult::Refused { reason },
                    },
                    // Kinesis asks for these to be retried.
                    (Some("ProvisionedThroughputExceededException" | "InternalFailure"), _) => {
                        PutResult::Throttled {
                            shard_id: entry.shard_id().unwrap_or_default().to_owned(),
                        }
                    }
                    (code, _) => PutResult::Refused {
                        reason: format!(
                            "{}: {}",
                            code.unwrap_or("no sequence number"),
                            entry.error_message().unwrap_or_default()
                        ),
                    },
                });
            }
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or(PutResult::Refused {
                    reason: "Kinesis returned no result for the record".into(),
                })
            })
            .collect())
    }
}

impl StreamSource for KinesisStream {
    async fn shards(&self) -> Result<Vec<String>, BackendError> {
        Ok(self
            .lineage()
            .await?
            .into_iter()
            .map(|s| s.shard_id)
            .collect())
    }

    /// Every shard, closed ones included, with the parents a split or merge
    /// left: the consumer reads a child only once its parents are done.
    async fn lineage(&self) -> Result<Vec<ShardLineage>, BackendError> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let request = match &token {
                // The stream name and a token may not be given together.
                Some(t) => self.client.list_shards().next_token(t),
                None => self.client.list_shards().stream_name(&self.stream),
            };
            let out = request
                .send()
                .await
                .map_err(|e| backend_error(format!("listing the shards of {}", self.stream), e))?;
            shards.extend(out.shards().iter().map(|s| {
                ShardLineage {
                    shard_id: s.shard_id().to_owned(),
                    parents: [s.parent_shard_id(), s.adjacent_parent_shard_id()]
                        .into_iter()
                        .flatten()
                        .map(str::to_owned)
                        .collect(),
                }
            }));
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(shards);
            }
        }
    }

    async fn read(
        &self,
        shard_id: &str,
        from: &StartingPosition,
        limit: usize,
    ) -> Result<ReadBatch, BackendError> {
        let what = || format!("reading shard {shard_id} of {}", self.stream);
        let limit = i32::try_from(limit.clamp(1, 10_000)).unwrap_or(10_000);
        let mut fresh = false;
        let mut iterator = match self.cached_iterator(shard_id, from) {
            Some(cached) => cached,
            None => {
                fresh = true;
                self.new_iterator(shard_id, from).await?
            }
        };
        let out = loop {
            match self
                .client
                .get_records()
                .shard_iterator(&iterator)
                .limit(limit)
                .send()
                .await
            {
                Ok(out) => break out,
                // An iterator lives 5 minutes: an idle consumer's has expired.
                Err(e)
                    if !fresh
                        && e.as_service_error()
                            .is_some_and(|s| s.is_expired_iterator_exception()) =>
                {
                    fresh = true;
                    iterator = self.new_iterator(shard_id, from).await?;
                }
                Err(e) => return Err(backend_error(what(), e)),
            }
        };
        let mut records = Vec::with_capacity(out.records().len());
        for r in out.records() {
            let sequence_number = r
                .sequence_number()
                .parse::<SequenceNumber>()
                .map_err(|e| BackendError::permanent(what(), e))?;
            records.push(StreamRecord {
                shard_id: shard_id.to_owned(),
                sequence_number,
                partition_key: r.partition_key().unwrap_or_default().to_owned(),
                data: r.data().as_ref().to_vec(),
                arrival_time: arrival(r.approximate_arrival_timestamp()),
            });
        }
        let next = match records.last() {
            Some(last) => StartingPosition::AfterSequenceNumber(last.sequence_number.clone()),
            None => from.clone(),
        };
        let mut iterators = self.iterators.lock().unwrap_or_else(|p| p.into_inner());
        let shard_ended = match out.next_shard_iterator() {
            Some(it) => {
                iterators.insert(shard_id.to_owned(), (next.clone(), it.to_owned()));
                false
            }
            // A closed shard read to its end.
            None => {
                iterators.remove(shard_id);
                true
            }
        };
        Ok(ReadBatch {
            records,
            next,
            shard_ended,
        })
    }

    async fn checkpoint(
        &self,
        consumer: &str,
        shard_id: &str,
    ) -> Result<Option<SequenceNumber>, BackendError> {
        self.checkpoints.get(consumer, &self.stream, shard_id).await
    }

    async fn set_checkpoint(
        &self,
        consumer: &str,
        shard_id: &str,
        sequence_number: SequenceNumber,
    ) -> Result<(), BackendError> {
        self.checkpoints
            .set(consumer, &self.stream, shard_id, &sequence_number)
            .await
    }
}
