//! `weir events` and `weir invoke`: the Lambda handlers on event files, as
//! `sam local invoke` runs them, through the real binary.

mod common;

use std::path::Path;

use common::{text, wasm, weir};
use serde_json::Value;

fn run_ok(args: &[&str]) -> String {
    let output = weir(args).output().unwrap();
    assert!(
        output.status.success(),
        "weir {args:?}: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn files(dir: &Path) -> usize {
    walk(dir).len()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

#[test]
fn kinesis_then_s3_events_run_both_stages_with_partial_batch_responses() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let kinesis_file = dir.path().join("kinesis.json");
    let event = run_ok(&["events", "kinesis", "--count", "25", "--poison"]);
    let parsed: Value = serde_json::from_str(&event).unwrap();
    assert_eq!(parsed["Records"].as_array().unwrap().len(), 28);
    std::fs::write(&kinesis_file, &event).unwrap();

    let response = run_ok(&[
        "invoke",
        "kinesis",
        "--event",
        kinesis_file.to_str().unwrap(),
        "--data-dir",
        data,
        "--two-stage",
    ]);
    let response: Value = serde_json::from_str(&response).unwrap();
    assert_eq!(
        response,
        serde_json::json!({"batchItemFailures": []}),
        "poison is dead-lettered, not reported"
    );
    let batches = run_ok(&["batches", "shardId-000000000000", "--data-dir", data]);
    let batch: Value = serde_json::from_str(batches.lines().next().unwrap()).unwrap();
    assert_eq!(
        (
            batch["total_records"].as_u64(),
            batch["failed_records"].as_u64()
        ),
        (Some(28), Some(3))
    );
    let key = parsed["Records"][0]["kinesis"]["partitionKey"]
        .as_str()
        .unwrap();
    let minutes = run_ok(&["metrics", key, "--data-dir", data]);
    let minute: Value = serde_json::from_str(minutes.lines().next().unwrap()).unwrap();
    assert!(minute["records"].as_u64().unwrap() >= 1, "{minutes}");
    assert_eq!(minute["partition_key"], key);
    let letters = run_ok(&["dlq", "list", "--data-dir", data]);
    assert_eq!(letters.lines().count(), 3, "{letters}");
    let objects = Path::new(data).join("objects");
    assert_eq!(
        files(&objects.join("processed")),
        0,
        "two-stage: raw objects only"
    );
    let raw_objects = files(&objects.join("raw"));
    assert!(
        raw_objects >= 5,
        "one per event type and hour: {raw_objects}"
    );

    let s3_file = dir.path().join("s3.json");
    std::fs::write(&s3_file, run_ok(&["events", "s3", "--data-dir", data])).unwrap();
    let out: Value = serde_json::from_str(&run_ok(&[
        "invoke",
        "s3",
        "--event",
        s3_file.to_str().unwrap(),
        "--data-dir",
        data,
    ]))
    .unwrap();
    let transformed = out["transformed"].as_array().unwrap();
    assert_eq!(transformed.len(), raw_objects);
    let outputs: u64 = transformed
        .iter()
        .map(|t| t["outputs"].as_u64().unwrap())
        .sum();
    let dropped: u64 = transformed
        .iter()
        .map(|t| t["dropped"].as_u64().unwrap())
        .sum();
    let rejected: u64 = transformed
        .iter()
        .map(|t| t["dead_lettered"].as_u64().unwrap())
        .sum();
    assert!(
        outputs + dropped + rejected >= 25,
        "every good record enriched, dropped or rejected"
    );
    assert_eq!(files(&objects.join("processed")), raw_objects);

    // A notification delivered twice transforms into the same objects.
    run_ok(&[
        "invoke",
        "s3",
        "--event",
        s3_file.to_str().unwrap(),
        "--data-dir",
        data,
    ]);
    assert_eq!(files(&objects.join("processed")), raw_objects);
}

#[test]
fn a_file_that_is_not_an_event_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nonsense.json");
    std::fs::write(&file, r#"{"Records": [{"kinesis": 5}]}"#).unwrap();
    let data = dir.path().join("data");
    let output = weir(&[
        "invoke",
        "kinesis",
        "--event",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("nonsense.json is not a Lambda event"),
        "{stderr}"
    );

    let output = weir(&["events", "s3", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        text(&output.stderr).contains("no raw objects"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn each_batch_logs_json_in_its_span_with_shard_sequence_range_and_plugin_versions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let event_file = dir.path().join("kinesis.json");
    std::fs::write(&event_file, run_ok(&["events", "kinesis", "--count", "10"])).unwrap();
    let output = weir(&[
        "invoke",
        "kinesis",
        "--event",
        event_file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--log-format",
        "json",
    ])
    .env("WEIR_LOG", "info")
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    let done: Value = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["fields"]["message"] == "batch done")
        .unwrap_or_else(|| panic!("no JSON `batch done` line in\n{stderr}"));
    assert_eq!(done["level"], "INFO");
    assert_eq!(done["fields"]["records"], 10);
    assert!(
        done["fields"]["plugin_versions"]
            .as_str()
            .unwrap()
            .contains("@1.0.0"),
        "{done}"
    );
    let span = &done["span"];
    assert_eq!(span["name"], "batch");
    assert_eq!(span["shard_id"], "shardId-000000000000");
    assert!(
        span["first_sequence"].is_string() && span["last_sequence"].is_string(),
        "{done}"
    );
    assert!(
        span["batch_id"]
            .as_str()
            .unwrap()
            .starts_with("shardId-000000000000-"),
        "{done}"
    );
}

#[test]
fn invoke_follows_the_registrys_activations_as_the_deployed_function_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    run_ok(&["registry", "add", &wasm("hostile"), "--data-dir", data]);
    run_ok(&[
        "registry",
        "activate",
        "hostile@6.6.6",
        "--event-type",
        "hostile",
        "--data-dir",
        data,
    ]);
    let hostile = |attack: &str| {
        let event = format!(
            r#"{{"event_type":"hostile","timestamp":"2024-01-15T10:30:00Z","attack":"{attack}"}}"#
        );
        ("pk".to_owned(), event.into_bytes())
    };
    let event = weir_lambda::samples::kinesis_event(
        "arn:aws:kinesis:us-east-1:123456789012:stream/weir-events",
        "shardId-000000000000",
        &[hostile("drop"), hostile("none"), hostile("drop")],
        1,
        chrono::Utc::now(),
    );
    let file = dir.path().join("kinesis.json");
    std::fs::write(&file, event.to_string()).unwrap();

    let output = weir(&[
        "invoke",
        "kinesis",
        "--event",
        file.to_str().unwrap(),
        "--data-dir",
        data,
    ])
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let summary: Value = text(&output.stderr)
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("a batch summary");
    // Unbound, `hostile` events pass through; bound, the plugin drops two.
    assert_eq!(summary["dropped"], 2, "{summary}");
    assert_eq!(
        summary["plugins"],
        serde_json::json!(["hostile@6.6.6"]),
        "{summary}"
    );
}
