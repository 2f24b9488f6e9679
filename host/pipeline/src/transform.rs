//! The transformer of two-stage mode: a raw object in, its processed object
//! out (the seed's S3 data transformer).

use chrono::{DateTime, Utc};
use weir_core::backend::{BackendError, DeadLetter, DeadLetterQueue, MetadataStore, ObjectStore};
use weir_core::partition::{ObjectKey, Stage};
use weir_core::time;

use crate::batch::{BatchResult, Pipeline, Run};
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
        let run = Run {
            batch_id: raw_key.to_owned(),
            shard_id: &key.shard_id,
            first_seq: &key.first_sequence,
            last_seq: &key.last_sequence,
            write_raw: false,
            enrich: true,
            refused,
        };
        self.run(run, &records, processed_at).await.map(Some)
    }
}
