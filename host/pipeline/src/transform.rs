//! The transformer of two-stage mode: a raw object in, its processed object
//! out (the seed's S3 data transformer).

use chrono::{DateTime, Utc};
use weir_core::backend::{BackendError, DeadLetter, DeadLetterQueue, MetadataStore, ObjectStore};
use weir_core::partition::{ObjectKey, Stage};
use weir_core::stream::StreamRecord;
use weir_core::time;

use crate::batch::{BatchResult, Pipeline, Run, batch_span};
use crate::raw::read_raw_line;

impl<O: ObjectStore, D: DeadLetterQueue, M: MetadataStore> Pipeline<O, D, M> {
    /// Enriches the records of one raw object and writes them under the
    /// processed prefix, with the same key as single-stage mode would have
    /// given them, so a retried transform overwrites its output. A line that
    /// is not one the raw stage wrote is dead-lettered (stage `transform`,
    /// kind `corrupt-raw-line`). The batch id of the metadata entry is the raw
    /// key. A key that is not a raw object's is a permanent error; `None`
    /// when there is no such object (a notification for an object a failed
    /// batch rolled back: its retry writes and announces it again).
    pub async fn transform_object(
        &self,
        raw_key: &str,
        processed_at: DateTime<Utc>,
    ) -> Result<Option<BatchResult>, BackendError> {
        let mut results = self.transform_objects(&[raw_key], processed_at).await?;
        Ok(results.pop().flatten())
    }

    /// [`Self::transform_object`] for several raw objects (a batch's, or a
    /// notification batch's), made durable together: one write of their
    /// processed objects, one of their metadata entries (each its own, by raw
    /// key). A result per key, in order.
    pub async fn transform_objects(
        &self,
        raw_keys: &[&str],
        processed_at: DateTime<Utc>,
    ) -> Result<Vec<Option<BatchResult>>, BackendError> {
        let mut prepared = Vec::with_capacity(raw_keys.len());
        let mut found = Vec::with_capacity(raw_keys.len());
        for raw_key in raw_keys {
            let Some((key, records, refused)) = self.read_raw_object(raw_key, processed_at).await?
            else {
                found.push(false);
                continue;
            };
            let run = Run {
                batch_id: (*raw_key).to_owned(),
                shard_id: &key.shard_id,
                first_seq: &key.first_sequence,
                last_seq: &key.last_sequence,
                write_raw: false,
                enrich: true,
                refused,
            };
            let span = batch_span(&run, records.len());
            prepared.push(span.in_scope(|| self.prepare(run, &records, processed_at))?);
            found.push(true);
        }
        let mut results = self.persist(prepared).await?.into_iter();
        Ok(found
            .into_iter()
            .map(|found| if found { results.next() } else { None })
            .collect())
    }

    /// A raw object's key, its records, and letters for its lines that are not
    /// records the raw stage wrote; `None` when there is no such object.
    async fn read_raw_object(
        &self,
        raw_key: &str,
        processed_at: DateTime<Utc>,
    ) -> Result<Option<(ObjectKey, Vec<StreamRecord>, Vec<DeadLetter>)>, BackendError> {
        let what = || format!("transforming {raw_key}");
        let key = ObjectKey::parse(raw_key)
            .filter(|k| k.stage == Stage::Raw)
            .ok_or_else(|| {
                BackendError::permanent(
                    what(),
                    "not a raw object key (raw/event_type=…/year=…/month=…/day=…/hour=…/{shard}-{first}-{last}.jsonl)",
                )
            })?;
        let Some(body) = self.objects.get(raw_key).await? else {
            return Ok(None);
        };
        let failed_at = time::format_utc(processed_at);
        let mut records = Vec::new();
        let mut refused = Vec::new();
        for (number, line) in body.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed = std::str::from_utf8(line)
                .map_err(|e| format!("not UTF-8: {e}"))
                .and_then(read_raw_line);
            match parsed {
                Ok(record) => records.push(record),
                Err(why) => refused.push(DeadLetter {
                    payload: line.to_vec(),
                    reason: format!("line {} of {raw_key}: {why}", number + 1),
                    kind: "corrupt-raw-line".into(),
                    stage: "transform".into(),
                    plugin: None,
                    shard_id: key.shard_id.clone(),
                    sequence_number: String::new(),
                    partition_key: String::new(),
                    failed_at: failed_at.clone(),
                }),
            }
        }
        Ok(Some((key, records, refused)))
    }
}
