//! The stream: Kinesis semantics, whatever the backend.
//!
//! A stream has shards, each owning a contiguous range of the 128-bit hash-key
//! space; a record goes to the shard whose range holds the MD5 of its partition
//! key. Within a shard, records get increasing sequence numbers, which are
//! integers (Kinesis's are decimal strings of up to 128 bits) and are only ever
//! compared as integers. Consumers keep a checkpoint per shard.

use std::fmt;
use std::future::Future;

use md5::{Digest, Md5};

use crate::backend::BackendError;

/// A position in a shard: a decimal integer of up to 129 digits (Kinesis's
/// form), ordered as the integer it is, never as text ("9" < "10").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(String);

/// Kinesis's sequence numbers match `0|([1-9]\d{0,128})`.
const MAX_SEQUENCE_DIGITS: usize = 129;

impl SequenceNumber {
    pub fn from_u64(n: u64) -> Self {
        Self(n.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value, when it fits in 64 bits (the embedded stream's do).
    pub fn as_u64(&self) -> Option<u64> {
        self.0.parse().ok()
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // No leading zeros (checked on parse), so the longer is the larger.
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SequenceNumber {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let digits = !text.is_empty()
            && text.len() <= MAX_SEQUENCE_DIGITS
            && text.bytes().all(|b| b.is_ascii_digit());
        if !digits || (text.len() > 1 && text.starts_with('0')) {
            return Err(format!(
                "`{text}` is not a sequence number (a decimal integer of 1 to {MAX_SEQUENCE_DIGITS} digits, no leading zeros)"
            ));
        }
        Ok(Self(text.to_owned()))
    }
}

/// The 128-bit hash key of a partition key: its MD5, big-endian, as Kinesis.
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// The hash-key range `[start, end]` of shard `index` of `count` equal shards.
pub fn shard_hash_range(index: u32, count: u32) -> (u128, u128) {
    let width = u128::MAX / u128::from(count);
    let start = width * u128::from(index);
    let end = if index + 1 == count {
        u128::MAX
    } else {
        start + width - 1
    };
    (start, end)
}

/// The index of the shard (of `count` equal shards) that owns `hash`.
pub fn shard_for_hash(hash: u128, count: u32) -> u32 {
    let width = u128::MAX / u128::from(count);
    // The last shard also takes the remainder of the division.
    u32::try_from(hash / width)
        .unwrap_or(u32::MAX)
        .min(count - 1)
}

/// A record to put on the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// What became of one record of a put, in order: Kinesis's per-record result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutResult {
    Accepted {
        shard_id: String,
        sequence_number: SequenceNumber,
    },
    /// The shard's write limit was hit (ProvisionedThroughputExceededException):
    /// retry this record later, with backoff.
    Throttled { shard_id: String },
    /// Refused for good (too large, empty partition key): do not retry.
    Refused { reason: String },
}

/// One record read from a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub shard_id: String,
    pub sequence_number: SequenceNumber,
    pub partition_key: String,
    pub data: Vec<u8>,
    /// When the stream accepted it: RFC 3339 UTC, milliseconds.
    pub arrival_time: String,
}

/// Records read from a shard, and where the next read continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBatch {
    pub records: Vec<StreamRecord>,
    pub next: StartingPosition,
    /// The shard is closed (split or merged) and read to its end: its
    /// children carry on.
    pub shard_ended: bool,
}

/// A shard and the shards it came from: a split's parent, or a merge's two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardLineage {
    pub shard_id: String,
    pub parents: Vec<String>,
}

/// Orders shards so every shard comes after its parents (those listed):
/// reading in this order keeps each partition key's records in order
/// across a resharding.
pub fn parents_first(mut shards: Vec<ShardLineage>) -> Vec<ShardLineage> {
    let mut ordered: Vec<ShardLineage> = Vec::with_capacity(shards.len());
    while !shards.is_empty() {
        let ready = shards.iter().position(|s| {
            s.parents.iter().all(|p| {
                ordered.iter().any(|o| &o.shard_id == p) || !shards.iter().any(|o| &o.shard_id == p)
            })
        });
        // A cycle cannot come from a stream; take the rest as listed.
        let next = ready.unwrap_or(0);
        ordered.push(shards.remove(next));
    }
    ordered
}

/// Where to start reading a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartingPosition {
    /// The oldest record still retained.
    TrimHorizon,
    /// Only records put from now on.
    Latest,
    /// Records that arrived at or after this time (RFC 3339).
    AtTimestamp(String),
    /// Records after this one: how a consumer resumes from its checkpoint.
    AfterSequenceNumber(SequenceNumber),
}

/// Kinesis's limits: a record's data and partition key.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Checks a record against Kinesis's per-record limits.
pub fn check_put_record(record: &PutRecord) -> Result<(), String> {
    let chars = record.partition_key.chars().count();
    if chars == 0 || chars > MAX_PARTITION_KEY_CHARS {
        return Err(format!(
            "partition key must be 1 to {MAX_PARTITION_KEY_CHARS} characters, got {chars}"
        ));
    }
    if record.data.len() + record.partition_key.len() > MAX_RECORD_BYTES {
        return Err(format!(
            "record of {} bytes (data and partition key) exceeds the {MAX_RECORD_BYTES}-byte limit",
            record.data.len() + record.partition_key.len()
        ));
    }
    Ok(())
}

/// Producers put records on a stream.
pub trait StreamSink: Send + Sync {
    /// Puts records; one result per record, in order. Records of one partition
    /// key keep their order within the shard.
    fn put_records(
        &self,
        records: Vec<PutRecord>,
    ) -> impl Future<Output = Result<Vec<PutResult>, BackendError>> + Send;
}

/// Consumers read shards and keep checkpoints.
pub trait StreamSource: Send + Sync {
    /// The stream's shard ids, in hash-key order.
    fn shards(&self) -> impl Future<Output = Result<Vec<String>, BackendError>> + Send;

    /// The shards with their parents. A stream that never reshards has no
    /// parents to tell.
    fn lineage(&self) -> impl Future<Output = Result<Vec<ShardLineage>, BackendError>> + Send {
        async {
            let shards = self.shards().await?;
            Ok(shards
                .into_iter()
                .map(|shard_id| ShardLineage {
                    shard_id,
                    parents: Vec::new(),
                })
                .collect())
        }
    }

    /// Up to `limit` records of a shard from a position, oldest first, and
    /// where the next read continues (as a shard iterator would).
    fn read(
        &self,
        shard_id: &str,
        from: &StartingPosition,
        limit: usize,
    ) -> impl Future<Output = Result<ReadBatch, BackendError>> + Send;

    /// The consumer's checkpoint in a shard: the last sequence number it
    /// finished (its output durable).
    fn checkpoint(
        &self,
        consumer: &str,
        shard_id: &str,
    ) -> impl Future<Output = Result<Option<SequenceNumber>, BackendError>> + Send;

    /// Moves the consumer's checkpoint forward; never backwards.
    fn set_checkpoint(
        &self,
        consumer: &str,
        shard_id: &str,
        sequence_number: SequenceNumber,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_hash_with_md5_as_kinesis() {
        // Known MD5 digests.
        assert_eq!(
            format!("{:032x}", hash_key("")),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(
            format!("{:032x}", hash_key("abc")),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }

    #[test]
    fn shards_split_the_hash_range_without_gaps() {
        for count in [1, 2, 3, 7] {
            let mut next = 0u128;
            for i in 0..count {
                let (start, end) = shard_hash_range(i, count);
                assert_eq!(
                    start, next,
                    "{count} shards: shard {i} starts where the last ended"
                );
                assert_eq!(shard_for_hash(start, count), i);
                assert_eq!(shard_for_hash(end, count), i);
                next = end.wrapping_add(1);
            }
            assert_eq!(shard_hash_range(count - 1, count).1, u128::MAX);
        }
    }

    #[test]
    fn sequence_numbers_compare_as_integers() {
        let small: SequenceNumber = "9".parse().unwrap();
        let large: SequenceNumber = "10".parse().unwrap();
        assert!(small < large, "as strings, \"9\" > \"10\"");
        let a: SequenceNumber = "49590338271490256608559692538361571095921575989136588898"
            .parse()
            .unwrap();
        let b: SequenceNumber = "49590338271490256608559692538361571095921575989136588899"
            .parse()
            .unwrap();
        assert!(a < b && b > large);
        assert_eq!(SequenceNumber::from_u64(42).as_u64(), Some(42));
        assert!("007".parse::<SequenceNumber>().is_err());
        assert!("".parse::<SequenceNumber>().is_err());
        let kinesis: SequenceNumber = "49590338271490256608559692538361571095921575989136588898"
            .parse()
            .unwrap();
        assert_eq!(
            kinesis.to_string(),
            "49590338271490256608559692538361571095921575989136588898"
        );
        assert!("12a".parse::<SequenceNumber>().unwrap_err().contains("12a"));
    }

    #[test]
    fn parents_come_before_their_children() {
        let shard = |id: &str, parents: &[&str]| ShardLineage {
            shard_id: id.into(),
            parents: parents.iter().map(|p| (*p).to_owned()).collect(),
        };
        let ordered = parents_first(vec![
            shard("merged", &["left", "right"]),
            shard("right", &["root"]),
            shard("left", &["root"]),
            shard("root", &["expired"]),
        ]);
        let ids: Vec<&str> = ordered.iter().map(|s| s.shard_id.as_str()).collect();
        assert_eq!(ids, ["root", "right", "left", "merged"]);
    }

    #[test]
    fn put_records_are_checked_against_kinesis_limits() {
        let ok = PutRecord {
            partition_key: "k".into(),
            data: vec![0; 1000],
        };
        assert!(check_put_record(&ok).is_ok());
        let no_key = PutRecord {
            partition_key: String::new(),
            data: vec![],
        };
        assert!(
            check_put_record(&no_key)
                .unwrap_err()
                .contains("partition key")
        );
        let big = PutRecord {
            partition_key: "k".into(),
            data: vec![0; MAX_RECORD_BYTES],
        };
        assert!(check_put_record(&big).unwrap_err().contains("exceeds"));
    }
}
