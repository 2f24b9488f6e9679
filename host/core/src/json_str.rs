//! A JSON string borrowed from the text it was parsed from.
//!
//! `Cow<str>`'s own `Deserialize` always copies (serde borrows only for a
//! struct field marked `#[serde(borrow)]`), so parsing keys or values as
//! `Cow<str>` made a new string of each: every key of every record and of
//! every plugin output, and every string member intake read.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, Visitor};

/// A JSON string: a slice of the text when it has no escapes, decoded
/// otherwise.
#[derive(Debug)]
pub struct BorrowedStr<'de>(pub Cow<'de, str>);

impl<'de> Deserialize<'de> for BorrowedStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(BorrowedStrVisitor)
    }
}

struct BorrowedStrVisitor;

impl<'de> Visitor<'de> for BorrowedStrVisitor {
    type Value = BorrowedStr<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(BorrowedStr(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(BorrowedStr(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
        Ok(BorrowedStr(Cow::Owned(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_strings_are_borrowed_and_escaped_ones_decoded() {
        let text = r#""sensor-7""#;
        let BorrowedStr(plain) = serde_json::from_str(text).unwrap();
        assert!(matches!(plain, Cow::Borrowed("sensor-7")));
        assert!(text.as_bytes().as_ptr_range().contains(&plain.as_ptr()));
        let BorrowedStr(escaped) = serde_json::from_str(r#""a\u0062\n""#).unwrap();
        assert!(matches!(escaped, Cow::Owned(ref s) if s == "ab\n"));
        assert!(serde_json::from_str::<BorrowedStr<'_>>("3").is_err());
    }
}
