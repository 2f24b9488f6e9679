//! The `weir` command on AWS, against moto: provision the resources, produce
//! onto Kinesis, serve into S3 with DynamoDB checkpoints.

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::text;
use weir_aws::{AwsBackends, AwsClients, AwsSettings, provision};
use weir_core::backend::{DeadLetter, DeadLetterQueue, ObjectStore};
use weir_core::stream::{StartingPosition, StreamSource};
use weir_testkit::build::shared_cache_dir;
use weir_testkit::moto;

/// `weir` pointed at moto, with the resources of `settings`.
fn weir_aws(args: &[&str], settings: &AwsSettings) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .args(args)
        .args(["--aws-stream", &settings.stream])
        .args(["--raw-bucket", &settings.raw_bucket])
        .args(["--processed-bucket", &settings.processed_bucket])
        .args(["--metadata-table", &settings.metadata_table])
        .args(["--metrics-table", &settings.metrics_table])
        .args(["--checkpoints-table", &settings.checkpoints_table])
        .args(["--dead-letter-queue", &settings.dead_letter_queue])
        .args(["--registry-table", &settings.registry_table])
        .env("WEIR_CACHE_DIR", shared_cache_dir())
        .env("AWS_ENDPOINT_URL", moto::endpoint())
        .env("AWS_ACCESS_KEY_ID", "weir")
        .env("AWS_SECRET_ACCESS_KEY", "weir")
        .env("AWS_REGION", "us-east-1");
    command
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stderr)
}

fn interrupt(child: Child) -> String {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    ok(child.wait_with_output().unwrap())
}

#[test]
fn provision_produce_and_serve_on_kinesis_s3_dynamodb_and_sqs() {
    let settings = AwsSettings::with_prefix(&moto::unique_prefix());
    let stderr = ok(weir_aws(&["aws", "provision", "--shards", "2"], &settings)
        .output()
        .unwrap());
    assert!(stderr.contains("ready: stream"), "{stderr}");

    let produce = |count: &str| {
        let args = [
            "produce",
            "--backend",
            "aws",
            "--rate",
            "0",
            "--count",
            count,
            "--batch-size",
            "25",
        ];
        let stderr = ok(weir_aws(&args, &settings).output().unwrap());
        assert!(stderr.contains(&format!("{count} sent")), "{stderr}");
    };
    produce("60");

    let tokio = tokio::runtime::Runtime::new().unwrap();
    let clients = tokio.block_on(AwsClients::for_local_endpoint(&moto::endpoint()));
    let objects = weir_aws::S3ObjectStore::new(
        clients.s3.clone(),
        &settings.raw_bucket,
        &settings.processed_bucket,
        weir_aws::Encryption::BucketDefault,
    );
    let processed = || -> usize {
        tokio.block_on(async {
            let mut lines = 0;
            for key in objects.list("processed/").await.unwrap() {
                let body = objects.get(&key).await.unwrap().unwrap_or_default();
                lines += body
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .count();
            }
            lines
        })
    };
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(90);
        while processed() < n {
            assert!(Instant::now() < deadline, "served {} of {n}", processed());
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let serve = || {
        let args = [
            "serve",
            "--backend",
            "aws",
            "--batching-window-ms",
            "100",
            "--consumer",
            "weir-test",
        ];
        weir_aws(&args, &settings)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    let child = serve();
    wait_for(60);
    let stderr = interrupt(child);
    assert!(stderr.contains("60 records"), "{stderr}");

    // Restarted, it resumes from the checkpoints in DynamoDB.
    produce("15");
    let child = serve();
    wait_for(75);
    let stderr = interrupt(child);
    assert!(stderr.contains("15 records"), "{stderr}");
    assert_eq!(processed(), 75, "nothing processed twice");

    // The tables read back from DynamoDB: every record in some shard's
    // batches, and a partition key's minutes.
    let lines = |args: &[&str]| -> Vec<serde_json::Value> {
        let output = weir_aws(args, &settings).output().unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };
    let mut recorded = 0;
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        for batch in lines(&["batches", shard, "--backend", "aws", "--limit", "1000"]) {
            assert_eq!(batch["shard_id"], shard);
            recorded += batch["total_records"].as_u64().unwrap();
        }
    }
    assert_eq!(recorded, 75);
    let scanned = tokio.block_on(
        clients
            .dynamodb
            .scan()
            .table_name(&settings.metrics_table)
            .limit(1)
            .send(),
    );
    let scanned = scanned.unwrap();
    let key = scanned.items()[0]["partition_key"].as_s().unwrap();
    let minutes = lines(&["metrics", key, "--backend", "aws"]);
    assert!(!minutes.is_empty());
    for minute in &minutes {
        assert_eq!(minute["partition_key"], key.as_str());
        assert!(minute["records"].as_u64().unwrap() > 0, "{minute}");
    }
}

#[test]
fn the_local_loop_provisions_puts_processes_and_reads_back_like_the_seeds() {
    let settings = AwsSettings::with_prefix(&moto::unique_prefix());
    let output = weir_aws(
        &["aws", "loop", "--shards", "2", "--records", "30"],
        &settings,
    )
    .output()
    .unwrap();
    ok(output.clone());
    let stdout = text(&output.stdout);
    for step in [
        "1. create the resources",
        "2. put-record",
        "\"SequenceNumber\"",
        "3. put-records (30)",
        "5. s3 ls",
        "6. dynamodb scan",
        "7. dead-letter queue",
    ] {
        assert!(stdout.contains(step), "no `{step}` in\n{stdout}");
    }
    assert!(stdout.contains("ok: 31 records put"), "{stdout}");
    assert!(
        stdout.contains("processed/event_type=") && stdout.contains("(new)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("0 dead-lettered"),
        "the seeds' events all pass: {stdout}"
    );
    assert!(stdout.contains("   batch shardId-"), "{stdout}");
    // Run again on the same resources: it provisions nothing new and reads
    // only what it put this time (from its checkpoints).
    let again = weir_aws(&["aws", "loop", "--records", "5"], &settings)
        .output()
        .unwrap();
    ok(again.clone());
    assert!(
        text(&again.stdout).contains("ok: 6 records put"),
        "{}",
        text(&again.stdout)
    );
}

fn letter(kind: &str, payload: &str, partition_key: &str) -> DeadLetter {
    DeadLetter {
        payload: payload.as_bytes().to_vec(),
        reason: format!("{kind} on purpose"),
        kind: kind.into(),
        stage: "enrich".into(),
        plugin: Some("transaction@1.0.0".into()),
        shard_id: "shardId-000000000000".into(),
        sequence_number: "42".into(),
        partition_key: partition_key.into(),
        failed_at: "2026-11-25T04:00:00Z".into(),
    }
}

#[test]
fn dlq_lists_shows_and_redrives_the_letters_of_the_sqs_queue_onto_kinesis() {
    let settings = AwsSettings::with_prefix(&moto::unique_prefix());
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let backends = tokio.block_on(async {
        let clients = AwsClients::for_local_endpoint(&moto::endpoint()).await;
        provision::create_all(&clients, &settings, 1).await.unwrap();
        let backends = AwsBackends::connect(&clients, &settings).await.unwrap();
        let letters = vec![
            letter(
                "cpu-limit",
                r#"{"event_type":"transaction","n":1}"#,
                "user-1",
            ),
            letter("not-json", "{oops", "user-2"),
            letter(
                "cpu-limit",
                r#"{"event_type":"transaction","n":2}"#,
                "user-3",
            ),
        ];
        backends.dead_letters.send(letters).await.unwrap();
        backends
    });
    let dlq = |args: &[&str]| {
        let mut all = vec!["dlq"];
        all.extend_from_slice(args);
        all.extend(["--backend", "aws"]);
        weir_aws(&all, &settings).output().unwrap()
    };
    let listed = |output: Output| -> Vec<serde_json::Value> {
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };

    let letters = listed(dlq(&["list"]));
    assert_eq!(letters.len(), 3, "{letters:?}");
    let not_json = letters.iter().find(|l| l["kind"] == "not-json").unwrap();
    let shown = dlq(&["show", not_json["id"].as_str().unwrap()]);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let shown: serde_json::Value = serde_json::from_str(&text(&shown.stdout)).unwrap();
    assert_eq!(shown["payload"], serde_json::json!({"text": "{oops"}));
    assert_eq!(listed(dlq(&["list", "--kind", "cpu-limit"])).len(), 2);

    let unnarrowed = dlq(&["redrive"]);
    assert!(!unnarrowed.status.success());
    assert!(
        text(&unnarrowed.stderr).contains("or say --all"),
        "{}",
        text(&unnarrowed.stderr)
    );
    let redriven = dlq(&["redrive", "--kind", "cpu-limit"]);
    assert!(redriven.status.success(), "{}", text(&redriven.stderr));
    assert!(
        text(&redriven.stderr).contains("redrove 2 dead letter(s)"),
        "{}",
        text(&redriven.stderr)
    );

    // What is left is the letter not chosen; the chosen are on the stream,
    // with their partition keys.
    let left = listed(dlq(&["list"]));
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["kind"], "not-json");
    let on_stream = tokio.block_on(async {
        let shards = backends.stream.shards().await.unwrap();
        let read = backends
            .stream
            .read(&shards[0], &StartingPosition::TrimHorizon, 100)
            .await
            .unwrap();
        let mut records: Vec<(String, String)> = read
            .records
            .into_iter()
            .map(|r| (r.partition_key, String::from_utf8(r.data).unwrap()))
            .collect();
        records.sort();
        records
    });
    assert_eq!(
        on_stream,
        [
            (
                "user-1".to_owned(),
                r#"{"event_type":"transaction","n":1}"#.to_owned()
            ),
            (
                "user-3".to_owned(),
                r#"{"event_type":"transaction","n":2}"#.to_owned()
            ),
        ]
    );
}
