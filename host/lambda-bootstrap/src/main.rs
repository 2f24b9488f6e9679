//! Weir on AWS Lambda (`provided.al2023`): one `bootstrap` for both functions.
//!
//! An event's source picks the handler: Kinesis records go through the
//! pipeline (`batchItemFailures` as the event source mapping expects), S3
//! notifications through the two-stage transformer, and an event without
//! records (`{}`, `{"count": 100}`) is the seed's producer: generated events
//! onto the stream. Everything is set up once
//! at init, never per invocation: the AWS clients, the dead-letter queue's
//! URL, the plugin engine and the plugins (loaded from `WEIR_PLUGIN_DIR`,
//! precompiled artifacts from `WEIR_CACHE_DIR` when the package ships them),
//! each bound as the default for the event types it declares.
//!
//! Hot swap: the registry's bindings go over the shipped ones. An invocation
//! checks the registry's generation (one DynamoDB read) when the last check
//! is older than `WEIR_REGISTRY_TTL_MS` (5 s by default; 0: every
//! invocation) and swaps in the new bindings before its batch; a batch runs
//! on the bindings it started with. A registry that cannot be read leaves the
//! current bindings in place and is logged.
//!
//! `WEIR_INIT_CHECK=1` runs the init alone and prints how long it took and
//! the resident memory, then exits: the init benchmark.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clap::Parser;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use weir_aws::{
    AwsBackends, AwsClients, AwsSettings, DynamoMetadataStore, DynamoRegistry, KinesisStream,
    S3ObjectStore, SqsDeadLetterQueue,
};
use weir_pipeline::{Mode, Pipeline, PipelineSettings, RegistryRouter};
use weir_runtime::router::Router;
use weir_runtime::{Runtime, RuntimeSettings};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The function's configuration: environment variables only.
#[derive(Debug, Parser)]
struct Config {
    #[command(flatten)]
    aws: AwsSettings,
    /// The plugin components (`*.wasm`) shipped with the function.
    #[arg(long, env = "WEIR_PLUGIN_DIR", default_value = "/var/task/plugins")]
    plugin_dir: PathBuf,
    /// Precompiled plugins (read-only is fine when they are all there).
    #[arg(long, env = "WEIR_CACHE_DIR", default_value = "/tmp/weir-cache")]
    cache_dir: PathBuf,
    /// `single-stage` (enrich in the Kinesis handler) or `two-stage`.
    #[arg(long, env = "WEIR_MODE", default_value = "single-stage")]
    mode: String,
    /// How old the registry check may be before an invocation checks again.
    #[arg(long, env = "WEIR_REGISTRY_TTL_MS", default_value_t = 5000)]
    registry_ttl_ms: u64,
}

type AwsPipeline = Pipeline<S3ObjectStore, SqsDeadLetterQueue, DynamoMetadataStore>;

/// What init sets up once for every invocation.
struct Function {
    pipeline: AwsPipeline,
    stream: KinesisStream,
    registry: tokio::sync::Mutex<Following>,
    registry_ttl: Duration,
}

/// The registry's bindings as last checked.
struct Following {
    follower: RegistryRouter<DynamoRegistry>,
    checked_at: Option<Instant>,
}

impl Function {
    /// Swaps in the registry's bindings if they changed and the last check
    /// is older than the TTL.
    async fn follow_registry(&self) {
        let mut following = self.registry.lock().await;
        if following
            .checked_at
            .is_some_and(|at| at.elapsed() < self.registry_ttl)
        {
            return;
        }
        match following.follower.refresh(&self.pipeline.router).await {
            Ok(Some(generation)) => tracing::info!(generation, "registry bindings activated"),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "the registry could not be read; keeping the current bindings")
            }
        }
        following.checked_at = Some(Instant::now());
    }
}

/// Loads every component in `dir` and binds each as the default for its
/// event types. (Per-tenant bindings come from the registry.)
fn bindings(runtime: &Runtime, dir: &Path) -> anyhow::Result<Router> {
    let mut router = Router::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading WEIR_PLUGIN_DIR {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    paths.sort();
    for path in paths {
        let plugin = runtime
            .load_file(&path)
            .with_context(|| format!("loading plugin {}", path.display()))?;
        router.bind_declared(&plugin);
    }
    Ok(router)
}

async fn init(config: &Config, clients: &AwsClients) -> anyhow::Result<Function> {
    let mode = match config.mode.as_str() {
        "single-stage" => Mode::SingleStage,
        "two-stage" => Mode::TwoStage,
        other => anyhow::bail!("WEIR_MODE `{other}`: use single-stage or two-stage"),
    };
    let backends = AwsBackends::connect(clients, &config.aws).await?;
    let runtime = Runtime::new(RuntimeSettings {
        cache_dir: Some(config.cache_dir.clone()),
        ..Default::default()
    })?;
    let shipped = bindings(&runtime, &config.plugin_dir)?;
    let follower = RegistryRouter::new(backends.registry, runtime, shipped.clone());
    let router = shipped;
    let pipeline = Pipeline {
        objects: backends.objects,
        dead_letters: backends.dead_letters,
        metadata: backends.metadata,
        router: router.into(),
        settings: PipelineSettings {
            mode,
            ..Default::default()
        },
    };
    let function = Function {
        pipeline,
        stream: backends.stream,
        registry: tokio::sync::Mutex::new(Following {
            follower,
            checked_at: None,
        }),
        registry_ttl: Duration::from_millis(config.registry_ttl_ms),
    };
    function.follow_registry().await;
    Ok(function)
}

/// Routes an event to its handler by its records' `eventSource`; an event
/// without records is a producer request.
async fn handle(function: &Function, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let pipeline = &function.pipeline;
    if event.payload.get("Records").is_none() {
        let request: weir_lambda::producer::ProduceRequest = serde_json::from_value(event.payload)?;
        let stats = weir_lambda::producer::produce(&function.stream, &request).await?;
        tracing::info!(
            sent = stats.sent,
            throttled = stats.throttled,
            gave_up = stats.gave_up,
            "produced"
        );
        return Ok(serde_json::to_value(stats)?);
    }
    function.follow_registry().await;
    let source = event.payload["Records"][0]["eventSource"]
        .as_str()
        .unwrap_or("aws:kinesis");
    if source == "aws:s3" {
        let s3_event: aws_lambda_events::s3::S3Event = serde_json::from_value(event.payload)?;
        let done = weir_lambda::s3::handle(pipeline, s3_event, Utc::now()).await?;
        tracing::info!(
            transformed = done.results.len(),
            skipped = done.skipped.len(),
            "s3 event done"
        );
        Ok(serde_json::json!({ "transformed": done.results.len(), "skipped": done.skipped.len() }))
    } else {
        let kinesis_event: weir_lambda::kinesis::KinesisEvent =
            serde_json::from_value(event.payload)?;
        let now = Utc::now();
        let handled = weir_lambda::kinesis::handle(pipeline, kinesis_event, now).await;
        // Metrics as CloudWatch embedded metric format: one log line each.
        let function_name =
            std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "weir".into());
        for observed in &handled.observations {
            for document in weir_pipeline::telemetry::emf_document(&function_name, observed, now) {
                println!("{document}");
            }
        }
        Ok(serde_json::to_value(handled.response)?)
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let started = Instant::now();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .without_time() // CloudWatch stamps each line
        .init();
    let config = Config::parse_from(["bootstrap"]);
    let clients = AwsClients::from_env().await;
    let function = init(&config, &clients)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let init_ms = started.elapsed().as_secs_f64() * 1e3;
    let generation = function.registry.lock().await.follower.generation();
    tracing::info!(
        init_ms,
        rss_kib = rss_kib(),
        registry_generation = generation,
        "ready"
    );
    if std::env::var_os("WEIR_INIT_CHECK").is_some() {
        let acme = function
            .pipeline
            .router
            .snapshot()
            .resolve("acme", "transaction")
            .binding()
            .map(|b| b.plugin.label().to_owned());
        println!(
            "{}",
            serde_json::json!({
                "init_ms": init_ms,
                "rss_kib": rss_kib(),
                "registry_generation": generation,
                // What acme's transactions are bound to: a probe for tests.
                "acme_transaction": acme,
            })
        );
        return Ok(());
    }
    let function = &function;
    lambda_runtime::run(service_fn(move |event| handle(function, event))).await
}

#[cfg(test)]
mod tests {
    //! The registry TTL between invocations, against moto.

    use weir_testkit::build::{EXAMPLE_PLUGINS, repo_plugin, shared_cache_dir};
    use weir_testkit::moto;
    use weir_testkit::registry_contract::bind_tagger_for_acme;

    use super::*;

    fn acme_binding(function: &Function) -> String {
        let snapshot = function.pipeline.router.snapshot();
        let binding = snapshot.resolve("acme", "transaction").binding().cloned();
        binding
            .map(|b| b.plugin.label().to_owned())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn an_activation_reaches_the_next_invocation_after_the_ttl() {
        let clients = AwsClients::for_local_endpoint(&moto::endpoint()).await;
        let settings = AwsSettings::with_prefix(&moto::unique_prefix());
        weir_aws::provision::create_all(&clients, &settings, 1)
            .await
            .unwrap();
        let plugins = tempfile::tempdir().unwrap();
        for name in EXAMPLE_PLUGINS {
            let from = repo_plugin(name);
            std::fs::copy(&from, plugins.path().join(from.file_name().unwrap())).unwrap();
        }
        let cache = shared_cache_dir();
        let config = |ttl_ms: &str| {
            let args = [
                "bootstrap",
                "--aws-stream",
                &settings.stream,
                "--raw-bucket",
                &settings.raw_bucket,
                "--processed-bucket",
                &settings.processed_bucket,
                "--metadata-table",
                &settings.metadata_table,
                "--metrics-table",
                &settings.metrics_table,
                "--registry-table",
                &settings.registry_table,
                "--dead-letter-queue",
                &settings.dead_letter_queue,
                "--plugin-dir",
                plugins.path().to_str().unwrap(),
                "--cache-dir",
                cache.to_str().unwrap(),
                "--registry-ttl-ms",
                ttl_ms,
            ];
            Config::parse_from(args)
        };
        let patient = init(&config("600000"), &clients).await.unwrap();
        let eager = init(&config("0"), &clients).await.unwrap();
        assert_eq!(acme_binding(&patient), "transaction@1.0.0");

        let backends = AwsBackends::connect(&clients, &settings).await.unwrap();
        bind_tagger_for_acme(&backends.registry).await;

        // Within its TTL a function keeps what it has; past it, it follows.
        patient.follow_registry().await;
        eager.follow_registry().await;
        assert_eq!(acme_binding(&patient), "transaction@1.0.0");
        assert_eq!(acme_binding(&eager), "tagger@2.0.0");
    }
}
