//! `weir serve`: the embedded pipeline as a long-running service.
//!
//! Consumes every shard of the embedded stream from its checkpoint, in batches
//! of `--batch-size` records or after `--batching-window-ms` (the seeds' 100
//! and 5 s), enriches with the plugins, and checkpoints each batch once its
//! output is durable; stopped with Ctrl-C, it finishes the batch in flight, and
//! it resumes where it stopped when started again.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use weir_embedded::EmbeddedStream;
use weir_pipeline::{ConsumerSettings, Mode, PipelineSettings, serve};
use weir_runtime::Runtime;

use crate::wiring::{self, StreamArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: StreamArgs,
    /// Records per batch at most.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// How long the oldest record waits for a fuller batch, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    batching_window_ms: u64,
    /// The checkpoint owner's name (two services with one name share progress).
    #[arg(long, default_value = "weir-serve")]
    consumer: String,
    /// Two-stage mode, as the seed: each batch writes raw objects, then the
    /// transformer enriches each raw object (default: enrich in the batch).
    #[arg(long)]
    two_stage: bool,
}

pub fn run(runtime: Runtime, args: Args) -> anyhow::Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async move {
        let wasm_dir = wiring::build_examples()?;
        let plugins = wiring::load_examples(&runtime, &wasm_dir)?;
        for (_, plugin) in &plugins {
            eprintln!("bound {} to {}", plugin.label(), plugin.info().event_types.join(", "));
        }
        let mode = if args.two_stage { Mode::TwoStage } else { Mode::SingleStage };
        let settings = PipelineSettings { mode, ..Default::default() };
        let pipeline = wiring::pipeline(&args.target.data_dir, wiring::default_bindings(&plugins), settings)?;
        let stream = EmbeddedStream::open(pipeline.dead_letters.clone(), args.target.settings()).await?;
        let consumer = ConsumerSettings {
            name: args.consumer.clone(),
            batch_size: args.batch_size,
            batching_window: Duration::from_millis(args.batching_window_ms),
            ..Default::default()
        };
        eprintln!(
            "serving stream `{}` from {} (Ctrl-C to stop; WEIR_LOG=info shows each batch)",
            args.target.stream,
            args.target.data_dir.display()
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("stopping after the batches in flight ...");
        };
        let report = serve(Arc::new(stream), Arc::new(pipeline), consumer, shutdown).await?;
        let c = &report.counts;
        eprintln!(
            "served {} batches: {} records, {} enriched, {} passed through, {} dropped, {} dead-lettered",
            report.batches,
            c.records,
            c.enriched,
            c.passed_through,
            c.dropped,
            c.dead_lettered()
        );
        Ok(ExitCode::SUCCESS)
    })
}
