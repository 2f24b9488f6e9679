//! The embedded stream: Kinesis semantics in SQLite.
//!
//! Shards split the hash-key range evenly; a record goes to the shard that owns
//! the MD5 of its partition key. Sequence numbers come from one AUTOINCREMENT
//! counter, so they increase within every shard and are never reused. Each
//! shard accepts at most `max_records_per_second` records and
//! `max_bytes_per_second` bytes per wall-clock second (Kinesis's 1,000 and
//! 1 MiB by default); records beyond are `Throttled`, as Kinesis answers
//! ProvisionedThroughputExceededException, so the seed's stress test
//! reproduces on a laptop. Records older than the retention are deleted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{OptionalExtension, params};
use weir_core::backend::BackendError;
use weir_core::stream::{
    PutRecord, PutResult, ReadBatch, SequenceNumber, StartingPosition, StreamRecord, StreamSink,
    StreamSource, check_put_record, hash_key, shard_for_hash,
};

use crate::SqliteState;

/// The settings of one embedded stream.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub name: String,
    /// Shards (the seed's 2 by default). Fixed once the stream exists.
    pub shard_count: u32,
    /// How long records are kept (the seed's 24 hours).
    pub retention: Duration,
    /// Per shard and second (Kinesis: 1,000).
    pub max_records_per_second: u32,
    /// Per shard and second (Kinesis: 1 MiB).
    pub max_bytes_per_second: u64,
}

impl StreamSettings {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            shard_count: 2,
            retention: Duration::from_secs(24 * 3600),
            max_records_per_second: 1000,
            max_bytes_per_second: 1 << 20,
        }
    }
}

/// Writes accepted by one shard in one second.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    second: u64,
    records: u32,
    bytes: u64,
}

/// Wall-clock time; replaceable so tests control the per-second windows.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// An embedded stream. Cheap to clone; clones share state and limits.
#[derive(Clone)]
pub struct EmbeddedStream {
    state: SqliteState,
    settings: Arc<StreamSettings>,
    shard_ids: Arc<Vec<String>>,
    windows: Arc<Mutex<HashMap<u32, Window>>>,
    clock: Clock,
}

impl std::fmt::Debug for EmbeddedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStream")
            .field("settings", &self.settings)
            .finish()
    }
}

/// `shardId-000000000000`, as Kinesis names shards.
fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn rfc3339_millis(ms: i64) -> String {
    let time = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl EmbeddedStream {
    /// Opens the stream, creating it with `settings` if it does not exist. An
    /// existing stream keeps its shard count; asking for another is an error.
    pub async fn open(state: SqliteState, settings: StreamSettings) -> Result<Self, BackendError> {
        Self::open_with_clock(state, settings, Arc::new(SystemTime::now)).await
    }

    pub async fn open_with_clock(
        state: SqliteState,
        settings: StreamSettings,
        clock: Clock,
    ) -> Result<Self, BackendError> {
        if settings.shard_count == 0 {
            return Err(BackendError::permanent(
                format!("stream {}", settings.name),
                "needs at least one shard",
            ));
        }
        let (name, wanted) = (settings.name.clone(), settings.shard_count);
        let existing: Option<u32> = state
            .with("opening the stream", move |c| {
                c.execute(
                    "INSERT OR IGNORE INTO streams (name, shard_count) VALUES (?1, ?2)",
                    params![name, wanted],
                )?;
                c.query_row(
                    "SELECT shard_count FROM streams WHERE name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()
            })
            .await?;
        if let Some(count) = existing
            && count != settings.shard_count
        {
            return Err(BackendError::permanent(
                format!("stream {}", settings.name),
                format!(
                    "exists with {count} shards, not {}; the embedded stream cannot reshard (use a new stream name)",
                    settings.shard_count
                ),
            ));
        }
        let shard_ids = (0..settings.shard_count).map(shard_id).collect();
        Ok(Self {
            state,
            settings: Arc::new(settings),
            shard_ids: Arc::new(shard_ids),
            windows: Arc::default(),
            clock,
        })
    }

    pub fn settings(&self) -> &StreamSettings {
        &self.settings
    }

    /// Deletes records older than the retention; returns how many went.
    pub async fn apply_retention(&self) -> Result<usize, BackendError> {
        let cutoff = millis((self.clock)())
            - i64::try_from(self.settings.retention.as_millis()).unwrap_or(i64::MAX);
        let name = self.settings.name.clone();
        self.state
            .with("applying stream retention", move |c| {
                c.execute(
                    "DELETE FROM stream_records WHERE stream = ?1 AND arrival_ms < ?2",
                    params![name, cutoff],
                )
            })
            .await
    }

    fn shard_index(&self, shard_id: &str) -> Result<u32, BackendError> {
        self.shard_ids
            .iter()
            .position(|s| s == shard_id)
            .map(|i| i as u32)
            .ok_or_else(|| {
                BackendError::permanent(
                    format!("stream {}", self.settings.name),
                    format!(
                        "has no shard {shard_id}; its shards are {}",
                        self.shard_ids.join(", ")
                    ),
                )
            })
    }
}

impl StreamSink for EmbeddedStream {
    async fn put_records(&self, records: Vec<PutRecord>) -> Result<Vec<PutResult>, BackendError> {
        let now = (self.clock)();
        let now_ms = millis(now);
        let second = u64::try_from(now_ms / 1000).unwrap_or(0);
        let count = self.settings.shard_count;

        // Decide each record's fate under the shard windows, in order.
        enum Plan {
            Insert(u32),
            Done(PutResult),
        }
        let plans: Vec<Plan> = {
            let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
            records
                .iter()
                .map(|record| {
                    if let Err(reason) = check_put_record(record) {
                        return Plan::Done(PutResult::Refused { reason });
                    }
                    let shard = shard_for_hash(hash_key(&record.partition_key), count);
                    let window = windows.entry(shard).or_default();
                    if window.second != second {
                        *window = Window {
                            second,
                            records: 0,
                            bytes: 0,
                        };
                    }
                    let bytes = (record.data.len() + record.partition_key.len()) as u64;
                    if window.records >= self.settings.max_records_per_second
                        || window.bytes + bytes > self.settings.max_bytes_per_second
                    {
                        return Plan::Done(PutResult::Throttled {
                            shard_id: shard_id(shard),
                        });
                    }
                    window.records += 1;
                    window.bytes += bytes;
                    Plan::Insert(shard)
                })
                .collect()
        };

        let name = self.settings.name.clone();
        let inserts: Vec<(String, String, Vec<u8>)> = plans
            .iter()
            .zip(records)
            .filter_map(|(plan, record)| match plan {
                Plan::Insert(shard) => Some((shard_id(*shard), record.partition_key, record.data)),
                Plan::Done(_) => None,
            })
            .collect();
        let sequences: Vec<i64> = self
            .state
            .with("putting records", move |c| {
                let tx = c.transaction()?;
                let mut sequences = Vec::with_capacity(inserts.len());
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO stream_records (stream, shard_id, partition_key, data, arrival_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?;
                    for (shard, key, data) in &inserts {
                        insert.execute(params![name, shard, key, data, now_ms])?;
                        sequences.push(tx.last_insert_rowid());
                    }
                }
                tx.commit()?;
                Ok(sequences)
            })
            .await?;

        let mut sequences = sequences.into_iter();
        Ok(plans
            .into_iter()
            .map(|plan| match plan {
                Plan::Done(result) => result,
                Plan::Insert(shard) => PutResult::Accepted {
                    shard_id: shard_id(shard),
                    sequence_number: SequenceNumber::from_u64(
                        sequences.next().unwrap_or_default() as u64
                    ),
                },
            })
            .collect())
    }
}

impl StreamSource for EmbeddedStream {
    async fn shards(&self) -> Result<Vec<String>, BackendError> {
        Ok(self.shard_ids.to_vec())
    }

    async fn read(
        &self,
        shard_id: &str,
        from: &StartingPosition,
        limit: usize,
    ) -> Result<ReadBatch, BackendError> {
        self.shard_index(shard_id)?;
        let (name, shard) = (self.settings.name.clone(), shard_id.to_owned());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Each position becomes "seq > after" or "arrival_ms >= at".
        let (after, at_ms): (i64, i64) = match from {
            StartingPosition::TrimHorizon => (0, 0),
            StartingPosition::AfterSequenceNumber(s) => {
                let n = s
                    .as_u64()
                    .and_then(|n| i64::try_from(n).ok())
                    .ok_or_else(|| {
                        BackendError::permanent(
                            format!("reading {shard_id}"),
                            format!("{s} is not a sequence number of this stream"),
                        )
                    })?;
                (n, 0)
            }
            StartingPosition::AtTimestamp(t) => {
                let time = weir_core::time::parse_rfc3339(t)
                    .map_err(|e| BackendError::permanent(format!("reading {shard_id}"), e))?;
                (0, time.timestamp_millis())
            }
            StartingPosition::Latest => {
                let (n2, s2) = (name.clone(), shard.clone());
                let newest: i64 = self
                    .state
                    .with("reading the stream", move |c| {
                        c.query_row(
                            "SELECT COALESCE(MAX(seq), 0) FROM stream_records WHERE stream = ?1 AND shard_id = ?2",
                            params![n2, s2],
                            |r| r.get(0),
                        )
                    })
                    .await?;
                let next =
                    StartingPosition::AfterSequenceNumber(SequenceNumber::from_u64(newest as u64));
                return Ok(ReadBatch {
                    records: Vec::new(),
                    next,
                    shard_ended: false,
                });
            }
        };
        let shard_for_rows = shard.clone();
        let records: Vec<StreamRecord> = self
            .state
            .with("reading the stream", move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT seq, partition_key, data, arrival_ms FROM stream_records
                     WHERE stream = ?1 AND shard_id = ?2 AND seq > ?3 AND arrival_ms >= ?4
                     ORDER BY seq LIMIT ?5",
                )?;
                let rows = statement.query_map(params![name, shard, after, at_ms, limit], |r| {
                    Ok(StreamRecord {
                        shard_id: shard_for_rows.clone(),
                        sequence_number: SequenceNumber::from_u64(r.get::<_, i64>(0)? as u64),
                        partition_key: r.get(1)?,
                        data: r.get(2)?,
                        arrival_time: rfc3339_millis(r.get(3)?),
                    })
                })?;
                rows.collect()
            })
            .await?;
        let next = match records.last() {
            Some(last) => StartingPosition::AfterSequenceNumber(last.sequence_number.clone()),
            None => from.clone(),
        };
        Ok(ReadBatch {
            records,
            next,
            shard_ended: false,
        })
    }

    async fn checkpoint(
        &self,
        consumer: &str,
        shard_id: &str,
    ) -> Result<Option<SequenceNumber>, BackendError> {
        let (consumer, stream, shard) = (
            consumer.to_owned(),
            self.settings.name.clone(),
            shard_id.to_owned(),
        );
        let found: Option<i64> = self
            .state
            .with("reading a checkpoint", move |c| {
                c.query_row(
                    "SELECT sequence FROM checkpoints WHERE consumer = ?1 AND stream = ?2 AND shard_id = ?3",
                    params![consumer, stream, shard],
                    |r| r.get(0),
                )
                .optional()
            })
            .await?;
        Ok(found.map(|n| SequenceNumber::from_u64(n as u64)))
    }

    async fn set_checkpoint(
        &self,
        consumer: &str,
        shard_id: &str,
        sequence_number: SequenceNumber,
    ) -> Result<(), BackendError> {
        self.shard_index(shard_id)?;
        let n = sequence_number
            .as_u64()
            .and_then(|n| i64::try_from(n).ok())
            .ok_or_else(|| {
                BackendError::permanent(
                    format!("checkpoint in {shard_id}"),
                    format!("{sequence_number} is not a sequence number of this stream"),
                )
            })?;
        let (consumer, stream, shard) = (
            consumer.to_owned(),
            self.settings.name.clone(),
            shard_id.to_owned(),
        );
        self.state
            .with("writing a checkpoint", move |c| {
                // Never backwards: a late, slower writer cannot undo progress.
                c.execute(
                    "INSERT INTO checkpoints (consumer, stream, shard_id, sequence) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (consumer, stream, shard_id)
                     DO UPDATE SET sequence = excluded.sequence WHERE excluded.sequence > checkpoints.sequence",
                    params![consumer, stream, shard, n],
                )
                .map(drop)
            })
            .await
    }
}
