//! Weir's AWS backends, behind the same seams as the embedded ones: the only
//! crate that depends on the AWS SDK.
//!
//! - [`S3ObjectStore`]: raw and processed buckets (or one), deterministic keys
//!   kept whole, server-side encryption passed through, multipart above
//!   16 MiB, a batch's objects put concurrently.
//! - [`DynamoMetadataStore`]: the seed's batch metadata table (hash
//!   `batch_id`, range `processed_at`, `ttl`, `ShardIndex` GSI on `shard_id`)
//!   and metrics table (hash `partition_key`, range `timestamp`, `ttl`);
//!   batch writes resend unprocessed items.
//! - [`SqsDeadLetterQueue`]: batched sends with attributes (reason, kind,
//!   stage, shard, sequence number); a payload too large for a message goes
//!   to S3 and the message carries a pointer. A [`Scan`] reads letters back
//!   (`weir dlq` on AWS) and leaves the queue as it found it, but for the
//!   letters it deletes.
//! - [`DynamoRegistry`]: the plugin registry, components in S3 and the rest
//!   in one table, each change one transaction.
//! - [`KinesisStream`]: PutRecords with per-record results, GetRecords
//!   through cached shard iterators from any starting position, checkpoints
//!   in DynamoDB moved forward only by a conditional write.
//!
//! Configuration follows the SDK's conventions (default credential chain,
//! region, `AWS_ENDPOINT_URL` and per-service overrides); the resource names
//! are one [`AwsSettings`] (flags or `WEIR_*` variables). [`provision`]
//! creates them, for tests against moto and the local AWS loop.

mod dynamodb;
mod error;
mod kinesis;
pub mod provision;
mod registry;
mod s3;
mod sqs;

use std::time::Duration;

use aws_config::BehaviorVersion;
use weir_core::backend::BackendError;

pub use dynamodb::{DynamoCheckpoints, DynamoMetadataStore, SHARD_INDEX};
pub use kinesis::KinesisStream;
pub use registry::DynamoRegistry;
pub use s3::{Encryption, MULTIPART_THRESHOLD, S3ObjectStore};
pub use sqs::{HOLD, QueuedLetter, Scan, ScanRequest, SqsDeadLetterQueue, Unreadable};

/// The names of Weir's AWS resources. Every field is a flag and a `WEIR_*`
/// environment variable (how the Lambda functions are configured).
#[derive(Debug, Clone, clap::Args)]
pub struct AwsSettings {
    /// The Kinesis stream.
    #[arg(
        id = "aws_stream",
        long = "aws-stream",
        env = "WEIR_STREAM",
        default_value = "weir-events"
    )]
    pub stream: String,
    /// The bucket of raw objects (`raw/…`).
    #[arg(long, env = "WEIR_RAW_BUCKET", default_value = "weir-raw")]
    pub raw_bucket: String,
    /// The bucket of processed objects (`processed/…`); may be the raw one.
    #[arg(long, env = "WEIR_PROCESSED_BUCKET", default_value = "weir-processed")]
    pub processed_bucket: String,
    /// The batch metadata table (the seed's schema, `ShardIndex` GSI).
    #[arg(
        long,
        env = "WEIR_METADATA_TABLE",
        default_value = "weir-batch-metadata"
    )]
    pub metadata_table: String,
    /// The per-minute metrics table (the seed's `realtime-processed-metrics`).
    #[arg(long, env = "WEIR_METRICS_TABLE", default_value = "weir-metrics")]
    pub metrics_table: String,
    /// The stream checkpoints table (service mode).
    #[arg(
        long,
        env = "WEIR_CHECKPOINTS_TABLE",
        default_value = "weir-checkpoints"
    )]
    pub checkpoints_table: String,
    /// The plugin registry's table (components go to the raw bucket's `plugins/`).
    #[arg(long, env = "WEIR_REGISTRY_TABLE", default_value = "weir-registry")]
    pub registry_table: String,
    /// The dead-letter queue's name.
    #[arg(
        long,
        env = "WEIR_DEAD_LETTER_QUEUE",
        default_value = "weir-dead-letters"
    )]
    pub dead_letter_queue: String,
    /// Server-side encryption of written objects: `bucket-default`, `aes256` or `kms`.
    #[arg(long, env = "WEIR_SSE", default_value = "bucket-default")]
    pub sse: String,
    /// The KMS key of `--sse kms` (default: the AWS-managed key).
    #[arg(long, env = "WEIR_SSE_KMS_KEY")]
    pub sse_kms_key: Option<String>,
}

impl AwsSettings {
    /// Settings named after a prefix (`{prefix}-raw`, …): what tests use to
    /// keep their resources apart on one server.
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            stream: format!("{prefix}-events"),
            raw_bucket: format!("{prefix}-raw"),
            processed_bucket: format!("{prefix}-processed"),
            metadata_table: format!("{prefix}-batch-metadata"),
            metrics_table: format!("{prefix}-metrics"),
            checkpoints_table: format!("{prefix}-checkpoints"),
            registry_table: format!("{prefix}-registry"),
            dead_letter_queue: format!("{prefix}-dead-letters"),
            sse: "bucket-default".into(),
            sse_kms_key: None,
        }
    }

    pub fn encryption(&self) -> Result<Encryption, BackendError> {
        match self.sse.as_str() {
            "bucket-default" => Ok(Encryption::BucketDefault),
            "aes256" => Ok(Encryption::Aes256),
            "kms" => Ok(Encryption::Kms(self.sse_kms_key.clone())),
            other => Err(BackendError::permanent(
                "WEIR_SSE",
                format!("`{other}` is not bucket-default, aes256 or kms"),
            )),
        }
    }
}

/// One client per service, made once (at a Lambda's init, not per call).
#[derive(Debug, Clone)]
pub struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub kinesis: aws_sdk_kinesis::Client,
}

impl AwsClients {
    /// Clients from the SDK's default chain: credentials, region,
    /// `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_S3`, …). S3 uses path-style
    /// addressing when an endpoint is set (a local server has no bucket
    /// subdomains) or `AWS_S3_FORCE_PATH_STYLE=true`.
    pub async fn from_env() -> Self {
        let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let path_style = std::env::var("AWS_S3_FORCE_PATH_STYLE")
            .map(|v| v == "true")
            .unwrap_or_else(|_| std::env::var_os("AWS_ENDPOINT_URL").is_some());
        Self::from_config(&config, path_style)
    }

    /// Clients of a local AWS-compatible server (moto) at `endpoint`, with
    /// placeholder credentials and `us-east-1`: tests and the local loop.
    pub async fn for_local_endpoint(endpoint: &str) -> Self {
        let credentials =
            aws_sdk_s3::config::Credentials::new("weir", "weir", None, None, "weir-local");
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(credentials)
            .load()
            .await;
        Self::from_config(&config, true)
    }

    fn from_config(config: &aws_config::SdkConfig, path_style: bool) -> Self {
        let s3 = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(path_style)
            .build();
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            kinesis: aws_sdk_kinesis::Client::new(config),
        }
    }
}

/// The AWS implementation of every seam, for one set of resources.
#[derive(Debug)]
pub struct AwsBackends {
    pub registry: DynamoRegistry,
    pub objects: S3ObjectStore,
    pub dead_letters: SqsDeadLetterQueue,
    pub metadata: DynamoMetadataStore,
    pub stream: KinesisStream,
}

impl AwsBackends {
    /// Wires the backends; looks up the queue's URL, so a missing queue is
    /// an error here, at start-up, not at the first dead letter.
    pub async fn connect(
        clients: &AwsClients,
        settings: &AwsSettings,
    ) -> Result<Self, BackendError> {
        let objects = S3ObjectStore::new(
            clients.s3.clone(),
            &settings.raw_bucket,
            &settings.processed_bucket,
            settings.encryption()?,
        );
        let queue = &settings.dead_letter_queue;
        // A URL is used as it is: one request less at a Lambda's init.
        let queue_url = if queue.starts_with("https://") || queue.starts_with("http://") {
            queue.clone()
        } else {
            clients
                .sqs
                .get_queue_url()
                .queue_name(queue)
                .send()
                .await
                .map_err(|e| {
                    error::backend_error(
                        format!("finding the dead-letter queue {queue} (WEIR_DEAD_LETTER_QUEUE)"),
                        e,
                    )
                })?
                .queue_url()
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Self {
            registry: DynamoRegistry::new(
                clients.dynamodb.clone(),
                &settings.registry_table,
                objects.clone(),
            ),
            dead_letters: SqsDeadLetterQueue::new(clients.sqs.clone(), queue_url, objects.clone()),
            objects,
            metadata: DynamoMetadataStore::new(
                clients.dynamodb.clone(),
                &settings.metadata_table,
                &settings.metrics_table,
            ),
            stream: KinesisStream::new(
                clients.kinesis.clone(),
                &settings.stream,
                DynamoCheckpoints::new(clients.dynamodb.clone(), &settings.checkpoints_table),
            ),
        })
    }
}

/// Exponential backoff with full jitter: a random wait up to
/// `base · 2^attempt`, capped at 5 s.
pub fn backoff(attempt: u32, base: Duration) -> Duration {
    use rand::rngs::StdRng;
    use rand::{RngExt as _, SeedableRng as _};
    let ceiling = base
        .saturating_mul(1 << attempt.min(10))
        .min(Duration::from_secs(5));
    // Jitter needs no cryptographic randomness: the clock spreads callers.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let millis = StdRng::seed_from_u64(seed ^ u64::from(attempt))
        .random_range(0..=ceiling.as_millis() as u64);
    Duration::from_millis(millis)
}
