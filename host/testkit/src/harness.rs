//! Run payloads through a compiled plugin in one line.

use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;
use weir_core::{Outcome, PluginEvent, Record, StreamContext};
use weir_runtime::router::{Binding, Router};
use weir_runtime::{BatchReport, Limits, Plugin, Runtime, RuntimeSettings};

/// A loaded plugin with default limits.
#[derive(Debug, Clone)]
pub struct Harness {
    pub plugin: Plugin,
    pub limits: Limits,
}

/// One runtime per test process, with the shared compilation cache.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let settings = RuntimeSettings {
            cache_dir: Some(crate::build::shared_cache_dir()),
            ..Default::default()
        };
        Runtime::new(settings).expect("plugin runtime")
    })
}

/// A router binding each (repo plugin crate, event type) as that type's
/// default, with default limits: the example plugins as a pipeline sees them.
pub fn example_router(bindings: &[(&str, &str)]) -> Router {
    let mut router = Router::new();
    for (plugin, event_type) in bindings {
        let path = crate::build::repo_plugin(plugin);
        let plugin = runtime()
            .load_file(&path)
            .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
        let binding = Binding {
            plugin,
            config: vec![],
            limits: Limits::default(),
        };
        router.bind(None, event_type, binding);
    }
    router
}

impl Harness {
    /// Loads the component at `path` (panics with the loader's message if the
    /// host would refuse it).
    pub fn load(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        let plugin = runtime()
            .load_file(path)
            .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
        Self {
            plugin,
            limits: Limits::default(),
        }
    }

    /// Runs the payloads as one batch for `tenant` with `config`.
    pub fn run_batch(
        &self,
        tenant: &str,
        config: &[(&str, &str)],
        payloads: &[Value],
    ) -> BatchReport {
        let events: Vec<PluginEvent> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                payload_event(p, tenant, i + 1, DEFAULT_TIME).unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        let config: Vec<(String, String)> = config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.plugin.process(&config, &events, &self.limits)
    }

    /// Runs the payloads for the `default` tenant without config.
    pub fn run(&self, payloads: &[Value]) -> Vec<Outcome> {
        self.run_batch("default", &[], payloads).outcomes
    }
}

/// The arrival and processing time of test events, unless a case says otherwise.
pub const DEFAULT_TIME: &str = "2024-01-15T10:31:00Z";

/// The plugin event of a test payload: sequence number `sequence`, partition key
/// `tenant`, arrival and processing time `time`.
pub fn payload_event(
    payload: &Value,
    tenant: &str,
    sequence: usize,
    time: &str,
) -> Result<PluginEvent<'static>, String> {
    let text = payload.to_string();
    let record = Record::parse(&text).map_err(|e| format!("test event {sequence}: {e}"))?;
    let sequence = sequence.to_string();
    let ctx = StreamContext {
        tenant,
        partition_key: tenant,
        sequence_number: &sequence,
        arrival_time: time,
        processing_time: time,
    };
    PluginEvent::from_payload(&record, ctx)
        .map(PluginEvent::into_owned)
        .map_err(|e| format!("test event {sequence}: {e}"))
}
