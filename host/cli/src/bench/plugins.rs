//! `weir bench plugins`: throughput and footprint of the plugin platform, with figures.
//!
//! Prints, on one core:
//! - the Python seed transformer (`bench/seed_transformer.py`) and
//!   `weir plugin run` with the transaction plugin, each as a whole process on
//!   the same generated events, and their ratio (target: Weir ≥ 6×);
//! - the transaction enrichment in-process through the sandbox (limits on)
//!   against the same logic compiled natively, both writing the same envelope
//!   (target: WASM ≤ 1.3× the native time), and what holding each payload to
//!   the plugin's input schema adds, as hosts do;
//! - the per-batch instantiation cost, compile and cached-load times, and the
//!   process's RSS with all example plugins loaded (target ≤ 40 MiB).
//!
//! Run it in release mode: `cargo run --release -p weir -- bench plugins`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Map;
use weir_core::envelope::{self, EnvelopeContext, Original};
use weir_core::{JsonObject, Outcome, PluginEvent, PluginRef, Record, StreamContext};
use weir_runtime::{Limits, Plugin, Runtime, RuntimeSettings};
use weir_testkit::build;

use super::{best_and_median, mib, ms, rss_bytes, time_process, us};
use crate::wiring::{self, EXAMPLES};
use weir_lambda::sampler::Sampler;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events per measurement.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Events per plugin invocation.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Skip the Python yardstick (when no python3 is installed).
    #[arg(long)]
    no_python: bool,
    /// Runs per measurement. This machine is a VM whose neighbours steal time:
    /// runs are interleaved so both sides see the same noise, and the best and
    /// the median are reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    repeat: u32,
}

const PROCESSED: &str = "2024-01-15T11:00:00Z";

pub fn run(cache_dir: Option<PathBuf>, args: Args) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: a debug build; run `cargo run --release -p weir -- bench plugins` for real figures"
        );
    }
    let root = build::repo_root();
    let wasm_dir = wiring::build_examples()?;
    let wasm = |name: &str| wiring::example_path(&wasm_dir, name);

    // Footprint first, before the benchmark's own data inflates the process. A
    // host at start-up loads precompiled artifacts; compiling (Cranelift's
    // memory) happens once per version, so the cache is warmed in child
    // processes and this process only loads from it.
    let cache = cache_dir.unwrap_or_else(|| root.join("target").join("weir-bench-cache"));
    for name in EXAMPLES {
        let status = Command::new(std::env::current_exe()?)
            .arg("--cache-dir")
            .arg(&cache)
            .args(["plugin", "info"])
            .arg(wasm(name))
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("`weir plugin info {name}.wasm` failed: {status}");
        }
    }
    let rss_before = rss_bytes();
    let runtime = Runtime::new(RuntimeSettings {
        cache_dir: Some(cache),
        ..Default::default()
    })?;
    let mut plugins = Vec::new();
    let mut cached_load = Duration::ZERO;
    for name in EXAMPLES {
        let bytes = std::fs::read(wasm(name)).with_context(|| format!("reading {name}.wasm"))?;
        let t = Instant::now();
        plugins.push(runtime.load(&bytes)?);
        cached_load += t.elapsed();
    }
    let rss_loaded = rss_bytes();
    let uncached = Runtime::new(RuntimeSettings::default())?;
    let mut compile = Duration::ZERO;
    for name in EXAMPLES {
        let bytes = std::fs::read(wasm(name))?;
        let t = Instant::now();
        drop(uncached.load(&bytes)?);
        compile += t.elapsed();
    }
    drop(uncached);

    println!("== footprint");
    println!(
        "compile, per plugin (no cache)          {:>10.2} ms",
        ms(compile) / 5.0
    );
    println!(
        "load from the compiled cache, per plugin {:>9.3} ms (includes describe)",
        ms(cached_load) / 5.0
    );
    println!(
        "RSS before loading                      {:>10.1} MiB",
        mib(rss_before)
    );
    println!(
        "RSS, all 5 example plugins loaded, idle {:>10.1} MiB   (target <= 40)",
        mib(rss_loaded)
    );

    let dir = tempfile::tempdir()?;
    let input = dir.path().join("transactions.jsonl");
    let mut sampler = Sampler::new(7);
    let lines: Vec<String> = (0..args.events)
        .map(|_| sampler.event("transaction").to_string())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n")?;
    let mb = std::fs::metadata(&input)?.len() as f64 / 1e6;
    println!(
        "\n== whole process, {} transaction events ({mb:.1} MB), one core",
        args.events
    );

    let mut weir_runs = Vec::new();
    let mut python_runs = Vec::new();
    for _ in 0..args.repeat {
        weir_runs.push(time_process(
            Command::new(std::env::current_exe()?)
                .args(["plugin", "run", "--processing-time", PROCESSED, "--input"])
                .arg(&input)
                .arg(wasm("transaction")),
            &dir.path().join("weir-out.jsonl"),
        )?);
        if !args.no_python {
            python_runs.push(time_process(
                Command::new("python3")
                    .arg(root.join("bench/seed_transformer.py"))
                    .arg(&input)
                    .arg(dir.path().join("py-out.jsonl")),
                Path::new("/dev/null"),
            )?);
        }
    }
    let n = args.events as f64;
    let (weir_best, weir_median) = best_and_median(&mut weir_runs);
    println!(
        "weir plugin run (transaction.wasm)      {:>10.0} events/s best, {:>8.0} median, {:>6.1} MB/s best",
        n / weir_best,
        n / weir_median,
        mb / weir_best
    );
    if !args.no_python {
        let (python_best, python_median) = best_and_median(&mut python_runs);
        println!(
            "python seed transformer                 {:>10.0} events/s best, {:>8.0} median, {:>6.1} MB/s best",
            n / python_best,
            n / python_median,
            mb / python_best
        );
        println!(
            "weir / python                           {:>10.1}x best, {:>5.1}x median   (target >= 6x)",
            python_best / weir_best,
            python_median / weir_median
        );
    }

    println!(
        "\n== in process, batches of {}, best of {}",
        args.batch_size, args.repeat
    );
    let parsed: Vec<Record<'_>> = lines
        .iter()
        .map(|line| Record::parse(line).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<_>>()?;
    let transaction = &plugins[0];
    let limits = Limits::default();
    // Interleaved, as the whole-process runs are: a burst of the
    // neighbours' load then slows a run of each side, not all of one side's.
    let mut sandboxed = Vec::new();
    let mut screened = Vec::new();
    let mut native = Vec::new();
    for _ in 0..args.repeat {
        let wasm = Enrichment::Sandboxed(transaction, &limits);
        sandboxed.push(enrich_all(&parsed, args.batch_size, wasm));
        let wasm = Enrichment::Screened(transaction, &limits);
        screened.push(enrich_all(&parsed, args.batch_size, wasm));
        native.push(enrich_all(&parsed, args.batch_size, Enrichment::Native));
    }
    let (wasm_time, instantiate) = best(&sandboxed);
    let (screened_time, _) = best(&screened);
    let (native_time, _) = best(&native);
    let n = parsed.len() as f64; // the same events, parsed once
    println!(
        "sandboxed (wasm, limits on)             {:>10.0} events/s  {:>6.2} µs/event",
        n / wasm_time.as_secs_f64(),
        us(wasm_time) / n
    );
    println!(
        "native, same logic                      {:>10.0} events/s  {:>6.2} µs/event",
        n / native_time.as_secs_f64(),
        us(native_time) / n
    );
    println!(
        "wasm / native time                      {:>10.2}x          (target <= 1.3x)",
        wasm_time.as_secs_f64() / native_time.as_secs_f64()
    );
    println!(
        "input schema screening, per event       {:>10.2} µs      (sandboxed with it: {:.2} µs/event)",
        (us(screened_time) - us(wasm_time)) / n,
        us(screened_time) / n
    );
    let batches = parsed.len().div_ceil(args.batch_size) as f64;
    println!(
        "instantiate, per batch                  {:>10.1} µs",
        us(instantiate) / batches
    );
    Ok(ExitCode::SUCCESS)
}

/// How the events are enriched.
enum Enrichment<'a> {
    /// The plugin's call alone.
    Sandboxed(&'a Plugin, &'a Limits),
    /// As a host calls it: each payload held to the input schema first.
    Screened(&'a Plugin, &'a Limits),
    Native,
}

/// Enriches every event and writes the envelopes, as `plugin run` does; returns
/// the total time and the time spent instantiating.
fn enrich_all(
    parsed: &[Record<'_>],
    batch_size: usize,
    enrichment: Enrichment<'_>,
) -> (Duration, Duration) {
    let plugin_ref = PluginRef {
        name: "transaction".into(),
        version: "1.0.0".into(),
    };
    let ctx = EnvelopeContext {
        source: "bench",
        shard_id: "input",
        processed_timestamp: PROCESSED,
        plugin: Some(&plugin_ref),
    };
    let mut out = Vec::with_capacity(1 << 20);
    let mut instantiate = Duration::ZERO;
    let started = Instant::now();
    for (b, chunk) in parsed.chunks(batch_size).enumerate() {
        let sequences: Vec<String> = (0..chunk.len())
            .map(|i| (b * batch_size + i).to_string())
            .collect();
        let events: Vec<PluginEvent> = chunk
            .iter()
            .zip(&sequences)
            .map(|(record, seq)| {
                let stream = StreamContext {
                    tenant: "default",
                    partition_key: "default",
                    sequence_number: seq,
                    arrival_time: PROCESSED,
                    processing_time: PROCESSED,
                };
                PluginEvent::from_payload(record, stream).expect("valid sample")
            })
            .collect();
        let outcomes = match enrichment {
            Enrichment::Sandboxed(plugin, limits) => {
                let report = plugin.process_unscreened(&[], &events, limits);
                instantiate += report.instantiate;
                report.outcomes
            }
            Enrichment::Screened(plugin, limits) => plugin.process(&[], &events, limits).outcomes,
            Enrichment::Native => events.iter().map(native_transaction).collect(),
        };
        for ((record, event), outcome) in chunk.iter().zip(&events).zip(&outcomes) {
            let original = Original {
                record,
                sequence_number: &event.sequence_number,
            };
            envelope::write_outcome(&mut out, original, outcome, ctx);
        }
        out.clear();
    }
    (started.elapsed(), instantiate)
}

/// The fastest run's (total, instantiation) times.
fn best(runs: &[(Duration, Duration)]) -> (Duration, Duration) {
    runs.iter()
        .copied()
        .min_by_key(|(total, _)| *total)
        .unwrap_or_default()
}

/// The transaction plugin's rules, compiled natively: the yardstick of the
/// sandbox's overhead (plugins/examples/transaction holds the real plugin).
fn native_transaction(event: &PluginEvent) -> Outcome {
    #[derive(Deserialize)]
    struct Payload<'a> {
        amount: f64,
        #[serde(borrow, default)]
        currency: Option<&'a str>,
    }
    let Ok(p) = serde_json::from_str::<Payload>(&event.payload) else {
        return Outcome::Drop("bench events are valid".into());
    };
    let category = match p.amount {
        a if a < 10.0 => "micro",
        a if a < 100.0 => "small",
        a if a < 1000.0 => "medium",
        _ => "large",
    };
    let mut fields = Map::new();
    fields.insert("transaction_date".into(), event.event_time[..10].into());
    fields.insert("amount_category".into(), category.into());
    fields.insert("is_high_value".into(), (p.amount > 1000.0).into());
    if p.currency.is_none() {
        fields.insert("currency".into(), "USD".into());
    }
    Outcome::Enrich(JsonObject::from_map(&fields))
}
