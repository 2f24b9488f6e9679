//! `weir demo`: builds the example plugins, checks their golden cases, binds
//! them (with a tenant override), and runs a mix of generated events through
//! them, writing JSON Lines and dead letters under `--out`.
//!
//! This is the plugin platform end to end on one machine; the full pipeline
//! (stream, partitioned objects, metadata) builds on it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::json;
use weir_core::envelope::{self, EnvelopeContext, Original};
use weir_core::{Outcome, PluginEvent, Record, StreamContext};
use weir_runtime::router::{Binding, Router};
use weir_runtime::{Limits, Runtime};
use weir_testkit::{build, golden};

use crate::sample::{EVENT_TYPES, Sampler};

/// The example plugins: crate name, and the event type each handles.
const EXAMPLES: [(&str, &str); 5] = [
    ("transaction", "transaction"),
    ("user-action", "user_action"),
    ("metric", "metric"),
    ("system-event", "system_event"),
    ("sensor", "sensor_reading"),
];

const TENANTS: [&str; 2] = ["acme", "globex"];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many events to generate.
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    /// Events per plugin invocation.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Where output and dead letters are written (replaced on each run).
    #[arg(long, default_value = "weir-data/demo")]
    out: PathBuf,
}

#[derive(Debug, Default)]
struct Counts {
    events: u64,
    outputs: u64,
    dropped: u64,
    rejected: u64,
}

pub fn run(runtime: Runtime, args: Args) -> anyhow::Result<ExitCode> {
    let plugins_dir = build::repo_root().join("plugins");
    eprintln!(
        "building the example plugins in {} ...",
        plugins_dir.display()
    );
    let wasm_dir = build::build_workspace(&plugins_dir).map_err(anyhow::Error::msg)?;

    let mut router = Router::new();
    let mut failed_cases = 0;
    for (crate_name, event_type) in EXAMPLES {
        let path = wasm_dir.join(format!("{}.wasm", crate_name.replace('-', "_")));
        let plugin = runtime
            .load_file(&path)
            .with_context(|| format!("loading {}", path.display()))?;
        let cases = golden::load(
            &plugins_dir
                .join("examples")
                .join(crate_name)
                .join("golden.json"),
        )
        .map_err(anyhow::Error::msg)?;
        let results = golden::run(&plugin, &cases, &Limits::default());
        let failed = results.iter().filter(|r| !r.passed()).count();
        failed_cases += failed;
        eprintln!(
            "loaded {:<22} {:>4} KiB  golden cases: {} passed, {} failed",
            plugin.label(),
            plugin.info().size_bytes >> 10,
            results.len() - failed,
            failed
        );
        let binding = Binding {
            plugin,
            config: Vec::new(),
            limits: Limits::default(),
        };
        if crate_name == "transaction" {
            // Tenant acme has its own enrichment: a lower high-value threshold, in EUR.
            let config = vec![
                ("high_value_threshold".to_owned(), "500".to_owned()),
                ("currency".to_owned(), "EUR".to_owned()),
            ];
            router.bind(
                Some("acme"),
                event_type,
                Binding {
                    config,
                    ..binding.clone()
                },
            );
        }
        router.bind(None, event_type, binding);
    }
    if failed_cases > 0 {
        bail!("{failed_cases} golden case(s) failed; see above");
    }

    if args.out.exists() {
        std::fs::remove_dir_all(&args.out)
            .with_context(|| format!("clearing {}", args.out.display()))?;
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    // Generate the events, grouped per (tenant, event type) as a batch would be.
    let mut sampler = Sampler::new(42);
    let mut groups: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for i in 0..args.events {
        let mut event = sampler.any();
        let event_type = EVENT_TYPES
            .iter()
            .find(|t| event["event_type"] == **t)
            .copied()
            .unwrap_or("metric");
        let tenant = TENANTS[i % TENANTS.len()];
        event["tenant_id"] = json!(tenant);
        groups
            .entry((tenant, event_type))
            .or_default()
            .push(event.to_string());
    }

    let processed = weir_core::time::format_utc(chrono::Utc::now());
    let started = Instant::now();
    let mut per_type: BTreeMap<&str, Counts> = BTreeMap::new();
    let mut dead_letters = Vec::new();
    let mut sequence: u64 = 0;
    for ((tenant, event_type), records) in &groups {
        let route = router.resolve(tenant, event_type);
        let binding = route.binding().context("every sample type is bound")?;
        let plugin_ref = binding.plugin.info().plugin_ref();
        let ctx = EnvelopeContext {
            source: "weir-demo",
            shard_id: "demo",
            processed_timestamp: &processed,
            plugin: Some(&plugin_ref),
        };
        let mut out = Vec::new();
        let counts = per_type.entry(event_type).or_default();
        for chunk in records.chunks(args.batch_size.max(1)) {
            let parsed: Vec<Record<'_>> = chunk
                .iter()
                .map(|text| Record::parse(text).map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<_>>()?;
            let sequences: Vec<String> = parsed
                .iter()
                .map(|_| {
                    sequence += 1;
                    sequence.to_string()
                })
                .collect();
            let events: Vec<PluginEvent> = parsed
                .iter()
                .zip(&sequences)
                .map(|(record, seq)| {
                    let stream = StreamContext {
                        tenant,
                        partition_key: tenant,
                        sequence_number: seq,
                        arrival_time: &processed,
                        processing_time: &processed,
                    };
                    PluginEvent::from_payload(record, stream).map_err(anyhow::Error::msg)
                })
                .collect::<anyhow::Result<_>>()?;
            let report = binding
                .plugin
                .process(&binding.config, &events, &binding.limits);
            for ((record, event), outcome) in parsed.iter().zip(&events).zip(&report.outcomes) {
                counts.events += 1;
                let original = Original {
                    record,
                    sequence_number: &event.sequence_number,
                };
                counts.outputs += envelope::write_outcome(&mut out, original, outcome, ctx) as u64;
                match outcome {
                    Outcome::Drop(_) => counts.dropped += 1,
                    Outcome::Reject(r) => {
                        counts.rejected += 1;
                        dead_letters.push(
                            json!({"payload": record.text(), "reason": r, "plugin": plugin_ref.to_string()}),
                        );
                    }
                    Outcome::Enrich(_) | Outcome::Emit(_) => {}
                }
            }
        }
        let path = args.out.join(format!("{event_type}.jsonl"));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.write_all(&out)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let secs = started.elapsed().as_secs_f64();
    let dlq_path = args.out.join("dead-letters.jsonl");
    let dlq: String = dead_letters.iter().map(|d| format!("{d}\n")).collect();
    std::fs::write(&dlq_path, dlq).with_context(|| format!("writing {}", dlq_path.display()))?;

    println!(
        "{:<16} {:>8} {:>8} {:>8} {:>8}",
        "event type", "in", "written", "dropped", "rejected"
    );
    let mut total = Counts::default();
    for (event_type, c) in &per_type {
        println!(
            "{event_type:<16} {:>8} {:>8} {:>8} {:>8}",
            c.events, c.outputs, c.dropped, c.rejected
        );
        total.events += c.events;
        total.outputs += c.outputs;
        total.dropped += c.dropped;
        total.rejected += c.rejected;
    }
    println!(
        "{:<16} {:>8} {:>8} {:>8} {:>8}",
        "total", total.events, total.outputs, total.dropped, total.rejected
    );
    println!(
        "{:.0} events/s through the sandbox on one core; output in {}",
        total.events as f64 / secs,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
