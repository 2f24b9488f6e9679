//! `weir aws`: Weir's AWS resources, for a local AWS-compatible server (the
//! local loop) or an account without the template.

use std::process::ExitCode;

use weir_aws::{AwsClients, AwsSettings, provision};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create the stream, buckets, tables (TTL, ShardIndex) and queue that do
    /// not exist yet. Honors AWS_ENDPOINT_URL (moto, LocalStack).
    Provision {
        #[command(flatten)]
        aws: AwsSettings,
        /// Shards of a new stream.
        #[arg(long, default_value_t = 2)]
        shards: i32,
    },
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async {
        match command {
            Command::Provision { aws, shards } => {
                let clients = AwsClients::from_env().await;
                provision::create_all(&clients, &aws, shards).await?;
                eprintln!(
                    "ready: stream {} ({shards} shards), buckets {} and {}, tables {}, {} and {}, queue {}",
                    aws.stream,
                    aws.raw_bucket,
                    aws.processed_bucket,
                    aws.metadata_table,
                    aws.metrics_table,
                    aws.checkpoints_table,
                    aws.dead_letter_queue
                );
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
