//! Dead letters in SQS: batched sends, attributes to filter on, and payloads
//! too large for a message kept in S3 with a pointer.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use weir_core::backend::{BackendError, DeadLetter, DeadLetterQueue, ObjectStore};

use crate::error::{backend_error, build_error};
use crate::s3::S3ObjectStore;

mod scan;

pub use scan::{HOLD, QueuedLetter, Scan, ScanRequest, Unreadable};

/// SQS's limit for a message and for a whole batch request (256 KiB), less
/// room for the attributes.
const MAX_MESSAGE_BYTES: usize = 240 * 1024;
const MAX_BATCH_BYTES: usize = 240 * 1024;
const MAX_BATCH_ENTRIES: usize = 10;
/// Attribute values are capped so a long reason cannot push a message over.
const MAX_ATTRIBUTE_CHARS: usize = 256;

/// The dead-letter queue, with the bucket for oversized payloads.
#[derive(Debug, Clone)]
pub struct SqsDeadLetterQueue {
    client: Client,
    queue_url: String,
    overflow: S3ObjectStore,
}

impl SqsDeadLetterQueue {
    pub fn new(client: Client, queue_url: impl Into<String>, overflow: S3ObjectStore) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            overflow,
        }
    }

    /// The message body of a letter: the letter as JSON, its payload moved
    /// to S3 (`{"s3": "s3://bucket/dead-letters/…"}`) when the message would
    /// be too large.
    async fn body(&self, letter: &DeadLetter) -> Result<String, BackendError> {
        let body = serde_json::to_string(letter)
            .map_err(|e| BackendError::permanent("encoding a dead letter", e))?;
        if body.len() <= MAX_MESSAGE_BYTES {
            return Ok(body);
        }
        let digest = Sha256::digest(&letter.payload);
        let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let key = format!(
            "dead-letters/{}/{}-{hash}.bin",
            letter.shard_id.replace('/', "_"),
            if letter.sequence_number.is_empty() {
                "unsequenced"
            } else {
                &letter.sequence_number
            }
        );
        self.overflow.put(&key, letter.payload.clone()).await?;
        let mut value = serde_json::to_value(letter)
            .map_err(|e| BackendError::permanent("encoding a dead letter", e))?;
        let location = format!("s3://{}/{key}", self.overflow.bucket_of(&key));
        value["payload"] = json!({ "s3": location, "bytes": letter.payload.len() });
        if let Some(reason) = value.get_mut("reason") {
            *reason = Value::from(truncate(&letter.reason, 4096));
        }
        Ok(value.to_string())
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

fn attribute(value: &str) -> Result<Option<MessageAttributeValue>, BackendError> {
    if value.is_empty() {
        // SQS refuses empty attribute values.
        return Ok(None);
    }
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(truncate(value, MAX_ATTRIBUTE_CHARS))
        .build()
        .map(Some)
        .map_err(|e| build_error("a dead letter's attribute", e))
}

fn entry(
    id: usize,
    letter: &DeadLetter,
    body: String,
) -> Result<SendMessageBatchRequestEntry, BackendError> {
    let mut builder = SendMessageBatchRequestEntry::builder()
        .id(id.to_string())
        .message_body(body);
    for (name, value) in [
        ("reason", letter.reason.as_str()),
        ("kind", &letter.kind),
        ("stage", &letter.stage),
        ("shard_id", &letter.shard_id),
        ("sequence_number", &letter.sequence_number),
        ("plugin", letter.plugin.as_deref().unwrap_or_default()),
    ] {
        if let Some(value) = attribute(value)? {
            builder = builder.message_attributes(name, value);
        }
    }
    builder
        .build()
        .map_err(|e| build_error("a dead letter message", e))
}

impl DeadLetterQueue for SqsDeadLetterQueue {
    /// In batches of up to 10 messages and 240 KiB; entries SQS fails are sent
    /// again with backoff, and only they. Not atomic across batches: a retried
    /// pipeline batch may send a letter twice (SQS is at-least-once anyway).
    async fn send(&self, letters: Vec<DeadLetter>) -> Result<(), BackendError> {
        let what = || format!("sending dead letters to {}", self.queue_url);
        let mut pending: Vec<SendMessageBatchRequestEntry> = Vec::with_capacity(letters.len());
        for (i, letter) in letters.iter().enumerate() {
            pending.push(entry(i, letter, self.body(letter).await?)?);
        }
        while !pending.is_empty() {
            let mut size = 0;
            let mut take = 0;
            for e in pending.iter().take(MAX_BATCH_ENTRIES) {
                let bytes = e.message_body().len();
                if take > 0 && size + bytes > MAX_BATCH_BYTES {
                    break;
                }
                size += bytes;
                take += 1;
            }
            let mut batch: Vec<_> = pending.drain(..take).collect();
            let mut attempt = 0;
            loop {
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(batch.clone()))
                    .send()
                    .await
                    .map_err(|e| backend_error(what(), e))?;
                let failed = out.failed();
                if failed.is_empty() {
                    break;
                }
                if let Some(fault) = failed.iter().find(|f| f.sender_fault()) {
                    return Err(BackendError::permanent(
                        what(),
                        format!(
                            "SQS refused a letter: {} {}",
                            fault.code(),
                            fault.message().unwrap_or_default()
                        ),
                    ));
                }
                attempt += 1;
                if attempt > 8 {
                    return Err(BackendError::retryable(
                        what(),
                        format!("{} letters still failing", failed.len()),
                    ));
                }
                let ids: Vec<&str> = failed.iter().map(|f| f.id()).collect();
                batch.retain(|e| ids.contains(&e.id()));
                tokio::time::sleep(crate::backoff(attempt, Duration::from_millis(50))).await;
            }
        }
        Ok(())
    }
}
