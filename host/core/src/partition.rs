//! Where a record's object goes: Hive-style partitions and deterministic keys.
//!
//! `event_type=…/year=YYYY/month=MM/day=DD/hour=HH`, from a record's event time
//! (UTC). Partition values come from records, so they are encoded before they
//! reach a key: every byte outside `[A-Za-z0-9_-]` becomes `%XX` (Hive's own
//! escaping style), so no value can contain `/`, be `.` or `..`, or carry a
//! control character, whatever a record says. Values longer than
//! [`MAX_PARTITION_VALUE_BYTES`] or empty are refused: the record is
//! dead-lettered with the reason, not truncated into a collision.
//!
//! Object keys are deterministic: the same batch (shard, first and last
//! sequence number, stage) always gives the same key, so a retried batch
//! overwrites its own objects instead of duplicating records.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Timelike, Utc};

/// The longest partition value accepted, in bytes before encoding.
pub const MAX_PARTITION_VALUE_BYTES: usize = 128;

/// A record's partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    /// `event_type=…/year=…/month=…/day=…/hour=…`, values encoded.
    path: String,
}

impl Partition {
    /// The partition of an event type at a time. The error says why the value
    /// cannot be a partition.
    pub fn new(event_type: &str, time: DateTime<Utc>) -> Result<Self, String> {
        let mut path = String::with_capacity(64);
        path.push_str("event_type=");
        encode_value(event_type, &mut path).map_err(|why| format!("event_type {why}"))?;
        // Writing into a String cannot fail.
        let _ = write!(
            path,
            "/year={:04}/month={:02}/day={:02}/hour={:02}",
            time.year(),
            time.month(),
            time.day(),
            time.hour()
        );
        Ok(Self { path })
    }

    pub fn as_str(&self) -> &str {
        &self.path
    }
}

/// Appends `value` encoded as one key segment.
fn encode_value(value: &str, out: &mut String) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty; a partition value needs at least one character".into());
    }
    if value.len() > MAX_PARTITION_VALUE_BYTES {
        return Err(format!(
            "is {} bytes long; a partition value may have at most {MAX_PARTITION_VALUE_BYTES}",
            value.len()
        ));
    }
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    Ok(())
}

/// Which stage wrote an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Validated records with stream metadata, before enrichment.
    Raw,
    /// Enriched records in the output envelope.
    Processed,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Raw => "raw",
            Stage::Processed => "processed",
        }
    }
}

/// The key of the object a batch writes for one partition:
/// `{stage}/{partition}/{shard}-{first}-{last}.jsonl`. The same batch always
/// gives the same key. `shard_id` is encoded like a partition value.
pub fn object_key(
    stage: Stage,
    partition: &Partition,
    shard_id: &str,
    first_sequence: &str,
    last_sequence: &str,
) -> Result<String, String> {
    let mut key = String::with_capacity(128);
    key.push_str(stage.as_str());
    key.push('/');
    key.push_str(partition.as_str());
    key.push('/');
    encode_value(shard_id, &mut key).map_err(|why| format!("shard id {why}"))?;
    key.push('-');
    encode_value(first_sequence, &mut key).map_err(|why| format!("sequence number {why}"))?;
    key.push('-');
    encode_value(last_sequence, &mut key).map_err(|why| format!("sequence number {why}"))?;
    key.push_str(".jsonl");
    Ok(key)
}

/// An object key taken apart: what [`object_key`] put together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey {
    pub stage: Stage,
    /// `event_type=…/year=…/month=…/day=…/hour=…`, values encoded.
    pub partition: String,
    pub shard_id: String,
    pub first_sequence: String,
    pub last_sequence: String,
}

impl ObjectKey {
    /// Parses a key [`object_key`] made; `None` for any other key.
    pub fn parse(key: &str) -> Option<Self> {
        let (stage, rest) = key.split_once('/')?;
        let stage = match stage {
            "raw" => Stage::Raw,
            "processed" => Stage::Processed,
            _ => return None,
        };
        let (partition, file) = rest.rsplit_once('/')?;
        let stem = file.strip_suffix(".jsonl")?;
        let mut parts = stem.rsplitn(3, '-');
        let (last, first, shard) = (parts.next()?, parts.next()?, parts.next()?);
        let segments: Vec<&str> = partition.split('/').collect();
        let names = ["event_type=", "year=", "month=", "day=", "hour="];
        let well_formed = segments.len() == names.len()
            && segments
                .iter()
                .zip(names)
                .all(|(segment, name)| segment.len() > name.len() && segment.starts_with(name));
        if !well_formed {
            return None;
        }
        Some(Self {
            stage,
            partition: partition.to_owned(),
            shard_id: decode_value(shard)?,
            first_sequence: decode_value(first)?,
            last_sequence: decode_value(last)?,
        })
    }

    /// The key of the same batch and partition in another stage.
    pub fn in_stage(&self, stage: Stage) -> String {
        let mut key = format!("{}/{}/", stage.as_str(), self.partition);
        // These values came out of a key, so they encode again.
        let _ = encode_value(&self.shard_id, &mut key);
        key.push('-');
        let _ = encode_value(&self.first_sequence, &mut key);
        key.push('-');
        let _ = encode_value(&self.last_sequence, &mut key);
        key.push_str(".jsonl");
        key
    }
}

/// Undoes [`encode_value`]; `None` for text it cannot have made.
fn decode_value(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn object_keys_parse_back() {
        let p = Partition::new("page/view", at("2024-01-15T10:30:00Z")).unwrap();
        let key = object_key(Stage::Raw, &p, "shardId-000000000001", "17", "42").unwrap();
        let parsed = ObjectKey::parse(&key).unwrap();
        assert_eq!(parsed.stage, Stage::Raw);
        assert_eq!(parsed.partition, p.as_str());
        assert_eq!(
            (
                parsed.shard_id.as_str(),
                parsed.first_sequence.as_str(),
                parsed.last_sequence.as_str()
            ),
            ("shardId-000000000001", "17", "42")
        );
        assert_eq!(
            parsed.in_stage(Stage::Processed),
            object_key(Stage::Processed, &p, "shardId-000000000001", "17", "42").unwrap()
        );
        let odd = object_key(Stage::Processed, &p, "shard a/b", "1", "2").unwrap();
        assert_eq!(ObjectKey::parse(&odd).unwrap().shard_id, "shard a/b");
        for bad in [
            "raw/x.jsonl",
            "other/event_type=a/year=1/month=1/day=1/hour=1/s-1-2.jsonl",
            "raw/event_type=a/year=1/month=1/day=1/hour=1/s-1-2.json",
            "raw/event_type=a/year=1/month=1/day=1/s-1-2.jsonl",
            "raw/event_type=a/year=1/month=1/day=1/hour=1/s%2-1-2.jsonl",
            "raw/event_type=a/year=1/month=1/day=1/hour=1/1-2.jsonl",
        ] {
            assert_eq!(ObjectKey::parse(bad), None, "{bad}");
        }
    }

    use std::path::{Component, Path};

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        crate::time::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn partitions_are_hive_style_in_utc() {
        let p = Partition::new("user_action", at("2024-01-15T23:30:00-02:00")).unwrap();
        assert_eq!(
            p.as_str(),
            "event_type=user_action/year=2024/month=01/day=16/hour=01"
        );
    }

    #[test]
    fn keys_are_deterministic_per_batch() {
        let p = Partition::new("metric", at("2024-01-15T10:30:00Z")).unwrap();
        let key = object_key(Stage::Processed, &p, "shardId-000000000001", "100", "199").unwrap();
        assert_eq!(
            key,
            "processed/event_type=metric/year=2024/month=01/day=15/hour=10/shardId-000000000001-100-199.jsonl"
        );
        assert_eq!(
            key,
            object_key(Stage::Processed, &p, "shardId-000000000001", "100", "199").unwrap()
        );
        assert_ne!(
            key,
            object_key(Stage::Raw, &p, "shardId-000000000001", "100", "199").unwrap()
        );
    }

    #[test]
    fn no_value_can_escape_its_prefix() {
        let hostile = [
            "../../etc/passwd",
            "..",
            ".",
            "a/b",
            "/absolute",
            "back\\slash",
            "%2e%2e",
            "new\nline",
            "nul\0byte",
            "tab\t",
            "ünïcödé",
            "event_type=x/year=1999",
            "C:\\Windows",
        ];
        let time = at("2024-01-15T10:30:00Z");
        for value in hostile {
            let p = Partition::new(value, time).unwrap();
            let key = object_key(Stage::Raw, &p, value, value, value).unwrap();
            assert!(!key.contains(".."), "{value:?} -> {key}");
            assert!(
                key.bytes().all(|b| b.is_ascii_graphic()),
                "{value:?} -> {key}"
            );
            assert_eq!(
                key.matches('/').count(),
                6,
                "{value:?} added a segment: {key}"
            );
            let root = Path::new("/data/weir");
            let joined = root.join(&key);
            assert!(
                joined.starts_with(root),
                "{value:?} -> {}",
                joined.display()
            );
            assert!(
                joined
                    .components()
                    .all(|c| !matches!(c, Component::ParentDir | Component::CurDir)),
                "{value:?} -> {}",
                joined.display()
            );
        }
    }

    #[test]
    fn empty_and_over_long_values_are_refused_with_the_reason() {
        let time = at("2024-01-15T10:30:00Z");
        assert!(Partition::new("", time).unwrap_err().contains("empty"));
        let long = "x".repeat(MAX_PARTITION_VALUE_BYTES + 1);
        let err = Partition::new(&long, time).unwrap_err();
        assert!(
            err.contains("event_type") && err.contains("at most 128"),
            "{err}"
        );
        assert!(Partition::new(&"x".repeat(MAX_PARTITION_VALUE_BYTES), time).is_ok());
    }

    #[test]
    fn distinct_values_never_share_a_partition() {
        let time = at("2024-01-15T10:30:00Z");
        let a = Partition::new("a/b", time).unwrap();
        let b = Partition::new("a%2Fb", time).unwrap();
        assert_ne!(a, b, "the escape character itself is escaped");
    }
}
