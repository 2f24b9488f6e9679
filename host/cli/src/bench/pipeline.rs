//! `weir bench pipeline`: the whole record path on the embedded backends,
//! against the Python seed pipeline (`bench/seed_pipeline.py`).
//!
//! Both sides get the same events as Lambda Kinesis events (two shards,
//! batches of `--batch-size`), built before the clock starts, and write raw
//! and processed JSON Lines objects under a temporary directory with batch
//! metadata in SQLite. Each configuration runs in its own process pinned with
//! `taskset` to one core or two; runs are interleaved and the best and median
//! reported. Figures: records/s, MB/s of record data, p50/p99 batch latency
//! (a Lambda invocation: both stages in two-stage mode), peak RSS, the shares
//! of a run's time spent writing objects and committing batches, and the
//! ceiling the object writes alone set (see [`super::timed`]).
//!
//! Target (issue 3): ≥ 10× the Python pipeline on one core; ≥ 1.8× more on
//! two cores than on one.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use weir_embedded::{Durability, LocalObjectStore, SqliteState};
use weir_lambda::kinesis::{self, KinesisEvent};
use weir_lambda::samples;
use weir_pipeline::{Mode, Pipeline, PipelineSettings};
use weir_testkit::build;

use super::best_and_median;
use super::timed::{Stopwatch, Timed};
use crate::wiring;
use weir_lambda::sampler::{EVENT_TYPES, Sampler};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events per run.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Records per Lambda invocation (the seeds: 100).
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Runs per configuration (best and median reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    repeat: u32,
    /// Skip the Python yardstick.
    #[arg(long)]
    no_python: bool,
    /// Where the runs write (default: the system's temporary directory). On
    /// a disk, creating thousands of small files is a large share of both
    /// sides' time; a tmpfs such as /dev/shm measures the code instead.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Internal: run one configuration and print its figures as JSON.
    #[arg(long, hide = true)]
    worker: Option<String>,
    #[arg(long, hide = true)]
    input: Option<PathBuf>,
    #[arg(long, hide = true)]
    out: Option<PathBuf>,
    #[arg(long, hide = true)]
    wasm_dir: Option<PathBuf>,
}

/// One configuration of Weir's side.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Config {
    two_stage: bool,
    cores: usize,
    fsync: bool,
}

impl Config {
    fn label(&self) -> String {
        format!(
            "weir {}, {} core{}, {}",
            if self.two_stage {
                "two-stage"
            } else {
                "single-stage"
            },
            self.cores,
            if self.cores == 1 { "" } else { "s" },
            if self.fsync { "fsync" } else { "no fsync" }
        )
    }
}

const CONFIGS: [Config; 5] = [
    Config {
        two_stage: true,
        cores: 1,
        fsync: false,
    },
    Config {
        two_stage: false,
        cores: 1,
        fsync: false,
    },
    Config {
        two_stage: false,
        cores: 2,
        fsync: false,
    },
    Config {
        two_stage: true,
        cores: 2,
        fsync: false,
    },
    Config {
        two_stage: false,
        cores: 2,
        fsync: true,
    },
];

/// What one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Figures {
    records: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    peak_rss_kib: u64,
    /// Wall time spent writing objects, summed over the shards (Weir's
    /// runs only).
    #[serde(default)]
    objects_seconds: f64,
    /// CPU time of the object writes, where they ran on the batches'
    /// threads (no fsync).
    #[serde(default)]
    objects_cpu_seconds: f64,
    /// Wall time spent committing batches (metadata, dead letters, metric
    /// rows), summed over the shards (Weir's runs only).
    #[serde(default)]
    commits_seconds: f64,
}

impl Figures {
    /// A part's share of the run's core time (`seconds` on each core).
    fn share(&self, part_seconds: f64, cores: usize) -> f64 {
        part_seconds / (self.seconds * cores as f64)
    }
}

pub fn run(cache_dir: Option<PathBuf>, args: Args) -> anyhow::Result<ExitCode> {
    if let Some(config) = &args.worker {
        let config: Config = serde_json::from_str(config)?;
        let figures = worker(cache_dir, &args, config)?;
        println!("{}", serde_json::to_string(&figures)?);
        return Ok(ExitCode::SUCCESS);
    }
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: a debug build; run `cargo run --release -p weir -- bench pipeline` for real figures"
        );
    }
    let pinning = Command::new("taskset").arg("--version").output().is_ok();
    if !pinning {
        eprintln!("warning: no `taskset` (util-linux): runs are not pinned to cores");
    }
    let wasm_dir = wiring::build_examples()?;
    let dir = match &args.dir {
        Some(parent) => tempfile::tempdir_in(parent)
            .with_context(|| format!("making a directory in {}", parent.display()))?,
        None => tempfile::tempdir()?,
    };
    let input = dir.path().join("events.jsonl");
    let mut sampler = Sampler::new(11);
    let mut text = String::new();
    for n in 0..args.events {
        text.push_str(
            &sampler
                .event(EVENT_TYPES[n % EVENT_TYPES.len()])
                .to_string(),
        );
        text.push('\n');
    }
    std::fs::write(&input, &text)?;
    let mb = text.len() as f64 / 1e6;
    println!(
        "== pipeline: {} events ({mb:.1} MB), Lambda batches of {}, 2 shards, {} runs each, in {}",
        args.events,
        args.batch_size,
        args.repeat,
        dir.path().display()
    );

    let cpus = |cores: usize| if cores == 1 { "0" } else { "0,1" };
    let pinned = |cores: usize, program: &Path| {
        let mut command = if pinning {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus(cores)]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command.stderr(Stdio::inherit());
        command
    };
    let mut weir_runs: Vec<Vec<Figures>> = vec![Vec::new(); CONFIGS.len()];
    let mut python_runs = Vec::new();
    let exe = std::env::current_exe()?;
    let root = build::repo_root();
    let runs_per_round = CONFIGS.len() + usize::from(!args.no_python);
    let mut outputs = Outputs::new(dir.path(), runs_per_round * args.repeat as usize);
    for _ in 0..args.repeat {
        if !args.no_python {
            let out = tempfile::tempdir_in(dir.path())?;
            let mut command = pinned(1, Path::new("python3"));
            command
                .arg(root.join("bench/seed_pipeline.py"))
                .arg(&input)
                .arg(out.path())
                .arg(args.batch_size.to_string());
            python_runs.push(figures_of(&mut command)?);
            outputs.done(out);
        }
        for (config, runs) in CONFIGS.iter().zip(&mut weir_runs) {
            let out = tempfile::tempdir_in(dir.path())?;
            let mut command = pinned(config.cores, &exe);
            if let Some(cache) = &cache_dir {
                command.arg("--cache-dir").arg(cache);
            }
            command
                .args([
                    "bench",
                    "pipeline",
                    "--worker",
                    &serde_json::to_string(config)?,
                ])
                .args(["--batch-size", &args.batch_size.to_string()])
                .arg("--input")
                .arg(&input)
                .arg("--out")
                .arg(out.path())
                .arg("--wasm-dir")
                .arg(&wasm_dir);
            runs.push(figures_of(&mut command)?);
            outputs.done(out);
        }
    }
    drop(outputs);

    // Each configuration's line; with `cores`, where its best run's time
    // went. Returns the records/s of the best run, of the median, and, with
    // `cores` (Weir's runs, whose writes are timed), of the best run's object
    // writes alone (their CPU time: without fsync they run on the batch's
    // thread).
    let report = |label: &str, runs: &mut Vec<Figures>, cores: Option<usize>| {
        let mut seconds: Vec<f64> = runs.iter().map(|f| f.seconds).collect();
        let (best, median) = best_and_median(&mut seconds);
        let best_run = runs.iter().find(|f| f.seconds == best).unwrap_or(&runs[0]);
        let n = best_run.records as f64;
        let parts = cores.map_or(String::new(), |cores| {
            format!(
                "  objects {:>3.0}%  commits {:>3.0}%",
                100.0 * best_run.share(best_run.objects_seconds, cores),
                100.0 * best_run.share(best_run.commits_seconds, cores)
            )
        });
        println!(
            "{label:<36} {:>9.0} rec/s best {:>9.0} median {:>6.1} MB/s  p50 {:>6.2} ms  p99 {:>6.2} ms  peak RSS {:>6.1} MiB{parts}",
            n / best,
            n / median,
            mb / best,
            best_run.p50_ms,
            best_run.p99_ms,
            best_run.peak_rss_kib as f64 / 1024.0
        );
        let objects_alone = cores.map(|_| n / best_run.objects_cpu_seconds);
        (n / best, n / median, objects_alone)
    };
    let mut rates = Vec::new();
    for (config, runs) in CONFIGS.iter().zip(&mut weir_runs) {
        rates.push(report(&config.label(), runs, Some(config.cores)));
    }
    if !args.no_python {
        let python = report("python seed pipeline, 1 core", &mut python_runs, None);
        println!(
            "weir two-stage / python, 1 core      {:>9.1}x best {:>8.1}x median   (target >= 10x)",
            rates[0].0 / python.0,
            rates[0].1 / python.1
        );
        println!(
            "weir single-stage / python, 1 core   {:>9.1}x best {:>8.1}x median",
            rates[1].0 / python.0,
            rates[1].1 / python.1
        );
        // The ceiling the objects alone set (a batch writes one object per
        // partition and stage, whatever else it does), and what 10x the
        // yardstick would leave per record for everything else: intake,
        // validation, plugins, envelope, commits.
        let objects_alone = rates[1].2.expect("Weir's runs time their object writes");
        let left_us = 1e6 * (1.0 / (10.0 * python.0) - 1.0 / objects_alone);
        let rest_us = 1e6 * (1.0 / rates[1].0 - 1.0 / objects_alone);
        println!(
            "object writes alone, single-stage 1 core {:>9.0} rec/s = {:.1}x python; at 10x python {:.2} us a record left for the rest, which takes {:.2} us here",
            objects_alone,
            objects_alone / python.0,
            left_us.max(0.0),
            rest_us
        );
    }
    println!(
        "2 cores / 1 core, single-stage       {:>9.2}x best {:>8.2}x median   (target >= 1.8x)",
        rates[2].0 / rates[1].0,
        rates[2].1 / rates[1].1
    );
    println!(
        "2 cores / 1 core, two-stage          {:>9.2}x best {:>8.2}x median",
        rates[3].0 / rates[0].0,
        rates[3].1 / rates[0].1
    );
    Ok(ExitCode::SUCCESS)
}

fn figures_of(command: &mut Command) -> anyhow::Result<Figures> {
    let output = command
        .stdout(Stdio::piped())
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?} failed: {}", output.status);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("{command:?} printed {text:?}"))
}

/// One configuration, in this process: the events as Lambda would deliver
/// them, each shard's invocations in turn, the shards concurrently.
fn worker(cache_dir: Option<PathBuf>, args: &Args, config: Config) -> anyhow::Result<Figures> {
    let (Some(input), Some(out), Some(wasm_dir)) = (&args.input, &args.out, &args.wasm_dir) else {
        bail!("--worker needs --input, --out and --wasm-dir");
    };
    let runtime = crate::runtime(cache_dir)?;
    let plugins = wiring::load_examples(&runtime, wasm_dir)?;
    let durability = if config.fsync {
        Durability::Disk
    } else {
        Durability::Os
    };
    let state = SqliteState::open_with(out.join("weir.db"), durability)?;
    let mode = if config.two_stage {
        Mode::TwoStage
    } else {
        Mode::SingleStage
    };
    let (objects, commits) = (Stopwatch::default(), Stopwatch::default());
    let pipeline = Arc::new(Pipeline {
        objects: Timed {
            inner: LocalObjectStore::open_with(out.join("objects"), durability)?,
            writes: objects.clone(),
        },
        dead_letters: Timed {
            inner: state.clone(),
            writes: commits.clone(),
        },
        metadata: Timed {
            inner: state,
            writes: commits.clone(),
        },
        router: wiring::default_bindings(&plugins).into(),
        settings: PipelineSettings {
            mode,
            ..Default::default()
        },
    });
    let shards = lambda_events(input, args.batch_size)?;
    let records: u64 = shards
        .iter()
        .flatten()
        .map(|e| e.records.len() as u64)
        .sum();
    drop(runtime);

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.cores)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let latencies = tokio.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for (shard, events) in shards.into_iter().enumerate() {
            let pipeline = pipeline.clone();
            tasks.spawn(async move { invoke_all(&pipeline, shard, events).await });
        }
        let mut latencies = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            latencies.extend(joined??);
        }
        // The batches' metric rows move into the metrics table in the
        // background; the last of them are part of the work measured.
        pipeline.metadata.inner.flush_metrics().await?;
        anyhow::Ok(latencies)
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies = latencies;
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(Figures {
        records,
        seconds,
        p50_ms: at(0.5).as_secs_f64() * 1e3,
        p99_ms: at(0.99).as_secs_f64() * 1e3,
        peak_rss_kib: peak_rss_kib(),
        objects_seconds: objects.seconds(),
        objects_cpu_seconds: objects.cpu_seconds(),
        commits_seconds: commits.seconds(),
    })
}

/// The runs' output directories, and when they are deleted. Deleted right
/// after its run, a run's thousands of files make ext4 slow for the next
/// runs: its inode allocator steps over recently deleted inodes one by one
/// (`recently_deleted`, `find_inode_bit`: 40-67% of a run's CPU, measured
/// with `perf`), so the later runs would measure that. The outputs are kept
/// until the bench ends when they fit in a quarter of the free space (judged
/// by the first run's), else each is deleted after its run, and it says so.
struct Outputs {
    parent: PathBuf,
    runs: usize,
    keep: Option<bool>,
    kept: Vec<tempfile::TempDir>,
}

impl Outputs {
    fn new(parent: &Path, runs: usize) -> Self {
        Self {
            parent: parent.to_owned(),
            runs,
            keep: None,
            kept: Vec::new(),
        }
    }

    /// A run is done with `out`.
    fn done(&mut self, out: tempfile::TempDir) {
        let keep = *self.keep.get_or_insert_with(|| {
            let size = bytes_under(out.path());
            let needed = size.saturating_mul(self.runs as u64);
            let free = rustix::fs::statvfs(&self.parent)
                .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
                .unwrap_or(0);
            let keep = fits(needed, free);
            if !keep {
                eprintln!(
                    "note: deleting each run's output after it ({} MB for all {} runs, {} MB free); on ext4 the later runs then measure its inode allocator too",
                    needed / 1_000_000,
                    self.runs,
                    free / 1_000_000
                );
            }
            keep
        });
        if keep {
            self.kept.push(out);
        }
    }
}

/// Whether outputs of `needed` bytes in all may stay: a quarter of the
/// `free` space at most, leaving room for whatever else writes there.
fn fits(needed: u64, free: u64) -> bool {
    needed < free / 4
}

/// The bytes of the files under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => bytes_under(&entry.path()),
            _ => entry.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

type BenchPipeline = Pipeline<Timed<LocalObjectStore>, Timed<SqliteState>, Timed<SqliteState>>;

/// One shard's invocations in turn, as Lambda runs them; each one's latency.
async fn invoke_all(
    pipeline: &BenchPipeline,
    shard: usize,
    events: Vec<KinesisEvent>,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(events.len());
    for event in events {
        let t = Instant::now();
        let handled = kinesis::handle(pipeline, event, Utc::now()).await;
        if let Some((shard_id, error)) = handled.failures.first() {
            bail!("shard {shard_id}: {error}");
        }
        if pipeline.settings.mode == Mode::TwoStage {
            // As `weir serve` does: a batch's raw objects together.
            for result in &handled.batches {
                let keys: Vec<&str> = result.raw_keys().collect();
                pipeline.transform_objects(&keys, Utc::now()).await?;
            }
        }
        latencies.push(t.elapsed());
    }
    tracing::debug!(shard, invocations = latencies.len(), "shard done");
    Ok(latencies)
}

/// The events of `path` as Lambda Kinesis events: line `n` goes to shard
/// `n % 2`, as the Python yardstick splits them.
fn lambda_events(path: &Path, batch_size: usize) -> anyhow::Result<Vec<Vec<KinesisEvent>>> {
    let text = std::fs::read_to_string(path)?;
    let mut shards: [Vec<(String, Vec<u8>)>; 2] = Default::default();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        shards[n % 2].push((format!("key-{}", n % 5000), line.as_bytes().to_vec()));
    }
    let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/bench";
    let mut out = Vec::new();
    for (shard, records) in shards.iter().enumerate() {
        let shard_id = format!("shardId-{shard:012}");
        let mut events = Vec::new();
        for (b, chunk) in records.chunks(batch_size).enumerate() {
            let first = (b * batch_size) as u64;
            let value = samples::kinesis_event(arn, &shard_id, chunk, first, Utc::now());
            events.push(serde_json::from_value(value)?);
        }
        out.push(events);
    }
    Ok(out)
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_measured_and_kept_only_when_they_fit() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/one"), vec![0; 1000]).unwrap();
        std::fs::write(dir.path().join("a/two"), vec![0; 234]).unwrap();
        assert_eq!(bytes_under(dir.path()), 1234);
        assert_eq!(bytes_under(&dir.path().join("missing")), 0);
        assert!(fits(999, 4000));
        assert!(!fits(1000, 4000));
        assert!(!fits(1, 0));
    }
}
