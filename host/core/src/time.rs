//! Timestamps: RFC 3339 in, RFC 3339 UTC out.
//!
//! Every time Weir writes or hands to a plugin is UTC with a `Z`, so partitions
//! and dates never depend on the producer's offset.

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses an RFC 3339 timestamp with any offset (`Z`, `+02:00`, ...).
pub fn parse_rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("`{text}` is not an RFC 3339 timestamp ({e}); use e.g. 2024-01-15T10:30:00Z")
        })
}

/// Formats a time as RFC 3339 UTC, with the fraction only when there is one.
pub fn format_utc(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Normalises an RFC 3339 timestamp to UTC.
pub fn normalise(text: &str) -> Result<String, String> {
    parse_rfc3339(text).map(format_utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_normalised_to_utc() {
        assert_eq!(
            normalise("2024-01-15T10:30:00+02:00").unwrap(),
            "2024-01-15T08:30:00Z"
        );
        assert_eq!(
            normalise("2024-01-15T23:30:00.250-01:00").unwrap(),
            "2024-01-16T00:30:00.250Z"
        );
        assert_eq!(
            normalise("2024-01-15T10:30:00Z").unwrap(),
            "2024-01-15T10:30:00Z"
        );
    }

    #[test]
    fn garbage_is_refused_with_a_hint() {
        let err = normalise("yesterday").unwrap_err();
        assert!(
            err.contains("`yesterday`") && err.contains("RFC 3339"),
            "{err}"
        );
        assert!(normalise("2024-13-01T00:00:00Z").is_err());
    }
}
