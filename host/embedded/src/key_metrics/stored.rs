//! How metric rows are stored as text: waiting in `pending_key_metrics`,
//! as entries of `metric_groups`, and as the readings of `metric_rows`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use weir_core::metrics::{MinuteMetrics, Reading};

/// A row as it waits in `pending_key_metrics`, ready to become an entry of
/// its key's group: the key, and the entry's text after the batch's number
/// (which the flush gives it), `"minute",records,readings,ttl]`. A batch's
/// rows are stored as lines `key\ttail\n`, the key as a JSON string (so no
/// key holds a tab or a line break): the flush groups them by key and splices
/// each tail into its group's text, where it parsed each row and wrote it
/// again (~3% of a one-core run).
#[derive(Debug)]
pub(super) struct PendingEntry<'a> {
    pub(super) partition_key: Cow<'a, str>,
    pub(super) tail: Cow<'a, str>,
    pub(super) ttl: i64,
}

/// A batch's rows as the text that waits: one line per row (see
/// [`PendingEntry`]).
pub(super) fn write_pending(rows: &[MinuteMetrics]) -> String {
    let mut text = Vec::with_capacity(rows.len() * 64);
    for r in rows {
        write_pending_row(&mut text, r).expect("metric rows serialise");
    }
    String::from_utf8(text).expect("serde_json writes UTF-8")
}

/// `key\t"minute",records,readings,ttl]\n`, all written by serde_json (its
/// integers skip `fmt`).
fn write_pending_row(text: &mut Vec<u8>, r: &MinuteMetrics) -> serde_json::Result<()> {
    serde_json::to_writer(&mut *text, &r.partition_key)?;
    text.push(b'\t');
    serde_json::to_writer(&mut *text, &r.minute)?;
    text.push(b',');
    serde_json::to_writer(&mut *text, &r.records)?;
    text.push(b',');
    serde_json::to_writer(&mut *text, &StoredReadings(&r.readings))?;
    text.push(b',');
    serde_json::to_writer(&mut *text, &r.ttl)?;
    text.extend_from_slice(b"]\n");
    Ok(())
}

/// A batch's waiting rows, in any form Weir has stored them: lines of
/// [`PendingEntry`], or a JSON array of [`PendingRow`] (earlier versions:
/// one-letter names, or schema 1's long names with a batch id on each).
pub(super) fn read_pending(text: &str) -> Result<Vec<PendingEntry<'_>>, String> {
    if text.starts_with('[') {
        let rows: Vec<PendingRow<'_>> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        return Ok(rows.into_iter().map(PendingRow::into_entry).collect());
    }
    text.lines()
        .map(|line| {
            let (key, tail) = line
                .split_once('\t')
                .ok_or_else(|| format!("a pending row without a tab: {line:?}"))?;
            let ttl = tail
                .strip_suffix(']')
                .and_then(|t| t.rsplit_once(','))
                .and_then(|(_, ttl)| ttl.parse().ok())
                .ok_or_else(|| format!("a pending row without its TTL: {line:?}"))?;
            let partition_key = match key.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
                Some(plain) if !plain.contains('\\') => Cow::Borrowed(plain),
                _ => Cow::Owned(serde_json::from_str(key).map_err(|e| e.to_string())?),
            };
            Ok(PendingEntry {
                partition_key,
                tail: Cow::Borrowed(tail),
                ttl,
            })
        })
        .collect()
}

/// A waiting row as earlier versions stored it (see [`read_pending`]).
#[derive(Deserialize)]
pub(super) struct PendingRow<'a> {
    #[serde(borrow, rename = "k", alias = "partition_key")]
    pub(super) partition_key: Cow<'a, str>,
    #[serde(borrow, rename = "m", alias = "minute")]
    pub(super) minute: Cow<'a, str>,
    #[serde(rename = "n", alias = "records")]
    pub(super) records: u64,
    /// Copied into the table as it is: no parse, no new text.
    #[serde(borrow, rename = "r", alias = "readings")]
    pub(super) readings: &'a RawValue,
    #[serde(rename = "t", alias = "ttl")]
    pub(super) ttl: i64,
}

impl<'a> PendingRow<'a> {
    pub(super) fn into_entry(self) -> PendingEntry<'a> {
        let entry = (&self.minute, self.records, self.readings, self.ttl);
        let text = serde_json::to_string(&entry).expect("metric rows serialise");
        PendingEntry {
            partition_key: self.partition_key,
            tail: Cow::Owned(text[1..].to_owned()),
            ttl: self.ttl,
        }
    }
}

/// One batch's row of a partition key, as an entry of the key's row in
/// `metric_groups`: `[batch, minute, records, readings, ttl]`, where `batch`
/// is the batch's row id in `metric_batches` (its id once, not per entry).
/// An array, not an object: a group holds one entry per batch of a flush
/// that saw the key, hundreds at times.
#[derive(Serialize, Deserialize)]
pub(super) struct GroupEntry<'a>(
    pub(super) i64,
    #[serde(borrow)] pub(super) Cow<'a, str>,
    pub(super) u64,
    #[serde(borrow)] pub(super) &'a RawValue,
    pub(super) i64,
);

/// A row's readings as they are stored, pending, in group entries and in
/// `metric_rows`: a reading of one record as its value alone
/// (`"temperature":21.5`), others as `[count, min, max, sum]`. Most rows of
/// a batch are one record's (a sensor, a user seen once in the batch): a
/// batch's rows take ~30% fewer bytes than with named fields (12.9 → 8.9 KB
/// for the bench's batches of 100), which rows written before still have
/// (they read, see [`StoredReading`]).
pub(super) struct StoredReadings<'a>(pub(super) &'a BTreeMap<String, Reading>);

impl Serialize for StoredReadings<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, r) in self.0 {
            if r.count == 1 && r.min == r.max && r.min == r.sum {
                map.serialize_entry(name, &r.min)?;
            } else {
                map.serialize_entry(name, &(r.count, r.min, r.max, r.sum))?;
            }
        }
        map.end()
    }
}

/// A stored reading in any of the forms Weir has written.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredReading {
    One(f64),
    Aggregate(u64, f64, f64, f64),
    Named(Reading),
}

impl From<StoredReading> for Reading {
    fn from(stored: StoredReading) -> Self {
        match stored {
            StoredReading::One(value) => Reading {
                count: 1,
                min: value,
                max: value,
                sum: value,
            },
            StoredReading::Aggregate(count, min, max, sum) => Reading {
                count,
                min,
                max,
                sum,
            },
            StoredReading::Named(reading) => reading,
        }
    }
}

/// Reads a row's stored readings (an unreadable text reads as none, as it
/// always has: a row's count stands without them).
pub(super) fn readings_of(text: &str) -> BTreeMap<String, Reading> {
    serde_json::from_str::<BTreeMap<String, StoredReading>>(text)
        .map(|stored| stored.into_iter().map(|(k, v)| (k, v.into())).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(count: u64, min: f64, max: f64, sum: f64) -> Reading {
        Reading {
            count,
            min,
            max,
            sum,
        }
    }

    #[test]
    fn readings_are_stored_compactly_and_every_stored_form_reads_back() {
        let readings = BTreeMap::from([
            ("temperature".to_owned(), reading(1, -3.25, -3.25, -3.25)),
            ("humidity".to_owned(), reading(3, 40.0, 60.5, 150.5)),
        ]);
        let text = serde_json::to_string(&StoredReadings(&readings)).unwrap();
        assert_eq!(
            text,
            r#"{"humidity":[3,40.0,60.5,150.5],"temperature":-3.25}"#
        );
        assert_eq!(readings_of(&text), readings);

        // Rows written before this form, with named fields, read as they were.
        let named = r#"{"amount":{"count":2,"min":1.5,"max":2.0,"sum":3.5}}"#;
        assert_eq!(readings_of(named)["amount"], reading(2, 1.5, 2.0, 3.5));
        // Unreadable readings read as none (the row's count stands).
        assert!(readings_of("not json").is_empty());
    }
}

#[cfg(test)]
mod group_tests {
    use super::*;

    #[test]
    fn group_entries_are_arrays_that_read_back_borrowing_their_texts() {
        let readings = RawValue::from_string(r#"{"temperature":21.5}"#.to_owned()).unwrap();
        let entry = GroupEntry(7, Cow::Borrowed("2024-01-15T10:30:00Z"), 3, &readings, 99);
        let text = serde_json::to_string(&entry).unwrap();
        assert_eq!(
            text,
            r#"[7,"2024-01-15T10:30:00Z",3,{"temperature":21.5},99]"#
        );
        let back: GroupEntry<'_> = serde_json::from_str(&text).unwrap();
        assert!(matches!(back.1, Cow::Borrowed("2024-01-15T10:30:00Z")));
        assert_eq!(
            (back.0, back.2, back.3.get(), back.4),
            (7, 3, readings.get(), 99)
        );
    }
}

#[cfg(test)]
mod pending_tests {
    use super::*;

    fn row(partition_key: &str, records: u64, readings: &[(&str, Reading)]) -> MinuteMetrics {
        MinuteMetrics {
            partition_key: partition_key.to_owned(),
            minute: "2024-01-15T10:30:00Z".to_owned(),
            batch_id: "b1".to_owned(),
            records,
            readings: readings
                .iter()
                .map(|(name, r)| ((*name).to_owned(), *r))
                .collect(),
            ttl: 1_707_000_000,
        }
    }

    /// The group entry a pending row becomes in batch `number`, parsed back.
    fn as_group_entry(number: i64, entry: &PendingEntry<'_>) -> (i64, String, u64, String, i64) {
        let text = format!("[{number},{}", entry.tail);
        let GroupEntry(n, minute, records, readings, ttl) = serde_json::from_str(&text).unwrap();
        (
            n,
            minute.into_owned(),
            records,
            readings.get().to_owned(),
            ttl,
        )
    }

    #[test]
    fn pending_rows_are_lines_whose_tails_become_group_entries() {
        let one = Reading {
            count: 1,
            min: 21.5,
            max: 21.5,
            sum: 21.5,
        };
        let rows = [
            row("sensor-7", 1, &[("temperature", one)]),
            // A key that could break a line or a field is quoted as JSON.
            row("odd\tkey\n\"\\", 2, &[]),
        ];
        let text = write_pending(&rows);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.starts_with("\"sensor-7\"\t\"2024-01-15T10:30:00Z\",1,"));
        let entries = read_pending(&text).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(matches!(
            entries[0].partition_key,
            Cow::Borrowed("sensor-7")
        ));
        assert_eq!(entries[1].partition_key, "odd\tkey\n\"\\");
        assert_eq!(entries[1].ttl, 1_707_000_000);
        assert_eq!(
            as_group_entry(42, &entries[0]),
            (
                42,
                "2024-01-15T10:30:00Z".to_owned(),
                1,
                r#"{"temperature":21.5}"#.to_owned(),
                1_707_000_000
            )
        );
        assert_eq!(as_group_entry(3, &entries[1]).3, "{}");
    }

    #[test]
    fn rows_pending_in_earlier_forms_read_as_the_same_entries() {
        let lines = read_pending(
            "\"sensor-7\"\t\"2024-01-15T10:30:00Z\",2,{\"temperature\":[2,20.0,22.0,42.0]},99]\n",
        )
        .unwrap();
        let compact = read_pending(
            r#"[{"k":"sensor-7","m":"2024-01-15T10:30:00Z","n":2,"r":{"temperature":[2,20.0,22.0,42.0]},"t":99}]"#,
        )
        .unwrap();
        let schema_1 = read_pending(
            r#"[{"partition_key":"sensor-7","minute":"2024-01-15T10:30:00Z","batch_id":"b1","records":2,"readings":{"temperature":[2,20.0,22.0,42.0]},"ttl":99}]"#,
        )
        .unwrap();
        for entries in [&compact, &schema_1] {
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0].partition_key, lines[0].partition_key);
            assert_eq!(entries[0].ttl, 99);
            assert_eq!(as_group_entry(1, &entries[0]), as_group_entry(1, &lines[0]));
        }
        // Text in no form Weir wrote is an error naming the row.
        assert!(
            read_pending("no tab here")
                .unwrap_err()
                .contains("no tab here")
        );
        assert!(
            read_pending("\"k\"\t\"m\",1,{},x]")
                .unwrap_err()
                .contains("TTL")
        );
    }
}
