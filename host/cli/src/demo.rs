//! `weir demo`, the main job: the whole local pipeline with the example
//! plugins, on the embedded backends.
//!
//! Builds the example plugins and checks their golden cases; binds each as its
//! event types' default, and gives tenant `acme` its own transaction binding;
//! produces a mix of events (and a few broken ones) onto the embedded stream;
//! drains every shard through the pipeline; prints where every record went, by
//! partition; and leaves the objects, dead letters and metadata under
//! `--data-dir` to browse.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::json;
use weir_core::backend::{DeadLetterFilter, ObjectStore};
use weir_core::stream::{PutRecord, PutResult, StreamSink};
use weir_embedded::{EmbeddedStream, StreamSettings};
use weir_pipeline::{ConsumerSettings, PipelineSettings, drain};
use weir_runtime::router::Binding;
use weir_runtime::{Limits, Runtime};
use weir_testkit::{build, golden};

use crate::wiring;
use weir_lambda::sampler::{EVENT_TYPES, Sampler};

const TENANTS: [&str; 2] = ["acme", "globex"];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many events to produce.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Where the demo's stream, objects, dead letters and metadata go
    /// (replaced on each run).
    #[arg(long, default_value = "weir-data/demo")]
    data_dir: PathBuf,
}

pub fn run(runtime: Runtime, args: Args) -> anyhow::Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    tokio.block_on(demo(runtime, args))
}

async fn demo(runtime: Runtime, args: Args) -> anyhow::Result<ExitCode> {
    let wasm_dir = wiring::build_examples()?;
    let plugins = wiring::load_examples(&runtime, &wasm_dir)?;
    let mut failed_cases = 0;
    for (name, plugin) in &plugins {
        let cases_path = build::repo_root()
            .join("plugins/examples")
            .join(name)
            .join("golden.json");
        let results = golden::run(
            plugin,
            &golden::load(&cases_path).map_err(anyhow::Error::msg)?,
            &Limits::default(),
        );
        let failed = results.iter().filter(|r| !r.passed()).count();
        failed_cases += failed;
        eprintln!(
            "loaded {:<22} golden cases: {} passed, {} failed",
            plugin.label(),
            results.len() - failed,
            failed
        );
    }
    if failed_cases > 0 {
        bail!("{failed_cases} golden case(s) failed; see above");
    }
    let mut router = wiring::default_bindings(&plugins);
    let transaction = plugins
        .iter()
        .find(|(n, _)| n == "transaction")
        .map(|(_, p)| p.clone())
        .context("transaction plugin")?;
    // Tenant acme has its own enrichment: high value from 500.
    let acme = Binding {
        plugin: transaction,
        config: vec![("high_value_threshold".into(), "500".into())],
        limits: Limits::default(),
    };
    router.bind(Some("acme"), "transaction", acme);

    if args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir)
            .with_context(|| format!("clearing {}", args.data_dir.display()))?;
    }
    let pipeline = wiring::pipeline(&args.data_dir, router, PipelineSettings::default())?;
    // The demo's stream takes records as fast as they come; `weir produce`
    // shows Kinesis's per-shard limits at work.
    let settings = StreamSettings {
        max_records_per_second: u32::MAX,
        max_bytes_per_second: u64::MAX,
        ..StreamSettings::new("demo")
    };
    let stream = EmbeddedStream::open(pipeline.dead_letters.clone(), settings).await?;

    let produced = produce(&stream, args.events).await?;
    eprintln!(
        "produced {produced} records onto stream `demo` ({} shards)",
        stream.settings().shard_count
    );

    let started = Instant::now();
    let report = drain(&stream, &pipeline, &ConsumerSettings::default()).await?;
    let elapsed = started.elapsed();

    let c = &report.counts;
    if !c.is_balanced(true) || u64::from(c.records) != produced {
        bail!("records are unaccounted for: produced {produced}, {c:?}");
    }
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
    println!(
        "output under {} (objects/, state/weir.db)",
        args.data_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Puts `n` generated events (one in a hundred broken, to show dead letters)
/// and a record of an unbound type; returns how many the stream took.
async fn produce(stream: &EmbeddedStream, n: usize) -> anyhow::Result<u64> {
    let mut sampler = Sampler::new(42);
    let mut batch = Vec::with_capacity(500);
    let mut accepted = 0u64;
    for i in 0..n {
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
        if batch.len() == 500 || i + 1 == n {
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
