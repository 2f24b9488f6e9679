//! `weir plugin new`: scaffold a plugin crate that builds and passes its own
//! tests out of the box.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plugin's name: lowercase letters, digits and `-`.
    name: String,
    /// The event type it handles.
    #[arg(long, default_value = "example")]
    event_type: String,
    /// Where to create it (default: ./NAME, the plugin's name).
    #[arg(long)]
    dir: Option<PathBuf>,
}

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
rust-version = "1.95"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
weir-plugin-sdk = { path = "{sdk}" }
serde = { version = "1", features = ["derive"] }

# A plugin is its own workspace.
[workspace]

[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
strip = true
"#;

const TOOLCHAIN: &str = r#"[toolchain]
channel = "1.95.0"
targets = ["wasm32-wasip2"]
"#;

const LIB_RS: &str = r##"//! {name}: a Weir enrichment plugin for `{event_type}` events.
//!
//! Adds `seen_on` (the event's UTC date) and `label`, a per-tenant setting
//! (default `standard`). Rejects events without a `value` number.

use serde::Deserialize;
use weir_plugin_sdk::{Config, Event, Fields, Info, Outcome, Plugin, export_plugin, json};

pub struct Enricher {
    label: String,
}

#[derive(Deserialize)]
struct Payload {
    value: f64,
}

impl Plugin for Enricher {
    fn info() -> Info {
        Info::new("{name}", env!("CARGO_PKG_VERSION"), &["{event_type}"])
            // Hosts hold every payload to this before calling `process`, and
            // dead-letter the ones that do not match with the schema's reasons.
            .input_schema(json!({
                "type": "object",
                "required": ["value"],
                "properties": { "value": { "type": "number" } }
            }))
    }

    fn configure(config: &Config) -> Result<Self, String> {
        Ok(Self { label: config.get("label").unwrap_or("standard").to_owned() })
    }

    fn process(&self, event: &Event) -> Outcome {
        let payload: Payload = match event.parse() {
            Ok(p) => p,
            Err(rejection) => return Outcome::reject(rejection),
        };
        Outcome::enrich(
            Fields::new()
                .with("seen_on", event.event_date())
                .with("label", self.label.as_str())
                .with("is_positive", payload.value > 0.0),
        )
    }
}

export_plugin!(Enricher);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin_sdk::{Config, RejectionKind};

    #[test]
    fn adds_date_and_label() {
        let plugin = Enricher::configure(&Config::from_pairs(&[("label", "gold")])).unwrap();
        let event = Event::for_test(r#"{"event_type":"{event_type}","value":3}"#, "2024-01-15T10:30:00Z");
        let Outcome::Enrich(fields) = plugin.process(&event) else { panic!("expected enrich") };
        assert_eq!(fields.to_value(), json!({"seen_on": "2024-01-15", "label": "gold", "is_positive": true}));
    }

    #[test]
    fn rejects_a_missing_value() {
        let plugin = Enricher::configure(&Config::default()).unwrap();
        let event = Event::for_test(r#"{"event_type":"{event_type}"}"#, "2024-01-15T10:30:00Z");
        let Outcome::Reject(r) = plugin.process(&event) else { panic!("expected reject") };
        assert_eq!(r.kind, RejectionKind::MissingField);
    }
}
"##;

const GOLDEN: &str = r#"{
  "cases": [
    {
      "name": "value is enriched with the tenant's label",
      "tenant": "acme",
      "config": { "label": "gold" },
      "events": [
        { "event_type": "{event_type}", "timestamp": "2024-01-15T23:30:00-02:00", "value": 3 }
      ],
      "expect": [
        { "enrich": { "seen_on": "2024-01-16", "label": "gold", "is_positive": true } }
      ]
    },
    {
      "name": "an event without a value is rejected",
      "events": [ { "event_type": "{event_type}" } ],
      "expect": [ { "reject": { "kind": "missing-field", "message_contains": "value" } } ]
    },
    {
      "name": "a value that is not a number is held back by the input schema",
      "events": [ { "event_type": "{event_type}", "value": "three" } ],
      "expect": [ { "reject": { "kind": "invalid-field", "message_contains": "/value: \"three\" is not of type \"number\"" } } ]
    }
  ]
}
"#;

const CARGO_CONFIG: &str = r#"# The host keeps the first pages of a plugin's memory resident between
# batches. A 256 KiB stack (instead of 1 MiB) puts the heap among them, so
# batches do not page-fault. The sandbox checks its CPU deadline at every
# function entry, so inlining more makes the plugin faster there.
[target.wasm32-wasip2]
rustflags = ["-C", "link-arg=-zstack-size=262144", "-C", "llvm-args=-inline-threshold=1000"]
"#;

const README: &str = r#"# {name}

A Weir enrichment plugin for `{event_type}` events.

    cargo test                                          # unit tests, native
    cargo build --release --target wasm32-wasip2        # the component
    weir plugin test target/wasm32-wasip2/release/{file}.wasm golden.json
    echo '{"event_type":"{event_type}","value":1}' | weir plugin run target/wasm32-wasip2/release/{file}.wasm
"#;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let valid = !args.name.is_empty()
        && args.name.len() <= 64
        && args
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && args.name.as_bytes()[0].is_ascii_lowercase();
    if !valid {
        bail!(
            "plugin name `{}`: use lowercase letters, digits and `-`, starting with a letter",
            args.name
        );
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} exists and is not empty; choose another --dir",
            dir.display()
        );
    }
    let sdk = weir_testkit::build::repo_root().join("plugins").join("sdk");
    let fill = |template: &str| {
        template
            .replace("{name}", &args.name)
            .replace("{file}", &args.name.replace('-', "_"))
            .replace("{event_type}", &args.event_type)
            .replace("{sdk}", &sdk.display().to_string())
    };
    write(&dir.join("Cargo.toml"), &fill(CARGO_TOML))?;
    write(&dir.join("rust-toolchain.toml"), TOOLCHAIN)?;
    write(&dir.join(".cargo").join("config.toml"), CARGO_CONFIG)?;
    write(&dir.join("src").join("lib.rs"), &fill(LIB_RS))?;
    write(&dir.join("golden.json"), &fill(GOLDEN))?;
    write(&dir.join("README.md"), &fill(README))?;
    println!(
        "created plugin `{}` in {}; see its README.md",
        args.name,
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
