//! The `weir` command. This crate is not a library: it parses arguments, sets
//! up logging, and calls the host crates.

mod aws;
mod bench;
mod console;
mod demo;
mod dlq;
mod invoke;
mod plugin_new;
mod plugin_run;
mod plugin_test;
mod produce;
mod registry;
mod replay;
mod serve;
mod tables;
mod wiring;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weir_runtime::{Limits, Runtime, RuntimeSettings};

/// Weir allocates many small, short-lived strings per record (JSON fields, the
/// values crossing the sandbox boundary); mimalloc serves that pattern far
/// better than the system allocator (measured: see `weir bench`). It serves
/// the C code too (`override`, in the workspace's `Cargo.toml`): SQLite's
/// allocations from two shards' threads went to glibc's arenas, which grow
/// and shrink with `mprotect` under the process's memory-map lock, and the
/// shards' threads waited on each other there (12-33 ms a two-core run of
/// `weir bench pipeline`'s worker, off-CPU time by `perf sched_switch`;
/// none with the override).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    about = "WebAssembly-pluggable stream transformation"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        env = "WEIR_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,
    /// Where compiled plugins are cached (as trusted as this binary).
    #[arg(long, env = "WEIR_CACHE_DIR", global = true)]
    cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with plugins: run, test, describe, scaffold.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// The main job: the whole local pipeline with the example plugins.
    Demo(demo::Args),
    /// Run the embedded pipeline as a service: consume every shard, with checkpoints.
    Serve(serve::Args),
    /// Measure throughput and footprint against the Python yardsticks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Put generated events on the embedded stream at a rate (the seeds' producer).
    Produce(produce::Args),
    /// Inspect and redrive dead letters.
    #[command(subcommand)]
    Dlq(dlq::Command),
    /// Run a Lambda handler on an event file against the embedded backends.
    #[command(subcommand)]
    Invoke(invoke::InvokeCommand),
    /// A partition key's per-minute metrics (the seed's metrics table).
    Metrics(tables::MetricsArgs),
    /// A shard's batch metadata (the seed's metadata table, by ShardIndex).
    Batches(tables::BatchesArgs),
    /// The plugin registry: upload, list, activate, roll back, audit.
    #[command(subcommand)]
    Registry(registry::Command),
    /// Backfill: re-run enrichment (optionally a chosen version) over a time range of raw objects.
    Replay(replay::Args),
    /// The console: plugins, versions, bindings and audit over HTTP; its tokens.
    #[command(subcommand)]
    Console(console::Command),
    /// Weir's AWS resources (`weir aws provision`).
    #[command(subcommand)]
    Aws(aws::Command),
    /// Print a sample Lambda event file (for `weir invoke`).
    #[command(subcommand)]
    Events(invoke::EventsCommand),
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Run events (JSON Lines) through a plugin; one outcome per line on stdout.
    Run(plugin_run::Args),
    /// Check a plugin against golden cases.
    Test(plugin_test::Args),
    /// Print what a plugin says about itself (and whether the host accepts it).
    Info {
        /// The plugin component (.wasm).
        plugin: PathBuf,
    },
    /// Scaffold a new plugin crate that builds and passes its own tests.
    New(plugin_new::Args),
}

/// Limits settable on the command line, over the runtime's safe defaults.
#[derive(Debug, Clone, clap::Args)]
struct LimitArgs {
    /// Memory limit of the plugin, in MiB.
    #[arg(long, default_value_t = Limits::default().memory_bytes >> 20)]
    memory_mib: usize,
    /// CPU time limit per batch, in milliseconds.
    #[arg(long, default_value_t = Limits::default().cpu_time.as_millis() as u64)]
    cpu_ms: u64,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            memory_bytes: self.memory_mib << 20,
            cpu_time: std::time::Duration::from_millis(self.cpu_ms),
            ..Limits::default()
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format, cli.command.default_log_filter());
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

impl Command {
    /// What is logged unless `WEIR_LOG` says otherwise: warnings and errors,
    /// and for the plugin author's commands the plugin's own logs and prints
    /// too, which are what they run it to see.
    fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Plugin(PluginCommand::Run(_) | PluginCommand::Test(_)) => {
                "warn,weir::plugin=debug"
            }
            _ => "warn",
        }
    }
}

fn init_tracing(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn runtime(cache_dir: Option<PathBuf>) -> anyhow::Result<Runtime> {
    let cache_dir = cache_dir.or_else(default_cache_dir);
    Runtime::new(RuntimeSettings {
        cache_dir,
        // For profiling plugins with `perf`: see the README.
        perf_map: std::env::var_os("WEIR_WASM_PERFMAP").is_some(),
        ..Default::default()
    })
    .context("starting the plugin runtime")
}

/// `$XDG_CACHE_HOME/weir` or `~/.cache/weir`.
fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("weir").join("plugins"))
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Plugin(PluginCommand::Run(args)) => plugin_run::run(runtime(cli.cache_dir)?, args),
        Command::Plugin(PluginCommand::Test(args)) => {
            plugin_test::run(runtime(cli.cache_dir)?, args)
        }
        Command::Plugin(PluginCommand::Info { plugin }) => {
            let loaded = runtime(cli.cache_dir)?
                .load_file(&plugin)
                .with_context(|| format!("loading {}", plugin.display()))?;
            let mut info = serde_json::to_value(loaded.info())?;
            // The schemas as JSON, not as strings of it (loading proved they parse).
            for schema in ["input_schema", "config_schema"] {
                if let Some(text) = info[schema].as_str() {
                    info[schema] = serde_json::from_str(text)?;
                }
            }
            println!("{}", serde_json::to_string_pretty(&info)?);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Plugin(PluginCommand::New(args)) => plugin_new::run(args),
        Command::Demo(args) => demo::run(runtime(cli.cache_dir)?, args),
        Command::Bench(bench::BenchCommand::Plugins(args)) => {
            bench::plugins::run(cli.cache_dir, args)
        }
        Command::Bench(bench::BenchCommand::Pipeline(args)) => {
            bench::pipeline::run(cli.cache_dir, args)
        }
        Command::Produce(args) => produce::run(args),
        Command::Dlq(command) => dlq::run(command),
        Command::Serve(args) => serve::run(runtime(cli.cache_dir)?, args),
        Command::Invoke(command) => invoke::invoke(runtime(cli.cache_dir)?, command),
        Command::Events(command) => invoke::events(command),
        Command::Metrics(args) => tables::metrics(args),
        Command::Aws(command) => aws::run(runtime(cli.cache_dir)?, command),
        Command::Registry(command) => registry::run(runtime(cli.cache_dir)?, command),
        Command::Batches(args) => tables::batches(args),
        Command::Replay(args) => replay::run(runtime(cli.cache_dir)?, args),
        Command::Console(command) => console::run(runtime(cli.cache_dir)?, command),
    }
}
