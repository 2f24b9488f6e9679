//! Golden cases: the expected outcome of each input event, checked against a
//! compiled plugin.
//!
//! A case file is JSON (documented in the README, "Golden cases"):
//!
//! ```json
//! { "cases": [ {
//!     "name": "small purchase is categorised",
//!     "tenant": "acme",                       // optional, default "default"
//!     "config": { "currency": "EUR" },        // optional tenant configuration
//!     "processing_time": "2024-01-15T10:31:00Z", // optional
//!     "events": [ { "event_type": "transaction", "amount": 42, "timestamp": "..." } ],
//!     "expect": [ { "enrich": { "amount_category": "small", ... } } ],
//!     "budget": { "max_micros": 5000, "max_memory_bytes": 4194304 } // optional
//! } ] }
//! ```
//!
//! `expect` holds one entry per event: `{"enrich": {fields}}` (exactly the fields
//! the plugin adds), `{"emit": [records]}`, `{"drop": "reason"}`, or
//! `{"reject": {"kind": "missing-field", "message_contains": "amount"}}`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use weir_core::{Outcome, RejectionKind};
use weir_runtime::{BatchReport, Limits, Plugin};

use crate::harness::{DEFAULT_TIME, payload_event};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default = "default_tenant")]
    pub tenant: String,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub processing_time: Option<String>,
    pub events: Vec<Value>,
    pub expect: Vec<Expected>,
    #[serde(default)]
    pub budget: Budget,
}

fn default_tenant() -> String {
    "default".into()
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Expected {
    Enrich(Map<String, Value>),
    Emit(Vec<Map<String, Value>>),
    Drop(String),
    Reject {
        kind: RejectionKind,
        #[serde(default)]
        message_contains: Option<String>,
    },
}

/// Optional limits a case must stay within.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Wall time of the batch (instantiation and call), in microseconds.
    pub max_micros: Option<u64>,
    /// Peak linear memory of the plugin, in bytes.
    pub max_memory_bytes: Option<usize>,
}

/// The result of one case.
#[derive(Debug)]
pub struct CaseResult {
    pub name: String,
    /// What differs from the expectation; empty when the case passed.
    pub problems: Vec<String>,
    pub elapsed: Duration,
    pub peak_memory_bytes: usize,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Reads and parses a case file; the error names the file and what is wrong.
pub fn load(path: &Path) -> Result<CaseFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text, &path.display().to_string())
}

/// Parses a case file's text; `origin` names it in errors (a path, an upload).
pub fn parse(text: &str, origin: &str) -> Result<CaseFile, String> {
    let file: CaseFile = serde_json::from_str(text)
        .map_err(|e| format!("{origin} is not a valid case file: {e}"))?;
    for case in &file.cases {
        if case.events.len() != case.expect.len() {
            return Err(format!(
                "{origin}: case `{}` has {} events but {} expectations; give one per event",
                case.name,
                case.events.len(),
                case.expect.len()
            ));
        }
    }
    Ok(file)
}

/// Runs every case against the plugin.
pub fn run(plugin: &Plugin, file: &CaseFile, limits: &Limits) -> Vec<CaseResult> {
    file.cases
        .iter()
        .map(|case| run_case(plugin, case, limits))
        .collect()
}

/// Runs a case's events as a host would; `Err` names an event that is not
/// a valid record.
fn run_events(plugin: &Plugin, case: &Case, limits: &Limits) -> Result<BatchReport, String> {
    let time = case.processing_time.as_deref().unwrap_or(DEFAULT_TIME);
    let events = case
        .events
        .iter()
        .enumerate()
        .map(|(i, p)| payload_event(p, &case.tenant, i + 1, time))
        .collect::<Result<Vec<_>, _>>()?;
    let config: Vec<(String, String)> = case
        .config
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(plugin.process(&config, &events, limits))
}

fn run_case(plugin: &Plugin, case: &Case, limits: &Limits) -> CaseResult {
    let report = match run_events(plugin, case, limits) {
        Ok(report) => report,
        Err(e) => {
            return CaseResult {
                name: case.name.clone(),
                problems: vec![e],
                elapsed: Duration::ZERO,
                peak_memory_bytes: 0,
            };
        }
    };

    let mut problems = Vec::new();
    for (i, (expected, actual)) in case.expect.iter().zip(&report.outcomes).enumerate() {
        compare(i + 1, expected, actual, &mut problems);
    }
    if let Some(max) = case.budget.max_micros
        && report.elapsed > Duration::from_micros(max)
    {
        problems.push(format!(
            "took {} µs, over the budget of {max} µs",
            report.elapsed.as_micros()
        ));
    }
    if let Some(max) = case.budget.max_memory_bytes
        && report.peak_memory_bytes > max
    {
        problems.push(format!(
            "used {} bytes of memory, over the budget of {max} bytes",
            report.peak_memory_bytes
        ));
    }
    CaseResult {
        name: case.name.clone(),
        problems,
        elapsed: report.elapsed,
        peak_memory_bytes: report.peak_memory_bytes,
    }
}

/// A case file with its expectations brought up to date.
#[derive(Debug)]
pub struct Updated {
    /// The file's new text (pretty-printed JSON).
    pub text: String,
    /// Each rewritten expectation: the case's name and the event's number.
    pub rewritten: Vec<(String, usize)>,
}

/// Rewrites each expectation the plugin no longer meets with the outcome it
/// gives now, and keeps every one it meets as written (a `message_contains`
/// fragment stays a fragment, a case's other keys stay). Budgets are not
/// touched: a case over its budget still fails. `Err` when the file is not a
/// valid case file or a case's event is not a valid record.
pub fn update(
    plugin: &Plugin,
    text: &str,
    origin: &str,
    limits: &Limits,
) -> Result<Updated, String> {
    let file = parse(text, origin)?;
    let mut document: Value = serde_json::from_str(text)
        .map_err(|e| format!("{origin} is not a valid case file: {e}"))?;
    let mut rewritten = Vec::new();
    for (c, case) in file.cases.iter().enumerate() {
        let report = run_events(plugin, case, limits)
            .map_err(|e| format!("{origin}: case `{}`: {e}", case.name))?;
        for (e, (expected, actual)) in case.expect.iter().zip(&report.outcomes).enumerate() {
            let mut problems = Vec::new();
            compare(e + 1, expected, actual, &mut problems);
            if !problems.is_empty() {
                document["cases"][c]["expect"][e] = expectation_of(actual);
                rewritten.push((case.name.clone(), e + 1));
            }
        }
    }
    let text =
        serde_json::to_string_pretty(&document).map_err(|e| format!("writing {origin}: {e}"))?;
    Ok(Updated {
        text: text + "\n",
        rewritten,
    })
}

/// The expectation an outcome meets exactly.
fn expectation_of(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Enrich(fields) => json!({ "enrich": fields.to_map() }),
        Outcome::Emit(records) => json!({ "emit": records }),
        Outcome::Drop(reason) => json!({ "drop": reason }),
        Outcome::Reject(r) => {
            json!({ "reject": { "kind": r.kind, "message_contains": r.message } })
        }
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Enrich(fields) => format!("enrich {}", fields.as_str()),
        Outcome::Emit(records) => format!("emit {} record(s)", records.len()),
        Outcome::Drop(reason) => format!("drop ({reason})"),
        Outcome::Reject(r) => format!("reject {r}"),
    }
}

fn compare(event: usize, expected: &Expected, actual: &Outcome, problems: &mut Vec<String>) {
    match (expected, actual) {
        (Expected::Enrich(want), Outcome::Enrich(got)) => {
            diff_fields(event, want, &got.to_map(), problems)
        }
        (Expected::Emit(want), Outcome::Emit(got)) => {
            if want.len() != got.len() {
                problems.push(format!(
                    "event {event}: expected {} emitted records, got {}",
                    want.len(),
                    got.len()
                ));
            }
            for (want, got) in want.iter().zip(got) {
                diff_fields(event, want, got, problems);
            }
        }
        (Expected::Drop(want), Outcome::Drop(got)) if want != got => {
            problems.push(format!(
                "event {event}: expected drop reason {want:?}, got {got:?}"
            ));
        }
        (
            Expected::Reject {
                kind,
                message_contains,
            },
            Outcome::Reject(got),
        ) => {
            if *kind != got.kind {
                problems.push(format!(
                    "event {event}: expected a rejection of kind {kind:?}, got {got}"
                ));
            }
            if let Some(part) = message_contains
                && !got.message.contains(part.as_str())
            {
                problems.push(format!(
                    "event {event}: expected the rejection to mention {part:?}, got {got}"
                ));
            }
        }
        (Expected::Drop(_), Outcome::Drop(_)) => {}
        (expected, actual) => {
            problems.push(format!(
                "event {event}: expected {expected:?}, got {}",
                describe(actual)
            ));
        }
    }
}

/// One line per differing field: missing, unexpected, or different.
fn diff_fields(
    event: usize,
    want: &Map<String, Value>,
    got: &Map<String, Value>,
    problems: &mut Vec<String>,
) {
    let keys: BTreeSet<&String> = want.keys().chain(got.keys()).collect();
    for key in keys {
        match (want.get(key), got.get(key)) {
            (Some(w), Some(g)) if !json_eq(w, g) => problems.push(format!(
                "event {event}: field `{key}`: expected {w}, got {g}"
            )),
            (Some(w), None) => problems.push(format!(
                "event {event}: field `{key}`: expected {w}, missing"
            )),
            (None, Some(g)) => {
                problems.push(format!("event {event}: field `{key}`: unexpected, got {g}"))
            }
            _ => {}
        }
    }
}

/// JSON equality in which numbers compare by value (`31` equals `31.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_compare_by_value_and_differences_are_named() {
        assert!(json_eq(&json!({"a": [31]}), &json!({"a": [31.0]})));
        assert!(!json_eq(&json!({"a": 31}), &json!({"a": 31.5})));
        let mut problems = Vec::new();
        let want = json!({"same": 1, "differs": "x", "missing": true})
            .as_object()
            .unwrap()
            .clone();
        let got = json!({"same": 1.0, "differs": "y", "extra": null})
            .as_object()
            .unwrap()
            .clone();
        diff_fields(2, &want, &got, &mut problems);
        assert_eq!(
            problems,
            vec![
                "event 2: field `differs`: expected \"x\", got \"y\"",
                "event 2: field `extra`: unexpected, got null",
                "event 2: field `missing`: expected true, missing",
            ]
        );
    }
}
