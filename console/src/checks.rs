//! The checks an upload must pass, and test runs of a version: the same code
//! the host and `weir registry add` use, so the console never accepts a
//! plugin a host would refuse.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weir_core::OutcomeView;
use weir_core::registry::{BindingKey, PluginVersion};
use weir_runtime::{Fault, Limits, Plugin, Runtime};
use weir_testkit::golden;
use weir_testkit::{DEFAULT_TIME, payload_event};

/// Why an upload was refused. Each names what to do.
#[derive(Debug, thiserror::Error)]
pub enum UploadRefusal {
    #[error("not a plugin a host would run: {0}")]
    NotAPlugin(String),
    #[error("{0}")]
    BadGoldenFile(String),
    #[error("{} of its golden case(s) failed: {}; fix the plugin or the cases and upload again",
        .0.iter().filter(|c| !c.passed).count(),
        .0.iter().filter(|c| !c.passed).map(|c| format!("`{}`: {}", c.name, c.problems.join("; "))).collect::<Vec<_>>().join(" | "))]
    GoldenCasesFailed(Vec<CaseSummary>),
}

/// One golden case's result.
#[derive(Debug, Clone, Serialize)]
pub struct CaseSummary {
    pub name: String,
    pub passed: bool,
    pub problems: Vec<String>,
    pub elapsed_micros: u64,
}

/// Who uploads, for whom, with what notes, when.
#[derive(Debug, Clone)]
pub struct UploadContext<'a> {
    pub uploader: &'a str,
    /// The owning tenant; `None`: shared.
    pub tenant: Option<&'a str>,
    pub notes: &'a str,
    pub at: &'a str,
}

/// Loads the component as a host would (a component, a supported contract,
/// within the sandbox's imports, instantiates and describes itself) and runs
/// the golden cases uploaded with it. Returns the version to record and the
/// cases' results. CPU-bound (compiles the component): call it off the async
/// threads.
pub fn check_upload(
    runtime: &Runtime,
    component: &[u8],
    golden_cases: Option<&str>,
    context: &UploadContext<'_>,
) -> Result<(PluginVersion, Vec<CaseSummary>), UploadRefusal> {
    let plugin = runtime
        .load(component)
        .map_err(|e| UploadRefusal::NotAPlugin(e.to_string()))?;
    let results = match golden_cases {
        Some(text) => run_golden(&plugin, text, "the uploaded golden cases")
            .map_err(UploadRefusal::BadGoldenFile)?,
        None => Vec::new(),
    };
    if results.iter().any(|c| !c.passed) {
        return Err(UploadRefusal::GoldenCasesFailed(results));
    }
    let info = plugin.info();
    let version = PluginVersion {
        name: info.name.clone(),
        version: info.version.clone(),
        sha256: info.sha256.clone(),
        size: component.len() as u64,
        contract: info.contract_version.clone(),
        event_types: info.event_types.clone(),
        uploader: context.uploader.to_owned(),
        uploaded_at: context.at.to_owned(),
        notes: context.notes.to_owned(),
        tenant: context.tenant.map(str::to_owned),
    };
    Ok((version, results))
}

/// Runs a case file's cases against a loaded plugin; `Err` when the file is
/// not a valid case file (named by `origin`).
pub fn run_golden(plugin: &Plugin, cases: &str, origin: &str) -> Result<Vec<CaseSummary>, String> {
    let file = golden::parse(cases, origin)?;
    Ok(golden::run(plugin, &file, &Limits::default())
        .into_iter()
        .map(|r| CaseSummary {
            passed: r.passed(),
            name: r.name,
            problems: r.problems,
            elapsed_micros: r.elapsed.as_micros() as u64,
        })
        .collect())
}

/// A test run: events for one tenant, with its configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestRun {
    #[serde(default = "default_tenant")]
    pub tenant: String,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// RFC 3339; the test time when absent.
    #[serde(default)]
    pub processing_time: Option<String>,
    pub events: Vec<Value>,
}

fn default_tenant() -> String {
    "default".into()
}

/// What a version declares about its input and configuration: the JSON
/// Schemas hosts hold its payloads and configurations to.
#[derive(Debug, Clone, Serialize)]
pub struct DeclaredSchemas {
    pub plugin: String,
    /// `null` when it declares none: every payload of its event types
    /// reaches it.
    pub input_schema: Option<Value>,
    /// `null` when it declares none: any configuration is bound.
    pub config_schema: Option<Value>,
}

impl DeclaredSchemas {
    /// A loaded plugin's schemas (which loading proved are JSON Schemas).
    pub fn of(plugin: &Plugin) -> Self {
        let parsed = |schema: &Option<String>| {
            schema
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok())
        };
        Self {
            plugin: plugin.label().to_owned(),
            input_schema: parsed(&plugin.info().input_schema),
            config_schema: parsed(&plugin.info().config_schema),
        }
    }
}

/// A payload to start a test run from: the event type, a timestamp, and a
/// value for each property the input schema requires (its `default`, first
/// `examples` or `enum` entry, else a placeholder of its `type`), so that
/// the sample gets past the schema and shows what the plugin does.
pub fn sample_payload(event_type: &str, input_schema: Option<&Value>) -> Value {
    let mut sample = serde_json::Map::new();
    sample.insert("event_type".into(), Value::from(event_type));
    sample.insert("timestamp".into(), Value::from("2024-01-15T10:30:00Z"));
    let Some(schema) = input_schema else {
        return Value::Object(sample);
    };
    let required = schema["required"].as_array().into_iter().flatten();
    for name in required.filter_map(Value::as_str) {
        if sample.contains_key(name) {
            continue;
        }
        let property = &schema["properties"][name];
        let value = property
            .get("default")
            .or_else(|| property["examples"].get(0))
            .or_else(|| property["enum"].get(0))
            .cloned()
            .unwrap_or_else(|| placeholder(&property["type"]));
        sample.insert(name.to_owned(), value);
    }
    Value::Object(sample)
}

/// What a configuration may hold, as the forms' hint: a `key=` line per
/// property of the configuration schema, with its description (or its
/// type), required ones first. Empty without a schema.
pub fn config_hint(config_schema: Option<&Value>) -> String {
    let Some(schema) = config_schema else {
        return String::new();
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let Some(properties) = schema["properties"].as_object() else {
        return String::new();
    };
    let mut lines: Vec<(bool, String)> = properties
        .iter()
        .map(|(key, property)| {
            let about = property["description"]
                .as_str()
                .or_else(|| property["type"].as_str())
                .unwrap_or("a value");
            let is_required = required.contains(&key.as_str());
            let marker = if is_required { ", required" } else { "" };
            (!is_required, format!("{key}=…  ({about}{marker})"))
        })
        .collect();
    lines.sort();
    lines
        .into_iter()
        .map(|(_, line)| line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A value of a JSON Schema `type` (the first, when it lists several).
fn placeholder(kind: &Value) -> Value {
    let kind = kind
        .as_str()
        .or_else(|| kind.get(0).and_then(Value::as_str));
    match kind {
        Some("number" | "integer") => Value::from(1),
        Some("boolean") => Value::Bool(false),
        Some("array") => Value::Array(Vec::new()),
        Some("object") => Value::Object(serde_json::Map::new()),
        Some("null") => Value::Null,
        _ => Value::from("example"),
    }
}

/// The result of a test run.
#[derive(Debug, Clone, Serialize)]
pub struct TestRunReport {
    pub plugin: String,
    pub outcomes: Vec<OutcomeView>,
    pub elapsed_micros: u64,
    pub peak_memory_bytes: usize,
    /// What took the whole batch down, if anything.
    pub fault: Option<String>,
    /// What the plugin printed, a line an entry (the first 16 KiB of each
    /// stream): what a plugin author's `println!` debugging shows.
    pub printed: Vec<PrintedLineView>,
}

/// A line the plugin printed.
#[derive(Debug, Clone, Serialize)]
pub struct PrintedLineView {
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    pub text: String,
}

/// Runs the events through the plugin as the host would, with the default
/// limits. `Err` names the event that is not a valid record.
pub fn test_run(plugin: &Plugin, run: &TestRun) -> Result<TestRunReport, String> {
    let time = run.processing_time.as_deref().unwrap_or(DEFAULT_TIME);
    let events = run
        .events
        .iter()
        .enumerate()
        .map(|(i, payload)| payload_event(payload, &run.tenant, i + 1, time))
        .collect::<Result<Vec<_>, _>>()?;
    let config: Vec<(String, String)> = run.config.clone().into_iter().collect();
    let report = plugin.process(&config, &events, &Limits::default());
    Ok(TestRunReport {
        plugin: plugin.label().to_owned(),
        outcomes: report.outcomes.iter().map(OutcomeView::from).collect(),
        elapsed_micros: report.elapsed.as_micros() as u64,
        peak_memory_bytes: report.peak_memory_bytes,
        fault: report.fault.map(|f| f.to_string()),
        printed: report
            .printed
            .into_iter()
            .map(|line| PrintedLineView {
                stream: line.stream,
                text: line.text,
            })
            .collect(),
    })
}

/// Checks a configuration before a version is bound with it (activated, or
/// started in a shadow): against the plugin's configuration schema when it
/// declares one (the keys and values as a JSON object of strings), then by
/// the plugin itself on one sample event of the binding, as a plugin that
/// cannot take a configuration refuses every batch it is given under it.
/// `Err` says what is wrong and how to fix it. A plugin that does not
/// handle the binding's event type is the registry's to refuse: `Ok` here.
/// CPU-bound: call it off the async threads.
pub fn check_config(
    plugin: &Plugin,
    key: &BindingKey,
    config: &[(String, String)],
) -> Result<(), String> {
    if !plugin.info().event_types.contains(&key.event_type) {
        return Ok(());
    }
    let label = plugin.label();
    let faults = plugin.config_faults(config);
    if !faults.is_empty() {
        let schema = plugin.info().config_schema.as_deref().unwrap_or_default();
        return Err(format!(
            "{label} does not take this configuration: {} (its schema: {schema})",
            faults.join("; ")
        ));
    }
    let tenant = key.tenant.as_deref().unwrap_or("default");
    let sample = serde_json::json!({ "event_type": key.event_type, "timestamp": DEFAULT_TIME });
    let event = payload_event(&sample, tenant, 1, DEFAULT_TIME)?;
    // Unscreened: the sample is no payload the plugin's input schema would
    // admit, and it is `configure` this runs.
    let report = plugin.process_unscreened(config, &[event], &Limits::default());
    match report.fault {
        Some(Fault::BatchError(why)) => Err(format!(
            "{label} refuses every batch under this configuration: {why}"
        )),
        // A sample event that is not what the plugin expects says nothing
        // about the configuration.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::sample_payload;

    #[test]
    fn a_configuration_hint_names_each_key_required_ones_first() {
        let schema = json!({
            "type": "object",
            "required": ["region"],
            "properties": {
                "currency": { "type": "string", "description": "an ISO 4217 code; default USD" },
                "region": { "type": "string" },
                "limit": {}
            }
        });
        assert_eq!(
            super::config_hint(Some(&schema)),
            "region=…  (string, required)\ncurrency=…  (an ISO 4217 code; default USD)\nlimit=…  (a value)"
        );
        assert_eq!(super::config_hint(None), "");
    }

    #[test]
    fn a_sample_payload_has_what_the_input_schema_requires() {
        let schema = json!({
            "type": "object",
            "required": ["amount", "currency", "kind", "tags", "timestamp"],
            "properties": {
                "amount": { "type": "number" },
                "currency": { "type": "string", "examples": ["EUR"] },
                "kind": { "enum": ["card", "cash"] },
                "tags": { "type": ["array", "null"] },
                "note": { "type": "string" }
            }
        });
        assert_eq!(
            sample_payload("transaction", Some(&schema)),
            json!({
                "event_type": "transaction",
                "timestamp": "2024-01-15T10:30:00Z",
                "amount": 1,
                "currency": "EUR",
                "kind": "card",
                "tags": []
            })
        );
        assert_eq!(
            sample_payload("metric", None),
            json!({ "event_type": "metric", "timestamp": "2024-01-15T10:30:00Z" })
        );
    }
}
