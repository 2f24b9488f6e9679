//! Reading the dead-letter queue back, for `weir dlq` on AWS.
//!
//! SQS cannot show a message without receiving it, and a received message is
//! hidden from every other reader until its visibility timeout ends or it is
//! deleted. A [`Scan`] receives the queue's letters with long polling (an
//! empty answer then means no visible message is left), keeps them hidden
//! while it reads, and ends in [`Scan::finish`]: the letters chosen are
//! deleted (a redrive the stream accepted), every other one is made visible
//! again at once, so a listing leaves the queue as it found it. A scan that
//! never finishes (the command killed) loses nothing: its letters come back
//! when [`HOLD`] ends.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
};
use serde_json::Value;
use weir_core::backend::{BackendError, DeadLetter, DeadLetterFilter, ObjectStore};

use super::SqsDeadLetterQueue;
use crate::error::{backend_error, build_error};

/// How long a scan keeps the letters it received hidden: longer than a scan
/// of a large queue takes (10 letters a request), short enough that the
/// letters of a scan cut off come back soon.
pub const HOLD: Duration = Duration::from_secs(300);

/// How long a receive waits for a message (long polling asks every server of
/// the queue, so an empty answer means the queue has no visible message).
const WAIT_SECONDS: i32 = 1;

/// A dead letter read from the queue, still in it.
#[derive(Debug, Clone)]
pub struct QueuedLetter {
    /// SQS's id of the message: what `weir dlq show` takes.
    pub message_id: String,
    pub letter: DeadLetter,
    /// Where its payload was kept when it was too large for a message.
    overflow_key: Option<String>,
}

/// A message of the queue that is not a dead letter Weir can read.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub message_id: String,
    pub why: String,
}

/// The letters a scan received, hidden from other readers until
/// [`Scan::finish`].
#[derive(Debug)]
pub struct Scan<'q> {
    queue: &'q SqsDeadLetterQueue,
    /// The letters that passed the filter, oldest first.
    pub letters: Vec<QueuedLetter>,
    pub unreadable: Vec<Unreadable>,
    /// Every message received, by id: its latest receipt handle.
    receipts: HashMap<String, String>,
}

/// What a scan takes: the filter's letters (its `limit` first found), or the
/// one with a message id.
#[derive(Debug, Clone, Default)]
pub struct ScanRequest {
    pub filter: DeadLetterFilter,
    pub message_id: Option<String>,
}

impl ScanRequest {
    fn wants(&self, message_id: &str, letter: &DeadLetter) -> bool {
        self.message_id.as_deref().is_none_or(|id| id == message_id) && self.filter.matches(letter)
    }

    fn satisfied(&self, found: usize) -> bool {
        let enough = if self.message_id.is_some() {
            Some(1)
        } else {
            self.filter.limit
        };
        enough.is_some_and(|n| found >= n)
    }
}

impl SqsDeadLetterQueue {
    /// Receives the queue's letters until the request is satisfied or no
    /// visible message is left, calling `progress` with the count of
    /// messages read after each receive. The letters stay hidden until the
    /// scan's [`Scan::finish`] (or [`HOLD`]).
    pub async fn scan(
        &self,
        request: &ScanRequest,
        mut progress: impl FnMut(usize),
    ) -> Result<Scan<'_>, BackendError> {
        let mut scan = Scan {
            queue: self,
            letters: Vec::new(),
            unreadable: Vec::new(),
            receipts: HashMap::new(),
        };
        let hold = i32::try_from(HOLD.as_secs()).unwrap_or(i32::MAX);
        while !request.satisfied(scan.letters.len()) {
            let received = self
                .client
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(WAIT_SECONDS)
                .visibility_timeout(hold)
                .send()
                .await
                .map_err(|e| {
                    backend_error(format!("reading dead letters from {}", self.queue_url), e)
                });
            let received = match received {
                Ok(received) => received,
                Err(e) => {
                    // What was received so far must not stay hidden.
                    scan.finish(&[]).await?;
                    return Err(e);
                }
            };
            let mut new = 0;
            for message in received.messages() {
                let (Some(id), Some(receipt)) = (message.message_id(), message.receipt_handle())
                else {
                    continue;
                };
                // A message seen before came back (a scan longer than HOLD):
                // its newest receipt is the one that can delete it.
                if scan
                    .receipts
                    .insert(id.to_owned(), receipt.to_owned())
                    .is_some()
                {
                    continue;
                }
                new += 1;
                match self.read(id, message.body().unwrap_or_default()).await {
                    Ok(queued) if request.wants(id, &queued.letter) => {
                        if !request.satisfied(scan.letters.len()) {
                            scan.letters.push(queued);
                        }
                    }
                    Ok(_) => {}
                    Err(why) => scan.unreadable.push(Unreadable {
                        message_id: id.to_owned(),
                        why,
                    }),
                }
            }
            progress(scan.receipts.len());
            if new == 0 {
                break;
            }
        }
        scan.letters.sort_by(|a, b| {
            (
                &a.letter.failed_at,
                &a.letter.shard_id,
                &a.letter.sequence_number,
            )
                .cmp(&(
                    &b.letter.failed_at,
                    &b.letter.shard_id,
                    &b.letter.sequence_number,
                ))
        });
        Ok(scan)
    }

    /// A message's letter, its payload fetched from S3 when it was kept
    /// there; or why it cannot be read.
    async fn read(&self, message_id: &str, body: &str) -> Result<QueuedLetter, String> {
        let mut value: Value =
            serde_json::from_str(body).map_err(|e| format!("its body is not JSON: {e}"))?;
        let location = value["payload"]["s3"].as_str().map(str::to_owned);
        if location.is_some() {
            // Read below; the letter's own payload field stands empty till then.
            value["payload"] = serde_json::json!({ "text": "" });
        }
        let mut letter: DeadLetter = serde_json::from_value(value)
            .map_err(|e| format!("it is not a dead letter of Weir's: {e}"))?;
        let overflow_key = match location {
            Some(location) => {
                let key = overflow_key(&location).ok_or_else(|| {
                    format!("its payload's location {location} is not s3://bucket/key")
                })?;
                letter.payload = self
                    .overflow
                    .get(key)
                    .await
                    .map_err(|e| format!("its payload at {location} cannot be read: {e}"))?
                    .ok_or_else(|| format!("its payload at {location} is gone"))?;
                Some(key.to_owned())
            }
            None => None,
        };
        Ok(QueuedLetter {
            message_id: message_id.to_owned(),
            letter,
            overflow_key,
        })
    }
}

/// The key of `s3://bucket/key`.
fn overflow_key(location: &str) -> Option<&str> {
    let (_bucket, key) = location.strip_prefix("s3://")?.split_once('/')?;
    (!key.is_empty()).then_some(key)
}

impl Scan<'_> {
    /// Deletes the letters with these message ids (and the payloads kept for
    /// them in S3) and makes every other message the scan received visible
    /// again. Returns how many were deleted. Both are tried whatever the
    /// other's fate, and the first failure is returned: a letter left hidden
    /// comes back after [`HOLD`], and one left undeleted after a redrive
    /// would be redriven again.
    pub async fn finish(mut self, delete: &[&str]) -> Result<usize, BackendError> {
        let mut deleting = Vec::new();
        for id in delete {
            if let Some(receipt) = self.receipts.remove(*id) {
                deleting.push(((*id).to_owned(), receipt));
            }
        }
        let releasing: Vec<String> = self.receipts.drain().map(|(_, receipt)| receipt).collect();
        let released = self.release(&releasing).await;
        let deleted = self.delete(&deleting).await;
        released?;
        deleted
    }

    /// Makes the messages visible again, ten a request.
    async fn release(&self, receipts: &[String]) -> Result<(), BackendError> {
        let queue = self.queue;
        let what = || format!("returning dead letters to {}", queue.queue_url);
        for chunk in receipts.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|e| build_error("a visibility change", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = queue
                .client
                .change_message_visibility_batch()
                .queue_url(&queue.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| backend_error(what(), e))?;
            // A message whose receipt expired (HOLD passed) is visible already.
            if let Some(failed) = out.failed().iter().find(|f| !expired(f.code())) {
                return Err(BackendError::retryable(
                    what(),
                    format!("{} {}", failed.code(), failed.message().unwrap_or_default()),
                ));
            }
        }
        Ok(())
    }

    /// Deletes the messages (id, receipt), ten a request, and the payloads
    /// kept for them in S3; returns how many went.
    async fn delete(&self, messages: &[(String, String)]) -> Result<usize, BackendError> {
        let queue = self.queue;
        let what = || format!("deleting dead letters from {}", queue.queue_url);
        let overflow: HashMap<&str, &str> = self
            .letters
            .iter()
            .filter_map(|q| Some((q.message_id.as_str(), q.overflow_key.as_deref()?)))
            .collect();
        let mut deleted = 0;
        for chunk in messages.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, (_, receipt))| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .map_err(|e| build_error("a message deletion", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = queue
                .client
                .delete_message_batch()
                .queue_url(&queue.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| backend_error(what(), e))?;
            for done in out.successful() {
                let Some((id, _)) = done.id().parse::<usize>().ok().and_then(|i| chunk.get(i))
                else {
                    continue;
                };
                deleted += 1;
                if let Some(key) = overflow.get(id.as_str()) {
                    queue.overflow.delete(key).await?;
                }
            }
            if let Some(failed) = out.failed().first() {
                return Err(BackendError::retryable(
                    what(),
                    format!(
                        "{} of {} not deleted: {} {}",
                        out.failed().len(),
                        chunk.len(),
                        failed.code(),
                        failed.message().unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(deleted)
    }
}

/// SQS's code for a receipt handle that no longer holds its message.
fn expired(code: &str) -> bool {
    code.contains("ReceiptHandleIsInvalid") || code.contains("MessageNotInflight")
}
