//! Write Weir enrichment plugins in Rust.
//!
//! A plugin is a type that implements [`Plugin`], exported with [`export_plugin!`]
//! and built for `wasm32-wasip2`. The generated bindings of the contract
//! (`wit/weir-plugin-0.2.0`) stay private: authors see typed [`Event`]s, build
//! [`Outcome`]s, and never touch raw WIT types, so the contract can evolve behind
//! this API.
//!
//! ```ignore
//! use weir_plugin_sdk::{export_plugin, Config, Event, Fields, Info, Outcome, Plugin};
//!
//! struct Hello;
//! impl Plugin for Hello {
//!     fn info() -> Info { Info::new("hello", "1.0.0", &["greeting"]) }
//!     fn configure(_: &Config) -> Result<Self, String> { Ok(Hello) }
//!     fn process(&self, event: &Event) -> Outcome {
//!         Outcome::enrich(Fields::new().with("greeted_on", event.event_date()))
//!     }
//! }
//! export_plugin!(Hello);
//! ```
//!
//! The host does natively what it does best: the record id (SHA-256), the output
//! envelope and copying the original record. A plugin returns only the fields it
//! adds ([`Outcome::enrich`]) unless it reshapes or fans out ([`Outcome::emit`]).

// The generated bindings name their runtime by absolute path, which must also
// resolve inside this crate.
extern crate self as weir_plugin_sdk;

// The arena assumes one thread: only wasm guests without threads get it
// (a plugin's native unit tests run on the system allocator).
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
mod arena;
mod config;
pub(crate) mod event;
pub mod log;
mod outcome;

#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
pub use arena::BatchArena;
pub use config::Config;
pub use event::Event;
pub use outcome::{Fields, Outcome, Rejection, RejectionKind};
pub use serde_json::{Value, json};

/// The contract version this SDK implements; stamped into every plugin's [`Info`].
pub const CONTRACT_VERSION: &str = "0.2.0";

/// What a plugin says about itself. The SDK adds the contract version.
#[derive(Debug, Clone)]
pub struct Info {
    name: String,
    version: String,
    event_types: Vec<String>,
    input_schema: Option<String>,
    config_schema: Option<String>,
}

impl Info {
    /// `name`: lowercase letters, digits and `-`; `version`: semver;
    /// `event_types`: the `event_type` values the plugin handles.
    pub fn new(name: &str, version: &str, event_types: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            event_types: event_types.iter().map(|t| (*t).to_owned()).collect(),
            input_schema: None,
            config_schema: None,
        }
    }

    /// A JSON Schema of the payload fields the plugin needs. Hosts hold
    /// every payload to it before calling [`Plugin::process`]: one that does
    /// not match is dead-lettered with the schema's faults (as a
    /// `missing-field` or `invalid-field` rejection) and never reaches the
    /// plugin. Patterns use the linear-time `regex` syntax (no look-around,
    /// no backreferences); a schema that is not one refuses the plugin.
    pub fn input_schema(mut self, schema: Value) -> Self {
        self.input_schema = Some(schema.to_string());
        self
    }

    /// A JSON Schema of the per-tenant configuration the plugin reads (its
    /// keys and values as a JSON object of strings). A binding's
    /// configuration is held to it before it is bound.
    pub fn config_schema(mut self, schema: Value) -> Self {
        self.config_schema = Some(schema.to_string());
        self
    }
}

/// An enrichment plugin.
pub trait Plugin: Sized {
    /// Describe the plugin; called once when the host loads it.
    fn info() -> Info;

    /// Build the plugin for one batch from the tenant's configuration. Parse and
    /// check settings here, once per batch, not per event. An `Err` rejects every
    /// event of the batch with that message (kind `bad-config`).
    fn configure(config: &Config) -> Result<Self, String>;

    /// Enrich one event.
    fn process(&self, event: &Event) -> Outcome;
}

/// Exports a [`Plugin`] type as the plugin's component interface.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
        #[global_allocator]
        static __WEIR_ALLOCATOR: $crate::BatchArena = $crate::BatchArena::new();

        struct __WeirPluginExport;

        impl $crate::__private::Guest for __WeirPluginExport {
            fn describe() -> $crate::__private::RawInfo {
                $crate::__private::describe::<$plugin>()
            }

            fn process(
                batch: $crate::__private::RawBatch,
                events: $crate::__private::RawEvents,
            ) -> ::std::result::Result<
                ::std::vec::Vec<$crate::__private::RawOutcome>,
                ::std::string::String,
            > {
                $crate::__private::process::<$plugin>(batch, events)
            }
        }

        $crate::__private::export_enricher!(
            __WeirPluginExport with_types_in $crate::__private::bindings
        );
    };
}

#[doc(hidden)]
pub mod __private {
    //! Used by [`export_plugin!`](crate::export_plugin); not a public API.
    pub use crate::bindings::export_enricher;
    pub use crate::bindings::exports::weir::plugin::enricher::Guest;
    pub use crate::bindings::weir::plugin::types::{
        Batch as RawBatch, Event as RawEvent, Events as RawEvents, Outcome as RawOutcome,
        PluginInfo as RawInfo,
    };
    pub use wit_bindgen;

    pub mod bindings {
        pub use crate::bindings::*;
    }

    pub fn describe<P: crate::Plugin>() -> RawInfo {
        let info = P::info();
        RawInfo {
            name: info.name,
            version: info.version,
            event_types: info.event_types,
            contract_version: crate::CONTRACT_VERSION.to_owned(),
            input_schema: info.input_schema,
            config_schema: info.config_schema,
        }
    }

    pub fn process<P: crate::Plugin>(
        batch: RawBatch,
        events: RawEvents,
    ) -> Result<Vec<RawOutcome>, String> {
        let config = crate::Config::new(batch.config);
        let plugin = P::configure(&config).map_err(|why| format!("bad config: {why}"))?;
        let shared = std::rc::Rc::new(crate::event::BatchInfo {
            tenant: batch.tenant,
            event_type: batch.event_type,
            processing_time: batch.processing_time,
            text: events.text,
        });
        Ok(events
            .events
            .iter()
            .map(|raw| match crate::Event::new(raw, shared.clone()) {
                Ok(event) => plugin.process(&event).into_raw(),
                Err(rejection) => crate::Outcome::reject(rejection).into_raw(),
            })
            .collect())
    }

    /// The texts of one raw event, in the contract's field order; `None` when a
    /// span lies outside the text. For test plugins that use the raw export.
    pub fn texts<'a>(text: &'a str, event: &RawEvent) -> Option<[&'a str; 5]> {
        let ranges = crate::event::ranges(text, event).ok()?;
        Some(ranges.map(|(start, end)| &text[start..end]))
    }
}

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/weir-plugin-0.2.0",
        world: "enricher-plugin",
        pub_export_macro: true,
        export_macro_name: "export_enricher",
        default_bindings_module: "weir_plugin_sdk::__private::bindings",
        runtime_path: "weir_plugin_sdk::__private::wit_bindgen::rt",
    });
}
