//! A typed view of one input event.

use std::rc::Rc;

use serde::Deserialize;

use crate::__private::RawEvent;
use crate::outcome::Rejection;

/// What the events of one batch share.
#[derive(Debug)]
pub(crate) struct BatchInfo {
    pub(crate) tenant: String,
    pub(crate) event_type: String,
    pub(crate) processing_time: String,
}

/// One stream record, decoded and validated by the host.
#[derive(Debug)]
pub struct Event {
    raw: RawEvent,
    batch: Rc<BatchInfo>,
}

impl Event {
    pub(crate) fn new(raw: RawEvent, batch: Rc<BatchInfo>) -> Self {
        Self { raw, batch }
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
        let batch = BatchInfo {
            tenant: "default".to_owned(),
            event_type,
            processing_time: event_time.to_owned(),
        };
        let raw = RawEvent {
            payload: payload.to_owned(),
            partition_key: "test".to_owned(),
            sequence_number: "1".to_owned(),
            arrival_time: event_time.to_owned(),
            event_time: event_time.to_owned(),
        };
        Self::new(raw, Rc::new(batch))
    }

    /// The record's JSON object as the producer sent it.
    pub fn payload(&self) -> &str {
        &self.raw.payload
    }

    /// Deserialize the payload into `T`, borrowing strings where `T` allows.
    /// Declare only the fields the plugin reads: the rest is skipped. A missing or
    /// ill-typed field becomes a [`Rejection`] that names it.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, Rejection> {
        serde_json::from_str(&self.raw.payload).map_err(Rejection::from_json_error)
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
        &self.raw.partition_key
    }

    pub fn sequence_number(&self) -> &str {
        &self.raw.sequence_number
    }

    /// RFC 3339 UTC time the stream accepted the record.
    pub fn arrival_time(&self) -> &str {
        &self.raw.arrival_time
    }

    /// RFC 3339 UTC time of the event (its `timestamp`, normalised by the host).
    pub fn event_time(&self) -> &str {
        &self.raw.event_time
    }

    /// The UTC date of the event, `YYYY-MM-DD`.
    pub fn event_date(&self) -> &str {
        self.raw
            .event_time
            .get(..10)
            .unwrap_or(&self.raw.event_time)
    }

    /// RFC 3339 UTC time the host gives this batch (the same for all its events).
    pub fn processing_time(&self) -> &str {
        &self.batch.processing_time
    }
}
