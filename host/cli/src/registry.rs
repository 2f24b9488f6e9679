//! `weir registry`: the embedded plugin registry from the command line
//! (upload, list, activate, roll back, audit) until the console serves it.
//! An upload passes the host's own checks first (a component, a supported
//! contract, it instantiates and describes itself) and, with `--golden`, its
//! golden cases: the registry never holds a plugin a host would refuse.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use weir_console::checks::{DeclaredSchemas, UploadContext, check_config, check_upload};
use weir_core::registry::{BindingKey, BindingLimits, Change, PluginVersion, Registry};
use weir_embedded::EmbeddedRegistry;
use weir_runtime::Runtime;

use crate::wiring::{self, StreamArgs};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Upload a plugin version (checked as a host would load it).
    Add {
        /// The component (.wasm).
        plugin: PathBuf,
        /// Golden cases it must pass to be accepted.
        #[arg(long)]
        golden: Option<PathBuf>,
        #[arg(long, default_value = "")]
        notes: String,
        /// The tenant it is for, who alone may see and bind it; without it,
        /// shared by every tenant.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        who: Who,
    },
    /// Plugin versions, newest first (JSON Lines).
    List {
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        target: StreamArgs,
    },
    /// One version: its record and the input and configuration schemas it
    /// declares (what hosts hold its payloads and configurations to).
    Show {
        /// `name@version` or its SHA-256.
        version: String,
        #[command(flatten)]
        target: StreamArgs,
    },
    /// Point a binding at a version: `name@version` or its SHA-256.
    Activate {
        version: String,
        #[command(flatten)]
        binding: BindingArgs,
        /// Configuration the plugin sees, `key=value`, repeatable.
        #[arg(long = "config", value_parser = parse_pair)]
        config: Vec<(String, String)>,
        /// Only if the binding is still at this revision (0: only if new).
        #[arg(long)]
        expect_revision: Option<u64>,
        /// The binding's memory limit in MiB (default: the host's).
        #[arg(long)]
        memory_mib: Option<u32>,
        /// The binding's CPU time limit per batch in ms (default: the host's).
        #[arg(long)]
        cpu_ms: Option<u64>,
        #[command(flatten)]
        who: Who,
    },
    /// Point a binding back at the version before its current one.
    Rollback {
        #[command(flatten)]
        binding: BindingArgs,
        #[command(flatten)]
        who: Who,
    },
    /// The active bindings (JSON Lines).
    Bindings {
        #[command(flatten)]
        target: StreamArgs,
    },
    /// The audit log, newest first (JSON Lines).
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        target: StreamArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct BindingArgs {
    #[arg(long)]
    event_type: String,
    /// The tenant's own binding; without it, the default binding.
    #[arg(long)]
    tenant: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct Who {
    /// Who makes the change, for the audit log.
    #[arg(long, env = "USER", default_value = "unknown")]
    actor: String,
    #[command(flatten)]
    target: StreamArgs,
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{text}` is not key=value"))
}

impl BindingArgs {
    fn key(&self) -> BindingKey {
        BindingKey {
            tenant: self.tenant.clone(),
            event_type: self.event_type.clone(),
        }
    }
}

async fn open(target: &StreamArgs) -> anyhow::Result<EmbeddedRegistry> {
    let (objects, state) = wiring::embedded(&target.data_dir)?;
    Ok(EmbeddedRegistry::open(state, objects).await?)
}

fn print_lines<T: serde::Serialize>(items: &[T]) -> anyhow::Result<()> {
    for item in items {
        println!("{}", serde_json::to_string(item)?);
    }
    Ok(())
}

/// The version named `name@version` or by its SHA-256.
async fn find_version(
    registry: &EmbeddedRegistry,
    reference: &str,
) -> anyhow::Result<PluginVersion> {
    let name = reference.split_once('@').map(|(name, _)| name);
    registry
        .versions(name)
        .await?
        .into_iter()
        .find(|v| v.sha256 == reference || v.label() == reference)
        .with_context(|| format!("no version {reference} in the registry (`weir registry list`)"))
}

/// A version named `name@version` or by its SHA-256, to its SHA-256 (a
/// SHA-256 is left for the registry to check).
async fn resolve(registry: &EmbeddedRegistry, version: &str) -> anyhow::Result<String> {
    if version.contains('@') {
        return Ok(find_version(registry, version).await?.sha256);
    }
    Ok(version.to_owned())
}

pub fn run(runtime: Runtime, command: Command) -> anyhow::Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let now = weir_core::time::format_utc(chrono::Utc::now());
    tokio.block_on(async {
        match command {
            Command::Add {
                plugin,
                golden: cases,
                notes,
                tenant,
                who,
            } => {
                let bytes = std::fs::read(&plugin)
                    .with_context(|| format!("reading {}", plugin.display()))?;
                let cases = cases
                    .map(|path| {
                        std::fs::read_to_string(&path)
                            .with_context(|| format!("reading {}", path.display()))
                    })
                    .transpose()?;
                let context = UploadContext {
                    uploader: &who.actor,
                    tenant: tenant.as_deref(),
                    notes: &notes,
                    at: &now,
                };
                let (version, _) = check_upload(&runtime, &bytes, cases.as_deref(), &context)
                    .with_context(|| format!("{} is refused", plugin.display()))?;
                let registry = open(&who.target).await?;
                let change = Change {
                    actor: &who.actor,
                    at: &now,
                };
                let added = registry
                    .add_version(version.clone(), bytes, cases, change)
                    .await?;
                eprintln!(
                    "{} {}@{}",
                    if added { "added" } else { "already there:" },
                    version.name,
                    version.version
                );
                print_lines(&[version])?;
            }
            Command::List { name, target } => {
                print_lines(&open(&target).await?.versions(name.as_deref()).await?)?;
            }
            Command::Show { version, target } => {
                let registry = open(&target).await?;
                let record = find_version(&registry, &version).await?;
                let component = registry.component(&record.sha256).await?.with_context(|| {
                    format!(
                        "the component of {} is missing from the registry's objects",
                        record.label()
                    )
                })?;
                let plugin = runtime.load(&component)?;
                let schemas = DeclaredSchemas::of(&plugin);
                let shown = serde_json::json!({
                    "version": record,
                    "input_schema": schemas.input_schema,
                    "config_schema": schemas.config_schema,
                });
                println!("{}", serde_json::to_string_pretty(&shown)?);
            }
            Command::Activate {
                version,
                binding,
                config,
                expect_revision,
                memory_mib,
                cpu_ms,
                who,
            } => {
                let registry = open(&who.target).await?;
                let sha256 = resolve(&registry, &version).await?;
                let key = binding.key();
                // As the console does: a configuration the version cannot
                // take is refused before any batch runs under it.
                if let Some(component) = registry.component(&sha256).await? {
                    let plugin = runtime.load(&component)?;
                    check_config(&plugin, &key, &config).map_err(anyhow::Error::msg)?;
                }
                let change = Change {
                    actor: &who.actor,
                    at: &now,
                };
                let record = registry
                    .activate_with(
                        &key,
                        &sha256,
                        config,
                        BindingLimits { memory_mib, cpu_ms },
                        expect_revision,
                        change,
                    )
                    .await?;
                print_lines(&[record])?;
            }
            Command::Rollback { binding, who } => {
                let registry = open(&who.target).await?;
                let change = Change {
                    actor: &who.actor,
                    at: &now,
                };
                print_lines(&[registry.rollback(&binding.key(), change).await?])?;
            }
            Command::Bindings { target } => {
                let (generation, bindings) = open(&target).await?.bindings().await?;
                eprintln!("generation {generation}");
                print_lines(&bindings)?;
            }
            Command::Audit { limit, target } => {
                print_lines(&open(&target).await?.audit(limit).await?)?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
