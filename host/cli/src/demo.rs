//! `weir demo`, the main job: the whole local pipeline with the example
//! plugins and the console, on the embedded backends.
//!
//! Builds the example plugins and uploads them to the embedded registry, which
//! checks them as a host would and runs their golden cases; binds each as its
//! event types' default, and gives tenant `acme` its own transaction binding;
//! produces a mix of events (and a few broken ones) onto the embedded stream;
//! drains every shard through the pipeline; prints where every record went, by
//! partition. Then, unless `--no-console`, it serves the console with an admin
//! and a tenant token, keeps producing a trickle of events, and keeps
//! consuming them with the bindings the console activates, until Ctrl-C.
//! The objects, dead letters, metadata and registry stay under `--data-dir`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use weir_console::Role;
use weir_console::checks::{UploadContext, check_upload};
use weir_console::tail::{DeadLetterSource, ObjectTail};
use weir_core::backend::{DeadLetterFilter, ObjectStore};
use weir_core::registry::{BindingKey, Change, Registry};
use weir_core::stream::{PutRecord, PutResult, StreamSink};
use weir_embedded::{Durability, EmbeddedRegistry, EmbeddedStream, StreamSettings};
use weir_pipeline::{
    ConsumerSettings, PipelineSettings, RegistryRouter, drain, follow_registry, serve,
};
use weir_runtime::Runtime;
use weir_runtime::router::Router;
use weir_testkit::build;

use crate::console::{self, ListenArgs};
use crate::wiring::{self, EmbeddedPipeline};
use weir_lambda::sampler::{EVENT_TYPES, Sampler};

const TENANTS: [&str; 2] = ["acme", "globex"];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many events to produce.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Where the demo's stream, objects, dead letters, metadata and registry
    /// go (replaced on each run).
    #[arg(long, default_value = "weir-data/demo")]
    data_dir: PathBuf,
    /// Exit after the summary instead of serving the console.
    #[arg(long)]
    no_console: bool,
    /// Events per second produced while the console is served.
    #[arg(long, default_value_t = 20)]
    trickle: u32,
    #[command(flatten)]
    listen: ListenArgs,
}

const DEMO_ACTOR: &str = "weir-demo";

pub fn run(runtime: Runtime, args: Args) -> anyhow::Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    tokio.block_on(demo(runtime, args))
}

/// Uploads the example plugins with their golden cases, binds each as the
/// default of its event types, and gives tenant acme its own transaction
/// binding (high value from 500).
async fn register_examples(runtime: &Runtime, registry: &EmbeddedRegistry) -> anyhow::Result<()> {
    let wasm_dir = wiring::build_examples()?;
    let now = weir_core::time::format_utc(chrono::Utc::now());
    let change = Change {
        actor: DEMO_ACTOR,
        at: &now,
    };
    for name in wiring::EXAMPLES {
        let path = wiring::example_path(&wasm_dir, name);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let cases_path = build::repo_root()
            .join("plugins/examples")
            .join(name)
            .join("golden.json");
        let cases = std::fs::read_to_string(&cases_path)
            .with_context(|| format!("reading {}", cases_path.display()))?;
        let context = UploadContext {
            uploader: DEMO_ACTOR,
            tenant: None,
            notes: "example plugin",
            at: &now,
        };
        let (version, results) = check_upload(runtime, &bytes, Some(&cases), &context)
            .with_context(|| format!("{} is refused", path.display()))?;
        eprintln!(
            "uploaded {:<22} golden cases: {} passed",
            version.label(),
            results.len()
        );
        registry
            .add_version(version.clone(), bytes, Some(cases), change)
            .await?;
        for event_type in &version.event_types {
            let key = BindingKey {
                tenant: None,
                event_type: event_type.clone(),
            };
            registry
                .activate(&key, &version.sha256, vec![], None, change)
                .await?;
        }
        if version.name == "transaction" {
            let acme = BindingKey {
                tenant: Some("acme".into()),
                event_type: "transaction".into(),
            };
            let config = vec![("high_value_threshold".into(), "500".into())];
            registry
                .activate(&acme, &version.sha256, config, None, change)
                .await?;
        }
    }
    Ok(())
}

async fn demo(runtime: Runtime, args: Args) -> anyhow::Result<ExitCode> {
    if args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir)
            .with_context(|| format!("clearing {}", args.data_dir.display()))?;
    }
    let pipeline = wiring::pipeline(&args.data_dir, Router::new(), PipelineSettings::default())?;
    let registry =
        EmbeddedRegistry::open(pipeline.metadata.clone(), pipeline.objects.clone()).await?;
    register_examples(&runtime, &registry).await?;
    let mut follower = RegistryRouter::new(registry.clone(), runtime.clone(), Router::new());
    follower.refresh(&pipeline.router).await?;

    // The demo's stream takes records as fast as they come; `weir produce`
    // shows Kinesis's per-shard limits at work.
    let settings = StreamSettings {
        max_records_per_second: u32::MAX,
        max_bytes_per_second: u64::MAX,
        ..StreamSettings::new("demo")
    };
    let stream = EmbeddedStream::open(pipeline.dead_letters.clone(), settings).await?;

    let mut sampler = Sampler::new(42);
    let produced = produce(&stream, &mut sampler, 0, args.events).await?;
    eprintln!(
        "produced {produced} records onto stream `demo` ({} shards)",
        stream.settings().shard_count
    );

    let started = Instant::now();
    let consumer = ConsumerSettings::default();
    let report = drain(&stream, &pipeline, &consumer).await?;
    let elapsed = started.elapsed();

    let c = &report.counts;
    if !c.is_balanced(true) || u64::from(c.records) != produced {
        bail!("records are unaccounted for: produced {produced}, {c:?}");
    }
    print_summary(&pipeline, &report, elapsed).await?;
    println!(
        "output under {} (objects/, state/weir.db, state/weir-metrics.db)",
        args.data_dir.display()
    );
    if args.no_console {
        return Ok(ExitCode::SUCCESS);
    }
    live(
        runtime, registry, follower, stream, pipeline, sampler, &args,
    )
    .await
}

/// Serves the console and keeps the pipeline running on a trickle of events,
/// following the registry, until Ctrl-C.
async fn live(
    runtime: Runtime,
    registry: EmbeddedRegistry,
    follower: RegistryRouter<EmbeddedRegistry>,
    stream: EmbeddedStream,
    pipeline: EmbeddedPipeline,
    mut sampler: Sampler,
    args: &Args,
) -> anyhow::Result<ExitCode> {
    let access = console::access_store(&args.data_dir)?;
    let now = weir_core::time::format_utc(chrono::Utc::now());
    let admin = access.create_token("demo-admin", Role::Admin, &now).await?;
    let acme = access
        .create_token("acme", Role::Tenant("acme".into()), &now)
        .await?;
    let tail = ObjectTail {
        objects: pipeline.objects.clone(),
        dead_letters: DeadLetterSource::Embedded(pipeline.metadata.clone()),
    };
    let address = console::start(registry, runtime, access, tail, &args.listen).await?;
    println!();
    println!("console at http://{address}/");
    println!("  admin token        {admin}");
    println!("  tenant acme token  {acme}");
    println!(
        "producing {} events/s and consuming them with the bindings the console activates (Ctrl-C to stop)",
        args.trickle
    );

    let stop = until_ctrl_c();
    let follow = tokio::spawn(follow_registry(
        follower,
        pipeline.router.clone(),
        Duration::from_millis(500),
        std::future::pending(),
    ));
    let stream = Arc::new(stream);
    let producer = {
        let stream = stream.clone();
        let per_second = args.trickle as usize;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut next = 1_000_000;
            loop {
                tick.tick().await;
                if let Err(e) = produce(&stream, &mut sampler, next, per_second).await {
                    tracing::error!(error = %e, "the demo producer stopped");
                    return;
                }
                next += per_second;
            }
        })
    };
    let consumer = ConsumerSettings {
        batching_window: Duration::from_millis(500),
        ..ConsumerSettings::default()
    };
    let report = serve(stream, Arc::new(pipeline), consumer, stop).await?;
    producer.abort();
    follow.abort();
    eprintln!("served more: {report}");
    Ok(ExitCode::SUCCESS)
}

/// Resolves at Ctrl-C.
async fn until_ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("stopping after the batches in flight ...");
}

async fn print_summary(
    pipeline: &EmbeddedPipeline,
    report: &weir_pipeline::ConsumeReport,
    elapsed: Duration,
) -> anyhow::Result<()> {
    let c = &report.counts;
    let mut by_partition: BTreeMap<String, usize> = BTreeMap::new();
    for key in pipeline.objects.list("processed/").await? {
        let body = pipeline.objects.get(&key).await?.unwrap_or_default();
        let partition = key
            .trim_start_matches("processed/")
            .rsplit_once('/')
            .map_or(key.clone(), |(p, _)| p.to_owned());
        *by_partition.entry(partition).or_default() += body.iter().filter(|b| **b == b'\n').count();
    }
    println!("{:<70} {:>8}", "processed partition", "records");
    for (partition, n) in &by_partition {
        println!("{partition:<70} {n:>8}");
    }
    let letters = pipeline
        .dead_letters
        .dead_letters(DeadLetterFilter::default())
        .await?;
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for (_, letter) in &letters {
        *by_kind
            .entry(format!("{}/{}", letter.stage, letter.kind))
            .or_default() += 1;
    }
    println!();
    println!("records in         {:>8}", c.records);
    println!("written (enriched) {:>8}", c.enriched);
    println!("passed through     {:>8}", c.passed_through);
    println!("dropped by plugins {:>8}", c.dropped);
    println!("dead-lettered      {:>8}  {by_kind:?}", c.dead_lettered());
    println!(
        "{} batches in {:.2} s: {:.0} records/s through intake, raw stage, plugins and envelope",
        report.batches,
        elapsed.as_secs_f64(),
        f64::from(c.records) / elapsed.as_secs_f64().max(1e-9)
    );
    // The figure depends on the disk more than on Weir: say what it includes.
    println!(
        "{}",
        match pipeline.objects.durability() {
            Durability::Disk =>
                "each batch's objects and rows were fsynced before its checkpoint moved (WEIR_FSYNC=off skips that for scratch runs; `weir bench pipeline` measures both)",
            Durability::Os =>
                "nothing was fsynced (WEIR_FSYNC=off): the output survives a crash of Weir, not of the machine",
        }
    );
    Ok(())
}

/// Puts `n` generated events numbered from `first` (one in a hundred broken,
/// to show dead letters, and a few of an unbound type); returns how many the
/// stream took.
async fn produce(
    stream: &EmbeddedStream,
    sampler: &mut Sampler,
    first: usize,
    n: usize,
) -> anyhow::Result<u64> {
    let mut batch = Vec::with_capacity(500);
    let mut accepted = 0u64;
    for i in first..first + n {
        let data = if i % 100 == 99 {
            // Broken on purpose: a transaction without an amount.
            json!({"event_type": "transaction", "timestamp": "2024-01-15T10:00:00Z", "tenant_id": "acme"}).to_string()
        } else if i % 250 == 7 {
            json!({"event_type": "page_view", "timestamp": "2024-01-15T10:00:00Z", "page": "/"})
                .to_string()
        } else {
            let mut event = sampler.event(EVENT_TYPES[i % EVENT_TYPES.len()]);
            event["tenant_id"] = json!(TENANTS[i % TENANTS.len()]);
            event.to_string()
        };
        batch.push(PutRecord {
            partition_key: format!("key-{}", i % 97),
            data: data.into_bytes(),
        });
        if batch.len() == 500 || i + 1 == first + n {
            for result in stream.put_records(std::mem::take(&mut batch)).await? {
                match result {
                    PutResult::Accepted { .. } => accepted += 1,
                    other => bail!("the demo stream refused a record: {other:?}"),
                }
            }
        }
    }
    Ok(accepted)
}
