//! How metric rows are stored as text: waiting in `pending_key_metrics`,
//! as entries of `metric_groups`, and as the readings of `metric_rows`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use weir_core::metrics::Reading;

/// A row as it waits in `pending_key_metrics`, with one-letter names: a
/// batch's rows are written to the WAL, then to the database, then freed, so
/// their size counts three times. Schema 1's rows (long names and a batch id
/// on each) still read.
#[derive(Serialize)]
pub(super) struct PendingRowOut<'a> {
    #[serde(rename = "k")]
    pub(super) partition_key: &'a str,
    #[serde(rename = "m")]
    pub(super) minute: &'a str,
    #[serde(rename = "n")]
    pub(super) records: u64,
    #[serde(rename = "r")]
    pub(super) readings: StoredReadings<'a>,
    #[serde(rename = "t")]
    pub(super) ttl: i64,
}

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
