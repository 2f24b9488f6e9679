//! Hot swap: activations in the registry reach a running pipeline without a
//! restart; a batch finishes on the bindings it started with; every output
//! names the version (and the config) that produced it.

mod common;

use chrono::{DateTime, Utc};
use serde_json::Value;
use weir_core::backend::ObjectStore;
use weir_core::registry::{BindingKey, Registry};
use weir_core::stream::{SequenceNumber, StreamRecord};
use weir_embedded::{EmbeddedRegistry, LocalObjectStore, SqliteState};
use weir_pipeline::{Pipeline, PipelineSettings, RegistryRouter};
use weir_runtime::router::{Route, Router};
use weir_runtime::{Runtime, RuntimeSettings};
use weir_testkit::build::{repo_plugin, shared_cache_dir};
use weir_testkit::registry_contract::{BY_ALICE, acme};

fn now() -> DateTime<Utc> {
    weir_core::time::parse_rfc3339("2024-01-15T10:31:00Z").unwrap()
}

/// Three transactions (1500, 50, 700) for `tenant`, from sequence `first`.
fn batch(first: u64, tenant: &str) -> Vec<StreamRecord> {
    [1500, 50, 700]
        .iter()
        .enumerate()
        .map(|(i, amount)| StreamRecord {
            shard_id: "shardId-000000000000".into(),
            sequence_number: SequenceNumber::from_u64(first + i as u64),
            partition_key: format!("k{i}"),
            data: format!(r#"{{"event_type":"transaction","timestamp":"2024-01-15T10:30:00Z","amount":{amount},"tenant_id":"{tenant}"}}"#)
                .into_bytes(),
            arrival_time: "2024-01-15T10:30:05.000Z".into(),
        })
        .collect()
}

/// The processed lines of the batch whose keys end with `-{first}-{last}`.
async fn outputs(objects: &LocalObjectStore, first: u64, last: u64) -> Vec<Value> {
    let mut lines = Vec::new();
    for key in objects.list("processed/").await.unwrap() {
        if key.ends_with(&format!("-{first}-{last}.jsonl")) {
            let body = objects.get(&key).await.unwrap().unwrap();
            for line in String::from_utf8(body).unwrap().lines() {
                lines.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    lines
}

#[tokio::test]
async fn activations_reach_the_running_pipeline_and_in_flight_batches_keep_theirs() {
    let host = host().await;
    let (objects, registry) = (host.objects.clone(), host.registry.clone());
    let sha256 = upload(&registry, "transaction").await;
    let change = BY_ALICE;

    let pipeline = host.pipeline();
    let mut follower = host.follower();
    assert_eq!(follower.refresh(&pipeline.router).await.unwrap(), Some(0));
    assert_eq!(
        follower.refresh(&pipeline.router).await.unwrap(),
        None,
        "nothing changed"
    );

    // No binding yet: passed through.
    let r = pipeline
        .process_batch("shardId-000000000000", &batch(1, "acme"), now())
        .await
        .unwrap();
    assert_eq!(r.counts.passed_through, 3);

    let default = BindingKey {
        tenant: None,
        event_type: "transaction".into(),
    };
    registry
        .activate(&default, &sha256, vec![], None, change)
        .await
        .unwrap();
    let in_flight = pipeline.router.snapshot();
    assert_eq!(follower.refresh(&pipeline.router).await.unwrap(), Some(1));
    assert!(
        matches!(in_flight.resolve("acme", "transaction"), Route::PassThrough),
        "a running batch keeps its bindings"
    );
    let r = pipeline
        .process_batch("shardId-000000000000", &batch(4, "acme"), now())
        .await
        .unwrap();
    assert_eq!(
        (r.counts.enriched, r.plugin_versions.clone()),
        (3, vec!["transaction@1.0.0".to_owned()])
    );
    let high: Vec<bool> = outputs(&objects, 4, 6)
        .await
        .iter()
        .map(|l| l["enriched_data"]["is_high_value"].as_bool().unwrap())
        .collect();
    assert_eq!(high, [true, false, false]);
    assert!(
        outputs(&objects, 4, 6)
            .await
            .iter()
            .all(|l| l["metadata"]["plugin"] == "transaction@1.0.0")
    );

    // acme gets its own threshold; other tenants keep the default binding.
    let acme = acme();
    let config = vec![("high_value_threshold".to_owned(), "500".to_owned())];
    registry
        .activate(&acme, &sha256, config, Some(0), change)
        .await
        .unwrap();
    assert_eq!(follower.refresh(&pipeline.router).await.unwrap(), Some(2));
    pipeline
        .process_batch("shardId-000000000000", &batch(7, "acme"), now())
        .await
        .unwrap();
    pipeline
        .process_batch("shardId-000000000000", &batch(10, "globex"), now())
        .await
        .unwrap();
    let acme_high: Vec<bool> = outputs(&objects, 7, 9)
        .await
        .iter()
        .map(|l| l["enriched_data"]["is_high_value"].as_bool().unwrap())
        .collect();
    let globex_high: Vec<bool> = outputs(&objects, 10, 12)
        .await
        .iter()
        .map(|l| l["enriched_data"]["is_high_value"].as_bool().unwrap())
        .collect();
    assert_eq!(acme_high, [true, false, true], "700 is high for acme now");
    assert_eq!(globex_high, [true, false, false]);
}

/// A registry on fresh embedded backends, and what a host following it needs.
struct Host {
    _dir: tempfile::TempDir,
    state: SqliteState,
    objects: LocalObjectStore,
    registry: EmbeddedRegistry,
}

async fn host() -> Host {
    let dir = tempfile::tempdir().unwrap();
    let state = SqliteState::open(dir.path().join("weir.db")).unwrap();
    let objects = LocalObjectStore::open(dir.path().join("objects")).unwrap();
    let registry = EmbeddedRegistry::open(state.clone(), objects.clone())
        .await
        .unwrap();
    Host {
        _dir: dir,
        state,
        objects,
        registry,
    }
}

fn runtime() -> Runtime {
    Runtime::new(RuntimeSettings {
        cache_dir: Some(shared_cache_dir()),
        ..Default::default()
    })
    .unwrap()
}

impl Host {
    /// A pipeline on the host's backends, with no bindings until it follows the registry.
    fn pipeline(&self) -> Pipeline<LocalObjectStore, SqliteState, SqliteState> {
        common::pipeline(
            self.objects.clone(),
            &self.state,
            Router::new(),
            PipelineSettings::default(),
        )
    }

    fn follower(&self) -> RegistryRouter<EmbeddedRegistry> {
        RegistryRouter::new(self.registry.clone(), runtime(), Router::new())
    }
}

/// Uploads a repository plugin; returns its SHA-256.
async fn upload(registry: &EmbeddedRegistry, name: &str) -> String {
    let component = std::fs::read(repo_plugin(name)).unwrap();
    let runtime = runtime();
    let version = weir_testkit::registry_contract::version_of_component(&runtime, &component);
    let sha256 = version.sha256.clone();
    registry
        .add_version(version, component, None, BY_ALICE)
        .await
        .unwrap();
    sha256
}

/// The label of the plugin the running router gives acme's transactions.
fn serving(router: &weir_runtime::router::SharedRouter) -> Option<String> {
    router
        .snapshot()
        .resolve("acme", "transaction")
        .binding()
        .map(|b| b.plugin.label().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_swaps_under_continuous_production_lose_nothing_and_repeat_nothing() {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};
    use weir_core::stream::{PutRecord, StreamSink};
    use weir_embedded::{EmbeddedStream, StreamSettings};
    use weir_pipeline::{ConsumerSettings, follow_registry, serve};

    let host = host().await;
    let (state, objects, registry) = (
        host.state.clone(),
        host.objects.clone(),
        host.registry.clone(),
    );
    let transaction = upload(&registry, "transaction").await;
    let tagger = upload(&registry, "tagger").await;
    let acme = acme();
    registry
        .activate(&acme, &transaction, vec![], Some(0), BY_ALICE)
        .await
        .unwrap();

    let pipeline = Arc::new(host.pipeline());
    let mut follower = host.follower();
    follower.refresh(&pipeline.router).await.unwrap();
    let follow = tokio::spawn(follow_registry(
        follower,
        pipeline.router.clone(),
        Duration::from_millis(10),
        std::future::pending(),
    ));

    let settings = StreamSettings {
        shard_count: 2,
        max_records_per_second: u32::MAX,
        max_bytes_per_second: u64::MAX,
        ..StreamSettings::new("swap")
    };
    let stream = Arc::new(EmbeddedStream::open(state.clone(), settings).await.unwrap());
    let consumer = ConsumerSettings {
        name: "swap-test".into(),
        batch_size: 20,
        batching_window: Duration::from_millis(20),
        poll_interval: Duration::from_millis(5),
        ..Default::default()
    };
    let (stop_serving, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving_task = tokio::spawn(serve(stream.clone(), pipeline.clone(), consumer, async {
        let _ = stopped.await;
    }));

    // The producer: numbered transactions for acme, ten every few milliseconds.
    let produced = Arc::new(AtomicU64::new(0));
    let producing = Arc::new(AtomicBool::new(true));
    let producer = {
        let (stream, produced, producing) = (stream.clone(), produced.clone(), producing.clone());
        tokio::spawn(async move {
            while producing.load(Ordering::SeqCst) {
                let first = produced.load(Ordering::SeqCst);
                let records = (first..first + 10)
                    .map(|n| PutRecord {
                        partition_key: format!("key-{}", n % 13),
                        data: format!(r#"{{"event_type":"transaction","timestamp":"2024-01-15T10:30:00Z","amount":{n},"tenant_id":"acme","n":{n}}}"#)
                            .into_bytes(),
                    })
                    .collect();
                let results = stream.put_records(records).await.unwrap();
                assert!(
                    results
                        .iter()
                        .all(|r| matches!(r, weir_core::stream::PutResult::Accepted { .. }))
                );
                produced.fetch_add(10, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let wait_for_produced = |at_least: u64| {
        let produced = produced.clone();
        async move {
            while produced.load(Ordering::SeqCst) < at_least {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    // Activates `sha` for acme and waits until the running router serves it;
    // returns how many records had been produced by then.
    let swap = |sha: String, label: &'static str| {
        let (registry, router, produced) =
            (registry.clone(), pipeline.router.clone(), produced.clone());
        let key = acme.clone();
        async move {
            registry
                .activate(&key, &sha, vec![], None, BY_ALICE)
                .await
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while serving(&router).as_deref() != Some(label) {
                assert!(
                    Instant::now() < deadline,
                    "the swap to {label} never reached the router"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            produced.load(Ordering::SeqCst)
        }
    };

    wait_for_produced(300).await;
    let first_switch = swap(tagger, "tagger@2.0.0").await;
    wait_for_produced(first_switch + 300).await;
    let second_switch = swap(transaction, "transaction@1.0.0").await;
    wait_for_produced(second_switch + 300).await;
    producing.store(false, Ordering::SeqCst);
    producer.await.unwrap();
    let total = produced.load(Ordering::SeqCst);

    // Every record produced reaches the output; then the service stops.
    let deadline = Instant::now() + Duration::from_secs(60);
    let lines = loop {
        let mut lines = Vec::new();
        for key in objects.list("processed/").await.unwrap() {
            let body = objects.get(&key).await.unwrap().unwrap();
            for line in String::from_utf8(body).unwrap().lines() {
                lines.push((key.clone(), serde_json::from_str::<Value>(line).unwrap()));
            }
        }
        if lines.len() as u64 >= total || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop_serving.send(()).unwrap();
    let report = serving_task.await.unwrap().unwrap();
    follow.abort();
    assert_eq!(u64::from(report.counts.records), total);
    assert_eq!(u64::from(report.counts.enriched), total);

    // No record lost, none processed twice.
    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    for (_, line) in &lines {
        *seen
            .entry(line["enriched_data"]["n"].as_u64().unwrap())
            .or_default() += 1;
    }
    assert_eq!(seen.len() as u64, total, "every record written");
    assert!(seen.values().all(|&c| c == 1), "none written twice");
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (0..total).collect::<Vec<_>>()
    );

    // A batch's object is all one version: in-flight batches finish on theirs.
    let mut by_object: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, line) in &lines {
        by_object
            .entry(key)
            .or_default()
            .push(line["metadata"]["plugin"].as_str().unwrap());
    }
    assert!(by_object.values().all(|v| v.iter().all(|p| *p == v[0])));

    // In each shard, in stream order: the first version, then the second
    // after the first swap, then the first again after the second, never back.
    let mut by_shard: BTreeMap<String, Vec<(u128, String, u64)>> = BTreeMap::new();
    for (_, line) in &lines {
        let meta = &line["metadata"];
        by_shard
            .entry(meta["shard_id"].as_str().unwrap().to_owned())
            .or_default()
            .push((
                meta["sequence_number"].as_str().unwrap().parse().unwrap(),
                meta["plugin"].as_str().unwrap().to_owned(),
                line["enriched_data"]["n"].as_u64().unwrap(),
            ));
    }
    // Phases: 0 the first version, 1 the second, 2 the first again.
    let mut phases_seen = [false; 3];
    for (shard, mut records) in by_shard {
        records.sort();
        let mut phase = 0;
        for (sequence, plugin, n) in &records {
            let this = match plugin.as_str() {
                "tagger@2.0.0" => 1,
                // Produced while the tagger was served, or after it in stream
                // order: the first version is back, so this is after the second swap.
                "transaction@1.0.0" if *n >= first_switch || phase >= 1 => 2,
                "transaction@1.0.0" => 0,
                other => panic!("{shard}: record {n} by {other}"),
            };
            assert!(
                this >= phase,
                "{shard}: record {n} (sequence {sequence}) went back to {plugin}"
            );
            phase = this;
            phases_seen[this] = true;
            if *n >= second_switch {
                assert_eq!(
                    plugin, "transaction@1.0.0",
                    "{shard}: record {n} was produced after the second swap"
                );
            }
        }
    }
    assert_eq!(
        phases_seen, [true; 3],
        "each version served a share of the traffic"
    );
    // The tagger's records say so themselves.
    assert!(
        lines
            .iter()
            .any(|(_, l)| l["enriched_data"]["tagged_by"] == "tagger@2.0.0")
    );
}

/// `n` transactions of `tenant`, from sequence `first`.
fn numbered(first: u64, n: u64, tenant: &str) -> Vec<StreamRecord> {
    (first..first + n)
        .map(|sequence| StreamRecord {
            shard_id: "shardId-000000000000".into(),
            sequence_number: SequenceNumber::from_u64(sequence),
            partition_key: format!("k{sequence}"),
            data: format!(r#"{{"event_type":"transaction","timestamp":"2024-01-15T10:30:00Z","amount":{sequence},"tenant_id":"{tenant}"}}"#)
                .into_bytes(),
            arrival_time: "2024-01-15T10:30:05.000Z".into(),
        })
        .collect()
}

#[tokio::test]
async fn a_shadow_compares_a_candidate_on_its_share_writes_nothing_and_is_promoted() {
    let host = host().await;
    let (objects, registry) = (host.objects.clone(), host.registry.clone());
    let transaction = upload(&registry, "transaction").await;
    let tagger = upload(&registry, "tagger").await;
    let acme = acme();
    registry
        .activate(&acme, &transaction, vec![], None, BY_ALICE)
        .await
        .unwrap();
    let tag = vec![("tag".to_owned(), "shadowed".to_owned())];
    registry
        .start_shadow(&acme, &tagger, tag.clone(), 100, BY_ALICE)
        .await
        .unwrap();
    let pipeline = host.pipeline();
    let mut follower = host.follower();
    follower.refresh(&pipeline.router).await.unwrap();

    let result = pipeline
        .process_batch("shardId-000000000000", &numbered(1, 3, "acme"), now())
        .await
        .unwrap();
    assert_eq!(
        result.plugin_versions,
        ["transaction@1.0.0"],
        "the shadow writes nothing"
    );
    assert!(
        outputs(&objects, 1, 3)
            .await
            .iter()
            .all(|l| l["enriched_data"]["tagged_by"].is_null())
    );
    follower.refresh(&pipeline.router).await.unwrap();
    let (record, tally) = registry.shadows().await.unwrap().remove(0);
    assert_eq!(
        (record.sha256.as_str(), record.config.clone()),
        (tagger.as_str(), tag)
    );
    assert_eq!(
        (tally.compared, tally.identical, tally.differing),
        (3, 0, 3)
    );
    assert_eq!(tally.samples.len(), 3);
    assert!(
        tally.samples[0]
            .candidate
            .contains("\"tagged_by\":\"tagger@2.0.0\""),
        "{:?}",
        tally.samples[0]
    );
    assert!(tally.samples[0].active.contains("amount_category"));

    // The active version against itself: identical.
    registry
        .start_shadow(&acme, &transaction, vec![], 100, BY_ALICE)
        .await
        .unwrap();
    follower.refresh(&pipeline.router).await.unwrap();
    pipeline
        .process_batch("shardId-000000000000", &numbered(4, 3, "acme"), now())
        .await
        .unwrap();
    follower.refresh(&pipeline.router).await.unwrap();
    let (_, tally) = registry.shadows().await.unwrap().remove(0);
    assert_eq!((tally.compared, tally.identical), (3, 3));

    // A share: the candidate sees some of the records, always the same ones.
    registry
        .start_shadow(&acme, &tagger, vec![], 30, BY_ALICE)
        .await
        .unwrap();
    follower.refresh(&pipeline.router).await.unwrap();
    pipeline
        .process_batch("shardId-000000000000", &numbered(100, 200, "acme"), now())
        .await
        .unwrap();
    follower.refresh(&pipeline.router).await.unwrap();
    let (_, tally) = registry.shadows().await.unwrap().remove(0);
    assert!(
        (30..=90).contains(&tally.compared),
        "about 30% of 200: {}",
        tally.compared
    );
    // Another tenant's records are not in acme's shadow.
    pipeline
        .process_batch("shardId-000000000000", &numbered(400, 50, "globex"), now())
        .await
        .unwrap();
    follower.refresh(&pipeline.router).await.unwrap();
    let (_, unchanged) = registry.shadows().await.unwrap().remove(0);
    assert_eq!(unchanged.compared, tally.compared);

    // Promoted: the candidate is active, the shadow gone.
    registry
        .activate(&acme, &tagger, vec![], None, BY_ALICE)
        .await
        .unwrap();
    registry.stop_shadow(&acme, BY_ALICE).await.unwrap();
    follower.refresh(&pipeline.router).await.unwrap();
    let result = pipeline
        .process_batch("shardId-000000000000", &numbered(500, 3, "acme"), now())
        .await
        .unwrap();
    assert_eq!(result.plugin_versions, ["tagger@2.0.0"]);
    assert!(pipeline.router.snapshot().shadows().is_empty());
}

#[tokio::test]
async fn a_bindings_own_limits_reach_the_running_router() {
    use std::time::Duration;
    use weir_core::registry::BindingLimits;
    let host = host().await;
    let registry = host.registry.clone();
    let transaction = upload(&registry, "transaction").await;
    let acme = acme();
    let tight = BindingLimits {
        memory_mib: Some(8),
        cpu_ms: Some(50),
    };
    registry
        .activate_with(&acme, &transaction, vec![], tight, None, BY_ALICE)
        .await
        .unwrap();
    let pipeline = host.pipeline();
    let mut follower = host.follower();
    follower.refresh(&pipeline.router).await.unwrap();
    let limits = |router: &weir_runtime::router::SharedRouter| {
        let snapshot = router.snapshot();
        let binding = snapshot
            .resolve("acme", "transaction")
            .binding()
            .unwrap()
            .clone();
        (binding.limits.memory_bytes, binding.limits.cpu_time)
    };
    assert_eq!(
        limits(&pipeline.router),
        (8 << 20, Duration::from_millis(50))
    );
    // Within them the plugin does its work (the runtime's tests show them enforced).
    let run = pipeline
        .process_batch("shardId-000000000000", &numbered(1, 3, "acme"), now())
        .await
        .unwrap();
    assert_eq!(run.counts.enriched, 3);

    // Activated again without limits: the host's defaults.
    registry
        .activate(&acme, &transaction, vec![], None, BY_ALICE)
        .await
        .unwrap();
    follower.refresh(&pipeline.router).await.unwrap();
    let defaults = weir_runtime::Limits::default();
    assert_eq!(
        limits(&pipeline.router),
        (defaults.memory_bytes, defaults.cpu_time)
    );
}

/// A version a host refuses to load holds back its own binding only: the
/// binding keeps the version it runs, another tenant's activation in the
/// same change is applied, and a host that never ran the binding leaves it
/// out instead of refusing the whole registry.
#[tokio::test]
async fn a_version_that_does_not_load_holds_back_only_its_own_binding() {
    let host = host().await;
    let registry = host.registry.clone();
    let transaction = upload(&registry, "transaction").await;
    let tagger = upload(&registry, "tagger").await;
    let acme = acme();
    registry
        .activate(&acme, &transaction, vec![], None, BY_ALICE)
        .await
        .unwrap();
    let pipeline = host.pipeline();
    let mut follower = host.follower();
    follower.refresh(&pipeline.router).await.unwrap();
    assert_eq!(
        serving(&pipeline.router).as_deref(),
        Some("transaction@1.0.0")
    );

    // One change: acme to bytes no host loads, globex to the tagger.
    let broken = b"not a component".to_vec();
    let version = weir_testkit::registry_contract::version("broken", "1.0.0", &broken);
    let broken_sha = version.sha256.clone();
    registry
        .add_version(version, broken, None, BY_ALICE)
        .await
        .unwrap();
    registry
        .activate(&acme, &broken_sha, vec![], None, BY_ALICE)
        .await
        .unwrap();
    let globex = BindingKey {
        tenant: Some("globex".into()),
        event_type: "transaction".into(),
    };
    registry
        .activate(
            &globex,
            &tagger,
            vec![("tag".into(), "g".into())],
            None,
            BY_ALICE,
        )
        .await
        .unwrap();
    let label = |router: &weir_runtime::router::SharedRouter, tenant: &str| match router
        .snapshot()
        .resolve(tenant, "transaction")
    {
        Route::Tenant(b) => Some(b.plugin.label().to_owned()),
        _ => None,
    };
    let generation = follower.refresh(&pipeline.router).await.unwrap();
    assert!(generation.is_some(), "the change is followed");
    assert_eq!(
        label(&pipeline.router, "acme").as_deref(),
        Some("transaction@1.0.0"),
        "acme keeps the version it ran"
    );
    assert_eq!(
        label(&pipeline.router, "globex").as_deref(),
        Some("tagger@2.0.0")
    );
    // Followed: the refused version is not tried again.
    assert_eq!(follower.refresh(&pipeline.router).await.unwrap(), None);

    // A host starting now: the binding is left out, the rest applies.
    let fresh = host.pipeline();
    host.follower().refresh(&fresh.router).await.unwrap();
    assert_eq!(label(&fresh.router, "acme"), None);
    assert_eq!(
        label(&fresh.router, "globex").as_deref(),
        Some("tagger@2.0.0")
    );
}
