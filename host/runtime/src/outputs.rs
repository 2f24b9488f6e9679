//! A plugin's answer for a batch, checked against the contract and the
//! output limits before anything of it is written.

use serde_json::{Map, Value};
use weir_core::{JsonObject, Outcome, PluginEvent, Rejection, RejectionKind};

use crate::Limits;
use crate::bindings::WitOutcome;
use crate::invoke::Fault;

/// Checks the plugin's answer against the contract and the output limits.
pub(crate) fn validate(
    label: &str,
    raw: Vec<WitOutcome>,
    events: &[PluginEvent<'_>],
    limits: &Limits,
) -> Result<Vec<Outcome>, Fault> {
    if raw.len() != events.len() {
        return Err(Fault::InvalidOutput(format!(
            "returned {} outcomes for {} events",
            raw.len(),
            events.len()
        )));
    }
    let total = output_weight(&raw, events);
    if total > limits.max_batch_output_bytes {
        return Err(Fault::InvalidOutput(format!(
            "batch output of {total} bytes (each output counted with its envelope, and the \
             record copied into every output after an event's first) exceeds the limit of {} \
             bytes",
            limits.max_batch_output_bytes
        )));
    }
    let invalid = |why: String| {
        Outcome::Reject(Rejection::new(
            RejectionKind::InvalidOutput,
            format!("plugin {label} broke the contract: {why}"),
        ))
    };
    let within_limit = |text: &str| -> Result<(), String> {
        if text.len() > limits.max_record_output_bytes {
            return Err(format!(
                "an output record of {} bytes exceeds the limit of {} bytes",
                text.len(),
                limits.max_record_output_bytes
            ));
        }
        Ok(())
    };
    let parse = |text: &str| -> Result<Map<String, Value>, String> {
        within_limit(text)?;
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err("output is JSON but not an object".into()),
            Err(e) => Err(format!("output is not valid JSON ({e})")),
        }
    };
    Ok(raw
        .into_iter()
        .map(|outcome| match outcome {
            WitOutcome::Enrich(text) => within_limit(&text)
                .and_then(|()| JsonObject::parse(text))
                .map_or_else(invalid, Outcome::Enrich),
            WitOutcome::Emit(records) if records.is_empty() => {
                Outcome::Drop("the plugin emitted no records".into())
            }
            WitOutcome::Emit(records) => records
                .iter()
                .map(|r| parse(r))
                .collect::<Result<Vec<_>, _>>()
                .map_or_else(invalid, Outcome::Emit),
            WitOutcome::Drop(reason) => Outcome::Drop(bounded(reason)),
            WitOutcome::Reject(r) => {
                Outcome::Reject(Rejection::new(r.kind.into(), bounded(r.message)))
            }
        })
        .collect())
}

/// A plugin's reasons go into every dead letter they explain: enough to say
/// what is wrong, not a second payload.
const MAX_REASON_BYTES: usize = 4096;

pub(crate) fn bounded(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        let end = reason.floor_char_boundary(MAX_REASON_BYTES);
        let cut = reason.len() - end;
        reason.truncate(end);
        reason.push_str(&format!("… ({cut} more bytes not kept)"));
    }
    reason
}

/// What the envelope adds to each output besides the original record (its
/// metadata: ids, times, shard, plugin), rounded up.
const ENVELOPE_BYTES_PER_OUTPUT: usize = 256;

/// The bytes a batch's outputs make the host write beyond the records it was
/// given: each output's JSON and envelope, and for every output after an
/// event's first, another copy of the record (every output line carries its
/// original). Emitting multiplies a record, so this is what
/// [`Limits::max_batch_output_bytes`] bounds: a plugin emitting a million `{}`
/// for a large record would otherwise make the host write a million copies.
fn output_weight(raw: &[WitOutcome], events: &[PluginEvent<'_>]) -> usize {
    raw.iter()
        .zip(events)
        .map(|(outcome, event)| match outcome {
            WitOutcome::Enrich(text) => text.len().saturating_add(ENVELOPE_BYTES_PER_OUTPUT),
            WitOutcome::Emit(records) => {
                let own = records.iter().fold(0usize, |sum, r| {
                    sum.saturating_add(r.len() + ENVELOPE_BYTES_PER_OUTPUT)
                });
                let copies = records.len().saturating_sub(1);
                own.saturating_add(copies.saturating_mul(event.payload.len()))
            }
            WitOutcome::Drop(_) | WitOutcome::Reject(_) => 0,
        })
        .fold(0, usize::saturating_add)
}
