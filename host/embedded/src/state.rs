//! Weir's state in one SQLite database (dead letters, batch metadata, the
//! stream, checkpoints, metric rows waiting to be flushed), and the metrics
//! table in a second one beside it (see [`key_metrics`]).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use weir_core::backend::{
    BackendError, BatchMetadata, DeadLetter, DeadLetterFilter, DeadLetterQueue, MetadataStore,
};
use weir_core::metrics::{MinuteMetrics, merge_minutes};

use crate::checkpoints;
use crate::key_metrics::{self, MetricsDb};
use crate::{Durability, lock};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY,
        payload BLOB NOT NULL,
        reason TEXT NOT NULL,
        kind TEXT NOT NULL,
        stage TEXT NOT NULL,
        plugin TEXT,
        shard_id TEXT NOT NULL,
        sequence_number TEXT NOT NULL,
        partition_key TEXT NOT NULL,
        failed_at TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS dead_letters_by_stage ON dead_letters (stage, kind);
    CREATE INDEX IF NOT EXISTS dead_letters_by_shard ON dead_letters (shard_id);
    -- The live tail's lookup, the newest of an event type, reloaded every 2 s:
    -- without it each reload parsed every payload in the table. The
    -- expression must be the one `recent_dead_letters` filters on.
    CREATE INDEX IF NOT EXISTS dead_letters_by_event_type ON dead_letters (
        (CASE WHEN json_valid(CAST(payload AS TEXT))
              THEN json_extract(CAST(payload AS TEXT), '$.event_type') END),
        id
    );

    CREATE TABLE IF NOT EXISTS batch_metadata (
        batch_id TEXT NOT NULL,
        processed_at TEXT NOT NULL,
        shard_id TEXT NOT NULL,
        total_records INTEGER NOT NULL,
        success_records INTEGER NOT NULL,
        failed_records INTEGER NOT NULL,
        partitions_count INTEGER NOT NULL,
        ttl INTEGER NOT NULL,
        plugin_versions TEXT NOT NULL,
        object_keys TEXT NOT NULL,
        PRIMARY KEY (batch_id, processed_at)
    ) WITHOUT ROWID;
    -- The seed's ShardIndex.
    CREATE INDEX IF NOT EXISTS batch_metadata_by_shard ON batch_metadata (shard_id, processed_at);

    CREATE TABLE IF NOT EXISTS streams (
        name TEXT PRIMARY KEY,
        shard_count INTEGER NOT NULL
    );
    -- AUTOINCREMENT: a sequence number is never reused, even after retention
    -- deletes the newest records.
    CREATE TABLE IF NOT EXISTS stream_records (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        stream TEXT NOT NULL,
        shard_id TEXT NOT NULL,
        partition_key TEXT NOT NULL,
        data BLOB NOT NULL,
        arrival_ms INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS stream_records_by_shard ON stream_records (stream, shard_id, seq);
    CREATE INDEX IF NOT EXISTS stream_records_by_arrival ON stream_records (stream, arrival_ms);
    CREATE TABLE IF NOT EXISTS checkpoints (
        consumer TEXT NOT NULL,
        stream TEXT NOT NULL,
        shard_id TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        PRIMARY KEY (consumer, stream, shard_id)
    );
";

/// The newest dead letters of an event type (`?1`), of one tenant or any
/// (`?2`), at most `?3`. Its event-type expression is the index's
/// (`dead_letters_by_event_type`), so SQLite walks that index newest first and
/// stops at the limit.
const RECENT_DEAD_LETTERS: &str = "
    SELECT id, payload, reason, kind, stage, plugin, shard_id, sequence_number, partition_key, failed_at
    FROM dead_letters
    WHERE (CASE WHEN json_valid(CAST(payload AS TEXT))
                THEN json_extract(CAST(payload AS TEXT), '$.event_type') END) = ?1
      AND (?2 IS NULL OR coalesce(json_extract(CAST(payload AS TEXT), '$.tenant_id'), 'default') = ?2)
    ORDER BY id DESC LIMIT ?3";

/// Weir's embedded state. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct SqliteState {
    path: PathBuf,
    durability: Durability,
    connection: Arc<Mutex<Connection>>,
    /// The metrics table, in a database of its own (see [`key_metrics`]).
    metrics: Arc<MetricsDb>,
    /// What the metric rows waiting in `pending_key_metrics` weigh (see
    /// `key_metrics::weight`).
    pending_metrics: Arc<AtomicUsize>,
    /// Wakes the thread that moves them (see [`spawn_flusher`]).
    flusher: SyncSender<()>,
}

fn db_error(what: &str, path: &Path, e: rusqlite::Error) -> BackendError {
    let retryable = matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    let what = format!("{what} in {}", path.display());
    if retryable {
        BackendError::retryable(what, e)
    } else {
        BackendError::permanent(what, e)
    }
}

impl SqliteState {
    /// Opens (or creates) the database at `path`, durable on disk.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, BackendError> {
        Self::open_with(path, Durability::Disk)
    }

    pub fn open_with(
        path: impl Into<PathBuf>,
        durability: Durability,
    ) -> Result<Self, BackendError> {
        let path = path.into();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| BackendError::permanent(format!("creating {}", dir.display()), e))?;
        }
        let mut connection =
            Connection::open(&path).map_err(|e| db_error("opening the database", &path, e))?;
        // WAL lets readers (weir dlq, the console) work while the pipeline
        // writes; FULL sync makes every commit durable before it returns.
        let synchronous = match durability {
            Durability::Disk => "FULL",
            Durability::Os => "NORMAL",
        };
        let connection_pragmas = |cache_kib: u32, checkpoint_pages: u32| {
            format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous};
                 PRAGMA busy_timeout = 5000; PRAGMA cache_size = -{cache_kib};
                 PRAGMA wal_autocheckpoint = {checkpoint_pages};"
            )
        };
        // A 16 MiB page cache (grown on demand): with SQLite's default
        // re-reading pages took much of the pipeline's time (measured with
        // `weir bench pipeline`). Its checkpoints run on a thread of their
        // own (see `checkpoints`, whose WAL hook then replaces the automatic
        // checkpoint; 0 turns that off until the hook is in place).
        let pragmas = connection_pragmas(16 << 10, 0);
        // The metrics table's index takes rows all over it at every flush:
        // 64 MiB of cache and of WAL between checkpoints, so a page flushed
        // often is read and copied into the database less often (one core,
        // 1,000,000 events: 52,500 → 66,000 records/s; 100,000: no change).
        let metrics_pragmas = connection_pragmas(64 << 10, 16000);
        connection
            .execute_batch(&pragmas)
            .and_then(|()| connection.execute_batch(SCHEMA))
            .and_then(|()| connection.execute_batch(key_metrics::PENDING_SCHEMA))
            .map_err(|e| db_error("preparing the schema", &path, e))?;
        checkpoints::start(
            &path,
            &mut connection,
            checkpoints::Thresholds::for_this_machine(),
        )
        .map_err(|e| match e {
            checkpoints::StartError::Open(e) => db_error("opening the database", &path, e),
            checkpoints::StartError::Thread(e) => {
                BackendError::permanent("starting the checkpoint thread", e)
            }
        })?;
        let metrics_path = MetricsDb::path_beside(&path);
        let metrics = MetricsDb::open(metrics_path.clone(), &metrics_pragmas, &mut connection)
            .map_err(|e| db_error("opening the metrics database", &metrics_path, e))?;
        let pending = key_metrics::pending(&connection)
            .map_err(|e| db_error("counting pending metrics", &path, e))?;
        let connection = Arc::new(Mutex::new(connection));
        let metrics = Arc::new(metrics);
        let pending_metrics = Arc::new(AtomicUsize::new(pending));
        let flusher =
            spawn_flusher(metrics.clone(), connection.clone(), pending_metrics.clone())
                .map_err(|e| BackendError::permanent("starting the metrics flush thread", e))?;
        Ok(Self {
            path,
            durability,
            connection,
            metrics,
            pending_metrics,
            flusher,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection (on tokio's blocking pool when commits
    /// wait for the disk: [`Durability::run_blocking`]).
    pub(crate) async fn with<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, BackendError> {
        let connection = self.connection.clone();
        let path = self.path.clone();
        self.durability
            .run_blocking(move || f(&mut lock(&connection)).map_err(|e| db_error(what, &path, e)))
            .await
            .map_err(|e| BackendError::retryable(what, e))?
    }

    /// Asks the flush thread to move the pending metric rows. The batch that
    /// filled the quota does not wait for it. (In one transaction: flushing 16
    /// batches at a time between the shards' commits cut the one-core p99
    /// from ~30 to ~16 ms but lost 5-10% of throughput.)
    fn flush_metrics_in_background(&self) {
        match self.flusher.try_send(()) {
            // Full: a flush is already asked for, and will find these rows.
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => tracing::warn!(
                database = %self.metrics.path().display(),
                "the metrics flush thread is gone; pending rows move at the next read"
            ),
        }
    }

    /// Runs `f` with the metrics database (and the state's connection, for
    /// the pending rows) on tokio's blocking pool.
    async fn with_metrics<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&MetricsDb, &Mutex<Connection>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, BackendError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            f(&state.metrics, &state.connection)
                .map_err(|e| db_error(what, state.metrics.path(), e))
        })
        .await
        .map_err(|e| BackendError::retryable(what, e))?
    }

    /// Dead letters matching the filter, oldest first, with their ids.
    pub async fn dead_letters(
        &self,
        filter: DeadLetterFilter,
    ) -> Result<Vec<(i64, DeadLetter)>, BackendError> {
        self.with("reading dead letters", move |c| {
            let mut statement = c.prepare(
                "SELECT id, payload, reason, kind, stage, plugin, shard_id, sequence_number, partition_key, failed_at
                 FROM dead_letters
                 WHERE (?1 IS NULL OR stage = ?1) AND (?2 IS NULL OR kind = ?2)
                   AND (?3 IS NULL OR shard_id = ?3) AND (?4 IS NULL OR instr(reason, ?4) > 0)
                   AND (?6 IS NULL OR id = ?6)
                 ORDER BY id LIMIT ?5",
            )?;
            let limit = filter.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
            let rows = statement.query_map(
                params![filter.stage, filter.kind, filter.shard_id, filter.reason_contains, limit, filter.id],
                dead_letter_row,
            )?;
            rows.collect()
        })
        .await
    }

    /// The newest dead letters of an event type (and of one tenant, whose
    /// records without `tenant_id` are `default`'s), newest first: what the
    /// console's live tail shows. Letters whose payload is not JSON belong to
    /// no event type and are not among them.
    pub async fn recent_dead_letters(
        &self,
        event_type: &str,
        tenant: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(i64, DeadLetter)>, BackendError> {
        let (event_type, tenant) = (event_type.to_owned(), tenant.map(str::to_owned));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with("reading recent dead letters", move |c| {
            let mut statement = c.prepare(RECENT_DEAD_LETTERS)?;
            let rows = statement.query_map(params![event_type, tenant, limit], dead_letter_row)?;
            rows.collect()
        })
        .await
    }

    /// Deletes dead letters by id (after a redrive put them back on the
    /// stream). Returns how many went.
    pub async fn delete_dead_letters(&self, ids: Vec<i64>) -> Result<usize, BackendError> {
        self.with("deleting dead letters", move |c| {
            let tx = c.transaction()?;
            let mut deleted = 0;
            {
                let mut delete = tx.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?;
                for id in &ids {
                    deleted += delete.execute(params![id])?;
                }
            }
            tx.commit()?;
            Ok(deleted)
        })
        .await
    }

    /// Moves every metric row waiting in `weir.db` into the metrics table
    /// now, after any background flush under way; returns how many batches'
    /// rows moved. (Rows move in the background every
    /// `key_metrics::FLUSH_AFTER` rows and before a read; the pipeline
    /// bench calls this so every batch's work is inside its measurement.)
    pub async fn flush_metrics(&self) -> Result<usize, BackendError> {
        let pending = self.pending_metrics.clone();
        self.with_metrics("moving pending metric rows", move |metrics, state| {
            move_pending(metrics, state, &pending)
        })
        .await
    }

    /// Deletes batch metadata and metrics rows whose TTL has passed
    /// (DynamoDB does this by itself; locally it is done on demand). Returns
    /// how many went.
    pub async fn purge_expired_metadata(&self, now_unix: i64) -> Result<usize, BackendError> {
        let batches = self
            .with("purging expired metadata", move |c| {
                c.execute(
                    "DELETE FROM batch_metadata WHERE ttl < ?1",
                    params![now_unix],
                )
            })
            .await?;
        let pending = self.pending_metrics.clone();
        let metrics = self
            .with_metrics("purging expired metrics", move |metrics, state| {
                move_pending(metrics, state, &pending)?;
                metrics.purge(now_unix)
            })
            .await?;
        Ok(batches + metrics)
    }
}

impl DeadLetterQueue for SqliteState {
    async fn send(&self, letters: Vec<DeadLetter>) -> Result<(), BackendError> {
        self.with("storing dead letters", move |c| {
            let tx = c.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO dead_letters
                     (payload, reason, kind, stage, plugin, shard_id, sequence_number, partition_key, failed_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?;
                for l in &letters {
                    insert.execute(params![
                        l.payload,
                        l.reason,
                        l.kind,
                        l.stage,
                        l.plugin,
                        l.shard_id,
                        l.sequence_number,
                        l.partition_key,
                        l.failed_at
                    ])?;
                }
            }
            tx.commit()
        })
        .await
    }
}

/// Starts the thread that moves pending metric rows into the metrics table
/// when woken; it ends when the last clone of the state is dropped.
///
/// It runs at a lower CPU priority (nice 10) than the batches. A flush is
/// tens of milliseconds of work; at equal priority the scheduler shares a
/// busy core evenly between it and the batch in flight: the one-core p99 of
/// batches was 5.1-6.0 ms, and 4.1-4.5 ms at nice 10, with the same
/// throughput (`weir bench pipeline`'s worker, 4 alternating runs; 1.2 ms
/// with no flush at all). On a contended core it still gets about a tenth of
/// it, all of an idle one, and a read moves whatever is left first. Where
/// lowering the priority is refused, it runs as is. A flush also yields the
/// core every 200 µs of its work (`key_metrics::Pace`): the scheduler would
/// otherwise let it run a whole tick, 4 ms, in the middle of a batch (p99
/// 4.2-4.4 → 1.5-1.7 ms).
fn spawn_flusher(
    metrics: Arc<MetricsDb>,
    state: Arc<Mutex<Connection>>,
    pending: Arc<AtomicUsize>,
) -> std::io::Result<SyncSender<()>> {
    // One request waiting is enough: the flush moves every row pending.
    let (wake, requests) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("weir-metrics".into())
        .spawn(move || {
            crate::lower_priority("metrics flush");
            while requests.recv().is_ok() {
                // The batches are recorded either way; rows that fail to move
                // wait for the next flush or read.
                if let Err(e) = move_pending(&metrics, &state, &pending) {
                    tracing::warn!(
                        database = %metrics.path().display(),
                        error = %e,
                        "moving pending metric rows failed; tried again after the next batches"
                    );
                }
            }
        })?;
    Ok(wake)
}

/// Moves the pending metric rows and takes their weight off the pending
/// count (more may have been appended meanwhile); returns how many batches'
/// rows moved.
fn move_pending(
    metrics: &MetricsDb,
    state: &Mutex<Connection>,
    pending: &AtomicUsize,
) -> rusqlite::Result<usize> {
    let moved = metrics.flush(state)?;
    let _ = pending.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
        Some(n.saturating_sub(moved.weight))
    });
    Ok(moved.batches)
}

fn json_list(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".to_owned())
}

/// A batch's object keys as stored. Its objects share their file name
/// (`{shard}-{first}-{last}.jsonl`, ~130 of a key's ~190 characters), so
/// it is stored once, with the keys' directories: a batch of 20 objects
/// takes ~1.3 KB instead of ~4 KB, and its row no longer spills out of its
/// page. Keys that do not share a name are stored as a list, as rows of
/// earlier versions were.
#[derive(Serialize, Deserialize)]
struct SharedFileName<'a> {
    #[serde(borrow)]
    file: Cow<'a, str>,
    #[serde(borrow)]
    dirs: Vec<Cow<'a, str>>,
}

fn object_keys_text(keys: &[String]) -> String {
    let split: Option<Vec<(&str, &str)>> = keys.iter().map(|k| k.rsplit_once('/')).collect();
    match split.as_deref() {
        Some(all @ [(_, file), rest @ ..]) if rest.iter().all(|(_, f)| f == file) => {
            let stored = SharedFileName {
                file: Cow::Borrowed(file),
                dirs: all.iter().map(|(dir, _)| Cow::Borrowed(*dir)).collect(),
            };
            serde_json::to_string(&stored).unwrap_or_else(|_| json_list(keys))
        }
        _ => json_list(keys),
    }
}

fn object_keys_of(text: String) -> Vec<String> {
    if !text.starts_with('{') {
        return parse_list(text);
    }
    match serde_json::from_str::<SharedFileName<'_>>(&text) {
        Ok(stored) => stored
            .dirs
            .iter()
            .map(|dir| format!("{dir}/{}", stored.file))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A dead letter and its id from a row of `SELECT id, payload, reason, kind,
/// stage, plugin, shard_id, sequence_number, partition_key, failed_at`.
fn dead_letter_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, DeadLetter)> {
    Ok((
        row.get(0)?,
        DeadLetter {
            payload: row.get(1)?,
            reason: row.get(2)?,
            kind: row.get(3)?,
            stage: row.get(4)?,
            plugin: row.get(5)?,
            shard_id: row.get(6)?,
            sequence_number: row.get(7)?,
            partition_key: row.get(8)?,
            failed_at: row.get(9)?,
        },
    ))
}

fn parse_list(text: String) -> Vec<String> {
    serde_json::from_str(&text).unwrap_or_default()
}

impl MetadataStore for SqliteState {
    async fn record_batch(
        &self,
        batch: &BatchMetadata,
        metrics: Vec<MinuteMetrics>,
    ) -> Result<(), BackendError> {
        self.record_batches(vec![(batch.clone(), metrics)]).await
    }

    /// One transaction for them all: one commit, and metrics never without
    /// their batch's entry.
    async fn record_batches(
        &self,
        batches: Vec<(BatchMetadata, Vec<MinuteMetrics>)>,
    ) -> Result<(), BackendError> {
        // Made before taking the lock, which the other shards wait on.
        let rows: Vec<_> = batches
            .into_iter()
            .map(|(b, metrics)| {
                let lists = (
                    json_list(&b.plugin_versions),
                    object_keys_text(&b.object_keys),
                );
                (b, lists, key_metrics::pending_rows(&metrics))
            })
            .collect();
        let pending = self.pending_metrics.clone();
        self.with("recording batch metadata", move |c| {
            let tx = c.transaction()?;
            let mut appended = 0; // the rows' weight (see `key_metrics::weight`)
            for (b, (plugin_versions, object_keys), rows) in &rows {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO batch_metadata
                     (batch_id, processed_at, shard_id, total_records, success_records, failed_records,
                      partitions_count, ttl, plugin_versions, object_keys)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?
                .execute(params![
                    b.batch_id,
                    b.processed_at,
                    b.shard_id,
                    b.total_records,
                    b.success_records,
                    b.failed_records,
                    b.partitions_count,
                    b.ttl,
                    plugin_versions,
                    object_keys
                ])?;
                // Appended now, moved into the metrics table with many other batches'.
                if let Some((rows, weight)) = rows {
                    key_metrics::append(&tx, &b.batch_id, rows)?;
                    appended += weight;
                }
            }
            tx.commit()?;
            Ok(appended > 0
                && pending.fetch_add(appended, Ordering::Relaxed) + appended
                    >= key_metrics::FLUSH_AFTER)
        })
        .await
        .map(|flush_due| {
            if flush_due {
                self.flush_metrics_in_background();
            }
        })
    }

    async fn batches_for_shard(
        &self,
        shard_id: &str,
        limit: usize,
    ) -> Result<Vec<BatchMetadata>, BackendError> {
        let shard_id = shard_id.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with("reading batch metadata", move |c| {
            let mut statement = c.prepare_cached(
                "SELECT batch_id, processed_at, shard_id, total_records, success_records, failed_records,
                        partitions_count, ttl, plugin_versions, object_keys
                 FROM batch_metadata WHERE shard_id = ?1 ORDER BY processed_at DESC LIMIT ?2",
            )?;
            let rows = statement.query_map(params![shard_id, limit], |row| {
                Ok(BatchMetadata {
                    batch_id: row.get(0)?,
                    processed_at: row.get(1)?,
                    shard_id: row.get(2)?,
                    total_records: row.get(3)?,
                    success_records: row.get(4)?,
                    failed_records: row.get(5)?,
                    partitions_count: row.get(6)?,
                    ttl: row.get(7)?,
                    plugin_versions: parse_list(row.get(8)?),
                    object_keys: object_keys_of(row.get(9)?),
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn minute_metrics(
        &self,
        partition_key: &str,
        limit: usize,
    ) -> Result<Vec<MinuteMetrics>, BackendError> {
        let partition_key = partition_key.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let pending = self.pending_metrics.clone();
        let rows = self
            .with_metrics("reading metrics", move |metrics, state| {
                move_pending(metrics, state, &pending)?;
                metrics.read(&partition_key, limit)
            })
            .await?;
        Ok(merge_minutes(rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The live tail's lookup walks its index, newest first, whatever the
    /// table holds: no scan of every payload, no sort.
    #[test]
    fn the_tails_dead_letter_lookup_uses_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let state = SqliteState::open_with(dir.path().join("weir.db"), Durability::Os).unwrap();
        let connection = lock(&state.connection);
        let mut plan = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {RECENT_DEAD_LETTERS}"))
            .unwrap();
        let steps: Vec<String> = plan
            .query_map(params!["transaction", "acme", 20], |row| row.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = steps.join("; ");
        assert!(
            plan.contains("USING INDEX dead_letters_by_event_type")
                && !plan.contains("TEMP B-TREE"),
            "{plan}"
        );
    }

    #[test]
    fn object_keys_sharing_a_file_name_store_it_once_and_read_back() {
        let keys: Vec<String> = [
            "raw/event_type=metric/year=2024/month=01/day=15/hour=10/shard-1-9.jsonl",
            "processed/event_type=metric/year=2024/month=01/day=15/hour=10/shard-1-9.jsonl",
        ]
        .map(String::from)
        .to_vec();
        let text = object_keys_text(&keys);
        assert_eq!(text.matches("shard-1-9.jsonl").count(), 1, "{text}");
        assert_eq!(object_keys_of(text), keys);

        for other in [
            vec!["raw/a/x.jsonl".to_owned(), "raw/b/y.jsonl".to_owned()],
            vec!["no-directory.jsonl".to_owned()],
            vec![],
        ] {
            let text = object_keys_text(&other);
            assert!(text.starts_with('['), "{text}");
            assert_eq!(object_keys_of(text), other);
        }
        // A row of an earlier version: a plain list.
        assert_eq!(
            object_keys_of(r#"["raw/a/x.jsonl"]"#.to_owned()),
            ["raw/a/x.jsonl"]
        );
    }
}
