//! The pipeline commands (`weir demo|produce|serve|dlq`), driven as a user
//! would, on the embedded backends with the real compiled plugins.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{Demo, text, weir};
use serde_json::Value;

#[test]
fn the_demo_runs_the_pipeline_and_accounts_for_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("demo");
    let demo = Demo::run(3000, &data_dir);
    let count = |label: &str| demo.count(label);
    let stdout = &demo.stdout;
    let (records, enriched, passed, dropped, dead) = (
        count("records in"),
        count("written (enriched)"),
        count("passed through"),
        count("dropped by plugins"),
        count("dead-lettered"),
    );
    assert_eq!(records, 3000);
    assert_eq!(enriched + passed + dropped + dead, records, "{stdout}");
    assert!(
        dead > 0 && passed > 0,
        "the demo shows dead letters and pass-through: {stdout}"
    );
    // Its throughput says what it includes: durable by default.
    assert!(
        stdout.contains("fsynced before its checkpoint moved"),
        "{stdout}"
    );

    // The processed objects hold exactly the written records, partitioned Hive-style.
    let processed = data_dir.join("objects/processed");
    let mut lines = 0;
    let mut acme_checked = (false, false);
    let mut stack = vec![processed];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let key = path.to_string_lossy().into_owned();
            assert!(
                key.contains("/event_type=") && key.contains("/year=2024/month=01/day=15/hour="),
                "{key}"
            );
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                lines += 1;
                let v: Value = serde_json::from_str(line).unwrap();
                let data = &v["enriched_data"];
                // Tenant acme has its own binding: high value from 500, not 1,000.
                if data["event_type"] == "transaction" {
                    let amount = data["amount"].as_f64().unwrap();
                    if amount > 500.0 && amount <= 1000.0 {
                        let acme = data["tenant_id"] == "acme";
                        assert_eq!(data["is_high_value"], acme, "{line}");
                        if acme {
                            acme_checked.0 = true
                        } else {
                            acme_checked.1 = true
                        }
                    }
                }
            }
        }
    }
    assert_eq!(lines, enriched + passed);
    assert_eq!(
        acme_checked,
        (true, true),
        "mid-range transactions of both tenants were seen"
    );
    assert!(data_dir.join("state/weir.db").exists());
}

#[test]
fn produce_retries_throttled_records_until_every_one_is_on_the_stream() {
    use weir_core::stream::{StartingPosition, StreamSource};
    use weir_embedded::{EmbeddedStream, SqliteState, StreamSettings};

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    // One shard takes 1,000 records a second; 2,500 as fast as possible must be throttled.
    let args = [
        "produce",
        "--data-dir",
        data_dir,
        "--stream",
        "stress",
        "--shards",
        "1",
        "--rate",
        "0",
        "--count",
        "2500",
        "--batch-size",
        "500",
        "--duration",
        "60",
        "--types",
        "transaction,metric",
        "--tenants",
        "acme",
    ];
    let output = weir(&args).output().unwrap();
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("2500 sent"), "{stderr}");
    let throttled: u64 = stderr
        .split(" throttled (")
        .next()
        .and_then(|s| s.rsplit(", ").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no throttled count in {stderr}"));
    assert!(throttled > 0, "{stderr}");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let state = SqliteState::open(dir.path().join("state/weir.db")).unwrap();
        let stream = EmbeddedStream::open(
            state,
            StreamSettings {
                shard_count: 1,
                ..StreamSettings::new("stress")
            },
        )
        .await
        .unwrap();
        let read = stream
            .read(
                "shardId-000000000000",
                &StartingPosition::TrimHorizon,
                10_000,
            )
            .await
            .unwrap();
        assert_eq!(
            read.records.len(),
            2500,
            "every record once: none lost, none duplicated"
        );
        for record in &read.records {
            let event: Value = serde_json::from_slice(&record.data).unwrap();
            assert_eq!(event["tenant_id"], "acme");
            assert!(["transaction", "metric"].contains(&event["event_type"].as_str().unwrap()));
        }
    });
}

#[test]
fn produce_refuses_unknown_event_types() {
    let dir = tempfile::tempdir().unwrap();
    let output = weir(&[
        "produce",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--types",
        "bogus",
    ])
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("unknown event type `bogus`"),
        "{}",
        text(&output.stderr)
    );
}

/// `GET /metrics` from a running service, retried until it answers with
/// `needle` (metrics are counted just after a batch's output is durable).
fn scrape(address: &str, needle: &str) -> String {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(address) {
            let request =
                format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(answer.contains("text/plain; version=0.0.4"), "{answer}");
            if answer.contains(needle) {
                return answer;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no `{needle}` in {answer}"
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no metrics at {address}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn serve_processes_what_is_produced_stops_on_ctrl_c_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let start_serve = |extra: &[&str]| {
        weir(&[
            "serve",
            "--data-dir",
            &data_dir,
            "--batching-window-ms",
            "100",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let count_processed = || -> usize {
        let mut n = 0;
        let mut stack = vec![dir.path().join("objects/processed")];
        while let Some(path) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    n += std::fs::read_to_string(&path)
                        .unwrap_or_default()
                        .lines()
                        .count();
                }
            }
        }
        n
    };
    let wait_for = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while count_processed() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "serve processed {} of {n}",
                count_processed()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let interrupt = |child: std::process::Child| -> String {
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stderr)
    };
    let produce = |count: &str| {
        let args = [
            "produce",
            "--data-dir",
            &data_dir,
            "--rate",
            "0",
            "--count",
            count,
            "--batch-size",
            "100",
        ];
        let output = weir(&args).output().unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
    };

    let serve = start_serve(&[]);
    produce("150");
    wait_for(150);
    let stderr = interrupt(serve);
    assert!(
        stderr.contains("served") && stderr.contains("150 records"),
        "{stderr}"
    );

    // Restarted, it resumes from its checkpoints: only the new records. And
    // it serves its metrics.
    produce("40");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_address = format!("127.0.0.1:{port}");
    let serve = start_serve(&["--metrics-listen", &metrics_address]);
    wait_for(190);
    let metrics = scrape(&metrics_address, "\nweir_records_in_total 40\n");
    assert!(
        metrics.contains("weir_plugin_invocations_total{plugin=\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_batch_duration_seconds{quantile=\"0.95\"}"),
        "{metrics}"
    );
    let stderr = interrupt(serve);
    assert!(stderr.contains("40 records"), "{stderr}");
    assert_eq!(count_processed(), 190, "nothing processed twice");
}

#[test]
fn dlq_lists_shows_and_redrives_dead_letters_back_onto_the_stream() {
    use weir_core::stream::{StartingPosition, StreamSource};
    use weir_embedded::{EmbeddedStream, SqliteState, StreamSettings};

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    Demo::run(500, dir.path());

    let list = weir(&[
        "dlq",
        "list",
        "--data-dir",
        data_dir,
        "--kind",
        "missing-field",
    ])
    .output()
    .unwrap();
    assert!(list.status.success(), "{}", text(&list.stderr));
    let letters: Vec<Value> = text(&list.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 5, "one broken transaction in a hundred");
    let first = &letters[0];
    assert_eq!(first["stage"], "intake");
    assert!(
        first["reason"].as_str().unwrap().contains("`amount`"),
        "{first}"
    );
    assert!(
        first["payload"]["text"]
            .as_str()
            .unwrap()
            .contains("\"transaction\""),
        "{first}"
    );

    let id = first["id"].as_i64().unwrap().to_string();
    let show = weir(&["dlq", "show", "--data-dir", data_dir, &id])
        .output()
        .unwrap();
    let shown: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(&shown, first);
    let missing = weir(&["dlq", "show", "--data-dir", data_dir, "999999"])
        .output()
        .unwrap();
    assert!(text(&missing.stderr).contains("no dead letter with id 999999"));
    let not_an_id = weir(&["dlq", "show", "--data-dir", data_dir, "abc"])
        .output()
        .unwrap();
    assert!(
        text(&not_an_id.stderr).contains("ids here are numbers"),
        "{}",
        text(&not_an_id.stderr)
    );

    let unfiltered = weir(&["dlq", "redrive", "--data-dir", data_dir, "--stream", "demo"])
        .output()
        .unwrap();
    assert_eq!(unfiltered.status.code(), Some(2));
    assert!(
        text(&unfiltered.stderr).contains("--all"),
        "{}",
        text(&unfiltered.stderr)
    );

    let args = [
        "dlq",
        "redrive",
        "--data-dir",
        data_dir,
        "--stream",
        "demo",
        "--kind",
        "missing-field",
    ];
    let redrive = weir(&args).output().unwrap();
    assert!(
        text(&redrive.stderr).contains("redrove 5 dead letter(s)"),
        "{}",
        text(&redrive.stderr)
    );
    let after = weir(&["dlq", "list", "--data-dir", data_dir])
        .output()
        .unwrap();
    assert_eq!(text(&after.stdout).lines().count(), 0);

    // The payloads are back on the stream, after the demo's 500 records.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let total = runtime.block_on(async {
        let state = SqliteState::open(dir.path().join("state/weir.db")).unwrap();
        let stream = EmbeddedStream::open(state, StreamSettings::new("demo"))
            .await
            .unwrap();
        let mut total = 0;
        for shard in stream.shards().await.unwrap() {
            total += stream
                .read(&shard, &StartingPosition::TrimHorizon, 10_000)
                .await
                .unwrap()
                .records
                .len();
        }
        total
    });
    assert_eq!(total, 505);
}

/// A Python with DuckDB (PyPI `duckdb`).
fn python_with_duckdb() -> PathBuf {
    weir_testkit::python::python_with("duckdb", "duckdb")
}

#[test]
fn the_output_reads_back_as_a_table_in_duckdb_with_partition_columns() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("demo");
    let demo = Demo::run(1000, &data_dir);
    let written = demo.count("written (enriched)") + demo.count("passed through");

    let script = r#"
import duckdb, json, sys
glob = sys.argv[1] + "/objects/processed/**/*.jsonl"
con = duckdb.connect()
rows = con.execute(f"""
    SELECT event_type, CAST(year AS INTEGER), CAST(month AS INTEGER), CAST(day AS INTEGER),
           CAST(hour AS INTEGER), count(*), count(DISTINCT record_id)
    FROM read_json_auto('{glob}', hive_partitioning = true)
    GROUP BY ALL ORDER BY ALL""").fetchall()
transactions = sys.argv[1] + "/objects/processed/event_type=transaction/**/*.jsonl"
amounts = con.execute(f"""
    SELECT count(*) FROM read_json_auto('{transactions}', hive_partitioning = true)
    WHERE event_type = 'transaction' AND enriched_data.amount_category IS NOT NULL""").fetchone()[0]
print(json.dumps({"rows": rows, "categorised_transactions": amounts}))
"#;
    let python = python_with_duckdb();
    let out = Command::new(python)
        .args(["-c", script])
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = result["rows"].as_array().unwrap();
    let total: u64 = rows.iter().map(|r| r[5].as_u64().unwrap()).sum();
    assert_eq!(total, written, "every written record is a row: {rows:?}");
    for row in rows {
        assert_eq!(
            row[5], row[6],
            "record ids are unique within a partition: {row:?}"
        );
        assert_eq!(
            (row[1].as_u64(), row[2].as_u64(), row[3].as_u64()),
            (Some(2024), Some(1), Some(15)),
            "{row:?}"
        );
    }
    let types: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert!(
        types.contains("transaction")
            && types.contains("sensor_reading")
            && types.contains("page_view"),
        "{types:?}"
    );
    assert!(
        result["categorised_transactions"].as_u64().unwrap() > 0,
        "enriched fields are queryable"
    );
}
