//! The embedded backends, on real files and a real SQLite database.

use weir_core::backend::{
    BatchMetadata, DeadLetter, DeadLetterFilter, DeadLetterQueue, METADATA_TTL_SECONDS,
    MetadataStore, ObjectStore,
};
use weir_core::metrics::MinuteMetrics;
use weir_embedded::{Durability, LocalObjectStore, SqliteState};

/// Both durabilities: with fsync the work runs on the blocking pool, without
/// it inline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_round_trip_and_overwrite_atomically() {
    for durability in [Durability::Disk, Durability::Os] {
        objects_round_trip(durability).await;
    }
}

async fn objects_round_trip(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalObjectStore::open_with(dir.path().join("objects"), durability).unwrap();
    let key = "raw/event_type=metric/year=2024/month=01/day=15/hour=10/shard-1-5.jsonl";
    assert_eq!(store.get(key).await.unwrap(), None);
    store.put(key, b"{\"a\":1}\n".to_vec()).await.unwrap();
    store.put(key, b"{\"a\":2}\n".to_vec()).await.unwrap();
    assert_eq!(store.get(key).await.unwrap().unwrap(), b"{\"a\":2}\n");
    store
        .put_all(vec![
            ("processed/x/y.jsonl".into(), b"z".to_vec()),
            (key.into(), b"{\"a\":3}\n".to_vec()),
        ])
        .await
        .unwrap();
    assert_eq!(store.get(key).await.unwrap().unwrap(), b"{\"a\":3}\n");

    assert_eq!(store.list("raw/").await.unwrap(), vec![key.to_owned()]);
    assert_eq!(store.list("").await.unwrap().len(), 2);
    assert_eq!(
        store
            .list("raw/event_type=metric/year=2024")
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store.list("nothing/").await.unwrap().is_empty());
    // No temporary files are left beside the object.
    let parent = dir
        .path()
        .join("objects")
        .join(key)
        .parent()
        .unwrap()
        .to_owned();
    assert_eq!(std::fs::read_dir(parent).unwrap().count(), 1);
}

#[tokio::test]
async fn keys_that_could_leave_the_root_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("objects");
    let store = LocalObjectStore::open(&root).unwrap();
    for key in [
        "../escape",
        "a/../../escape",
        "/etc/passwd",
        "a//b",
        "./a",
        "a/./b",
        "",
        "a\\..\\b",
        "a/",
    ] {
        let err = store.put(key, b"x".to_vec()).await.unwrap_err();
        assert!(!err.retryable, "{key:?}");
        assert!(err.to_string().contains("refused"), "{key:?}: {err}");
        assert!(store.get(key).await.is_err(), "{key:?}");
    }
    // Nothing was written anywhere under the temporary directory but the root.
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("objects")]);
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
}

fn letter(payload: &[u8], stage: &str, kind: &str, shard: &str) -> DeadLetter {
    DeadLetter {
        payload: payload.to_vec(),
        reason: format!("{kind} at {stage}"),
        kind: kind.to_owned(),
        stage: stage.to_owned(),
        plugin: (stage == "enrich").then(|| "transaction@1.0.0".to_owned()),
        shard_id: shard.to_owned(),
        sequence_number: "49590338271490256608559692538361571095921575989136588898".to_owned(),
        partition_key: "user-1".to_owned(),
        failed_at: "2024-01-15T10:31:00Z".to_owned(),
    }
}

#[tokio::test]
async fn dead_letters_keep_their_bytes_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("weir.db");
    let not_utf8 = [0xff, 0xfe, 0x00, 0x41];
    {
        let state = SqliteState::open(&path).unwrap();
        state
            .send(vec![
                letter(b"{not json", "intake", "not-json", "shard-1"),
                letter(&not_utf8, "intake", "not-utf8", "shard-2"),
                letter(b"{\"amount\":\"x\"}", "enrich", "invalid-field", "shard-1"),
            ])
            .await
            .unwrap();
    }
    let state = SqliteState::open(&path).unwrap();
    let all = state
        .dead_letters(DeadLetterFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[1].1.payload, not_utf8, "bytes kept exactly");
    let intake = DeadLetterFilter {
        stage: Some("intake".into()),
        ..Default::default()
    };
    assert_eq!(state.dead_letters(intake).await.unwrap().len(), 2);
    let shard = DeadLetterFilter {
        shard_id: Some("shard-1".into()),
        kind: Some("invalid-field".into()),
        ..Default::default()
    };
    let found = state.dead_letters(shard).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1.plugin.as_deref(), Some("transaction@1.0.0"));
    let by_reason = DeadLetterFilter {
        reason_contains: Some("not-utf8".into()),
        limit: Some(5),
        ..Default::default()
    };
    assert_eq!(state.dead_letters(by_reason).await.unwrap().len(), 1);

    // As JSON, text payloads stay readable and binary ones become base64.
    let json = serde_json::to_value(&all[1].1).unwrap();
    assert_eq!(json["payload"]["base64"], "//4AQQ==");
    let json = serde_json::to_value(&all[0].1).unwrap();
    assert_eq!(json["payload"]["text"], "{not json");
    let back: DeadLetter =
        serde_json::from_value(serde_json::to_value(&all[1].1).unwrap()).unwrap();
    assert_eq!(back, all[1].1);
}

fn batch(id: &str, shard: &str, processed_at: &str, ttl: i64) -> BatchMetadata {
    BatchMetadata {
        batch_id: id.to_owned(),
        processed_at: processed_at.to_owned(),
        shard_id: shard.to_owned(),
        total_records: 100,
        success_records: 97,
        failed_records: 3,
        partitions_count: 4,
        ttl,
        plugin_versions: vec!["transaction@1.0.0".into()],
        object_keys: vec!["processed/a.jsonl".into()],
    }
}

#[tokio::test]
async fn batch_metadata_is_queryable_by_shard_replaced_on_retry_and_expires() {
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteState::open(dir.path().join("weir.db")).unwrap();
    let now = 1_705_314_660;
    let ttl = now + METADATA_TTL_SECONDS;
    state
        .record_batch(&batch("b1", "shard-1", "2024-01-15T10:31:00Z", ttl), vec![])
        .await
        .unwrap();
    state
        .record_batch(&batch("b2", "shard-1", "2024-01-15T10:32:00Z", ttl), vec![])
        .await
        .unwrap();
    state
        .record_batch(
            &batch("b3", "shard-2", "2024-01-15T10:33:00Z", now - 1),
            vec![],
        )
        .await
        .unwrap();
    let mut retried = batch("b1", "shard-1", "2024-01-15T10:31:00Z", ttl);
    retried.success_records = 100;
    retried.failed_records = 0;
    state.record_batch(&retried, vec![]).await.unwrap();

    let shard1 = state.batches_for_shard("shard-1", 10).await.unwrap();
    assert_eq!(
        shard1
            .iter()
            .map(|b| b.batch_id.as_str())
            .collect::<Vec<_>>(),
        ["b2", "b1"],
        "newest first"
    );
    assert_eq!(shard1[1], retried, "a retried batch replaces its entry");
    assert_eq!(
        state.batches_for_shard("shard-1", 1).await.unwrap().len(),
        1
    );

    assert_eq!(state.purge_expired_metadata(now).await.unwrap(), 1);
    assert!(
        state
            .batches_for_shard("shard-2", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        state.batches_for_shard("shard-1", 10).await.unwrap().len(),
        2
    );
}

fn key_minute(batch_id: &str, key: &str, minute: &str, records: u64) -> MinuteMetrics {
    MinuteMetrics {
        partition_key: key.to_owned(),
        minute: minute.to_owned(),
        batch_id: batch_id.to_owned(),
        records,
        readings: Default::default(),
        ttl: i64::MAX,
    }
}

/// A partition key's newest ten minutes and their record counts, newest first.
async fn records_per_minute(state: &SqliteState, partition_key: &str) -> Vec<(String, u64)> {
    state
        .minute_metrics(partition_key, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.minute, m.records))
        .collect()
}

/// Metric rows wait in bulk before they reach the table readers use: across
/// several flushes, a retry of a batch already moved and of one still
/// waiting, a reopen with rows still waiting and a flush on demand, every
/// record counts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_rows_count_once_across_flushes_retries_and_a_reopen() {
    for durability in [Durability::Disk, Durability::Os] {
        metric_rows_count_once(durability).await;
    }
}

async fn metric_rows_count_once(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.db");
    let minutes = [
        "2024-01-15T10:30:00Z",
        "2024-01-15T10:31:00Z",
        "2024-01-15T10:32:00Z",
    ];
    let record = |state: SqliteState, i: usize| async move {
        let id = format!("b{i:03}");
        let rows = vec![
            key_minute(&id, "sensor-1", minutes[i % 3], 2),
            key_minute(&id, "sensor-2", minutes[0], 1),
        ];
        let metadata = batch(&id, "shard-1", "2024-01-15T10:33:00Z", i64::MAX);
        state.record_batch(&metadata, rows).await.unwrap();
    };
    let state = SqliteState::open_with(&path, durability).unwrap();
    for i in 0..300 {
        record(state.clone(), i).await;
        if i == 199 {
            // Below the background flush's threshold: this flush moves all.
            assert_eq!(state.flush_metrics().await.unwrap(), 200);
        }
    }
    // The first batch was moved by that flush, the last is still waiting.
    record(state.clone(), 0).await;
    record(state.clone(), 299).await;

    let expected = vec![
        (minutes[2].to_owned(), 200),
        (minutes[1].to_owned(), 200),
        (minutes[0].to_owned(), 200),
    ];
    assert_eq!(records_per_minute(&state, "sensor-1").await, expected);

    // Rows recorded after that read wait again; a reopened database still has them.
    for i in 300..310 {
        record(state.clone(), i).await;
    }
    drop(state);
    let reopened = SqliteState::open_with(&path, durability).unwrap();
    let sensor2 = records_per_minute(&reopened, "sensor-2").await;
    assert_eq!(sensor2, vec![(minutes[0].to_owned(), 310)]);
    let sensor1: u64 = records_per_minute(&reopened, "sensor-1")
        .await
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(sensor1, 620);

    // Rows waiting move on demand, each batch's once.
    for i in 310..315 {
        record(reopened.clone(), i).await;
    }
    assert_eq!(reopened.flush_metrics().await.unwrap(), 5);
    assert_eq!(reopened.flush_metrics().await.unwrap(), 0);
    let sensor2 = records_per_minute(&reopened, "sensor-2").await;
    assert_eq!(sensor2, vec![(minutes[0].to_owned(), 315)]);
}

/// Rows move in the background once 25,600 wait, however many batches hold
/// them, with nothing reading them; a batch counts as at least 100 rows, so
/// batches of a row or two move every 256 batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_metric_rows_move_by_themselves_once_enough_wait() {
    // 99 batches of 256 rows (25,344) or 255 batches of 2 (weighing 25,500)
    // wait; one more batch starts the move.
    for (rows_per_batch, batches_below) in [(256, 99), (2, 255)] {
        moves_after(rows_per_batch, batches_below).await;
    }
}

async fn moves_after(rows_per_batch: usize, batches_below: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.db");
    let state = SqliteState::open_with(&path, Durability::Os).unwrap();
    let waiting = || -> usize {
        rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM pending_key_metrics", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| usize::try_from(n).unwrap())
            .unwrap()
    };
    let record = |i: usize| {
        let id = format!("b{i:03}");
        let rows: Vec<_> = (0..rows_per_batch)
            .map(|k| key_minute(&id, &format!("sensor-{k}"), "2024-01-15T10:30:00Z", 1))
            .collect();
        let metadata = batch(&id, "shard-1", "2024-01-15T10:33:00Z", i64::MAX);
        let state = state.clone();
        async move { state.record_batch(&metadata, rows).await.unwrap() }
    };
    for i in 0..batches_below {
        record(i).await;
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(waiting(), batches_below, "below the threshold, rows wait");
    record(batches_below).await;
    let mut left = waiting();
    for _ in 0..500 {
        if left == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        left = waiting();
    }
    assert_eq!(left, 0, "the background flush moved every waiting batch");
    let total = u64::try_from(batches_below + 1).unwrap();
    assert_eq!(
        records_per_minute(&state, "sensor-1").await,
        [("2024-01-15T10:30:00Z".to_owned(), total)]
    );
}

/// A database of an earlier Weir kept its metric rows in `weir.db`, the batch
/// id on each: they move to `weir-metrics.db` once, batch by batch, so a retry
/// of a batch recorded before the move still replaces its rows; rows it left
/// pending, in its format, still count.
#[tokio::test]
async fn metrics_of_an_earlier_schema_move_to_their_own_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.db");
    let ten_thirty = "2024-01-15T10:30:00Z";
    let ten_thirty_one = "2024-01-15T10:31:00Z";
    {
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE key_metrics (
                 id INTEGER PRIMARY KEY, partition_key TEXT NOT NULL, minute TEXT NOT NULL,
                 batch_id TEXT NOT NULL, records INTEGER NOT NULL, readings TEXT NOT NULL,
                 ttl INTEGER NOT NULL);
             INSERT INTO key_metrics (partition_key, minute, batch_id, records, readings, ttl) VALUES
                 ('sensor-1', '2024-01-15T10:30:00Z', 'b1', 2,
                  '{\"temperature\":{\"count\":2,\"min\":20.0,\"max\":22.0,\"sum\":42.0}}', 9000000000),
                 ('sensor-1', '2024-01-15T10:31:00Z', 'b1', 1, '{}', 9000000000),
                 ('sensor-1', '2024-01-15T10:30:00Z', 'b2', 3,
                  '{\"temperature\":{\"count\":1,\"min\":25.0,\"max\":25.0,\"sum\":25.0}}', 9000000000);
             -- A batch still pending, in that version's format.
             CREATE TABLE pending_key_metrics (
                 id INTEGER PRIMARY KEY, batch_id TEXT NOT NULL, rows TEXT NOT NULL);
             INSERT INTO pending_key_metrics (batch_id, rows) VALUES ('b3',
                 '[{\"partition_key\":\"sensor-1\",\"minute\":\"2024-01-15T10:31:00Z\",\"batch_id\":\"b3\",
                    \"records\":2,\"readings\":{},\"ttl\":9000000000}]');
             -- And one in the next version's (one-letter names).
             INSERT INTO pending_key_metrics (batch_id, rows) VALUES ('b4',
                 '[{\"k\":\"sensor-1\",\"m\":\"2024-01-15T10:31:00Z\",\"n\":4,\"r\":{},\"t\":9000000000}]');",
        )
        .unwrap();
    }
    let state = SqliteState::open(&path).unwrap();
    let minutes = state.minute_metrics("sensor-1", 10).await.unwrap();
    let summary: Vec<(&str, u64)> = minutes
        .iter()
        .map(|m| (m.minute.as_str(), m.records))
        .collect();
    assert_eq!(summary, [(ten_thirty_one, 7), (ten_thirty, 5)]);
    let temperature = minutes[1].readings["temperature"];
    assert_eq!(
        (temperature.count, temperature.min, temperature.max),
        (3, 20.0, 25.0)
    );

    // b1 again, now with one row: both of its old rows go (b3's and b4's stay).
    state
        .record_batch(
            &batch("b1", "shard-1", ten_thirty, i64::MAX),
            vec![key_minute("b1", "sensor-1", ten_thirty, 4)],
        )
        .await
        .unwrap();
    assert_eq!(
        records_per_minute(&state, "sensor-1").await,
        [(ten_thirty_one.to_owned(), 6), (ten_thirty.to_owned(), 7)]
    );

    drop(state);
    let tables = schema_names(&path, "table", "%");
    assert!(!tables.contains(&"key_metrics".to_owned()), "{tables:?}");
    assert!(dir.path().join("weir-metrics.db").exists());
}

/// The thread that moves metric rows runs below the batches' CPU priority
/// (nice 10), so on a busy core a flush does not hold up the batch in flight.
#[cfg(target_os = "linux")]
#[test]
fn metric_rows_move_at_a_lower_cpu_priority() {
    let dir = tempfile::tempdir().unwrap();
    let _state = SqliteState::open_with(dir.path().join("weir.db"), Durability::Os).unwrap();
    // The thread lowers its priority as it starts.
    let mut nices = Vec::new();
    for _ in 0..200 {
        nices = metrics_thread_nices();
        if !nices.is_empty() && nices.iter().all(|&n| n == 10) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!nices.is_empty(), "no metrics thread found");
    assert!(nices.iter().all(|&n| n == 10), "nice values: {nices:?}");
}

/// The nice value of each `weir-metrics` thread of this process.
#[cfg(target_os = "linux")]
fn metrics_thread_nices() -> Vec<i64> {
    let mut nices = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else {
            continue; // the thread ended meanwhile
        };
        if comm.trim() != "weir-metrics" {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(task.join("stat")) else {
            continue;
        };
        // Fields after the command's closing parenthesis start at the third;
        // the nice value is the nineteenth (proc_pid_stat(5)).
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let nice = after_comm.split_whitespace().nth(19 - 3).unwrap();
        nices.push(nice.parse().unwrap());
    }
    nices
}

/// A metrics database of an earlier version (schema 2) has a row per key,
/// minute and batch, indexed by key and minute: that index gives way to the
/// key-only one, its rows still read beside the groups written since, and a
/// retry of one of its batches replaces that batch's rows.
#[tokio::test]
async fn an_earlier_metrics_schema_still_reads_and_its_batches_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.db");
    {
        let old = rusqlite::Connection::open(dir.path().join("weir-metrics.db")).unwrap();
        old.execute_batch(
            "CREATE TABLE metric_rows (
                 id INTEGER PRIMARY KEY, partition_key TEXT NOT NULL, minute TEXT NOT NULL,
                 records INTEGER NOT NULL, readings TEXT NOT NULL, ttl INTEGER NOT NULL);
             CREATE INDEX metric_rows_by_key ON metric_rows (partition_key, minute);
             CREATE TABLE metric_batches (
                 batch_id TEXT PRIMARY KEY, first_row INTEGER NOT NULL,
                 last_row INTEGER NOT NULL, ttl INTEGER NOT NULL);
             INSERT INTO metric_rows (partition_key, minute, records, readings, ttl) VALUES
                 ('sensor-1', '2024-01-15T10:30:00Z', 2, '{\"temperature\":21.5}', 9000000000),
                 ('sensor-1', '2024-01-15T10:31:00Z', 3, '{}', 9000000000);
             INSERT INTO metric_batches VALUES ('b1', 1, 2, 9000000000);",
        )
        .unwrap();
    }
    let state = SqliteState::open(&path).unwrap();
    assert_eq!(
        records_per_minute(&state, "sensor-1").await,
        vec![
            ("2024-01-15T10:31:00Z".to_owned(), 3),
            ("2024-01-15T10:30:00Z".to_owned(), 2)
        ]
    );
    let indexes = schema_names(&dir.path().join("weir-metrics.db"), "index", "metric_rows");
    assert_eq!(indexes, vec!["metric_rows_by_partition_key".to_owned()]);

    // A new batch goes into a group; b1 again, with one row, replaces both
    // of its schema-2 rows, and then its group entry on a second retry.
    let ten_thirty_two = "2024-01-15T10:32:00Z";
    for (id, records) in [("b2", 4), ("b1", 7), ("b1", 9)] {
        state
            .record_batch(
                &batch(id, "shard-1", ten_thirty_two, i64::MAX),
                vec![key_minute(id, "sensor-1", ten_thirty_two, records)],
            )
            .await
            .unwrap();
        state.flush_metrics().await.unwrap();
    }
    assert_eq!(
        records_per_minute(&state, "sensor-1").await,
        vec![(ten_thirty_two.to_owned(), 13)]
    );
}

/// The names of a database's tables or indexes (`kind`) on the tables
/// matching `table` (a `LIKE` pattern), in order.
fn schema_names(database: &std::path::Path, kind: &str, table: &str) -> Vec<String> {
    rusqlite::Connection::open(database)
        .unwrap()
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = ?1 AND tbl_name LIKE ?2 ORDER BY name",
        )
        .unwrap()
        .query_map([kind, table], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}
