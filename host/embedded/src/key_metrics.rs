//! The seed's metrics table in SQLite: a row per partition key, minute and batch.
//!
//! A batch has a row for each partition key it saw (~100 for sensors or
//! users), and inserting them into the index by partition key touched a
//! different page each, all written to the WAL at the batch's commit: ~30% of
//! the single-stage pipeline's time, and what a second core waited on, since
//! SQLite has one writer. So a batch only appends its rows, as one JSON array,
//! to `pending_key_metrics` in its own transaction (durable with its metadata,
//! so a crash loses none), and [`flush`] moves them into `key_metrics` many
//! batches at a time, writing each page once for all of them: every
//! [`FLUSH_AFTER`] batches (on the blocking pool, not in the way of the batch
//! that filled the quota) and before anything reads the table.

use rusqlite::types::Type;
use rusqlite::{Connection, Transaction, params};
use weir_core::metrics::MinuteMetrics;

pub(crate) const SCHEMA: &str = "
    -- Rows per partition key, minute and batch, appended in rowid order and
    -- found through small indexes (clustered by key, every batch rewrote
    -- pages all over the table).
    CREATE TABLE IF NOT EXISTS key_metrics (
        id INTEGER PRIMARY KEY,
        partition_key TEXT NOT NULL,
        minute TEXT NOT NULL,
        batch_id TEXT NOT NULL,
        records INTEGER NOT NULL,
        readings TEXT NOT NULL,
        ttl INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS key_metrics_by_key ON key_metrics (partition_key, minute);
    CREATE INDEX IF NOT EXISTS key_metrics_by_batch ON key_metrics (batch_id);

    -- Batches' rows not yet in key_metrics, oldest first: a batch retried
    -- before its first attempt was flushed appears twice, the later wins.
    CREATE TABLE IF NOT EXISTS pending_key_metrics (
        id INTEGER PRIMARY KEY,
        batch_id TEXT NOT NULL,
        rows TEXT NOT NULL
    );
";

/// Batches whose rows wait before they are flushed: big enough that a flush
/// writes each hot page once for many batches, small enough (~1 MB of JSON
/// for 100 keys a batch) that a flush is a few milliseconds.
pub(crate) const FLUSH_AFTER: usize = 64;

/// Appends a batch's rows, in the batch's transaction.
pub(crate) fn append(
    tx: &Transaction<'_>,
    batch_id: &str,
    rows: &[MinuteMetrics],
) -> rusqlite::Result<()> {
    if rows.is_empty() {
        // The transform stage's batches (and batches of nothing but refusals).
        return Ok(());
    }
    let json = serde_json::to_string(rows)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.prepare_cached("INSERT INTO pending_key_metrics (batch_id, rows) VALUES (?1, ?2)")?
        .execute(params![batch_id, json])?;
    Ok(())
}

/// Batches waiting to be flushed.
pub(crate) fn pending(c: &Connection) -> rusqlite::Result<usize> {
    c.query_row("SELECT count(*) FROM pending_key_metrics", [], |row| {
        row.get::<_, i64>(0)
    })
    .map(|n| usize::try_from(n).unwrap_or(0))
}

/// Moves every pending batch's rows into `key_metrics`, replacing the rows an
/// earlier attempt of the same batch left there. Returns how many batches.
pub(crate) fn flush(c: &mut Connection) -> rusqlite::Result<usize> {
    let tx = c.transaction()?;
    let moved = {
        let mut select =
            tx.prepare_cached("SELECT id, batch_id, rows FROM pending_key_metrics ORDER BY id")?;
        let pending = select
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let Some((last, _, _)) = pending.last() else {
            return Ok(0);
        };
        let mut clear = tx.prepare_cached("DELETE FROM key_metrics WHERE batch_id = ?1")?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO key_metrics (partition_key, minute, batch_id, records, readings, ttl)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (_, batch_id, rows) in &pending {
            let rows: Vec<MinuteMetrics> = serde_json::from_str(rows).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(2, Type::Text, Box::new(e))
            })?;
            clear.execute(params![batch_id])?;
            for row in &rows {
                let readings =
                    serde_json::to_string(&row.readings).unwrap_or_else(|_| "{}".to_owned());
                insert.execute(params![
                    row.partition_key,
                    row.minute,
                    batch_id,
                    i64::try_from(row.records).unwrap_or(i64::MAX),
                    readings,
                    row.ttl
                ])?;
            }
        }
        tx.prepare_cached("DELETE FROM pending_key_metrics WHERE id <= ?1")?
            .execute(params![last])?;
        pending.len()
    };
    tx.commit()?;
    Ok(moved)
}
