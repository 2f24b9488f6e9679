//! A JSON object kept as validated text.
//!
//! What a plugin returns crosses the sandbox as JSON text. Parsing it into a
//! `serde_json::Map` only to serialise it again into the envelope costs more
//! than the plugin's own work, so the host validates it once and keeps the
//! text; the envelope splices it in.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::json_str::BorrowedStr;

/// A JSON object as compact, single-line text (never a raw newline, so it can
/// go into a JSON Lines line as is).
#[derive(Clone)]
pub struct JsonObject {
    text: String,
    /// Where each key lies in `text` (between its quotes), kept from the
    /// validating parse so the envelope does not parse the text again; unset
    /// until needed for objects made from a map, and `None` when a key has
    /// escapes (those are decoded on demand).
    key_spans: OnceLock<Option<Vec<(u32, u32)>>>,
}

impl JsonObject {
    /// Validates that `text` is one JSON object. Text spanning lines is
    /// re-serialised compactly. The error says what is wrong.
    pub fn parse(text: String) -> Result<Self, String> {
        let spans = spans_of(&text, &keys(&text)?);
        // Two `contains` (memchr) rather than one byte loop: 44 → 19 ns for an
        // output of four fields, ~2% of a sandboxed call.
        let bytes = text.as_bytes();
        if bytes.contains(&b'\n') || bytes.contains(&b'\r') {
            let map: Map<String, Value> = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            return Ok(Self::from_map(&map));
        }
        let trimmed = text.trim();
        if trimmed.len() == text.len() {
            return Ok(Self {
                text,
                key_spans: OnceLock::from(spans),
            });
        }
        Ok(Self::unparsed(trimmed.to_owned()))
    }

    pub fn from_map(map: &Map<String, Value>) -> Self {
        // Serialising a map of JSON values cannot fail.
        Self::unparsed(serde_json::to_string(map).unwrap_or_else(|_| "{}".to_owned()))
    }

    /// Valid object text whose keys are found when first asked for.
    fn unparsed(text: String) -> Self {
        Self {
            text,
            key_spans: OnceLock::new(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The members between the braces, e.g. `"a":1,"b":2` (empty for `{}`).
    pub fn members(&self) -> &str {
        self.text[1..self.text.len() - 1].trim()
    }

    /// The object's keys, borrowed from the text where they have no escapes.
    pub fn keys(&self) -> Vec<Cow<'_, str>> {
        let spans = self.key_spans.get_or_init(|| {
            // Validated at construction, so this cannot fail.
            spans_of(&self.text, &keys(&self.text).unwrap_or_default())
        });
        match spans {
            Some(spans) => spans
                .iter()
                .map(|&(start, end)| Cow::Borrowed(&self.text[start as usize..end as usize]))
                .collect(),
            None => keys(&self.text).unwrap_or_default(),
        }
    }

    /// The object as a map (for tests, diffs, and the rare merge that needs it).
    pub fn to_map(&self) -> Map<String, Value> {
        serde_json::from_str(&self.text).unwrap_or_default()
    }
}

impl PartialEq for JsonObject {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text || self.to_map() == other.to_map()
    }
}

impl fmt::Debug for JsonObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Where `keys`, borrowed from `text`, lie in it; `None` when one was decoded
/// (it had escapes) and so is not a slice of `text`.
fn spans_of(text: &str, keys: &[Cow<'_, str>]) -> Option<Vec<(u32, u32)>> {
    let base = text.as_ptr() as usize;
    keys.iter()
        .map(|key| match key {
            Cow::Borrowed(k) => {
                let start = (k.as_ptr() as usize).checked_sub(base)?;
                let end = start + k.len();
                (end <= text.len())
                    .then_some((u32::try_from(start).ok()?, u32::try_from(end).ok()?))
            }
            Cow::Owned(_) => None,
        })
        .collect()
}

/// Parses `text` as one JSON object and returns its keys, values skipped.
fn keys(text: &str) -> Result<Vec<Cow<'_, str>>, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let keys = (&mut de).deserialize_map(KeysVisitor).map_err(|e| {
        if e.is_data() {
            "output is JSON but not an object".to_owned()
        } else {
            format!("output is not valid JSON ({e})")
        }
    })?;
    de.end()
        .map_err(|e| format!("output is not valid JSON ({e})"))?;
    Ok(keys)
}

struct KeysVisitor;

impl<'de> Visitor<'de> for KeysVisitor {
    type Value = Vec<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut keys = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(BorrowedStr(key)) = map.next_key()? {
            map.next_value::<IgnoredAny>()?;
            keys.push(key);
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_kept_as_text_and_their_keys_found() {
        let o = JsonObject::parse(r#" {"a":1,"b\"q":[1,{"c":2}]} "#.into()).unwrap();
        assert_eq!(o.as_str(), r#"{"a":1,"b\"q":[1,{"c":2}]}"#);
        assert_eq!(o.keys(), vec!["a", "b\"q"]);
        assert_eq!(o.members(), r#""a":1,"b\"q":[1,{"c":2}]"#);
        assert_eq!(JsonObject::parse("{}".into()).unwrap().members(), "");
    }

    #[test]
    fn plain_keys_are_found_once_and_borrowed_from_the_text() {
        let o = JsonObject::parse(r#"{"region":"eu","score":3}"#.into()).unwrap();
        // Where the keys lie is kept from the validating parse...
        assert_eq!(o.key_spans.get(), Some(&Some(vec![(2, 8), (16, 21)])));
        // ...and the keys are slices of the text, not copies.
        let text = o.as_str().as_bytes().as_ptr_range();
        for key in o.keys() {
            let Cow::Borrowed(key) = key else {
                panic!("{key} was copied");
            };
            assert!(text.contains(&key.as_ptr()));
        }
        // A key with an escape is decoded: no span for the object.
        let escaped = JsonObject::parse(r#"{"a\u0062":1}"#.into()).unwrap();
        assert_eq!(escaped.key_spans.get(), Some(&None));
        assert_eq!(escaped.keys(), vec!["ab"]);
    }

    #[test]
    fn multi_line_objects_are_compacted() {
        let o = JsonObject::parse("{\n  \"a\": 1\n}".into()).unwrap();
        assert_eq!(o.as_str(), r#"{"a":1}"#);
    }

    #[test]
    fn non_objects_and_garbage_are_refused_with_the_reason() {
        assert_eq!(
            JsonObject::parse("[1,2]".into()).unwrap_err(),
            "output is JSON but not an object"
        );
        assert_eq!(
            JsonObject::parse("3".into()).unwrap_err(),
            "output is JSON but not an object"
        );
        assert!(
            JsonObject::parse("{not json".into())
                .unwrap_err()
                .starts_with("output is not valid JSON")
        );
        assert!(
            JsonObject::parse(r#"{"a":1} {"b":2}"#.into())
                .unwrap_err()
                .starts_with("output is not valid JSON")
        );
    }
}
