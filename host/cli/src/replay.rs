//! `weir replay`: backfill. Re-runs enrichment over an event type's raw
//! objects in a time range, with the live bindings (the example plugins'
//! defaults and the registry's activations) and, with `--version`, a chosen
//! version over them for the default or one tenant. The processed objects
//! are rewritten under the keys live processing gave them, so a replay is
//! idempotent. Shows progress; prints a JSON summary.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use weir_aws::{AwsBackends, AwsClients, AwsSettings};
use weir_core::backend::{DeadLetterQueue, MetadataStore, ObjectStore};
use weir_core::registry::Registry;
use weir_embedded::EmbeddedRegistry;
use weir_pipeline::{Pipeline, PipelineSettings, RegistryRouter, ReplayRange};
use weir_runtime::router::{Binding, Router, SharedRouter};
use weir_runtime::{Limits, Runtime};

use crate::wiring::{self, Backend, StreamArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The event type to replay.
    #[arg(long)]
    event_type: String,
    /// The first hour (RFC 3339; its whole hour is included).
    #[arg(long)]
    from: String,
    /// The end (RFC 3339, exclusive).
    #[arg(long)]
    to: String,
    /// A version to run instead of the live binding: `name@version` or its
    /// SHA-256, from the registry.
    #[arg(long)]
    version: Option<String>,
    /// With --version: only this tenant's records (default: every tenant's).
    #[arg(long, requires = "version")]
    tenant: Option<String>,
    /// With --version: configuration the plugin sees, `key=value`, repeatable.
    #[arg(long = "config", value_parser = parse_pair, requires = "version")]
    config: Vec<(String, String)>,
    #[command(flatten)]
    target: StreamArgs,
    #[arg(long, value_enum, default_value = "embedded")]
    backend: Backend,
    #[command(flatten)]
    aws: AwsSettings,
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{text}` is not key=value"))
}

pub fn run(runtime: Runtime, args: Args) -> anyhow::Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async move {
        let range = ReplayRange {
            event_type: args.event_type.clone(),
            from: weir_core::time::parse_rfc3339(&args.from)
                .map_err(|e| anyhow::anyhow!("--from {}: {e}", args.from))?,
            to: weir_core::time::parse_rfc3339(&args.to)
                .map_err(|e| anyhow::anyhow!("--to {}: {e}", args.to))?,
        };
        let wasm_dir = wiring::build_examples()?;
        let plugins = wiring::load_examples(&runtime, &wasm_dir)?;
        let base = wiring::default_bindings(&plugins);
        match args.backend {
            Backend::Embedded => {
                let pipeline = wiring::pipeline(
                    &args.target.data_dir,
                    Router::new(),
                    PipelineSettings::default(),
                )?;
                let registry =
                    EmbeddedRegistry::open(pipeline.metadata.clone(), pipeline.objects.clone())
                        .await?;
                replay(&runtime, registry, base, pipeline, &range, &args).await
            }
            Backend::Aws => {
                let clients = AwsClients::from_env().await;
                let backends = AwsBackends::connect(&clients, &args.aws).await?;
                let pipeline = Pipeline {
                    objects: backends.objects,
                    dead_letters: backends.dead_letters,
                    metadata: backends.metadata,
                    router: Router::new().into(),
                    settings: PipelineSettings::default(),
                };
                replay(&runtime, backends.registry, base, pipeline, &range, &args).await
            }
        }
    })
}

async fn replay<R, O, D, M>(
    runtime: &Runtime,
    registry: R,
    base: Router,
    pipeline: Pipeline<O, D, M>,
    range: &ReplayRange,
    args: &Args,
) -> anyhow::Result<ExitCode>
where
    R: Registry + Clone,
    O: ObjectStore,
    D: DeadLetterQueue,
    M: MetadataStore,
{
    // The live bindings: what the registry has activated over the examples.
    let live = SharedRouter::new(Router::new());
    RegistryRouter::new(registry.clone(), runtime.clone(), base)
        .refresh(&live)
        .await?;
    let mut router = (*live.snapshot()).clone();
    if let Some(reference) = &args.version {
        let version = registry
            .versions(None)
            .await?
            .into_iter()
            .find(|v| &v.sha256 == reference || &v.label() == reference)
            .with_context(|| {
                format!("no version {reference} in the registry (`weir registry list`)")
            })?;
        if !version.event_types.contains(&range.event_type) {
            bail!(
                "{} handles {}, not {}",
                version.label(),
                version.event_types.join(", "),
                range.event_type
            );
        }
        let bytes = registry
            .component(&version.sha256)
            .await?
            .with_context(|| format!("the component of {} is missing", version.label()))?;
        let plugin = runtime.load(&bytes)?;
        let binding = Binding {
            plugin,
            config: args.config.clone(),
            limits: Limits::default(),
        };
        router.bind(args.tenant.as_deref(), &range.event_type, binding);
        eprintln!(
            "replaying {} for {} with {}",
            range.event_type,
            args.tenant.as_deref().unwrap_or("every tenant"),
            version.label()
        );
    }
    pipeline.router.replace(router);
    let started = Instant::now();
    let mut last_report = Instant::now() - Duration::from_secs(1);
    let done = pipeline
        .replay(range, chrono::Utc::now(), |p| {
            let finished = p.objects_done == p.objects_total;
            if finished || last_report.elapsed() >= Duration::from_millis(500) {
                eprintln!(
                    "replayed {}/{} objects, {} records ({:.1} s)",
                    p.objects_done,
                    p.objects_total,
                    p.counts.records,
                    started.elapsed().as_secs_f64()
                );
                last_report = Instant::now();
            }
        })
        .await?;
    let c = &done.counts;
    println!(
        "{}",
        serde_json::json!({
            "objects": done.objects_done,
            "objects_missing": done.objects_missing,
            "records": c.records,
            "enriched": c.enriched,
            "passed_through": c.passed_through,
            "dropped": c.dropped,
            "dead_lettered": c.dead_lettered(),
        })
    );
    Ok(ExitCode::SUCCESS)
}
