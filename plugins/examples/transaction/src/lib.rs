//! Enriches `transaction` events with the seed's rules.
//!
//! Adds `transaction_date` (UTC date of the event), `amount_category` and
//! `is_high_value`. Categories, by `amount`: `micro` below 10, `small` below 100,
//! `medium` below 1,000, `large` from 1,000 up (the seed's comparison chain, so a
//! negative amount, a refund, is `micro`). High value: `amount` above the tenant's
//! `high_value_threshold` (default 1,000, the seed's figure). A tenant's `currency`
//! (default `USD`) is copied to `currency` when the record has none.

use serde::Deserialize;
use weir_plugin_sdk::{Config, Event, Fields, Info, Outcome, Plugin, export_plugin, json};

struct Transaction {
    high_value_threshold: f64,
    default_currency: String,
}

#[derive(Deserialize)]
struct Payload<'a> {
    amount: f64,
    #[serde(borrow, default)]
    currency: Option<&'a str>,
}

fn amount_category(amount: f64) -> &'static str {
    if amount < 10.0 {
        "micro"
    } else if amount < 100.0 {
        "small"
    } else if amount < 1000.0 {
        "medium"
    } else {
        "large"
    }
}

impl Plugin for Transaction {
    fn info() -> Info {
        Info::new("transaction", env!("CARGO_PKG_VERSION"), &["transaction"])
            .input_schema(json!({
                "type": "object",
                "required": ["amount"],
                "properties": {"amount": {"type": "number"}, "currency": {"type": "string"}}
            }))
            .config_schema(json!({
                "type": "object",
                "properties": {
                    "high_value_threshold": {
                        "type": "string",
                        "pattern": "^-?[0-9]+(\\.[0-9]+)?$",
                        "description": "a number; default 1000"
                    },
                    "currency": {
                        "type": "string",
                        "pattern": "^[A-Z]{3}$",
                        "description": "an ISO 4217 code; default USD"
                    }
                },
                "additionalProperties": false
            }))
    }

    fn configure(config: &Config) -> Result<Self, String> {
        Ok(Self {
            high_value_threshold: config.parse_or("high_value_threshold", 1000.0)?,
            default_currency: config.get("currency").unwrap_or("USD").to_owned(),
        })
    }

    fn process(&self, event: &Event) -> Outcome {
        let payload: Payload = match event.parse() {
            Ok(p) => p,
            Err(rejection) => return Outcome::reject(rejection),
        };
        let mut fields = Fields::new()
            .with("transaction_date", event.event_date())
            .with("amount_category", amount_category(payload.amount))
            .with("is_high_value", payload.amount > self.high_value_threshold);
        if payload.currency.is_none() {
            fields.insert("currency", self.default_currency.as_str());
        }
        Outcome::enrich(fields)
    }
}

export_plugin!(Transaction);
