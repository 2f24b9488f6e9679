//! `weir invoke` and `weir events`: the Lambda handlers on event files,
//! against the embedded backends, as `sam local invoke` runs a function.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use serde_json::{Value, json};
use weir_core::backend::ObjectStore;
use weir_embedded::EmbeddedRegistry;
use weir_lambda::{kinesis, s3, samples};
use weir_pipeline::{BatchResult, RegistryRouter};
use weir_runtime::Runtime;
use weir_runtime::router::Router;

use crate::wiring;
use weir_lambda::sampler::{EVENT_TYPES, Sampler, partition_key};

/// Lambda refuses synchronous payloads larger than this; locally they are
/// accepted with a warning.
const LAMBDA_PAYLOAD_LIMIT: u64 = 6 * 1024 * 1024;

#[derive(Debug, clap::Subcommand)]
pub enum InvokeCommand {
    /// The Kinesis handler on a Kinesis event file; prints its response
    /// (`batchItemFailures`).
    Kinesis(InvokeArgs),
    /// The S3 handler (two-stage transformer) on an S3 event file.
    S3(InvokeArgs),
}

#[derive(Debug, clap::Args)]
pub struct InvokeArgs {
    /// The event file (JSON), as Lambda would deliver it.
    #[arg(long)]
    event: PathBuf,
    /// Where Weir keeps its objects, dead letters and metadata.
    #[arg(long, env = "WEIR_DATA_DIR", default_value = "weir-data")]
    data_dir: PathBuf,
    /// Two-stage mode: the Kinesis handler writes raw objects only.
    #[arg(long)]
    two_stage: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// A Kinesis event of generated records from one shard.
    Kinesis {
        /// Good records to generate.
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// Add records Weir must dead-letter (not JSON, a missing field, not UTF-8).
        #[arg(long)]
        poison: bool,
        #[arg(long, default_value = "shardId-000000000000")]
        shard: String,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// An S3 event announcing every raw object under a data directory.
    S3 {
        #[arg(long, env = "WEIR_DATA_DIR", default_value = "weir-data")]
        data_dir: PathBuf,
        #[arg(long, default_value = "weir-raw")]
        bucket: String,
    },
}

fn read_event<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if size > LAMBDA_PAYLOAD_LIMIT {
        eprintln!(
            "warning: {} is {size} bytes; Lambda refuses payloads over 6 MB (accepted locally)",
            path.display()
        );
    }
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is not a Lambda event of this kind (see `weir events --help` for samples)",
            path.display()
        )
    })
}

fn summary(result: &BatchResult) -> Value {
    let c = &result.counts;
    json!({
        "batch_id": result.batch_id,
        "records": c.records,
        "outputs": c.outputs,
        "dropped": c.dropped,
        "dead_lettered": c.dead_lettered(),
        "objects": result.object_keys,
        "plugins": result.plugin_versions,
    })
}

pub fn invoke(runtime: Runtime, command: InvokeCommand) -> anyhow::Result<ExitCode> {
    let (args, is_kinesis) = match &command {
        InvokeCommand::Kinesis(args) => (args, true),
        InvokeCommand::S3(args) => (args, false),
    };
    let wasm_dir = wiring::build_examples()?;
    let plugins = wiring::load_examples(&runtime, &wasm_dir)?;
    let settings = wiring::pipeline_settings(args.two_stage);
    let base = wiring::default_bindings(&plugins);
    let pipeline = wiring::pipeline(&args.data_dir, Router::new(), settings)?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async {
        // The bindings the deployed function follows: the registry's
        // activations (and shadows) over the examples' defaults.
        let registry =
            EmbeddedRegistry::open(pipeline.metadata.clone(), pipeline.objects.clone()).await?;
        let mut follower = RegistryRouter::new(registry, runtime.clone(), base);
        follower.refresh(&pipeline.router).await?;
        let code = handle(&pipeline, is_kinesis, args).await?;
        // What shadow versions saw, as the deployed function reports it.
        follower.flush_shadow_tallies(&pipeline.router).await?;
        Ok(code)
    })
}

async fn handle(
    pipeline: &wiring::EmbeddedPipeline,
    is_kinesis: bool,
    args: &InvokeArgs,
) -> anyhow::Result<ExitCode> {
    if is_kinesis {
        let event: kinesis::KinesisEvent = read_event(&args.event)?;
        let handled = kinesis::handle(pipeline, event, Utc::now()).await;
        for result in &handled.batches {
            eprintln!("{}", summary(result));
        }
        for (shard, error) in &handled.failures {
            eprintln!("shard {shard} failed, reported for retry: {error}");
        }
        println!("{}", serde_json::to_string(&handled.response)?);
        Ok(ExitCode::SUCCESS)
    } else {
        let event = read_event(&args.event)?;
        let transformed = s3::handle(pipeline, event, Utc::now())
            .await
            .context("the transformer failed (Lambda would retry the invocation)")?;
        let skipped: Vec<Value> = transformed
            .skipped
            .iter()
            .map(|(key, why)| json!({"key": key, "why": why}))
            .collect();
        let results: Vec<Value> = transformed.results.iter().map(summary).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"transformed": results, "skipped": skipped}))?
        );
        Ok(ExitCode::SUCCESS)
    }
}

pub fn events(command: EventsCommand) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let event = match command {
        EventsCommand::Kinesis {
            count,
            poison,
            shard,
            seed,
        } => {
            let mut sampler = Sampler::new(seed);
            let mut records: Vec<(String, Vec<u8>)> = (0..count)
                .map(|n| {
                    let event = sampler.event(EVENT_TYPES[n % EVENT_TYPES.len()]);
                    (partition_key(&event), event.to_string().into_bytes())
                })
                .collect();
            if poison {
                records.push(("poison-1".into(), b"not json".to_vec()));
                records.push((
                    "poison-2".into(),
                    br#"{"event_type":"transaction"}"#.to_vec(),
                ));
                records.push(("poison-3".into(), vec![0xff, 0xfe, 0x00]));
            }
            let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/weir-events";
            samples::kinesis_event(arn, &shard, &records, 1, now)
        }
        EventsCommand::S3 { data_dir, bucket } => {
            let (objects, _) = wiring::embedded(&data_dir)?;
            let tokio = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let keys = tokio.block_on(objects.list("raw/"))?;
            if keys.is_empty() {
                anyhow::bail!(
                    "no raw objects under {}: run `weir invoke kinesis --two-stage` first",
                    objects.root().display()
                );
            }
            let sized: Vec<(String, u64)> = keys
                .into_iter()
                .map(|k| {
                    let size = std::fs::metadata(objects.root().join(&k)).map_or(0, |m| m.len());
                    (k, size)
                })
                .collect();
            samples::s3_event(&bucket, &sized, now)
        }
    };
    println!("{}", serde_json::to_string_pretty(&event)?);
    Ok(ExitCode::SUCCESS)
}
