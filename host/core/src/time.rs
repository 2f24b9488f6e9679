//! Timestamps: RFC 3339 in, RFC 3339 UTC out.
//!
//! Every time Weir writes or hands to a plugin is UTC with a `Z`, so partitions
//! and dates never depend on the producer's offset.

use std::borrow::Cow;

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

/// [`normalise`], keeping `text` as it is when it already is the normal form
/// (`2024-01-15T10:30:00Z`, what producers mostly send): every record's
/// timestamp goes through here, and the common case then costs neither a
/// parse nor an allocation.
pub fn normalise_cow(text: Cow<'_, str>) -> Result<Cow<'_, str>, String> {
    if is_normal_utc_seconds(&text) {
        return Ok(text);
    }
    normalise(&text).map(Cow::Owned)
}

/// Whether `text` is `YYYY-MM-DDTHH:MM:SSZ` naming a real second, exactly as
/// [`format_utc`] writes it.
fn is_normal_utc_seconds(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() != 20 {
        return false;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let separators = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'Z'),
    ];
    if separators.iter().any(|&(at, c)| b[at] != c) {
        return false;
    }
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return false;
    };
    // Year 0 and leap seconds take the general path, which knows their rules.
    year > 0
        && hour < 24
        && minute < 60
        && second < 60
        && chrono::NaiveDate::from_ymd_opt(year as i32, month, day).is_some()
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
    fn the_normal_form_is_kept_and_everything_else_goes_through_the_parser() {
        let kept = normalise_cow(Cow::Borrowed("2024-01-15T10:30:00Z")).unwrap();
        assert!(matches!(kept, Cow::Borrowed("2024-01-15T10:30:00Z")));
        for (text, normal) in [
            ("2024-01-15T10:30:00+02:00", "2024-01-15T08:30:00Z"),
            ("2024-01-15T10:30:00.5Z", "2024-01-15T10:30:00.500Z"),
            ("2024-01-15t10:30:00z", "2024-01-15T10:30:00Z"),
            ("2024-01-15 10:30:00Z", "2024-01-15T10:30:00Z"),
        ] {
            let got = normalise_cow(Cow::Borrowed(text)).unwrap();
            assert!(matches!(got, Cow::Owned(_)), "{text}");
            assert_eq!(got, normal);
        }
        for bad in [
            "2024-02-30T10:30:00Z",
            "2023-02-29T10:30:00Z",
            "2024-13-01T10:30:00Z",
            "2024-01-15T24:00:00Z",
            "2024-01-15T10:60:00Z",
            "2024-01-1xT10:30:00Z",
        ] {
            assert!(normalise_cow(Cow::Borrowed(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            normalise_cow(Cow::Borrowed("2024-02-29T23:59:59Z")).unwrap(),
            "2024-02-29T23:59:59Z"
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
