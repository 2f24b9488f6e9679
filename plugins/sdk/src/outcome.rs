//! What becomes of an event: enriched, emitted, dropped or rejected.

use serde::Serialize;
use serde_json::Value;

use crate::__private::RawOutcome;
use crate::bindings::weir::plugin::types::{Rejection as RawRejection, RejectionKind as RawKind};

/// The fields a plugin adds to a record. The host merges them into
/// `enriched_data`; when a key is added twice, the later value wins.
///
/// Fields are written straight to JSON text as they are added: no map, no
/// intermediate values, one allocation per event.
#[derive(Clone)]
pub struct Fields {
    json: Vec<u8>,
}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fields({})", self.to_value())
    }
}

impl Default for Fields {
    fn default() -> Self {
        let mut json = Vec::with_capacity(128);
        json.push(b'{');
        Self { json }
    }
}

impl Fields {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a field (builder style).
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        self.insert(key, value);
        self
    }

    /// Add a field. A value that cannot be serialised (a map with non-string
    /// keys) becomes `null`.
    pub fn insert(&mut self, key: &str, value: impl Serialize) {
        if self.json.len() > 1 {
            self.json.push(b',');
        }
        // Writing JSON into a Vec cannot fail for a string key.
        let _ = serde_json::to_writer(&mut self.json, key);
        self.json.push(b':');
        let mark = self.json.len();
        if serde_json::to_writer(&mut self.json, &value).is_err() {
            self.json.truncate(mark);
            self.json.extend_from_slice(b"null");
        }
    }

    /// The fields as a JSON object: for a plugin's own unit tests.
    pub fn to_value(&self) -> Value {
        let mut json = self.json.clone();
        json.push(b'}');
        serde_json::from_slice(&json).unwrap_or(Value::Null)
    }

    pub(crate) fn into_json(mut self) -> String {
        self.json.push(b'}');
        // serde_json writes UTF-8 only, so this conversion always succeeds.
        String::from_utf8(self.json).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// Why a plugin refused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    MissingField,
    InvalidField,
    Unsupported,
    BadConfig,
    Internal,
}

/// A refusal: the host dead-letters the record with this kind and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: RejectionKind,
    pub message: String,
}

impl Rejection {
    pub fn new(kind: RejectionKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn missing_field(field: &str) -> Self {
        Self::new(
            RejectionKind::MissingField,
            format!("missing field `{field}`"),
        )
    }

    pub fn invalid_field(field: &str, expected: &str) -> Self {
        Self::new(
            RejectionKind::InvalidField,
            format!("field `{field}`: expected {expected}"),
        )
    }

    pub(crate) fn from_json_error(err: serde_json::Error) -> Self {
        let message = err.to_string();
        // serde's own wording is the most precise message we have; only the kind
        // is derived from it.
        let kind = if message.starts_with("missing field") {
            RejectionKind::MissingField
        } else {
            RejectionKind::InvalidField
        };
        Self { kind, message }
    }
}

/// What became of one event.
#[derive(Debug, Clone)]
pub enum Outcome {
    Enrich(Fields),
    Emit(Vec<Value>),
    Drop(String),
    Reject(Rejection),
}

impl Outcome {
    /// Add these fields to the record (the cheap, common path).
    pub fn enrich(fields: Fields) -> Self {
        Outcome::Enrich(fields)
    }

    /// Write these whole records instead (reshape or fan out).
    pub fn emit(records: Vec<Value>) -> Self {
        Outcome::Emit(records)
    }

    /// Drop the event on purpose; the host counts it with this reason.
    pub fn drop(reason: impl Into<String>) -> Self {
        Outcome::Drop(reason.into())
    }

    /// Refuse the event; the host dead-letters it.
    pub fn reject(rejection: Rejection) -> Self {
        Outcome::Reject(rejection)
    }

    pub(crate) fn into_raw(self) -> RawOutcome {
        match self {
            Outcome::Enrich(fields) => RawOutcome::Enrich(fields.into_json()),
            Outcome::Emit(records) => {
                RawOutcome::Emit(records.iter().map(Value::to_string).collect())
            }
            Outcome::Drop(reason) => RawOutcome::Drop(reason),
            Outcome::Reject(r) => RawOutcome::Reject(RawRejection {
                kind: match r.kind {
                    RejectionKind::MissingField => RawKind::MissingField,
                    RejectionKind::InvalidField => RawKind::InvalidField,
                    RejectionKind::Unsupported => RawKind::Unsupported,
                    RejectionKind::BadConfig => RawKind::BadConfig,
                    RejectionKind::Internal => RawKind::Internal,
                },
                message: r.message,
            }),
        }
    }
}

impl From<Result<Fields, Rejection>> for Outcome {
    fn from(result: Result<Fields, Rejection>) -> Self {
        match result {
            Ok(fields) => Outcome::Enrich(fields),
            Err(rejection) => Outcome::Reject(rejection),
        }
    }
}
