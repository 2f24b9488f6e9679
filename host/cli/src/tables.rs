//! `weir metrics` and `weir batches`: the seed's metrics and metadata tables,
//! read back (what `aws dynamodb scan` shows on AWS).

use std::process::ExitCode;

use weir_core::backend::MetadataStore;

use crate::dlq::open_state;
use crate::wiring::StreamArgs;

#[derive(Debug, clap::Args)]
pub struct MetricsArgs {
    /// The stream partition key (a sensor, a user, a host).
    partition_key: String,
    /// The newest minutes to print.
    #[arg(long, default_value_t = 60)]
    limit: usize,
    #[command(flatten)]
    target: StreamArgs,
}

#[derive(Debug, clap::Args)]
pub struct BatchesArgs {
    /// The shard (the seed's ShardIndex).
    shard: String,
    /// The newest batches to print.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    #[command(flatten)]
    target: StreamArgs,
}

fn block_on<T>(f: impl Future<Output = T>) -> anyhow::Result<T> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f))
}

/// One JSON line per minute, newest first: records and per-reading
/// count/min/max/sum.
pub fn metrics(args: MetricsArgs) -> anyhow::Result<ExitCode> {
    let state = open_state(&args.target)?;
    let minutes = block_on(state.minute_metrics(&args.partition_key, args.limit))??;
    for minute in &minutes {
        println!("{}", serde_json::to_string(minute)?);
    }
    if minutes.is_empty() {
        eprintln!("no metrics for partition key {:?}", args.partition_key);
    }
    Ok(ExitCode::SUCCESS)
}

/// One JSON line per batch, newest first.
pub fn batches(args: BatchesArgs) -> anyhow::Result<ExitCode> {
    let state = open_state(&args.target)?;
    let batches = block_on(state.batches_for_shard(&args.shard, args.limit))??;
    for batch in &batches {
        println!("{}", serde_json::to_string(batch)?);
    }
    if batches.is_empty() {
        eprintln!("no batches recorded for shard {:?}", args.shard);
    }
    Ok(ExitCode::SUCCESS)
}
