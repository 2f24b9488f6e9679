//! The AWS backends against a real AWS-compatible server (moto): every seam
//! the pipeline uses, then the pipeline itself on them.

mod common;

use std::collections::HashMap;

use weir_aws::{
    AwsBackends, AwsClients, AwsSettings, MULTIPART_THRESHOLD, Scan, ScanRequest, provision,
};
use weir_core::backend::{
    BatchMetadata, DeadLetter, DeadLetterFilter, DeadLetterQueue, MetadataStore, ObjectStore,
};
use weir_core::metrics::{MinuteMetrics, Reading};
use weir_core::stream::{
    PutRecord, PutResult, SequenceNumber, StartingPosition, StreamSink, StreamSource,
};
use weir_testkit::moto;

struct Aws {
    clients: AwsClients,
    settings: AwsSettings,
    backends: AwsBackends,
}

async fn aws() -> Aws {
    let clients = AwsClients::for_local_endpoint(&moto::endpoint()).await;
    let settings = AwsSettings::with_prefix(&moto::unique_prefix());
    provision::create_all(&clients, &settings, 2).await.unwrap();
    // Twice: provisioning what exists is a no-op.
    provision::create_all(&clients, &settings, 2).await.unwrap();
    let backends = AwsBackends::connect(&clients, &settings).await.unwrap();
    Aws {
        clients,
        settings,
        backends,
    }
}

async fn bucket_keys(aws: &Aws, bucket: &str) -> Vec<String> {
    let out = aws
        .clients
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn objects_go_to_their_stage_bucket_whole_and_large_ones_in_parts() {
    let aws = aws().await;
    let objects = &aws.backends.objects;
    let raw =
        "raw/event_type=metric/year=2024/month=01/day=15/hour=10/shardId-000000000000-1-2.jsonl";
    let processed = raw.replacen("raw/", "processed/", 1);
    objects
        .put_all(vec![
            (raw.into(), b"{\"a\":1}\n".to_vec()),
            (processed.clone(), b"{\"b\":2}\n".to_vec()),
        ])
        .await
        .unwrap();
    assert_eq!(bucket_keys(&aws, &aws.settings.raw_bucket).await, [raw]);
    assert_eq!(
        bucket_keys(&aws, &aws.settings.processed_bucket).await,
        vec![processed.clone()]
    );
    assert_eq!(objects.get(raw).await.unwrap().unwrap(), b"{\"a\":1}\n");
    assert_eq!(
        objects.list("processed/").await.unwrap(),
        vec![processed.clone()]
    );
    assert_eq!(objects.list("").await.unwrap().len(), 2);
    assert_eq!(objects.get("raw/missing.jsonl").await.unwrap(), None);

    let large: Vec<u8> = (0..MULTIPART_THRESHOLD + (3 << 20))
        .map(|i| (i % 251) as u8)
        .collect();
    let key = "processed/event_type=x/year=2024/month=01/day=15/hour=10/big-1-2.jsonl";
    objects.put(key, large.clone()).await.unwrap();
    assert!(
        objects.get(key).await.unwrap().unwrap() == large,
        "multipart upload reads back whole"
    );

    objects.delete(raw).await.unwrap();
    objects.delete(raw).await.unwrap();
    assert_eq!(objects.get(raw).await.unwrap(), None);

    // More objects than go up at once (a service catching up): all of them.
    let many: Vec<(String, Vec<u8>)> = (0..150)
        .map(|i| {
            let key =
                format!("raw/event_type=many/year=2024/month=01/day=15/hour=10/s-{i}-{i}.jsonl");
            (key, format!("{{\"i\":{i}}}\n").into_bytes())
        })
        .collect();
    objects.put_all(many.clone()).await.unwrap();
    assert_eq!(
        objects.list("raw/event_type=many/").await.unwrap().len(),
        150
    );
    for (key, body) in [&many[0], &many[77], &many[149]] {
        assert_eq!(&objects.get(key).await.unwrap().unwrap(), body);
    }
}

fn batch(id: &str, shard: &str, at: &str, total: u32) -> BatchMetadata {
    BatchMetadata {
        batch_id: id.into(),
        processed_at: at.into(),
        shard_id: shard.into(),
        total_records: total,
        success_records: total - 1,
        failed_records: 1,
        partitions_count: 2,
        ttl: 1_800_000_000,
        plugin_versions: vec!["transaction@1.0.0".into()],
        object_keys: vec!["raw/a.jsonl".into(), "processed/a.jsonl".into()],
    }
}

fn minute(key: &str, minute: &str, batch: &str, values: &[f64]) -> MinuteMetrics {
    let reading = Reading {
        count: values.len() as u64,
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        sum: values.iter().sum(),
    };
    MinuteMetrics {
        partition_key: key.into(),
        minute: minute.into(),
        batch_id: batch.into(),
        records: values.len() as u64,
        readings: [("temperature".to_owned(), reading)].into(),
        ttl: 1_800_000_000,
    }
}

#[tokio::test]
async fn batch_metadata_is_queryable_by_shard_and_metrics_merge_per_minute() {
    let aws = aws().await;
    let metadata = &aws.backends.metadata;
    let m1 = minute("sensor-1", "2024-01-15T10:30:00Z", "b1", &[20.0, 22.0]);
    metadata
        .record_batch(
            &batch("b1", "shardId-1", "2024-01-15T10:31:00Z", 10),
            vec![m1.clone()],
        )
        .await
        .unwrap();
    // Retried: the same items again, nothing counted twice.
    metadata
        .record_batch(
            &batch("b1", "shardId-1", "2024-01-15T10:31:00Z", 10),
            vec![m1],
        )
        .await
        .unwrap();
    let rows: Vec<MinuteMetrics> = (0..30)
        .map(|i| {
            minute(
                &format!("sensor-{}", i + 2),
                "2024-01-15T10:30:00Z",
                "b2",
                &[1.0],
            )
        })
        .chain([
            minute("sensor-1", "2024-01-15T10:30:00Z", "b2", &[30.0]),
            minute("sensor-1", "2024-01-15T10:31:00Z", "b2", &[5.0]),
        ])
        .collect();
    metadata
        .record_batch(&batch("b2", "shardId-1", "2024-01-15T10:32:00Z", 40), rows)
        .await
        .unwrap();
    metadata
        .record_batch(&batch("b3", "shardId-2", "2024-01-15T10:33:00Z", 5), vec![])
        .await
        .unwrap();

    let batches = metadata.batches_for_shard("shardId-1", 10).await.unwrap();
    let ids: Vec<&str> = batches.iter().map(|b| b.batch_id.as_str()).collect();
    assert_eq!(ids, ["b2", "b1"], "newest first, through the ShardIndex");
    assert_eq!(
        batches[1],
        batch("b1", "shardId-1", "2024-01-15T10:31:00Z", 10)
    );
    assert_eq!(
        metadata
            .batches_for_shard("shardId-1", 1)
            .await
            .unwrap()
            .len(),
        1
    );

    let minutes = metadata.minute_metrics("sensor-1", 10).await.unwrap();
    assert_eq!(minutes.len(), 2);
    assert_eq!(
        (minutes[0].minute.as_str(), minutes[0].records),
        ("2024-01-15T10:31:00Z", 1)
    );
    let t = minutes[1].readings["temperature"];
    assert_eq!(
        (minutes[1].records, t.count, t.min, t.max, t.sum),
        (3, 3, 20.0, 30.0, 72.0)
    );
    let newest = metadata.minute_metrics("sensor-1", 1).await.unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(
        metadata.minute_metrics("sensor-9", 5).await.unwrap().len(),
        1
    );
}

fn letter(i: usize, payload: Vec<u8>) -> DeadLetter {
    DeadLetter {
        payload,
        reason: format!("reason {i}"),
        kind: "not-json".into(),
        stage: "intake".into(),
        plugin: None,
        shard_id: "shardId-000000000001".into(),
        sequence_number: format!("{}", 1000 + i),
        partition_key: "k".into(),
        failed_at: "2024-01-15T10:31:00Z".into(),
    }
}

#[tokio::test]
async fn dead_letters_reach_sqs_in_batches_with_attributes_and_large_payloads_go_to_s3() {
    let aws = aws().await;
    let mut letters: Vec<DeadLetter> = (0..12)
        .map(|i| letter(i, format!("bad {i}").into_bytes()))
        .collect();
    letters[3].payload = vec![0xff, 0xfe, 0x00];
    letters[7].payload = vec![b'x'; 300 * 1024];
    aws.backends.dead_letters.send(letters).await.unwrap();

    let queue_url = common::queue_url(&aws.clients.sqs, &aws.settings.dead_letter_queue).await;
    let mut bodies = HashMap::new();
    for m in common::receive_all(&aws.clients.sqs, &queue_url).await {
        let attributes = m.message_attributes().unwrap();
        assert_eq!(attributes["stage"].string_value(), Some("intake"));
        let seq = attributes["sequence_number"]
            .string_value()
            .unwrap()
            .to_owned();
        let body = serde_json::from_str::<serde_json::Value>(m.body().unwrap()).unwrap();
        assert!(bodies.insert(seq, body).is_none(), "a letter arrived twice");
    }
    assert_eq!(bodies.len(), 12, "every letter arrived once");
    assert_eq!(
        bodies["1000"]["payload"],
        serde_json::json!({"text": "bad 0"})
    );
    assert_eq!(
        bodies["1003"]["payload"],
        serde_json::json!({"base64": "//4A"})
    );
    let pointer = bodies["1007"]["payload"]["s3"].as_str().unwrap();
    assert_eq!(bodies["1007"]["payload"]["bytes"], 300 * 1024);
    let key = pointer.splitn(4, '/').nth(3).unwrap();
    assert_eq!(
        aws.backends.objects.get(key).await.unwrap().unwrap().len(),
        300 * 1024
    );
}

#[tokio::test]
async fn a_scan_reads_letters_back_and_leaves_the_queue_as_it_found_it_but_for_what_it_deletes() {
    let aws = aws().await;
    let queue = &aws.backends.dead_letters;
    let mut letters: Vec<DeadLetter> = (0..12)
        .map(|i| letter(i, format!("bad {i}").into_bytes()))
        .collect();
    for chosen in letters.iter_mut().step_by(3) {
        chosen.kind = "missing-field".into();
    }
    letters[3].payload = vec![0xff, 0xfe, 0x00];
    letters[6].payload = vec![b'x'; 300 * 1024];
    queue.send(letters.clone()).await.unwrap();
    let queue_url = common::queue_url(&aws.clients.sqs, &aws.settings.dead_letter_queue).await;
    aws.clients
        .sqs
        .send_message()
        .queue_url(&queue_url)
        .message_body("not a letter")
        .send()
        .await
        .unwrap();
    let sequence = |scan: &Scan<'_>| -> Vec<String> {
        let mut numbers: Vec<_> = scan
            .letters
            .iter()
            .map(|q| q.letter.sequence_number.clone())
            .collect();
        numbers.sort();
        numbers
    };
    let missing_field = ScanRequest {
        filter: DeadLetterFilter {
            kind: Some("missing-field".into()),
            ..Default::default()
        },
        ..Default::default()
    };

    // Filtered: the four letters whole, the overflowed payload read from S3.
    let mut reads = Vec::new();
    let scan = queue
        .scan(&missing_field, |read| reads.push(read))
        .await
        .unwrap();
    assert_eq!(sequence(&scan), ["1000", "1003", "1006", "1009"]);
    for queued in &scan.letters {
        let i: usize = queued.letter.sequence_number.parse::<usize>().unwrap() - 1000;
        assert_eq!(queued.letter, letters[i]);
    }
    assert_eq!(scan.unreadable.len(), 1, "{:?}", scan.unreadable);
    assert!(
        scan.unreadable[0].why.contains("not JSON"),
        "{:?}",
        scan.unreadable
    );
    assert_eq!(
        reads.last(),
        Some(&13),
        "every message read once: {reads:?}"
    );
    assert_eq!(scan.finish(&[]).await.unwrap(), 0);

    // Released at once: a second scan sees every letter, and deletes the four.
    let scan = queue.scan(&ScanRequest::default(), |_| {}).await.unwrap();
    assert_eq!(scan.letters.len(), 12);
    let kept = aws.backends.objects.list("dead-letters/").await.unwrap();
    assert_eq!(
        kept.len(),
        1,
        "the one payload too large for a message: {kept:?}"
    );
    let chosen: Vec<String> = scan
        .letters
        .iter()
        .filter(|q| q.letter.kind == "missing-field")
        .map(|q| q.message_id.clone())
        .collect();
    let chosen: Vec<&str> = chosen.iter().map(String::as_str).collect();
    assert_eq!(scan.finish(&chosen).await.unwrap(), 4);
    assert_eq!(
        aws.backends.objects.get(&kept[0]).await.unwrap(),
        None,
        "the kept payload went with its letter"
    );

    let scan = queue.scan(&ScanRequest::default(), |_| {}).await.unwrap();
    assert_eq!(
        sequence(&scan),
        [
            "1001", "1002", "1004", "1005", "1007", "1008", "1010", "1011"
        ]
    );
    let one = scan.letters[2].message_id.clone();
    scan.finish(&[]).await.unwrap();

    // One by its message id; a limit takes that many.
    let by_id = ScanRequest {
        message_id: Some(one.clone()),
        ..Default::default()
    };
    let scan = queue.scan(&by_id, |_| {}).await.unwrap();
    assert_eq!(scan.letters.len(), 1);
    assert_eq!(scan.letters[0].message_id, one);
    scan.finish(&[]).await.unwrap();
    let three = ScanRequest {
        filter: DeadLetterFilter {
            limit: Some(3),
            ..Default::default()
        },
        ..Default::default()
    };
    let scan = queue.scan(&three, |_| {}).await.unwrap();
    assert_eq!(scan.letters.len(), 3);
    scan.finish(&[]).await.unwrap();
    assert_eq!(
        queue
            .scan(&ScanRequest::default(), |_| {})
            .await
            .unwrap()
            .letters
            .len(),
        8
    );
}

#[tokio::test]
async fn the_stream_puts_reads_every_shard_in_order_and_checkpoints_forward_only() {
    let aws = aws().await;
    let stream = &aws.backends.stream;
    let mut records: Vec<PutRecord> = (0..40)
        .map(|i| PutRecord {
            partition_key: format!("key-{}", i % 7),
            data: format!("{{\"n\":{i}}}").into_bytes(),
        })
        .collect();
    records.push(PutRecord {
        partition_key: String::new(),
        data: b"{}".to_vec(),
    });
    let results = stream.put_records(records).await.unwrap();
    assert!(
        results[..40]
            .iter()
            .all(|r| matches!(r, PutResult::Accepted { .. })),
        "{results:?}"
    );
    assert!(
        matches!(&results[40], PutResult::Refused { reason } if reason.contains("partition key"))
    );

    let shards = stream.shards().await.unwrap();
    assert_eq!(shards.len(), 2);
    let mut seen = Vec::new();
    for shard in &shards {
        let mut from = StartingPosition::TrimHorizon;
        let mut last: Option<SequenceNumber> = None;
        loop {
            let read = stream.read(shard, &from, 7).await.unwrap();
            if read.records.is_empty() {
                break;
            }
            for r in &read.records {
                assert!(
                    last.as_ref().is_none_or(|l| *l < r.sequence_number),
                    "increasing within a shard"
                );
                last = Some(r.sequence_number.clone());
                seen.push(String::from_utf8(r.data.clone()).unwrap());
                assert!(r.arrival_time.ends_with('Z'));
            }
            from = read.next;
        }
        // A fresh reader resumes after a sequence number, as from a checkpoint.
        if let Some(last) = last {
            let after = stream
                .read(shard, &StartingPosition::AfterSequenceNumber(last), 10)
                .await
                .unwrap();
            assert!(after.records.is_empty());
        }
    }
    assert_eq!(seen.len(), 40, "every record, once");

    let shard = &shards[0];
    assert_eq!(stream.checkpoint("c", shard).await.unwrap(), None);
    let big: SequenceNumber = "49590338271490256608559692538361571095921575989136588898"
        .parse()
        .unwrap();
    let bigger: SequenceNumber = "49590338271490256608559692538361571095921575989136588899"
        .parse()
        .unwrap();
    stream
        .set_checkpoint("c", shard, bigger.clone())
        .await
        .unwrap();
    stream.set_checkpoint("c", shard, big).await.unwrap();
    assert_eq!(
        stream.checkpoint("c", shard).await.unwrap(),
        Some(bigger),
        "never backwards"
    );
    assert_eq!(stream.checkpoint("other", shard).await.unwrap(), None);
}

#[tokio::test]
async fn the_registry_keeps_the_registry_contract() {
    use weir_testkit::registry_contract;
    let first = aws().await;
    registry_contract::versions_are_content_addressed_and_immutable(&first.backends.registry).await;
    // Components live in the raw bucket under plugins/.
    let keys = bucket_keys(&first, &first.settings.raw_bucket).await;
    let v1 = registry_contract::version("tx", "1.0.0", b"component one");
    assert!(
        keys.contains(&format!("plugins/{}.wasm", v1.sha256)),
        "{keys:?}"
    );

    // The other checks start from an empty registry: tables of their own.
    let fresh = aws().await.backends.registry;
    registry_contract::activations_are_atomic_revisioned_audited_and_roll_back(&fresh).await;
    let fresh = aws().await.backends.registry;
    registry_contract::shadows_start_tally_and_stop(&fresh).await;
}

#[tokio::test]
async fn concurrent_activations_from_one_revision_let_exactly_one_win() {
    use weir_core::registry::{Registry, RegistryError};
    use weir_testkit::registry_contract::{BY_ALICE, acme, version};
    let aws = aws().await;
    let registry = &aws.backends.registry;
    let versions: Vec<_> = (0..6)
        .map(|i| {
            let bytes = format!("component {i}").into_bytes();
            (version("tx", &format!("1.0.{i}"), &bytes), bytes)
        })
        .collect();
    for (v, bytes) in &versions {
        registry
            .add_version(v.clone(), bytes.clone(), None, BY_ALICE)
            .await
            .unwrap();
    }
    registry
        .activate(&acme(), &versions[0].0.sha256, vec![], Some(0), BY_ALICE)
        .await
        .unwrap();
    let attempts = versions[1..].iter().map(|(v, _)| {
        let registry = registry.clone();
        let sha = v.sha256.clone();
        tokio::spawn(async move {
            registry
                .activate(&acme(), &sha, vec![], Some(1), BY_ALICE)
                .await
        })
    });
    let mut won = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(record) => {
                won += 1;
                assert_eq!(record.revision, 2);
            }
            Err(RegistryError::Conflict { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        won, 1,
        "one activation from revision 1 wins, the others conflict"
    );
    let (_, bindings) = registry.bindings().await.unwrap();
    assert_eq!(bindings[0].revision, 2);
}
