//! `weir produce`: the seeds' producer and stress test, on the embedded stream
//! or Kinesis.
//!
//! Generates a mix of events for a set of tenants and puts them in batches at a
//! target rate. Throttled records (a shard over its per-second limit) are
//! retried, and only they, with exponential backoff and full jitter, until put
//! or out of attempts; refused records are counted and not retried. A progress
//! line goes to stderr every second, and a summary at the end.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use weir_core::stream::{PutRecord, StreamSink};
use weir_embedded::{EmbeddedStream, SqliteState};
use weir_lambda::producer::{PutStats, Putter};
use weir_lambda::sampler::{EVENT_TYPES, Sampler, partition_key};

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
    let mut putter = Putter::new(args.max_attempts, args.seed);
    let mut generated = 0u64;
    let mut last_progress = Instant::now();
    let batch = args.batch_size as usize;

    while Instant::now() < deadline && (generated < limit || putter.queued() > 0) {
        // Keep the rate: new records only as the schedule allows.
        let due = if args.rate == 0 {
            u64::MAX
        } else {
            (started.elapsed().as_secs_f64() * f64::from(args.rate)) as u64 + 1
        };
        while putter.queued() < batch && generated < limit && generated < due {
            let event_type = &args.types[(generated % args.types.len() as u64) as usize];
            let mut event = sampler.event(event_type);
            event["tenant_id"] = json!(args.tenants[rng.random_range(0..args.tenants.len())]);
            putter.push(PutRecord {
                partition_key: partition_key(&event),
                data: event.to_string().into_bytes(),
            });
            generated += 1;
        }
        if putter.queued() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        putter.put_next(stream, batch).await?;
        if last_progress.elapsed() >= Duration::from_secs(1) {
            progress(&putter.stats, started.elapsed());
            last_progress = Instant::now();
        }
    }
    let stats = putter.stats;

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
    let unsent = generated - stats.sent - stats.refused - stats.gave_up;
    if unsent > 0 {
        eprintln!("{unsent} generated records were still queued when --duration ran out");
    }
    Ok(if stats.gave_up > 0 || stats.refused > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn progress(stats: &PutStats, elapsed: Duration) {
    eprintln!(
        "[{:>5.1} s] sent {} ({:.0}/s), throttled {}, retried {}",
        elapsed.as_secs_f64(),
        stats.sent,
        stats.sent as f64 / elapsed.as_secs_f64(),
        stats.throttled,
        stats.retried
    );
}
