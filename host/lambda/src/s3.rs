//! The S3 handler: the transformer of two-stage mode, on `ObjectCreated`
//! notifications for raw objects.

use aws_lambda_events::s3::S3Event;
use chrono::{DateTime, Utc};
use weir_core::backend::{BackendError, DeadLetterQueue, MetadataStore, ObjectStore};
use weir_core::partition::{ObjectKey, Stage};
use weir_pipeline::{BatchResult, Pipeline};

/// What the handler did with each notified object.
#[derive(Debug, Default)]
pub struct Transformed {
    pub results: Vec<BatchResult>,
    /// Keys not transformed, with why: not a raw object (a notification
    /// filter that is too wide must not make the transformer feed on its own
    /// output), not a creation, or gone.
    pub skipped: Vec<(String, String)>,
}

/// Decodes a key as S3 notifications spell it: URL-encoded, `+` for space.
/// `None` when the escapes do not decode to UTF-8.
pub fn decode_key(key: &str) -> Option<String> {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = key.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Transforms every raw object the event announces. An `Err` is a backend
/// failure: Lambda retries the invocation (transforms are idempotent).
pub async fn handle<O, D, M>(
    pipeline: &Pipeline<O, D, M>,
    event: S3Event,
    now: DateTime<Utc>,
) -> Result<Transformed, BackendError>
where
    O: ObjectStore,
    D: DeadLetterQueue,
    M: MetadataStore,
{
    let mut transformed = Transformed::default();
    let mut raw_keys = Vec::new();
    for record in event.records {
        let spelled = record.s3.object.key.clone().unwrap_or_default();
        let event_name = record.event_name.as_deref().unwrap_or("ObjectCreated:Put");
        let Some(key) = decode_key(&spelled) else {
            transformed
                .skipped
                .push((spelled, "the key's URL escapes are not UTF-8".into()));
            continue;
        };
        if !event_name.starts_with("ObjectCreated") {
            transformed
                .skipped
                .push((key, format!("{event_name} is not a creation")));
            continue;
        }
        if !ObjectKey::parse(&key).is_some_and(|k| k.stage == Stage::Raw) {
            transformed
                .skipped
                .push((key, "not a raw object key".into()));
            continue;
        }
        raw_keys.push(key);
    }
    // Together: one write of their outputs and one of their metadata.
    let keys: Vec<&str> = raw_keys.iter().map(String::as_str).collect();
    let results = pipeline.transform_objects(&keys, now).await?;
    for (key, result) in raw_keys.into_iter().zip(results) {
        match result {
            Some(result) => transformed.results.push(result),
            None => {
                tracing::warn!(
                    key,
                    "notified raw object is gone (a rolled-back batch); nothing to transform"
                );
                transformed.skipped.push((key, "no such object".into()));
            }
        }
    }
    for (key, why) in &transformed.skipped {
        tracing::info!(key, why, "skipped");
    }
    Ok(transformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_keys_decode() {
        assert_eq!(
            decode_key("raw/event_type%3Dpage_view/year%3D2024/a+b%2Bc.jsonl").as_deref(),
            Some("raw/event_type=page_view/year=2024/a b+c.jsonl")
        );
        assert_eq!(decode_key("plain/key").as_deref(), Some("plain/key"));
        assert_eq!(decode_key("bad%zz"), None);
        assert_eq!(decode_key("cut%4"), None);
        assert_eq!(decode_key("%ff%fe"), None, "not UTF-8");
    }
}
