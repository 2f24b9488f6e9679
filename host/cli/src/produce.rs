//! `weir produce`: the seeds' producer and stress test, on the embedded stream.
//!
//! Generates a mix of events for a set of tenants and puts them in batches at a
//! target rate. Throttled records (a shard over its per-second limit) are
//! retried, and only they, with exponential backoff and full jitter, until put
//! or out of attempts; refused records are counted and not retried. A progress
//! line goes to stderr every second, and a summary at the end.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use weir_core::stream::{PutRecord, PutResult, StreamSink};
use weir_embedded::{EmbeddedStream, SqliteState};

use crate::sample::{EVENT_TYPES, Sampler};
use crate::wiring::{Backend, StreamArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: StreamArgs,
    /// The embedded stream, or Kinesis (`aws`, stream `--aws-stream`).
    #[arg(long, value_enum, default_value = "embedded")]
    backend: Backend,
    #[command(flatten)]
    aws: weir_aws::AwsSettings,
    /// Records per second to aim for; 0: as fast as the stream takes them.
    #[arg(long, default_value_t = 10)]
    rate: u32,
    /// Stop after this many seconds...
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// ...or after this many records, whichever comes first.
    #[arg(long)]
    count: Option<u64>,
    /// Records per put (Kinesis allows up to 500).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=500))]
    batch_size: u32,
    /// Event types to generate, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = EVENT_TYPES.map(String::from))]
    types: Vec<String>,
    /// Tenants the events belong to (`tenant_id`), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = ["acme".to_owned(), "globex".to_owned()])]
    tenants: Vec<String>,
    /// Attempts per record before a throttled record is given up.
    #[arg(long, default_value_t = 10)]
    max_attempts: u32,
    /// Seed of the generated events (the same seed gives the same events).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    generated: u64,
    sent: u64,
    throttled: u64,
    retried: u64,
    refused: u64,
    gave_up: u64,
}

/// A record waiting to be put, with the attempts it has had.
struct Pending {
    record: PutRecord,
    attempts: u32,
}

/// Exponential backoff with full jitter: a random wait in
/// `[0, min(cap, base * 2^attempt)]`, so retrying producers spread out.
fn backoff(attempt: u32, rng: &mut StdRng) -> Duration {
    const BASE_MS: u64 = 50;
    const CAP_MS: u64 = 2_000;
    let ceiling = BASE_MS.saturating_mul(1 << attempt.min(16)).min(CAP_MS);
    Duration::from_millis(rng.random_range(0..=ceiling))
}

/// The partition key of a generated event: its natural key, so one user's or
/// sensor's events keep their order in one shard.
fn partition_key(event: &serde_json::Value) -> String {
    ["user_id", "sensorId", "host", "component"]
        .iter()
        .find_map(|k| event.get(*k).and_then(|v| v.as_str()))
        .unwrap_or("default")
        .to_owned()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    for t in &args.types {
        if !EVENT_TYPES.contains(&t.as_str()) {
            bail!(
                "--types: unknown event type `{t}`; choose from {}",
                EVENT_TYPES.join(", ")
            );
        }
    }
    if args.tenants.is_empty() || args.types.is_empty() {
        bail!("--types and --tenants need at least one value each");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(produce(args))
}

async fn produce(args: Args) -> anyhow::Result<ExitCode> {
    match args.backend {
        Backend::Embedded => {
            let db = args.target.data_dir.join("state").join("weir.db");
            let state =
                SqliteState::open(&db).with_context(|| format!("opening {}", db.display()))?;
            let stream = EmbeddedStream::open(state, args.target.settings()).await?;
            let name = args.target.stream.clone();
            produce_into(&stream, &name, args).await
        }
        Backend::Aws => {
            let clients = weir_aws::AwsClients::from_env().await;
            let checkpoints = weir_aws::DynamoCheckpoints::new(
                clients.dynamodb.clone(),
                &args.aws.checkpoints_table,
            );
            let stream = weir_aws::KinesisStream::new(
                clients.kinesis.clone(),
                &args.aws.stream,
                checkpoints,
            );
            let name = args.aws.stream.clone();
            produce_into(&stream, &name, args).await
        }
    }
}

/// Puts generated events on `stream` at the rate, retrying throttled records.
async fn produce_into<S: StreamSink>(
    stream: &S,
    name: &str,
    args: Args,
) -> anyhow::Result<ExitCode> {
    let limit = args.count.unwrap_or(u64::MAX);
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let started = Instant::now();
    let mut sampler = Sampler::new(args.seed);
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut stats = Stats::default();
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut last_progress = Instant::now();
    let batch = args.batch_size as usize;

    while Instant::now() < deadline && (stats.generated < limit || !queue.is_empty()) {
        // Keep the rate: new records only as the schedule allows.
        let due = if args.rate == 0 {
            u64::MAX
        } else {
            (started.elapsed().as_secs_f64() * f64::from(args.rate)) as u64 + 1
        };
        while queue.len() < batch && stats.generated < limit && stats.generated < due {
            let event_type = &args.types[(stats.generated % args.types.len() as u64) as usize];
            let mut event = sampler.event(event_type);
            event["tenant_id"] = json!(args.tenants[rng.random_range(0..args.tenants.len())]);
            queue.push_back(Pending {
                record: PutRecord {
                    partition_key: partition_key(&event),
                    data: event.to_string().into_bytes(),
                },
                attempts: 0,
            });
            stats.generated += 1;
        }
        if queue.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }

        let taken: Vec<Pending> = queue.drain(..queue.len().min(batch)).collect();
        let results = stream
            .put_records(taken.iter().map(|p| p.record.clone()).collect())
            .await?;
        let mut throttled_attempt = None;
        let mut retry = Vec::new();
        for (mut pending, result) in taken.into_iter().zip(results) {
            match result {
                PutResult::Accepted { .. } => stats.sent += 1,
                PutResult::Refused { reason } => {
                    stats.refused += 1;
                    tracing::warn!(reason, "record refused by the stream");
                }
                PutResult::Throttled { .. } => {
                    stats.throttled += 1;
                    pending.attempts += 1;
                    if pending.attempts >= args.max_attempts {
                        stats.gave_up += 1;
                    } else {
                        stats.retried += 1;
                        throttled_attempt =
                            Some(throttled_attempt.unwrap_or(0).max(pending.attempts));
                        retry.push(pending);
                    }
                }
            }
        }
        // Retried first, ahead of new records and in their own order, so each
        // partition key's records stay in order.
        for pending in retry.into_iter().rev() {
            queue.push_front(pending);
        }
        if let Some(attempt) = throttled_attempt {
            tokio::time::sleep(backoff(attempt, &mut rng)).await;
        } else if args.rate > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            progress(&stats, started.elapsed());
        }
    }

    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "produced to stream `{}`: {} sent, {} throttled ({} retried, {} given up), {} refused; \
         {:.1} s, {:.0} records/s achieved",
        name,
        stats.sent,
        stats.throttled,
        stats.retried,
        stats.gave_up,
        stats.refused,
        secs,
        stats.sent as f64 / secs
    );
    let unsent = stats.generated - stats.sent - stats.refused - stats.gave_up;
    if unsent > 0 {
        eprintln!("{unsent} generated records were still queued when --duration ran out");
    }
    Ok(if stats.gave_up > 0 || stats.refused > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn progress(stats: &Stats, elapsed: Duration) {
    eprintln!(
        "[{:>5.1} s] sent {} ({:.0}/s), throttled {}, retried {}",
        elapsed.as_secs_f64(),
        stats.sent,
        stats.sent as f64 / elapsed.as_secs_f64(),
        stats.throttled,
        stats.retried
    );
}
