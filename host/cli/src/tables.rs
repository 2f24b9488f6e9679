//! `weir metrics` and `weir batches`: the seed's metrics and metadata tables,
//! read back from the embedded state or from DynamoDB (`--backend aws`).

use std::process::ExitCode;

use weir_aws::{AwsClients, DynamoMetadataStore};
use weir_core::backend::{BackendError, BatchMetadata, MetadataStore};
use weir_core::metrics::MinuteMetrics;
use weir_embedded::SqliteState;

use crate::dlq::open_state;
use crate::wiring::{Backend, BackendArgs};

#[derive(Debug, clap::Args)]
pub struct MetricsArgs {
    /// The stream partition key (a sensor, a user, a host).
    partition_key: String,
    /// The newest minutes to print.
    #[arg(long, default_value_t = 60)]
    limit: usize,
    #[command(flatten)]
    target: BackendArgs,
}

#[derive(Debug, clap::Args)]
pub struct BatchesArgs {
    /// The shard (the seed's ShardIndex).
    shard: String,
    /// The newest batches to print.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    #[command(flatten)]
    target: BackendArgs,
}

/// The tables of the embedded state or of DynamoDB.
enum Tables {
    Embedded(SqliteState),
    Aws(DynamoMetadataStore),
}

impl Tables {
    async fn open(target: &BackendArgs) -> anyhow::Result<Self> {
        Ok(match target.backend {
            Backend::Embedded => Self::Embedded(open_state(&target.stream)?),
            Backend::Aws => Self::Aws(DynamoMetadataStore::new(
                AwsClients::from_env().await.dynamodb,
                &target.aws.metadata_table,
                &target.aws.metrics_table,
            )),
        })
    }

    async fn minute_metrics(
        &self,
        key: &str,
        limit: usize,
    ) -> Result<Vec<MinuteMetrics>, BackendError> {
        match self {
            Self::Embedded(state) => state.minute_metrics(key, limit).await,
            Self::Aws(store) => store.minute_metrics(key, limit).await,
        }
    }

    async fn batches_for_shard(
        &self,
        shard: &str,
        limit: usize,
    ) -> Result<Vec<BatchMetadata>, BackendError> {
        match self {
            Self::Embedded(state) => state.batches_for_shard(shard, limit).await,
            Self::Aws(store) => store.batches_for_shard(shard, limit).await,
        }
    }
}

fn block_on<T>(f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// One JSON line per minute, newest first: records and per-reading
/// count/min/max/sum.
pub fn metrics(args: MetricsArgs) -> anyhow::Result<ExitCode> {
    let minutes = block_on(async {
        let tables = Tables::open(&args.target).await?;
        Ok(tables
            .minute_metrics(&args.partition_key, args.limit)
            .await?)
    })?;
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
    let batches = block_on(async {
        let tables = Tables::open(&args.target).await?;
        Ok(tables.batches_for_shard(&args.shard, args.limit).await?)
    })?;
    for batch in &batches {
        println!("{}", serde_json::to_string(batch)?);
    }
    if batches.is_empty() {
        eprintln!("no batches recorded for shard {:?}", args.shard);
    }
    Ok(ExitCode::SUCCESS)
}
