//! Enriches `system_event` events (the seed names the type but gives no rule; these
//! are Weir's).
//!
//! Reads `severity` (or `level` when `severity` is absent): a name in any case and
//! common spelling (`ERR`, `Warning`, `crit`, `fatal`, ...) or a syslog number 0-7.
//! Adds `event_date`, `severity` normalised to one of `debug`, `info`, `notice`,
//! `warning`, `error`, `critical`, the original as `severity_raw`, and `is_alert`:
//! severity at or above the tenant's `alert_min_severity` (default `error`).

use serde::Deserialize;
use weir_plugin_sdk::{
    Config, Event, Fields, Info, Outcome, Plugin, Rejection, RejectionKind, Value, export_plugin,
};

/// Severities in rising order; the index is the rank.
const SEVERITIES: [&str; 6] = ["debug", "info", "notice", "warning", "error", "critical"];

struct SystemEvent {
    alert_min_rank: usize,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    severity: Option<Value>,
    #[serde(default)]
    level: Option<Value>,
}

fn rank_of_name(name: &str) -> Option<usize> {
    let rank = match name.trim().to_ascii_lowercase().as_str() {
        "debug" | "trace" | "dbg" | "verbose" => 0,
        "info" | "information" | "informational" => 1,
        "notice" => 2,
        "warning" | "warn" | "wrn" => 3,
        "error" | "err" => 4,
        "critical" | "crit" | "fatal" | "alert" | "emergency" | "emerg" | "panic" => 5,
        _ => return None,
    };
    Some(rank)
}

/// Syslog numbers: 0 emergency .. 7 debug.
fn rank_of_syslog(n: u64) -> Option<usize> {
    Some(match n {
        0..=2 => 5,
        3 => 4,
        4 => 3,
        5 => 2,
        6 => 1,
        7 => 0,
        _ => return None,
    })
}

impl Plugin for SystemEvent {
    fn info() -> Info {
        Info::new("system-event", env!("CARGO_PKG_VERSION"), &["system_event"])
    }

    fn configure(config: &Config) -> Result<Self, String> {
        let name = config.get("alert_min_severity").unwrap_or("error");
        let alert_min_rank = rank_of_name(name)
            .ok_or_else(|| format!("config key `alert_min_severity`: unknown severity `{name}`"))?;
        Ok(Self { alert_min_rank })
    }

    fn process(&self, event: &Event) -> Outcome {
        let payload: Payload = match event.parse() {
            Ok(p) => p,
            Err(rejection) => return Outcome::reject(rejection),
        };
        let Some(raw) = payload.severity.or(payload.level) else {
            return Outcome::reject(Rejection::missing_field("severity"));
        };
        let rank = match &raw {
            Value::String(name) => rank_of_name(name),
            Value::Number(n) => n.as_u64().and_then(rank_of_syslog),
            _ => None,
        };
        let Some(rank) = rank else {
            return Outcome::reject(Rejection::new(
                RejectionKind::InvalidField,
                format!(
                    "field `severity`: unknown severity {raw}; use a name or a syslog number 0-7"
                ),
            ));
        };
        Outcome::enrich(
            Fields::new()
                .with("event_date", event.event_date())
                .with("severity", SEVERITIES[rank])
                .with("severity_raw", raw)
                .with("is_alert", rank >= self.alert_min_rank),
        )
    }
}

export_plugin!(SystemEvent);
