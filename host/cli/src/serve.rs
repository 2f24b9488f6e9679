//! `weir serve`: the pipeline as a long-running service, on the embedded
//! backends or on AWS (`--backend aws`: Kinesis, S3, DynamoDB, SQS).
//!
//! Consumes every shard of the stream from its checkpoint, in batches
//! of `--batch-size` records or after `--batching-window-ms` (the seeds' 100
//! and 5 s), enriches with the plugins, and checkpoints each batch once its
//! output is durable; stopped with Ctrl-C, it finishes the batch in flight, and
//! it resumes where it stopped when started again.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use weir_aws::{AwsBackends, AwsClients, AwsSettings};
use weir_core::backend::{DeadLetterQueue, MetadataStore, ObjectStore};
use weir_core::stream::StreamSource;
use weir_embedded::{EmbeddedRegistry, EmbeddedStream};
use weir_pipeline::telemetry::Telemetry;
use weir_pipeline::{ConsumerSettings, Pipeline, RegistryRouter, follow_registry, serve};
use weir_runtime::Runtime;

use crate::wiring::{self, Backend, StreamArgs};

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
    /// A shard behind catches up this many full batches at a time, each its
    /// own batch but made durable together (1: each on its own).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=100))]
    batches_per_commit: u16,
    /// The checkpoint owner's name (two services with one name share progress).
    #[arg(long, default_value = "weir-serve")]
    consumer: String,
    /// Two-stage mode, as the seed: each batch writes raw objects, then the
    /// transformer enriches each raw object (default: enrich in the batch).
    #[arg(long)]
    two_stage: bool,
    /// How often the registry is checked for activations.
    #[arg(long, default_value_t = 500)]
    registry_poll_ms: u64,
    /// Serve Prometheus metrics at `http://ADDRESS/metrics` (records,
    /// bytes, batch latency quantiles, iterator age, per-plugin use).
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Where the stream and the output live.
    #[arg(long, value_enum, default_value = "embedded")]
    backend: Backend,
    /// The AWS resources (`--backend aws`); credentials, region and
    /// `AWS_ENDPOINT_URL` come from the SDK's usual places.
    #[command(flatten)]
    aws: AwsSettings,
}

pub fn run(runtime: Runtime, args: Args) -> anyhow::Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async move {
        let wasm_dir = wiring::build_examples()?;
        let plugins = wiring::load_examples(&runtime, &wasm_dir)?;
        for (_, plugin) in &plugins {
            eprintln!(
                "bound {} to {}",
                plugin.label(),
                plugin.info().event_types.join(", ")
            );
        }
        let settings = wiring::pipeline_settings(args.two_stage);
        let router = wiring::default_bindings(&plugins);
        let telemetry = match args.metrics_listen {
            Some(address) => Some(serve_metrics(address).await?),
            None => None,
        };
        let consumer = ConsumerSettings {
            name: args.consumer.clone(),
            batch_size: args.batch_size,
            batching_window: Duration::from_millis(args.batching_window_ms),
            batches_per_commit: usize::from(args.batches_per_commit),
            telemetry,
            ..Default::default()
        };
        match args.backend {
            Backend::Embedded => {
                let base = router.clone();
                let pipeline = wiring::pipeline(&args.target.data_dir, router, settings)?;
                // Hot swap: the registry's activations over the examples'
                // default bindings, followed while serving.
                let registry =
                    EmbeddedRegistry::open(pipeline.metadata.clone(), pipeline.objects.clone())
                        .await?;
                let follower = RegistryRouter::new(registry, runtime.clone(), base);
                let every = Duration::from_millis(args.registry_poll_ms);
                let follow = tokio::spawn(follow_registry(
                    follower,
                    pipeline.router.clone(),
                    every,
                    std::future::pending(),
                ));
                let stream =
                    EmbeddedStream::open(pipeline.dead_letters.clone(), args.target.settings())
                        .await?;
                eprintln!(
                    "serving stream `{}` from {} (Ctrl-C to stop; WEIR_LOG=info shows each batch)",
                    args.target.stream,
                    args.target.data_dir.display()
                );
                let served = until_ctrl_c(stream, pipeline, consumer).await;
                follow.abort();
                served
            }
            Backend::Aws => {
                let clients = AwsClients::from_env().await;
                let backends = AwsBackends::connect(&clients, &args.aws).await?;
                let follower = RegistryRouter::new(backends.registry, runtime.clone(), router.clone());
                let pipeline = Pipeline {
                    objects: backends.objects,
                    dead_letters: backends.dead_letters,
                    metadata: backends.metadata,
                    router: router.into(),
                    settings,
                };
                let follow = tokio::spawn(follow_registry(
                    follower,
                    pipeline.router.clone(),
                    Duration::from_millis(args.registry_poll_ms),
                    std::future::pending(),
                ));
                eprintln!(
                    "serving Kinesis stream `{}` into s3://{} and s3://{}, following registry table {} (Ctrl-C to stop)",
                    args.aws.stream, args.aws.raw_bucket, args.aws.processed_bucket, args.aws.registry_table
                );
                let served = until_ctrl_c(backends.stream, pipeline, consumer).await;
                follow.abort();
                served
            }
        }
    })
}

/// Serves `/metrics` (Prometheus text) in the background.
async fn serve_metrics(address: std::net::SocketAddr) -> anyhow::Result<Arc<Telemetry>> {
    let telemetry = Arc::new(Telemetry::new());
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} for --metrics-listen"))?;
    let shared = telemetry.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let telemetry = shared.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    telemetry.render_prometheus(),
                )
            }
        }),
    );
    eprintln!("metrics at http://{}/metrics", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(telemetry)
}

async fn until_ctrl_c<S, O, D, M>(
    stream: S,
    pipeline: Pipeline<O, D, M>,
    consumer: ConsumerSettings,
) -> anyhow::Result<ExitCode>
where
    S: StreamSource + 'static,
    O: ObjectStore + 'static,
    D: DeadLetterQueue + 'static,
    M: MetadataStore + 'static,
{
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("stopping after the batches in flight ...");
    };
    let report = serve(Arc::new(stream), Arc::new(pipeline), consumer, shutdown).await?;
    eprintln!("served {report}");
    Ok(ExitCode::SUCCESS)
}
