//! The seed's metrics table in SQLite: per partition key, minute and batch,
//! a count of records and aggregates of their readings.
//!
//! A batch has a row for each partition key it saw (~100 for sensors or
//! users). Writing them into the table readers use, indexed by partition key,
//! touches pages all over the index, so a batch only appends its rows, as one
//! text (a line a row), to `pending_key_metrics` in its own transaction (in `weir.db`,
//! durable with its metadata, so a crash loses none), and
//! [`MetricsDb::flush`] moves them into `weir-metrics.db` (under that
//! database's own write lock) many batches at a time: once [`FLUSH_AFTER`]
//! rows' worth wait (on a thread of its own at a lower CPU priority, not in
//! the way of the batches) and before anything reads the table.
//!
//! A flush writes one row per partition key into `metric_groups`, holding as
//! entries every row of that key from the batches it moves: one index entry
//! per key and flush instead of one per key and batch. (Schema 2 wrote a row
//! per key, minute and batch into `metric_rows`, which still reads: one core's
//! pipeline spent ~12% of its time on those rows' inserts, two thirds of it on
//! their index, growing with the table.)
//!
//! A retried batch replaces its rows instead of counting twice.
//! `metric_batches` numbers each batch and records the range of rows its
//! flush wrote: replacing a batch takes its entries out of those rows (or, for
//! schema 2's rows, deletes that range). (Schema 1 kept the batch id on every
//! row, with an index on it: a third of the flush's work.)

mod stored;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use weir_core::metrics::MinuteMetrics;

use crate::lock;
use stored::{GroupEntry, PendingEntry, PendingRow, read_pending, readings_of, write_pending};

/// The metrics database's tables.
const METRICS_SCHEMA: &str = "
    -- A row per partition key and flush: the entries of every batch of the
    -- flush that saw the key (see `GroupEntry`), expiring with the newest.
    -- Found by partition key through an index of the key alone.
    CREATE TABLE IF NOT EXISTS metric_groups (
        id INTEGER PRIMARY KEY,
        partition_key TEXT NOT NULL,
        entries TEXT NOT NULL,
        ttl INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS metric_groups_by_partition_key ON metric_groups (partition_key);

    -- Schema 2: rows per partition key, minute and batch, read and replaced
    -- but no longer written. (Indexed by the key alone: with the minute in
    -- the index as well, as earlier versions had it, dropped below where
    -- found, the pipeline did 4-5% fewer records/s.)
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

    -- Each flushed batch: its number (the row id, which group entries name)
    -- and the rows its flush wrote, of `metric_groups` when `grouped`, of
    -- `metric_rows` otherwise (schema 2's batches); expires with them.
    CREATE TABLE IF NOT EXISTS metric_batches (
        batch_id TEXT PRIMARY KEY,
        first_row INTEGER NOT NULL,
        last_row INTEGER NOT NULL,
        ttl INTEGER NOT NULL,
        grouped INTEGER NOT NULL DEFAULT 0
    );
";

/// Schema 2's `metric_batches` gains the column saying where a batch's rows are.
fn add_grouped_column(metrics: &Connection) -> rusqlite::Result<()> {
    let has_it: bool = metrics.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('metric_batches') WHERE name = 'grouped'",
        [],
        |row| row.get(0),
    )?;
    if !has_it {
        metrics.execute_batch(
            "ALTER TABLE metric_batches ADD COLUMN grouped INTEGER NOT NULL DEFAULT 0",
        )?;
    }
    Ok(())
}

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

/// Rows that wait before they are flushed. A flush dirties index pages all
/// over the table, so the more it moves, the fewer times each page is
/// written: 256 batches of 100 rows did 4% more records/s on one core than 64
/// and 12% more on two (`weir bench pipeline`, ~100 keys a batch), for ~2 MB
/// of rows waiting and a flush of ~30 ms (a read waits for it). Counted in
/// rows, not batches, so a flush's work is the same whatever the batch size
/// (at batches of 1,000, 256 batches were 256,000 rows, moved at once); a
/// batch counts as at least [`BATCH_WEIGHT`] rows.
pub(crate) const FLUSH_AFTER: usize = 25_600;

/// The least a pending batch counts towards [`FLUSH_AFTER`]: a batch has a
/// cost in a flush whatever its rows (its pending row, its entry in
/// `metric_batches`), so batches of a row or two (one partition key) still
/// move every 256 batches, not every 25,600.
pub(crate) const BATCH_WEIGHT: usize = 100;

/// What a batch of `rows` rows counts towards [`FLUSH_AFTER`].
pub(crate) fn weight(rows: usize) -> usize {
    rows.max(BATCH_WEIGHT)
}

/// Pending batches a flush reads, or deletes, per hold of the state's lock.
const FLUSH_CHUNK: u32 = 32;

/// A batch's rows as they wait, made before the batch takes the state's
/// lock, and their [`weight`]; `None` when it has none.
pub(crate) fn pending_rows(rows: &[MinuteMetrics]) -> Option<(String, usize)> {
    if rows.is_empty() {
        // The transform stage's batches (and batches of nothing but refusals).
        return None;
    }
    Some((write_pending(rows), weight(rows.len())))
}

/// Appends a batch's rows, in the batch's transaction.
pub(crate) fn append(tx: &Transaction<'_>, batch_id: &str, rows: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO pending_key_metrics (batch_id, rows) VALUES (?1, ?2)")?
        .execute(params![batch_id, rows])?;
    Ok(())
}

/// The [`weight`] of the rows waiting to be flushed: a row a line, or (as
/// earlier versions stored them) an element of a JSON array.
pub(crate) fn pending(c: &Connection) -> rusqlite::Result<usize> {
    c.query_row(
        "SELECT coalesce(sum(max(
             CASE WHEN rows LIKE '[%' THEN json_array_length(rows)
                  ELSE length(rows) - length(replace(rows, char(10), '')) END,
             ?1)), 0)
         FROM pending_key_metrics",
        [BATCH_WEIGHT as i64],
        |row| row.get::<_, i64>(0),
    )
    .map(|n| usize::try_from(n).unwrap_or(0))
}

/// What a flush moved: pending batches (a batch retried before the flush
/// counts once) and the [`weight`] of every attempt's rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flushed {
    pub(crate) batches: usize,
    pub(crate) weight: usize,
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
        add_grouped_column(&connection)?;
        migrate(state, &mut connection)?;
        Ok(Self {
            path,
            connection: Mutex::new(connection),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Moves every pending batch's rows into `metric_groups`, replacing the
    /// rows an earlier attempt of the same batch left there. A crash between
    /// the two commits leaves the rows pending as well: the next flush moves
    /// them again, replacing what this one wrote (as for a retried batch).
    ///
    /// The state's lock, which every batch commits under, is taken for
    /// [`FLUSH_CHUNK`] pending batches at a time, reading them and deleting
    /// them: all 256 at once held it 1-3 ms to read and up to 2 ms to delete,
    /// while the shards' batches waited.
    pub(crate) fn flush(&self, state: &Mutex<Connection>) -> rusqlite::Result<Flushed> {
        let mut metrics = lock(&self.connection);
        // Rows appended while this flush reads wait for the next one.
        let last: Option<i64> =
            lock(state).query_row("SELECT max(id) FROM pending_key_metrics", [], |row| {
                row.get(0)
            })?;
        let Some(last) = last else {
            return Ok(Flushed::default());
        };
        let mut pending: Vec<(i64, String, String)> = Vec::new();
        let mut pace = Pace::new();
        loop {
            pace.step();
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
        let mut weight_read = 0;
        let mut batches = Vec::with_capacity(latest.len());
        for (i, (_, batch_id, rows)) in pending.iter().enumerate() {
            pace.step();
            let rows = read_pending(rows)
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, Type::Text, e.into()))?;
            weight_read += weight(rows.len());
            if latest[batch_id.as_str()] == i {
                batches.push((batch_id.as_str(), rows));
            }
        }
        let tx = metrics.transaction()?;
        write_batches(&tx, &batches, &mut pace)?;
        tx.commit()?;
        // By the ids read, not "up to `last`": once the table is empty SQLite
        // may give a new batch's row an id at or below `last`.
        for chunk in pending.chunks(FLUSH_CHUNK as usize) {
            pace.step();
            let (first, last) = (chunk[0].0, chunk[chunk.len() - 1].0);
            lock(state)
                .prepare_cached("DELETE FROM pending_key_metrics WHERE id BETWEEN ?1 AND ?2")?
                .execute(params![first, last])?;
        }
        Ok(Flushed {
            batches: batches.len(),
            weight: weight_read,
        })
    }

    /// The newest `limit` minutes of a partition key, one row per batch that
    /// saw them (unmerged, without batch ids). Flush first.
    pub(crate) fn read(
        &self,
        partition_key: &str,
        limit: i64,
    ) -> rusqlite::Result<Vec<MinuteMetrics>> {
        let metrics = lock(&self.connection);
        let groups: Vec<String> = metrics
            .prepare_cached("SELECT entries FROM metric_groups WHERE partition_key = ?1")?
            .query_map(params![partition_key], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let old: Vec<(String, i64, String, i64)> = metrics
            .prepare_cached(
                "SELECT minute, records, readings, ttl FROM metric_rows WHERE partition_key = ?1",
            )?
            .query_map(params![partition_key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        // Every row of the key as (minute, records, readings, ttl), readings
        // unparsed until the row is among the newest minutes.
        let mut found: Vec<(&str, u64, &str, i64)> = old
            .iter()
            .map(|(minute, records, readings, ttl)| {
                (
                    minute.as_str(),
                    (*records).try_into().unwrap_or(0),
                    readings.as_str(),
                    *ttl,
                )
            })
            .collect();
        let entries = groups
            .iter()
            .map(|text| serde_json::from_str::<Vec<GroupEntry<'_>>>(text))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, Type::Text, Box::new(e)))?;
        found.extend(
            entries
                .iter()
                .flatten()
                .map(|e| (e.1.as_ref(), e.2, e.3.get(), e.4)),
        );
        let minutes: BTreeSet<&str> = found.iter().map(|row| row.0).collect();
        let newest: BTreeSet<&str> = minutes
            .into_iter()
            .rev()
            .take(usize::try_from(limit).unwrap_or(0))
            .collect();
        Ok(found
            .into_iter()
            .filter(|row| newest.contains(row.0))
            .map(|(minute, records, readings, ttl)| MinuteMetrics {
                partition_key: partition_key.to_owned(),
                minute: minute.to_owned(),
                batch_id: String::new(),
                records,
                readings: readings_of(readings),
                ttl,
            })
            .collect())
    }

    /// Deletes rows (and their batches' ranges) whose TTL has passed; a
    /// group goes with its newest entry. Flush first. Returns how many rows
    /// and groups.
    pub(crate) fn purge(&self, now_unix: i64) -> rusqlite::Result<usize> {
        let mut metrics = lock(&self.connection);
        let tx = metrics.transaction()?;
        let rows = tx.execute("DELETE FROM metric_rows WHERE ttl < ?1", params![now_unix])?
            + tx.execute(
                "DELETE FROM metric_groups WHERE ttl < ?1",
                params![now_unix],
            )?;
        tx.execute(
            "DELETE FROM metric_batches WHERE ttl < ?1",
            params![now_unix],
        )?;
        tx.commit()?;
        Ok(rows)
    }
}

/// Writes the rows of a flush's batches, one group per partition key, in
/// place of those the batches' earlier attempts wrote.
fn write_batches(
    tx: &Transaction<'_>,
    batches: &[(&str, Vec<PendingEntry<'_>>)],
    pace: &mut Pace,
) -> rusqlite::Result<()> {
    // Per partition key, in key order (the index's order, so its pages are
    // visited once, in turn): the entries' text being written, and their
    // newest expiry.
    let mut groups: BTreeMap<&str, (Vec<u8>, i64)> = BTreeMap::new();
    let mut flushed: Vec<(i64, i64)> = Vec::with_capacity(batches.len());
    for (batch_id, rows) in batches {
        pace.step();
        let number = replace_earlier(tx, batch_id)?;
        if rows.is_empty() {
            tx.prepare_cached("DELETE FROM metric_batches WHERE rowid = ?1")?
                .execute(params![number])?;
            continue;
        }
        let mut batch_ttl = i64::MIN;
        // A `GroupEntry` is `[number,` and the row's tail; after the group's
        // first entry, a comma before it.
        let head = format!(",[{number},");
        for row in rows {
            let (entries, ttl) = groups
                .entry(&row.partition_key)
                .or_insert_with(|| (b"[".to_vec(), i64::MIN));
            let head = if entries.len() == 1 {
                &head[1..]
            } else {
                &head[..]
            };
            entries.extend_from_slice(head.as_bytes());
            entries.extend_from_slice(row.tail.as_bytes());
            *ttl = (*ttl).max(row.ttl);
            batch_ttl = batch_ttl.max(row.ttl);
        }
        flushed.push((number, batch_ttl));
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO metric_groups (partition_key, entries, ttl) VALUES (?1, ?2, ?3)",
    )?;
    let mut range: Option<(i64, i64)> = None;
    for (partition_key, (mut entries, ttl)) in groups {
        pace.step();
        entries.push(b']');
        let entries = String::from_utf8(entries).expect("serde_json writes UTF-8");
        insert.execute(params![partition_key, entries, ttl])?;
        let id = tx.last_insert_rowid();
        range = Some(range.map_or((id, id), |(first, _)| (first, id)));
    }
    let Some((first, last)) = range else {
        return Ok(());
    };
    let mut update = tx.prepare_cached(
        "UPDATE metric_batches SET first_row = ?1, last_row = ?2, ttl = ?3, grouped = 1
         WHERE rowid = ?4",
    )?;
    for (number, ttl) in flushed {
        update.execute(params![first, last, ttl, number])?;
    }
    Ok(())
}

/// Lets the batches have the core after every [`Pace::STINT`] of a flush's
/// work. On a busy core the scheduler takes the CPU from a running thread
/// only at its tick (4 ms at `CONFIG_HZ=250`), so a flush at a lower
/// priority still ran a tick at a time, and the batch it interrupted took
/// 2.5-7 ms instead of 0.9: the one-core p99. Measured with `weir bench
/// pipeline`'s worker, single-stage, one core, 3 alternating runs each:
/// p99 4.2-4.4 ms without yielding, 2.3 with 1 ms stints, 2.0 with 500 µs,
/// 1.5-1.7 with 200 µs, the same records/s within the VM's noise. On an idle
/// core a yield returns at once.
pub(crate) struct Pace {
    since: Instant,
}

impl Pace {
    const STINT: Duration = Duration::from_micros(200);

    pub(crate) fn new() -> Self {
        Self {
            since: Instant::now(),
        }
    }

    /// Yields the CPU once the current stint is over; says whether it did.
    pub(crate) fn step(&mut self) -> bool {
        if self.since.elapsed() < Self::STINT {
            return false;
        }
        std::thread::yield_now();
        self.since = Instant::now();
        true
    }
}

/// Takes out the rows an earlier attempt of the batch wrote, if any; returns
/// the batch's number (its row in `metric_batches`, made if new).
fn replace_earlier(tx: &Transaction<'_>, batch_id: &str) -> rusqlite::Result<i64> {
    let earlier: Option<(i64, i64, i64, bool)> = tx
        .prepare_cached(
            "SELECT rowid, first_row, last_row, grouped FROM metric_batches WHERE batch_id = ?1",
        )?
        .query_row(params![batch_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    match earlier {
        Some((number, first, last, true)) => {
            remove_entries(tx, number, first, last)?;
            Ok(number)
        }
        Some((number, first, last, false)) => {
            tx.prepare_cached("DELETE FROM metric_rows WHERE id BETWEEN ?1 AND ?2")?
                .execute(params![first, last])?;
            Ok(number)
        }
        None => {
            // Its range is set once its flush has written its groups.
            tx.prepare_cached(
                "INSERT INTO metric_batches (batch_id, first_row, last_row, ttl, grouped)
                 VALUES (?1, 0, -1, 0, 1)",
            )?
            .execute(params![batch_id])?;
            Ok(tx.last_insert_rowid())
        }
    }
}

/// Takes batch `number`'s entries out of the groups `first..=last` (its
/// flush's), rewriting the groups that had some and deleting those left
/// empty. Only a retry of a batch already flushed comes here.
fn remove_entries(
    tx: &Transaction<'_>,
    number: i64,
    first: i64,
    last: i64,
) -> rusqlite::Result<()> {
    // Every entry starts `[<number>,` and nothing else in a group can (minutes
    // are quoted, readings are objects), so most groups are passed over
    // without being parsed.
    let mark = format!("[{number},");
    let groups: Vec<(i64, String)> = tx
        .prepare_cached("SELECT id, entries FROM metric_groups WHERE id BETWEEN ?1 AND ?2")?
        .query_map(params![first, last], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, entries) in groups.iter().filter(|(_, e)| e.contains(&mark)) {
        let entries: Vec<GroupEntry<'_>> = serde_json::from_str(entries)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, Type::Text, Box::new(e)))?;
        let kept: Vec<&GroupEntry<'_>> = entries.iter().filter(|e| e.0 != number).collect();
        match kept.iter().map(|e| e.4).max() {
            None => tx
                .prepare_cached("DELETE FROM metric_groups WHERE id = ?1")?
                .execute(params![id])?,
            Some(ttl) => tx
                .prepare_cached("UPDATE metric_groups SET entries = ?1, ttl = ?2 WHERE id = ?3")?
                .execute(params![
                    serde_json::to_string(&kept).expect("group entries serialise"),
                    ttl,
                    id
                ])?,
        };
    }
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
    let batches = rows
        .chunk_by(|a, b| a.0 == b.0)
        .map(|batch| {
            let pending = batch
                .iter()
                .map(|r| {
                    Ok(PendingRow {
                        partition_key: Cow::Borrowed(&r.1),
                        minute: Cow::Borrowed(&r.2),
                        records: u64::try_from(r.3).unwrap_or(0),
                        readings: serde_json::from_str(&r.4).map_err(invalid)?,
                        ttl: r.5,
                    }
                    .into_entry())
                })
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((batch[0].0.as_str(), pending))
        })
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let tx = metrics.transaction()?;
    write_batches(&tx, &batches, &mut Pace::new())?;
    tx.commit()?;
    state.execute_batch("DROP TABLE key_metrics")?;
    tracing::info!(
        rows = rows.len(),
        "moved the metrics table into metric_groups"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_waiting_in_any_form_are_weighed_by_their_rows() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(PENDING_SCHEMA).unwrap();
        let row = |key: String| MinuteMetrics {
            partition_key: key,
            minute: "2024-01-15T10:30:00Z".to_owned(),
            batch_id: String::new(),
            records: 1,
            readings: BTreeMap::new(),
            ttl: 99,
        };
        let many: Vec<_> = (0..150).map(|i| row(format!("sensor-{i}"))).collect();
        let (text, weight) = pending_rows(&many).unwrap();
        assert_eq!(weight, 150);
        let old = r#"[{"k":"a","m":"2024-01-15T10:30:00Z","n":1,"r":{},"t":99},
                      {"k":"b","m":"2024-01-15T10:30:00Z","n":1,"r":{},"t":99}]"#;
        let (few, _) = pending_rows(&[row("c".to_owned())]).unwrap();
        for (batch, rows) in [("b1", text.as_str()), ("b2", old), ("b3", &few)] {
            c.execute(
                "INSERT INTO pending_key_metrics (batch_id, rows) VALUES (?1, ?2)",
                params![batch, rows],
            )
            .unwrap();
        }
        // 150 rows, and two batches of fewer rows than a batch weighs.
        assert_eq!(pending(&c).unwrap(), 150 + 2 * BATCH_WEIGHT);
    }

    #[test]
    fn a_flush_yields_once_per_stint_of_work() {
        let hour = Duration::from_secs(3600);
        // A stint just begun (its start set ahead, so no delay in this test
        // can end it): no yield.
        let mut pace = Pace {
            since: Instant::now() + hour,
        };
        assert!(!pace.step());
        // A stint over: one yield, and a new stint begins.
        pace.since = Instant::now().checked_sub(Pace::STINT * 2).unwrap();
        assert!(pace.step());
        assert!(pace.since.elapsed() < hour);
        pace.since += hour;
        assert!(!pace.step());
    }
}
