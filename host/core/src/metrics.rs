//! Per-minute metrics of a stream's partition keys (the seed's metrics table).
//!
//! For each partition key (a sensor, a user) and minute of event time: how many
//! records arrived, and count/min/max/sum of each numeric top-level reading
//! (`temperature`, `humidity`, `amount`, …). A batch writes one row per
//! (partition key, minute) it saw, keyed also by its batch id, so a retried
//! batch replaces its rows instead of counting twice; readers merge a minute's
//! rows.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::Record;

/// How long metric rows are kept, as batch metadata: 30 days.
pub const METRICS_TTL_SECONDS: i64 = 30 * 24 * 3600;

/// At most this many readings per row: a record with thousands of numeric
/// members cannot blow up the table.
pub const MAX_READINGS: usize = 32;

/// Aggregates of one numeric reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
}

impl Reading {
    fn of(value: f64) -> Self {
        Self {
            count: 1,
            min: value,
            max: value,
            sum: value,
        }
    }

    fn merge(&mut self, other: &Reading) {
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }
}

/// One row: a partition key's minute, as seen by one batch (or, merged, by all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinuteMetrics {
    pub partition_key: String,
    /// The minute's start, RFC 3339 UTC (`2024-01-15T10:30:00Z`).
    pub minute: String,
    /// The batch that saw these records; empty once rows are merged.
    pub batch_id: String,
    pub records: u64,
    pub readings: BTreeMap<String, Reading>,
    /// Unix seconds after which the row may be deleted.
    pub ttl: i64,
}

impl MinuteMetrics {
    /// Folds another row of the same partition key and minute into this one.
    pub fn merge(&mut self, other: &MinuteMetrics) {
        self.records += other.records;
        self.ttl = self.ttl.max(other.ttl);
        for (name, reading) in &other.readings {
            fold(&mut self.readings, name, reading);
        }
    }
}

/// Folds a reading into a row's, within [`MAX_READINGS`].
fn fold(readings: &mut BTreeMap<String, Reading>, name: &str, reading: &Reading) {
    let full = readings.len() >= MAX_READINGS;
    match readings.get_mut(name) {
        Some(mine) => mine.merge(reading),
        None if !full => {
            readings.insert(name.to_owned(), *reading);
        }
        None => {}
    }
}

/// Rows from many batches, merged per minute, newest minute first.
pub fn merge_minutes(rows: impl IntoIterator<Item = MinuteMetrics>) -> Vec<MinuteMetrics> {
    let mut minutes: BTreeMap<(String, String), MinuteMetrics> = BTreeMap::new();
    for row in rows {
        let key = (row.partition_key.clone(), row.minute.clone());
        match minutes.get_mut(&key) {
            Some(merged) => merged.merge(&row),
            None => {
                minutes.insert(
                    key,
                    MinuteMetrics {
                        batch_id: String::new(),
                        ..row
                    },
                );
            }
        }
    }
    let mut merged: Vec<_> = minutes.into_values().collect();
    merged.sort_by(|a, b| b.minute.cmp(&a.minute));
    merged
}

/// Aggregates a batch's records by partition key and minute.
#[derive(Debug, Default)]
pub struct MinuteAggregator {
    rows: BTreeMap<(String, DateTime<Utc>), MinuteMetrics>,
}

impl MinuteAggregator {
    /// Counts a record and its finite numeric top-level members.
    pub fn add(&mut self, partition_key: &str, event_time: DateTime<Utc>, record: &Record<'_>) {
        let minute = event_time
            .duration_trunc(TimeDelta::minutes(1))
            .unwrap_or(event_time);
        let row = self
            .rows
            .entry((partition_key.to_owned(), minute))
            .or_insert_with(|| MinuteMetrics {
                partition_key: partition_key.to_owned(),
                minute: crate::time::format_utc(minute),
                batch_id: String::new(),
                records: 0,
                readings: BTreeMap::new(),
                ttl: 0,
            });
        row.records += 1;
        for (name, raw) in record.members() {
            let text = raw.get();
            if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
                continue;
            }
            let Ok(value) = text.parse::<f64>() else {
                continue;
            };
            if !value.is_finite() {
                continue;
            }
            fold(&mut row.readings, name, &Reading::of(value));
        }
    }

    /// The batch's rows, stamped with its id and their expiry.
    pub fn finish(self, batch_id: &str, ttl: i64) -> Vec<MinuteMetrics> {
        self.rows
            .into_values()
            .map(|row| MinuteMetrics {
                batch_id: batch_id.to_owned(),
                ttl,
                ..row
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        crate::time::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn readings_aggregate_per_key_and_minute() {
        let mut agg = MinuteAggregator::default();
        for (key, time, text) in [
            (
                "s1",
                "2024-01-15T10:30:05Z",
                r#"{"temperature":20.5,"humidity":40}"#,
            ),
            (
                "s1",
                "2024-01-15T10:30:59Z",
                r#"{"temperature":22,"label":"x"}"#,
            ),
            ("s1", "2024-01-15T10:31:00Z", r#"{"temperature":-3}"#),
            (
                "s2",
                "2024-01-15T10:30:10Z",
                r#"{"temperature":1e400,"ok":true}"#,
            ),
        ] {
            agg.add(key, at(time), &Record::parse(text).unwrap());
        }
        let rows = agg.finish("b1", 99);
        assert_eq!(rows.len(), 3);
        let first = &rows[0];
        assert_eq!(
            (first.partition_key.as_str(), first.minute.as_str()),
            ("s1", "2024-01-15T10:30:00Z")
        );
        assert_eq!(first.records, 2);
        let t = first.readings["temperature"];
        assert_eq!((t.count, t.min, t.max, t.sum), (2, 20.5, 22.0, 42.5));
        assert_eq!(first.readings["humidity"].count, 1);
        assert!(!first.readings.contains_key("label"));
        assert_eq!(rows[1].readings["temperature"].min, -3.0);
        assert!(
            rows[2].readings.is_empty(),
            "infinite and non-numeric values are not readings"
        );
        assert_eq!(
            (rows[2].records, rows[2].batch_id.as_str(), rows[2].ttl),
            (1, "b1", 99)
        );
    }

    #[test]
    fn rows_of_many_batches_merge_per_minute() {
        let mut a = MinuteAggregator::default();
        a.add(
            "s1",
            at("2024-01-15T10:30:05Z"),
            &Record::parse(r#"{"t":1}"#).unwrap(),
        );
        let mut b = MinuteAggregator::default();
        b.add(
            "s1",
            at("2024-01-15T10:30:45Z"),
            &Record::parse(r#"{"t":5}"#).unwrap(),
        );
        b.add(
            "s1",
            at("2024-01-15T10:32:00Z"),
            &Record::parse(r#"{"t":7}"#).unwrap(),
        );
        let merged = merge_minutes(a.finish("a", 1).into_iter().chain(b.finish("b", 2)));
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].minute, "2024-01-15T10:32:00Z", "newest first");
        let t = merged[1].readings["t"];
        assert_eq!(
            (merged[1].records, t.count, t.min, t.max, t.mean()),
            (2, 2, 1.0, 5.0, 3.0)
        );
        assert_eq!(merged[1].ttl, 2);
    }

    #[test]
    fn readings_are_capped() {
        let members: Vec<String> = (0..100).map(|i| format!("\"r{i:03}\":{i}")).collect();
        let text = format!("{{{}}}", members.join(","));
        let mut agg = MinuteAggregator::default();
        agg.add(
            "k",
            at("2024-01-15T10:30:05Z"),
            &Record::parse(&text).unwrap(),
        );
        assert_eq!(agg.finish("b", 0)[0].readings.len(), MAX_READINGS);
    }
}
