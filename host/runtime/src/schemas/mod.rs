//! The JSON Schemas a plugin declares about itself, compiled once when it is
//! loaded: its input schema, which the host holds every event's payload to
//! before the plugin sees it, and its configuration schema, which a binding's
//! configuration is held to before it is bound. A schema that does not
//! compile refuses the plugin: a host would otherwise learn of it only when
//! the first record or binding came.
//!
//! Schemas cannot reach out: the validator is built without remote
//! references, so a `$ref` to a URL or a file refuses the plugin.

use jsonschema::error::ValidationErrorKind;
use jsonschema::json::Json;
use jsonschema::{ValidationError, Validator};
use serde_json::Value;
use weir_core::{Rejection, RejectionKind};

use crate::LoadError;
use crate::plugin::PluginInfo;

mod instance;

use instance::{Instance, Payload};

/// At most this many faults of one payload or configuration are named.
const FAULTS_NAMED: usize = 3;

/// A fault's description is cut at this many bytes: a message names the
/// offending value, and a value can be a record's megabyte.
const FAULT_BYTES: usize = 300;

/// A plugin's compiled schemas; `None` where it declares none.
pub(crate) struct Schemas {
    pub(crate) input: Option<Validator<Payload>>,
    pub(crate) config: Option<Validator>,
}

impl Schemas {
    pub(crate) fn compile(info: &PluginInfo) -> Result<Self, LoadError> {
        Ok(Self {
            input: compile("input", info.input_schema.as_deref())?,
            config: compile("configuration", info.config_schema.as_deref())?,
        })
    }
}

/// The validator of a schema, for instances in the representation `F`, or
/// why the text is not one.
fn compile<F: Json>(what: &str, schema: Option<&str>) -> Result<Option<Validator<F>>, LoadError> {
    let Some(schema) = schema else {
        return Ok(None);
    };
    let schema: Value = serde_json::from_str(schema)
        .map_err(|e| LoadError::BadInfo(format!("its {what} schema is not JSON: {e}")))?;
    // Patterns run in the host, outside the sandbox's CPU limit, so they
    // get the linear-time `regex` engine. The default, fancy-regex,
    // backtracks for look-around and backreferences, where a pattern can take
    // exponential time on one payload; here such a pattern refuses the
    // plugin at load.
    jsonschema::options_for::<F>()
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(&schema)
        .map(Some)
        .map_err(|e| LoadError::BadInfo(format!("its {what} schema is not a JSON Schema: {e}")))
}

/// Whether a payload may go to the plugin: `None` when it matches the input
/// schema, else the rejection the host dead-letters it with, on the plugin's
/// behalf and in its terms: a missing required property is a
/// `missing-field`, any other fault an `invalid-field`. A payload that
/// cannot be read (nested past `serde_json`'s 128 levels, when intake's depth
/// limit was raised past it) is an `invalid-field` too: a plugin can count on
/// what it declared.
pub(crate) fn screen(input: &Validator<Payload>, payload: &str, plugin: &str) -> Option<Rejection> {
    let value = match Instance::parse(payload) {
        Ok(value) => value,
        Err(e) => {
            return Some(Rejection::new(
                RejectionKind::InvalidField,
                format!("the payload cannot be held to the input schema of {plugin}: {e}"),
            ));
        }
    };
    if input.is_valid(&value) {
        return None;
    }
    let mut kind = RejectionKind::InvalidField;
    let faults: Vec<String> = input
        .iter_errors(&value)
        .take(FAULTS_NAMED)
        .enumerate()
        .map(|(i, fault)| {
            if i == 0 && matches!(fault.kind(), ValidationErrorKind::Required { .. }) {
                kind = RejectionKind::MissingField;
            }
            described(&fault)
        })
        .collect();
    Some(Rejection::new(
        kind,
        format!(
            "the payload does not match the input schema of {plugin}: {}",
            faults.join("; ")
        ),
    ))
}

/// A configuration's faults against the configuration schema (its keys and
/// values as a JSON object of strings), at most [`FAULTS_NAMED`]; empty when
/// it matches.
pub(crate) fn config_faults(schema: &Validator, config: &[(String, String)]) -> Vec<String> {
    let given: serde_json::Map<String, Value> = config
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let given = Value::Object(given);
    schema
        .iter_errors(&given)
        .take(FAULTS_NAMED)
        .map(|fault| described(&fault))
        .collect()
}

/// `/amount: "12" is not of type "number"`: where, then what.
fn described(fault: &ValidationError<'_>) -> String {
    let at = fault.instance_path().to_string();
    let mut text = if at.is_empty() {
        fault.to_string()
    } else {
        format!("{at}: {fault}")
    };
    if text.len() > FAULT_BYTES {
        let end = text.floor_char_boundary(FAULT_BYTES);
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validator<F: Json>(schema: Value) -> Validator<F> {
        compile("input", Some(&schema.to_string()))
            .unwrap()
            .unwrap()
    }

    fn refusal(what: &str, schema: &str) -> String {
        compile::<Payload>(what, Some(schema))
            .err()
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_schema_must_be_a_json_schema_without_remote_references() {
        let not_json = refusal("configuration", "{");
        assert!(
            not_json.contains("configuration schema is not JSON"),
            "{not_json}"
        );
        let not_a_schema = refusal("input", r#"{"type": 5}"#);
        assert!(
            not_a_schema.contains("input schema is not a JSON Schema"),
            "{not_a_schema}"
        );
        let remote = refusal("input", r#"{"$ref": "https://example.com/s.json"}"#);
        assert!(remote.contains("not a JSON Schema"), "{remote}");
        let backtracking = refusal("input", r#"{"pattern": "^(a+)\\1$"}"#);
        assert!(backtracking.contains("not a JSON Schema"), "{backtracking}");
        let look_around = refusal("configuration", r#"{"patternProperties": {"(?=x)": {}}}"#);
        assert!(look_around.contains("not a JSON Schema"), "{look_around}");
        assert!(compile::<Payload>("input", Some(r#"{"type": "object"}"#)).is_ok());
        assert!(compile::<Payload>("input", None).unwrap().is_none());
    }

    #[test]
    fn payloads_are_screened_in_the_plugins_terms() {
        let input: Validator<Payload> = validator(serde_json::json!({
            "type": "object",
            "required": ["amount"],
            "properties": {"amount": {"type": "number"}}
        }));
        assert_eq!(screen(&input, r#"{"amount": 12.5, "x": 1}"#, "t@1"), None);

        let missing = screen(&input, r#"{"currency": "EUR"}"#, "t@1").unwrap();
        assert_eq!(missing.kind, RejectionKind::MissingField);
        assert!(
            missing.message.contains("input schema of t@1")
                && missing
                    .message
                    .contains("\"amount\" is a required property"),
            "{}",
            missing.message
        );

        let ill_typed = screen(&input, r#"{"amount": "12"}"#, "t@1").unwrap();
        assert_eq!(ill_typed.kind, RejectionKind::InvalidField);
        assert!(
            ill_typed
                .message
                .contains("/amount: \"12\" is not of type \"number\""),
            "{}",
            ill_typed.message
        );

        let deep = format!(
            r#"{{"amount": 1, "x": {}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let unreadable = screen(&input, &deep, "t@1").unwrap();
        assert_eq!(unreadable.kind, RejectionKind::InvalidField);
        assert!(
            unreadable
                .message
                .contains("cannot be held to the input schema of t@1"),
            "{}",
            unreadable.message
        );

        let huge = format!(r#"{{"amount": "{}"}}"#, "9".repeat(1 << 20));
        let bounded = screen(&input, &huge, "t@1").unwrap();
        assert!(bounded.message.len() < 1024, "{}", bounded.message.len());
    }

    #[test]
    fn configurations_are_held_to_their_schema() {
        let schema: Validator = validator(serde_json::json!({
            "type": "object",
            "properties": {"threshold": {"type": "string", "pattern": "^[0-9]+$"}},
            "additionalProperties": false
        }));
        let config = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(config_faults(&schema, &config(&[("threshold", "500")])).is_empty());
        let faults = config_faults(&schema, &config(&[("threshold", "x"), ("other", "1")]));
        assert_eq!(faults.len(), 2, "{faults:?}");
        assert!(
            faults.iter().any(|f| f.starts_with("/threshold:")),
            "{faults:?}"
        );
    }
}
