//! A stream record's JSON object, parsed without copying it.
//!
//! Intake needs a record's `event_type` and `timestamp`, and the envelope needs
//! to know its top-level keys; neither needs the values as `serde_json::Value`.
//! So a record is parsed into borrowed keys and raw slices of its own text: one
//! allocation per record instead of one per member. The text itself is what
//! goes into the output.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::json_str::BorrowedStr;

/// One record: its text and its top-level members.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    text: &'a str,
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
    /// No line break anywhere in the text: found once here, so the envelope
    /// can copy the record's bytes without looking again.
    one_line: bool,
}

impl<'a> Record<'a> {
    /// Parses `text` as one JSON object. The error says what is wrong.
    pub fn parse(text: &'a str) -> Result<Self, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        let members = (&mut de).deserialize_map(MembersVisitor).map_err(|e| {
            if e.is_data() {
                "not a JSON object".to_owned()
            } else {
                format!("not JSON: {e}")
            }
        })?;
        de.end().map_err(|e| format!("not JSON: {e}"))?;
        let one_line = !text.as_bytes().contains(&b'\n') && !text.as_bytes().contains(&b'\r');
        Ok(Self {
            text,
            members,
            one_line,
        })
    }

    /// The record's text, exactly as it came.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The raw JSON of a top-level member (the last one, if the key repeats,
    /// as JSON readers do).
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.members
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
    }

    /// A top-level string member: `Ok(None)` when absent, `Err` with the raw
    /// value when it is not a string.
    pub fn get_str(&self, key: &str) -> Result<Option<Cow<'a, str>>, &'a str> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => serde_json::from_str::<BorrowedStr<'a>>(raw.get())
                .map(|BorrowedStr(s)| Some(s))
                .map_err(|_| raw.get()),
        }
    }

    /// The record's text, trimmed, when its bytes can go into a JSON Lines
    /// line as they are: one line, one object. `None` for pretty-printed input.
    pub fn one_line_text(&self) -> Option<&'a str> {
        let text = self.text.trim();
        (self.one_line && text.starts_with('{') && text.ends_with('}')).then_some(text)
    }

    /// Whether the text has no line break (a JSON Lines line as it is).
    pub fn is_one_line(&self) -> bool {
        self.one_line
    }

    /// The top-level members in document order, as raw JSON.
    pub fn members(&self) -> impl Iterator<Item = (&str, &'a RawValue)> + '_ {
        self.members.iter().map(|(k, v)| (k.as_ref(), *v))
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.members.iter().any(|(k, _)| k == key)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The record as a map, for the rare paths that must rebuild it.
    pub fn to_map(&self) -> Map<String, Value> {
        serde_json::from_str(self.text).unwrap_or_default()
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(BorrowedStr(key)) = map.next_key()? {
            members.push((key, map.next_value::<&'de RawValue>()?));
        }
        Ok(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_borrowed_from_the_text() {
        let text = r#"{"event_type":"metric","value":{"a":[1,2]},"esc\"aped":"x","n":null}"#;
        let r = Record::parse(text).unwrap();
        assert_eq!(r.get("value").unwrap().get(), r#"{"a":[1,2]}"#);
        assert_eq!(r.get_str("event_type").unwrap().as_deref(), Some("metric"));
        assert_eq!(r.get_str("missing").unwrap(), None);
        assert_eq!(r.get_str("value").unwrap_err(), r#"{"a":[1,2]}"#);
        assert!(r.contains_key("esc\"aped"));
        assert_eq!(r.one_line_text(), Some(text));
        assert_eq!(
            Record::parse("{\n\"a\": 1\n}").unwrap().one_line_text(),
            None
        );
        assert_eq!(r.to_map()["n"], Value::Null);
        // Keys and string values without escapes are slices of the text.
        let within = |s: &Cow<'_, str>| {
            matches!(s, Cow::Borrowed(_)) && text.as_bytes().as_ptr_range().contains(&s.as_ptr())
        };
        assert!(
            r.members
                .iter()
                .filter(|(k, _)| k != "esc\"aped")
                .all(|(k, _)| within(k))
        );
        assert!(within(&r.get_str("event_type").unwrap().unwrap()));
    }

    #[test]
    fn non_objects_and_garbage_are_named() {
        assert_eq!(Record::parse("[1]").unwrap_err(), "not a JSON object");
        assert_eq!(Record::parse("\"s\"").unwrap_err(), "not a JSON object");
        assert!(
            Record::parse("{\"a\":")
                .unwrap_err()
                .starts_with("not JSON")
        );
        assert!(
            Record::parse("{} trailing")
                .unwrap_err()
                .starts_with("not JSON")
        );
        assert!(Record::parse("{}").unwrap().is_empty());
    }

    #[test]
    fn a_repeated_key_reads_as_its_last_value() {
        let r = Record::parse(r#"{"a":1,"a":2}"#).unwrap();
        assert_eq!(r.get("a").unwrap().get(), "2");
    }
}
