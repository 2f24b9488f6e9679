//! The seed's metrics table in SQLite: a row per partition key, minute and batch.
//!
//! A batch has a row for each partition key it saw (~100 for sensors or
//! users). Writing them into the table readers use, indexed by partition key,
//! touches pages all over the index, so a batch only appends its rows, as one
//! JSON array, to `pending_key_metrics` in its own transaction (in `weir.db`,
//! durable with its metadata, so a crash loses none), and
//! [`MetricsDb::flush`] moves them into `metric_rows` (in `weir-metrics.db`,
//! under that database's own write lock) many batches at a time, writing each
//! page once for all of them: every [`FLUSH_AFTER`] batches (on a thread of
//! its own at a lower CPU priority, not in the way of the batches) and before
//! anything reads the table.
//!
//! A retried batch replaces its rows instead of counting twice. Each batch's
//! rows are inserted together, so their row ids are one range, which
//! `metric_batches` records: replacing them deletes a range of the table's
//! primary key. (Schema 1 kept the batch id on every row, with an index on it:
//! a third of the flush's work.)

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use weir_core::metrics::{MinuteMetrics, Reading};

use crate::lock;

/// The metrics database's tables.
const METRICS_SCHEMA: &str = "
    -- Rows per partition key, minute and batch, in the order batches were
    -- flushed, found by partition key through an index of the key alone.
    -- A flush inserts into it all over; with the minute in it as well (as
    -- earlier versions had it, dropped below where found) the pipeline did
    -- 4-5% fewer records/s (4 alternating runs, one core and two).
    CREATE TABLE IF NOT EXISTS metric_rows (
        id INTEGER PRIMARY KEY,
        partition_key TEXT NOT NULL,
        minute TEXT NOT NULL,
        records INTEGER NOT NULL,
        readings TEXT NOT NULL,
        ttl INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS metric_rows_by_partition_key ON metric_rows (partition_key);
    DROP INDEX IF EXISTS metric_rows_by_key;

    -- Which rows each flushed batch wrote; expires with them.
    CREATE TABLE IF NOT EXISTS metric_batches (
        batch_id TEXT PRIMARY KEY,
        first_row INTEGER NOT NULL,
        last_row INTEGER NOT NULL,
        ttl INTEGER NOT NULL
    );
";

/// The state database's table of rows waiting to be flushed, oldest first: a
/// batch retried before its first attempt was flushed appears twice, the
/// later wins.
pub(crate) const PENDING_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS pending_key_metrics (
        id INTEGER PRIMARY KEY,
        batch_id TEXT NOT NULL,
        rows TEXT NOT NULL
    );
";

/// Batches whose rows wait before they are flushed. A flush dirties index
/// pages all over the table, so the more batches it moves, the fewer times
/// each page is written: 256 did 4% more records/s on one core than 64 and
/// 12% more on two (`weir bench pipeline`, batches of 100, ~100 keys each),
/// for ~2 MB of rows waiting and a flush of ~30 ms on the blocking pool (a
/// read waits for it).
pub(crate) const FLUSH_AFTER: usize = 256;

/// Pending batches a flush reads, or deletes, per hold of the state's lock.
const FLUSH_CHUNK: u32 = 32;

/// A row as it waits in `pending_key_metrics`, with one-letter names: a
/// batch's rows are written to the WAL, then to the database, then freed, so
/// their size counts three times. Schema 1's rows (long names and a batch id
/// on each) still read.
#[derive(Serialize)]
struct PendingRowOut<'a> {
    #[serde(rename = "k")]
    partition_key: &'a str,
    #[serde(rename = "m")]
    minute: &'a str,
    #[serde(rename = "n")]
    records: u64,
    #[serde(rename = "r")]
    readings: StoredReadings<'a>,
    #[serde(rename = "t")]
    ttl: i64,
}

#[derive(Deserialize)]
struct PendingRow<'a> {
    #[serde(borrow, rename = "k", alias = "partition_key")]
    partition_key: Cow<'a, str>,
    #[serde(borrow, rename = "m", alias = "minute")]
    minute: Cow<'a, str>,
    #[serde(rename = "n", alias = "records")]
    records: u64,
    /// Copied into the table as it is: no parse, no new text.
    #[serde(borrow, rename = "r", alias = "readings")]
    readings: &'a RawValue,
    #[serde(rename = "t", alias = "ttl")]
    ttl: i64,
}

/// A row's readings as they are stored, pending and then in `metric_rows`:
/// a reading of one record as its value alone (`"temperature":21.5`), others
/// as `[count, min, max, sum]`. Most rows of a batch are one record's (a
/// sensor, a user seen once in the batch): a batch's rows take ~30% fewer
/// bytes than with named fields (12.9 → 8.9 KB for the bench's batches of
/// 100), which rows written before still have (they read, see
/// [`StoredReading`]).
struct StoredReadings<'a>(&'a BTreeMap<String, Reading>);

impl Serialize for StoredReadings<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, r) in self.0 {
            if r.count == 1 && r.min == r.max && r.min == r.sum {
                map.serialize_entry(name, &r.min)?;
            } else {
                map.serialize_entry(name, &(r.count, r.min, r.max, r.sum))?;
            }
        }
        map.end()
    }
}

/// A stored reading in any of the forms Weir has written.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredReading {
    One(f64),
    Aggregate(u64, f64, f64, f64),
    Named(Reading),
}

impl From<StoredReading> for Reading {
    fn from(stored: StoredReading) -> Self {
        match stored {
            StoredReading::One(value) => Reading {
                count: 1,
                min: value,
                max: value,
                sum: value,
            },
            StoredReading::Aggregate(count, min, max, sum) => Reading {
                count,
                min,
                max,
                sum,
            },
            StoredReading::Named(reading) => reading,
        }
    }
}

/// Reads a row's stored readings (an unreadable text reads as none, as it
/// always has: a row's count stands without them).
fn readings_of(text: &str) -> BTreeMap<String, Reading> {
    serde_json::from_str::<BTreeMap<String, StoredReading>>(text)
        .map(|stored| stored.into_iter().map(|(k, v)| (k, v.into())).collect())
        .unwrap_or_default()
}

/// A batch's rows as they wait, made before the batch takes the state's
/// lock; `None` when it has none.
pub(crate) fn pending_rows(rows: &[MinuteMetrics]) -> Option<String> {
    if rows.is_empty() {
        // The transform stage's batches (and batches of nothing but refusals).
        return None;
    }
    let rows: Vec<PendingRowOut<'_>> = rows
        .iter()
        .map(|r| PendingRowOut {
            partition_key: &r.partition_key,
            minute: &r.minute,
            records: r.records,
            readings: StoredReadings(&r.readings),
            ttl: r.ttl,
        })
        .collect();
    Some(serde_json::to_string(&rows).expect("metric rows serialise"))
}

/// Appends a batch's rows, in the batch's transaction.
pub(crate) fn append(tx: &Transaction<'_>, batch_id: &str, rows: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO pending_key_metrics (batch_id, rows) VALUES (?1, ?2)")?
        .execute(params![batch_id, rows])?;
    Ok(())
}

/// Batches waiting to be flushed.
pub(crate) fn pending(c: &Connection) -> rusqlite::Result<usize> {
    c.query_row("SELECT count(*) FROM pending_key_metrics", [], |row| {
        row.get::<_, i64>(0)
    })
    .map(|n| usize::try_from(n).unwrap_or(0))
}

/// The metrics table's own database beside the state's (`weir.db` →
/// `weir-metrics.db`), with its own connection: a flush moving thousands of
/// rows holds its write lock, not the one every batch commits under.
#[derive(Debug)]
pub(crate) struct MetricsDb {
    path: PathBuf,
    /// Held for a whole flush, so flushes (and reads, which flush first) run
    /// one at a time and a batch's later attempt always lands last. Taken
    /// before the state's lock, never after.
    connection: Mutex<Connection>,
}

impl MetricsDb {
    pub(crate) fn path_beside(state: &Path) -> PathBuf {
        let stem = state.file_stem().and_then(|s| s.to_str()).unwrap_or("weir");
        state.with_file_name(format!("{stem}-metrics.db"))
    }

    /// Opens (or creates) the metrics database beside the state's, and moves
    /// into it the metrics a previous version kept in the state's.
    pub(crate) fn open(
        path: PathBuf,
        pragmas: &str,
        state: &mut Connection,
    ) -> rusqlite::Result<Self> {
        let mut connection = Connection::open(&path)?;
        connection.execute_batch(pragmas)?;
        connection.execute_batch(METRICS_SCHEMA)?;
        migrate(state, &mut connection)?;
        Ok(Self {
            path,
            connection: Mutex::new(connection),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Moves every pending batch's rows into `metric_rows`, replacing the
    /// rows an earlier attempt of the same batch left there. Returns how many
    /// pending rows went. A crash between the two commits leaves the rows
    /// pending as well: the next flush writes them again, in place.
    ///
    /// The state's lock, which every batch commits under, is taken for
    /// [`FLUSH_CHUNK`] pending rows at a time, reading them and deleting
    /// them: all 256 at once held it 1-3 ms to read and up to 2 ms to delete,
    /// while the shards' batches waited.
    pub(crate) fn flush(&self, state: &Mutex<Connection>) -> rusqlite::Result<usize> {
        let mut metrics = lock(&self.connection);
        // Rows appended while this flush reads wait for the next one.
        let last: Option<i64> =
            lock(state).query_row("SELECT max(id) FROM pending_key_metrics", [], |row| {
                row.get(0)
            })?;
        let Some(last) = last else {
            return Ok(0);
        };
        let mut pending: Vec<(i64, String, String)> = Vec::new();
        loop {
            let after = pending.last().map_or(i64::MIN, |(id, _, _)| *id);
            let state = lock(state);
            let mut select = state.prepare_cached(
                "SELECT id, batch_id, rows FROM pending_key_metrics
                 WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3",
            )?;
            let before = pending.len();
            for row in select.query_map(params![after, last, FLUSH_CHUNK], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })? {
                pending.push(row?);
            }
            if pending.len() - before < FLUSH_CHUNK as usize {
                break;
            }
        }
        // A batch pending twice (retried before a flush): its last attempt wins.
        let latest: HashMap<&str, usize> = pending
            .iter()
            .enumerate()
            .map(|(i, (_, batch_id, _))| (batch_id.as_str(), i))
            .collect();
        let tx = metrics.transaction()?;
        for (i, (_, batch_id, rows)) in pending.iter().enumerate() {
            if latest[batch_id.as_str()] != i {
                continue;
            }
            let rows: Vec<PendingRow<'_>> = serde_json::from_str(rows).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(2, Type::Text, Box::new(e))
            })?;
            write_batch(&tx, batch_id, &rows)?;
        }
        tx.commit()?;
        // By the ids read, not "up to `last`": once the table is empty SQLite
        // may give a new batch's row an id at or below `last`.
        for chunk in pending.chunks(FLUSH_CHUNK as usize) {
            let (first, last) = (chunk[0].0, chunk[chunk.len() - 1].0);
            lock(state)
                .prepare_cached("DELETE FROM pending_key_metrics WHERE id BETWEEN ?1 AND ?2")?
                .execute(params![first, last])?;
        }
        Ok(pending.len())
    }

    /// The newest `limit` minutes of a partition key, one row per batch that
    /// saw them (unmerged, without batch ids). Flush first.
    pub(crate) fn read(
        &self,
        partition_key: &str,
        limit: i64,
    ) -> rusqlite::Result<Vec<MinuteMetrics>> {
        let metrics = lock(&self.connection);
        let mut statement = metrics.prepare_cached(
            "SELECT partition_key, minute, records, readings, ttl
             FROM metric_rows
             WHERE partition_key = ?1 AND minute IN (
                 SELECT DISTINCT minute FROM metric_rows WHERE partition_key = ?1
                 ORDER BY minute DESC LIMIT ?2)",
        )?;
        let rows = statement.query_map(params![partition_key, limit], |row| {
            let readings: String = row.get(3)?;
            Ok(MinuteMetrics {
                partition_key: row.get(0)?,
                minute: row.get(1)?,
                batch_id: String::new(),
                records: row.get::<_, i64>(2)?.try_into().unwrap_or(0),
                readings: readings_of(&readings),
                ttl: row.get(4)?,
            })
        })?;
        rows.collect()
    }

    /// Deletes rows (and their batches' ranges) whose TTL has passed. Flush
    /// first. Returns how many rows.
    pub(crate) fn purge(&self, now_unix: i64) -> rusqlite::Result<usize> {
        let mut metrics = lock(&self.connection);
        let tx = metrics.transaction()?;
        let rows = tx.execute("DELETE FROM metric_rows WHERE ttl < ?1", params![now_unix])?;
        tx.execute(
            "DELETE FROM metric_batches WHERE ttl < ?1",
            params![now_unix],
        )?;
        tx.commit()?;
        Ok(rows)
    }
}

/// Writes one batch's rows in place of those its earlier attempt wrote.
fn write_batch(
    tx: &Transaction<'_>,
    batch_id: &str,
    rows: &[PendingRow<'_>],
) -> rusqlite::Result<()> {
    let earlier: Option<(i64, i64)> = tx
        .prepare_cached("SELECT first_row, last_row FROM metric_batches WHERE batch_id = ?1")?
        .query_row(params![batch_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    if let Some((first, last)) = earlier {
        tx.prepare_cached("DELETE FROM metric_rows WHERE id BETWEEN ?1 AND ?2")?
            .execute(params![first, last])?;
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO metric_rows (partition_key, minute, records, readings, ttl)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut range: Option<(i64, i64)> = None;
    let mut ttl = i64::MIN;
    for row in rows {
        insert.execute(params![
            row.partition_key,
            row.minute,
            i64::try_from(row.records).unwrap_or(i64::MAX),
            row.readings.get(),
            row.ttl
        ])?;
        let id = tx.last_insert_rowid();
        range = Some(range.map_or((id, id), |(first, _)| (first, id)));
        ttl = ttl.max(row.ttl);
    }
    match range {
        Some((first, last)) => tx
            .prepare_cached(
                "INSERT INTO metric_batches (batch_id, first_row, last_row, ttl)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (batch_id) DO UPDATE
                 SET first_row = excluded.first_row, last_row = excluded.last_row, ttl = excluded.ttl",
            )?
            .execute(params![batch_id, first, last, ttl])?,
        None => tx
            .prepare_cached("DELETE FROM metric_batches WHERE batch_id = ?1")?
            .execute(params![batch_id])?,
    };
    Ok(())
}

/// Moves schema 1's table (`key_metrics` in the state's database, the batch id
/// on every row) into the metrics database, batch by batch, then drops it.
/// Nothing to do on a new database; a crash half-way moves it again, in place.
fn migrate(state: &mut Connection, metrics: &mut Connection) -> rusqlite::Result<()> {
    let old: bool = state.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'key_metrics'",
        [],
        |row| row.get(0),
    )?;
    if !old {
        return Ok(());
    }
    let rows = {
        let mut select = state.prepare(
            "SELECT batch_id, partition_key, minute, records, readings, ttl
             FROM key_metrics ORDER BY batch_id, id",
        )?;
        select
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, i64>(5)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?
    };
    let invalid = |e: serde_json::Error| {
        rusqlite::Error::FromSqlConversionFailure(4, Type::Text, Box::new(e))
    };
    let tx = metrics.transaction()?;
    for batch in rows.chunk_by(|a, b| a.0 == b.0) {
        let pending: Vec<PendingRow<'_>> = batch
            .iter()
            .map(|r| {
                Ok(PendingRow {
                    partition_key: Cow::Borrowed(&r.1),
                    minute: Cow::Borrowed(&r.2),
                    records: u64::try_from(r.3).unwrap_or(0),
                    readings: serde_json::from_str(&r.4).map_err(invalid)?,
                    ttl: r.5,
                })
            })
            .collect::<rusqlite::Result<_>>()?;
        write_batch(&tx, &batch[0].0, &pending)?;
    }
    tx.commit()?;
    state.execute_batch("DROP TABLE key_metrics")?;
    tracing::info!(rows = rows.len(), "moved the metrics table to schema 2");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(count: u64, min: f64, max: f64, sum: f64) -> Reading {
        Reading {
            count,
            min,
            max,
            sum,
        }
    }

    #[test]
    fn readings_are_stored_compactly_and_every_stored_form_reads_back() {
        let readings = BTreeMap::from([
            ("temperature".to_owned(), reading(1, -3.25, -3.25, -3.25)),
            ("humidity".to_owned(), reading(3, 40.0, 60.5, 150.5)),
        ]);
        let text = serde_json::to_string(&StoredReadings(&readings)).unwrap();
        assert_eq!(
            text,
            r#"{"humidity":[3,40.0,60.5,150.5],"temperature":-3.25}"#
        );
        assert_eq!(readings_of(&text), readings);

        // Rows written before this form, with named fields, read as they were.
        let named = r#"{"amount":{"count":2,"min":1.5,"max":2.0,"sum":3.5}}"#;
        assert_eq!(readings_of(named)["amount"], reading(2, 1.5, 2.0, 3.5));
        // Unreadable readings read as none (the row's count stands).
        assert!(readings_of("not json").is_empty());
    }
}
