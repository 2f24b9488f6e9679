//! Enriches `metric` events with the seed's rules.
//!
//! Adds `metric_date` (UTC date of the event), `value_range` and `is_anomaly`.
//! Ranges, by `value`: `negative` below 0, `low` below `low_max` (default 10),
//! `normal` up to `normal_max` inclusive (default 100), `high` above it. An anomaly
//! is a value outside the plausible band `[0, normal_max]`: negative or high.
//! `low_max` and `normal_max` are per-tenant settings.

use serde::Deserialize;
use weir_plugin_sdk::{Config, Event, Fields, Info, Outcome, Plugin, export_plugin};

struct Metric {
    low_max: f64,
    normal_max: f64,
}

#[derive(Deserialize)]
struct Payload {
    value: f64,
}

impl Metric {
    fn value_range(&self, value: f64) -> &'static str {
        if value < 0.0 {
            "negative"
        } else if value < self.low_max {
            "low"
        } else if value <= self.normal_max {
            "normal"
        } else {
            "high"
        }
    }
}

impl Plugin for Metric {
    fn info() -> Info {
        Info::new("metric", env!("CARGO_PKG_VERSION"), &["metric"])
    }

    fn configure(config: &Config) -> Result<Self, String> {
        let low_max = config.parse_or("low_max", 10.0)?;
        let normal_max = config.parse_or("normal_max", 100.0)?;
        if !(0.0..=normal_max).contains(&low_max) {
            return Err(format!(
                "need 0 <= low_max <= normal_max, got {low_max} and {normal_max}"
            ));
        }
        Ok(Self {
            low_max,
            normal_max,
        })
    }

    fn process(&self, event: &Event) -> Outcome {
        let payload: Payload = match event.parse() {
            Ok(p) => p,
            Err(rejection) => return Outcome::reject(rejection),
        };
        let range = self.value_range(payload.value);
        Outcome::enrich(
            Fields::new()
                .with("metric_date", event.event_date())
                .with("value_range", range)
                .with("is_anomaly", matches!(range, "negative" | "high")),
        )
    }
}

export_plugin!(Metric);
