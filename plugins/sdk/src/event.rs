//! A typed view of one input event.

use std::rc::Rc;

use serde::Deserialize;

use crate::__private::RawEvent;
use crate::outcome::{Rejection, RejectionKind};

/// What the events of one batch share, their texts included.
#[derive(Debug)]
pub(crate) struct BatchInfo {
    pub(crate) tenant: String,
    pub(crate) event_type: String,
    pub(crate) processing_time: String,
    /// Every event's texts, back to back; events hold spans of it.
    pub(crate) text: String,
}

/// The event's texts, in the contract's field order.
const PAYLOAD: usize = 0;
const PARTITION_KEY: usize = 1;
const SEQUENCE_NUMBER: usize = 2;
const ARRIVAL_TIME: usize = 3;
const EVENT_TIME: usize = 4;

/// The byte ranges of `raw`'s five texts in `text`, in the contract's field
/// order; the first span that lies outside it (or off a character boundary)
/// as the error.
pub(crate) fn ranges(text: &str, raw: &RawEvent) -> Result<[(usize, usize); 5], (usize, usize)> {
    let spans = [
        raw.payload,
        raw.partition_key,
        raw.sequence_number,
        raw.arrival_time,
        raw.event_time,
    ];
    let mut ranges = [(0, 0); 5];
    for (range, span) in ranges.iter_mut().zip(spans) {
        let start = span.offset as usize;
        let end = start.saturating_add(span.len as usize);
        if text.get(start..end).is_none() {
            return Err((start, end));
        }
        *range = (start, end);
    }
    Ok(ranges)
}

/// One stream record, decoded and validated by the host.
#[derive(Debug)]
pub struct Event {
    /// Byte ranges of the batch's text, checked to lie on character boundaries.
    fields: [(usize, usize); 5],
    batch: Rc<BatchInfo>,
}

impl Event {
    /// The event whose texts `raw` locates in the batch's text; a rejection
    /// when a span lies outside it (a host that breaks the contract).
    pub(crate) fn new(raw: &RawEvent, batch: Rc<BatchInfo>) -> Result<Self, Rejection> {
        match ranges(&batch.text, raw) {
            Ok(fields) => Ok(Self { fields, batch }),
            Err((start, end)) => Err(Rejection::new(
                RejectionKind::Internal,
                format!(
                    "the host sent a span {start}..{end} outside its batch text of {} bytes",
                    batch.text.len()
                ),
            )),
        }
    }

    fn field(&self, index: usize) -> &str {
        let (start, end) = self.fields[index];
        // Checked in `new`: in range and on character boundaries.
        &self.batch.text[start..end]
    }

    /// An event for a plugin's own unit tests: `payload` with the given event
    /// time; tenant `default`, arrival and processing time equal to `event_time`.
    pub fn for_test(payload: &str, event_time: &str) -> Self {
        let event_type = serde_json::from_str::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| {
                v.get("event_type")
                    .and_then(|t| t.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let texts = [payload, "test", "1", event_time, event_time];
        let mut fields = [(0, 0); 5];
        let mut end = 0;
        for (field, text) in fields.iter_mut().zip(texts) {
            *field = (end, end + text.len());
            end += text.len();
        }
        let batch = BatchInfo {
            tenant: "default".to_owned(),
            event_type,
            processing_time: event_time.to_owned(),
            text: texts.concat(),
        };
        Self {
            fields,
            batch: Rc::new(batch),
        }
    }

    /// The record's JSON object as the producer sent it.
    pub fn payload(&self) -> &str {
        self.field(PAYLOAD)
    }

    /// Deserialize the payload into `T`, borrowing strings where `T` allows.
    /// Declare only the fields the plugin reads: the rest is skipped. A missing or
    /// ill-typed field becomes a [`Rejection`] that names it.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, Rejection> {
        serde_json::from_str(self.payload()).map_err(Rejection::from_json_error)
    }

    /// The payload as a generic JSON value.
    pub fn value(&self) -> Result<serde_json::Value, Rejection> {
        self.parse()
    }

    pub fn event_type(&self) -> &str {
        &self.batch.event_type
    }

    pub fn tenant(&self) -> &str {
        &self.batch.tenant
    }

    pub fn partition_key(&self) -> &str {
        self.field(PARTITION_KEY)
    }

    pub fn sequence_number(&self) -> &str {
        self.field(SEQUENCE_NUMBER)
    }

    /// RFC 3339 UTC time the stream accepted the record.
    pub fn arrival_time(&self) -> &str {
        self.field(ARRIVAL_TIME)
    }

    /// RFC 3339 UTC time of the event (its `timestamp`, normalised by the host).
    pub fn event_time(&self) -> &str {
        self.field(EVENT_TIME)
    }

    /// The UTC date of the event, `YYYY-MM-DD`.
    pub fn event_date(&self) -> &str {
        let time = self.event_time();
        time.get(..10).unwrap_or(time)
    }

    /// RFC 3339 UTC time the host gives this batch (the same for all its events).
    pub fn processing_time(&self) -> &str {
        &self.batch.processing_time
    }
}
