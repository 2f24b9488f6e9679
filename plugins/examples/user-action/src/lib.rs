//! Enriches `user_action` events with the seed's rules.
//!
//! Adds `action_date` (UTC date of the event) and, when the record has a numeric
//! `session_duration` in seconds, `session_category`: `short` below 60 s, `medium`
//! below 300 s, `long` from 300 s up. A negative duration is rejected.

use serde::Deserialize;
use weir_plugin_sdk::{Config, Event, Fields, Info, Outcome, Plugin, Rejection, export_plugin};

struct UserAction;

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    session_duration: Option<f64>,
}

fn session_category(seconds: f64) -> &'static str {
    if seconds < 60.0 {
        "short"
    } else if seconds < 300.0 {
        "medium"
    } else {
        "long"
    }
}

impl Plugin for UserAction {
    fn info() -> Info {
        Info::new("user-action", env!("CARGO_PKG_VERSION"), &["user_action"])
    }

    fn configure(_: &Config) -> Result<Self, String> {
        Ok(UserAction)
    }

    fn process(&self, event: &Event) -> Outcome {
        let payload: Payload = match event.parse() {
            Ok(p) => p,
            Err(rejection) => return Outcome::reject(rejection),
        };
        let mut fields = Fields::new().with("action_date", event.event_date());
        if let Some(seconds) = payload.session_duration {
            if seconds < 0.0 {
                return Outcome::reject(Rejection::invalid_field(
                    "session_duration",
                    "a non-negative number of seconds",
                ));
            }
            fields.insert("session_category", session_category(seconds));
        }
        Outcome::enrich(fields)
    }
}

export_plugin!(UserAction);
