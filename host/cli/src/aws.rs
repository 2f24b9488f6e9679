//! `weir aws`: Weir's AWS resources, for a local AWS-compatible server (the
//! local loop) or an account without the template.
//!
//! `weir aws loop` is the seeds' local test flow on AWS APIs: create what the
//! template declares, put one record and then a batch onto Kinesis, run the
//! pipeline over the stream (the Kinesis handler's code, with the example
//! plugins and the registry's bindings), then list the processed objects,
//! scan the metadata table and count the dead letters, and check that every
//! record is accounted for.

use std::process::ExitCode;

use anyhow::{Context, bail};
use weir_aws::{AwsBackends, AwsClients, AwsSettings, provision};
use weir_core::stream::{PutRecord, PutResult, StreamSink};
use weir_lambda::producer::{ProduceRequest, produce};
use weir_lambda::sampler::Sampler;
use weir_pipeline::{ConsumerSettings, Pipeline, PipelineSettings, RegistryRouter, drain};
use weir_runtime::Runtime;

use crate::wiring;

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
    /// The local AWS loop: provision, put-record and put-records, run the
    /// pipeline, list the processed objects and scan the metadata table.
    Loop {
        #[command(flatten)]
        aws: AwsSettings,
        #[arg(long, default_value_t = 2)]
        shards: i32,
        /// Records of the put-records batch (after one put-record).
        #[arg(long, default_value_t = 20)]
        records: u32,
    },
}

pub fn run(runtime: Runtime, command: Command) -> anyhow::Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async {
        match command {
            Command::Provision { aws, shards } => {
                let clients = AwsClients::from_env().await;
                provision::create_all(&clients, &aws, shards).await?;
                eprintln!(
                    "ready: stream {} ({shards} shards), buckets {} and {}, tables {}, {}, {} and {}, queue {}",
                    aws.stream,
                    aws.raw_bucket,
                    aws.processed_bucket,
                    aws.metadata_table,
                    aws.metrics_table,
                    aws.checkpoints_table,
                    aws.registry_table,
                    aws.dead_letter_queue
                );
                Ok(ExitCode::SUCCESS)
            }
            Command::Loop {
                aws,
                shards,
                records,
            } => local_loop(runtime, &aws, shards, records).await,
        }
    })
}

async fn local_loop(
    runtime: Runtime,
    aws: &AwsSettings,
    shards: i32,
    records: u32,
) -> anyhow::Result<ExitCode> {
    let clients = AwsClients::from_env().await;
    println!("1. create the resources");
    provision::create_all(&clients, aws, shards).await?;
    let backends = AwsBackends::connect(&clients, aws).await?;

    println!("2. put-record");
    let mut event = Sampler::new(7).event("sensor_reading");
    event["tenant_id"] = "acme".into();
    let one = PutRecord {
        partition_key: "sensor-001".into(),
        data: event.to_string().into_bytes(),
    };
    match backends.stream.put_records(vec![one]).await?.remove(0) {
        PutResult::Accepted {
            shard_id,
            sequence_number,
        } => println!(
            "   {{\"ShardId\": \"{shard_id}\", \"SequenceNumber\": \"{sequence_number}\"}}"
        ),
        other => bail!("put-record was refused: {other:?}"),
    }
    println!("3. put-records ({records})");
    let request = ProduceRequest {
        count: records,
        tenants: vec!["acme".into(), "globex".into()],
        ..Default::default()
    };
    let stats = produce(&backends.stream, &request)
        .await
        .map_err(anyhow::Error::msg)?;
    println!(
        "   sent {}, throttled and retried {}",
        stats.sent, stats.throttled
    );

    let before = processed_keys(&clients, aws).await?;
    println!(
        "4. process the stream (the Kinesis handler's pipeline, example plugins and registry bindings)"
    );
    let wasm_dir = wiring::build_examples()?;
    let plugins = wiring::load_examples(&runtime, &wasm_dir)?;
    let base = wiring::default_bindings(&plugins);
    let pipeline = Pipeline {
        objects: backends.objects,
        dead_letters: backends.dead_letters,
        metadata: backends.metadata,
        router: base.clone().into(),
        settings: PipelineSettings::default(),
    };
    RegistryRouter::new(backends.registry, runtime.clone(), base)
        .refresh(&pipeline.router)
        .await
        .context("reading the registry")?;
    let consumer = ConsumerSettings {
        name: "weir-local-loop".into(),
        ..Default::default()
    };
    let report = drain(&backends.stream, &pipeline, &consumer).await?;
    println!("   {report}");
    let c = &report.counts;

    println!(
        "5. s3 ls s3://{}/processed/ --recursive",
        aws.processed_bucket
    );
    let mut lines = 0u64;
    for key in processed_keys(&clients, aws).await? {
        let body = clients
            .s3
            .get_object()
            .bucket(&aws.processed_bucket)
            .key(&key)
            .send()
            .await
            .with_context(|| format!("reading s3://{}/{key}", aws.processed_bucket))?
            .body
            .collect()
            .await?
            .into_bytes();
        let n = body.iter().filter(|b| **b == b'\n').count() as u64;
        let new = !before.contains(&key);
        if new {
            lines += n;
        }
        let mark = if new { "  (new)" } else { "" };
        println!("   {key}  {n} records, {} bytes{mark}", body.len());
    }

    println!("6. dynamodb scan --table-name {}", aws.metadata_table);
    let scan = clients
        .dynamodb
        .scan()
        .table_name(&aws.metadata_table)
        .send()
        .await
        .with_context(|| format!("scanning {}", aws.metadata_table))?;
    for item in scan.items() {
        let field = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_s().ok().or(v.as_n().ok()))
                .cloned()
                .unwrap_or_default()
        };
        println!(
            "   batch {}  shard {}  total {}  success {}  failed {}",
            field("batch_id"),
            field("shard_id"),
            field("total_records"),
            field("success_records"),
            field("failed_records")
        );
    }
    let queue_url = clients
        .sqs
        .get_queue_url()
        .queue_name(&aws.dead_letter_queue)
        .send()
        .await?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let depth = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names("ApproximateNumberOfMessages".into())
        .send()
        .await?
        .attributes()
        .and_then(|a| {
            a.iter()
                .find(|(name, _)| name.as_str() == "ApproximateNumberOfMessages")
                .map(|(_, n)| n.clone())
        })
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    println!(
        "7. dead-letter queue {}: {depth} messages",
        aws.dead_letter_queue
    );

    let put = u64::from(records) + 1;
    let accounted = u64::from(c.records);
    if accounted != put || lines != u64::from(c.outputs) || !c.is_balanced(true) {
        bail!(
            "records are unaccounted for: put {put}, processed {accounted}, {lines} new lines in S3 for {} outputs",
            c.outputs
        );
    }
    println!(
        "ok: {put} records put, {lines} written to S3, {} batches in the metadata table",
        scan.items().len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Every key under `processed/` in the processed bucket.
async fn processed_keys(clients: &AwsClients, aws: &AwsSettings) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = clients
            .s3
            .list_objects_v2()
            .bucket(&aws.processed_bucket)
            .prefix("processed/")
            .set_continuation_token(token.take())
            .send()
            .await
            .with_context(|| format!("listing s3://{}/processed/", aws.processed_bucket))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        match page.next_continuation_token() {
            Some(next) => token = Some(next.to_owned()),
            None => return Ok(keys),
        }
    }
}
