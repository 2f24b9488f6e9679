//! A plugin of contract 0.1.0 (each event's texts as strings of their own),
//! built from `wit/weir-plugin-0.1.0` with plain wit-bindgen: the SDK follows
//! the newest contract, and Weir's tests use this plugin to prove the host
//! still runs plugins built against the older one. It answers every event
//! with the texts it received, and drops events whose payload says `"drop"`.

wit_bindgen::generate!({
    path: "../../wit/weir-plugin-0.1.0",
    world: "enricher-plugin",
});

use exports::weir::plugin::enricher::Guest;
use weir::plugin::types::{Batch, Event, Outcome, PluginInfo};

struct Echo;

impl Guest for Echo {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "contract-v0-1".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            event_types: vec!["echo".to_owned()],
            contract_version: "0.1.0".to_owned(),
            input_schema: None,
            config_schema: None,
        }
    }

    fn process(batch: Batch, events: Vec<Event>) -> Result<Vec<Outcome>, String> {
        Ok(events
            .into_iter()
            .map(|event| {
                if event.payload.contains("\"drop\"") {
                    return Outcome::Drop("asked to drop".to_owned());
                }
                let fields = serde_json::json!({
                    "payload": event.payload,
                    "partition_key": event.partition_key,
                    "sequence_number": event.sequence_number,
                    "arrival_time": event.arrival_time,
                    "event_time": event.event_time,
                    "tenant": batch.tenant,
                });
                Outcome::Enrich(fields.to_string())
            })
            .collect())
    }
}

export!(Echo);
