//! Wiring shared by the commands that run the pipeline: the example plugins,
//! their bindings, and the embedded backends under a data directory.

use std::path::{Path, PathBuf};

use anyhow::Context;
use weir_embedded::{Durability, LocalObjectStore, SqliteState, StreamSettings};
use weir_pipeline::{Mode, Pipeline, PipelineSettings};
use weir_runtime::router::Router;
use weir_runtime::{Plugin, Runtime};
use weir_testkit::build;

/// Where the embedded stream and state live: shared by the commands that
/// produce to or consume from it.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamArgs {
    /// Where Weir keeps its stream, objects, dead letters and metadata
    /// (`objects/`, `state/weir.db`).
    #[arg(long, env = "WEIR_DATA_DIR", default_value = "weir-data")]
    pub data_dir: PathBuf,
    /// The stream.
    #[arg(long, default_value = "events")]
    pub stream: String,
    /// Shards, when the stream is created (an existing stream keeps its own).
    #[arg(long, default_value_t = 2)]
    pub shards: u32,
}

impl StreamArgs {
    pub fn settings(&self) -> StreamSettings {
        StreamSettings {
            shard_count: self.shards,
            ..StreamSettings::new(&self.stream)
        }
    }
}

/// Where the stream and the pipeline's output live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// Local files and SQLite under --data-dir.
    Embedded,
    /// Kinesis, S3, DynamoDB and SQS (the SDK's credentials, region and
    /// AWS_ENDPOINT_URL; resource names from the --raw-bucket, … flags).
    Aws,
}

/// Where a command that reads Weir's state finds it: the embedded backends
/// under --data-dir, or AWS.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    #[command(flatten)]
    pub stream: StreamArgs,
    /// SQLite and files under --data-dir, or AWS (`aws`: the resources the
    /// --aws-stream, --metadata-table, --dead-letter-queue, … flags name).
    #[arg(long, value_enum, default_value = "embedded")]
    pub backend: Backend,
    #[command(flatten)]
    pub aws: weir_aws::AwsSettings,
}

/// The example plugins' crate names.
pub use weir_testkit::build::EXAMPLE_PLUGINS as EXAMPLES;

/// The embedded pipeline under `data_dir`: objects in `objects/`, state in `state/weir.db`.
pub type EmbeddedPipeline = Pipeline<LocalObjectStore, SqliteState, SqliteState>;

/// Builds the repository's example plugins (cargo skips it when nothing
/// changed) and returns the directory of their components.
pub fn build_examples() -> anyhow::Result<PathBuf> {
    let plugins_dir = build::repo_root().join("plugins");
    eprintln!(
        "building the example plugins in {} ...",
        plugins_dir.display()
    );
    build::build_workspace(&plugins_dir).map_err(anyhow::Error::msg)
}

/// The component of an example plugin (crate name) in `dir`.
pub fn example_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{}.wasm", name.replace('-', "_")))
}

/// Loads every example plugin's component from `dir`.
pub fn load_examples(runtime: &Runtime, dir: &Path) -> anyhow::Result<Vec<(String, Plugin)>> {
    EXAMPLES
        .iter()
        .map(|name| {
            let path = example_path(dir, name);
            let plugin = runtime
                .load_file(&path)
                .with_context(|| format!("loading {}", path.display()))?;
            Ok(((*name).to_owned(), plugin))
        })
        .collect()
}

/// Binds each plugin as the default for the event types it declares.
pub fn default_bindings(plugins: &[(String, Plugin)]) -> Router {
    let mut router = Router::new();
    for (_, plugin) in plugins {
        router.bind_declared(plugin);
    }
    router
}

/// The pipeline's settings: single-stage, or two-stage (`--two-stage`).
pub fn pipeline_settings(two_stage: bool) -> PipelineSettings {
    let mode = if two_stage {
        Mode::TwoStage
    } else {
        Mode::SingleStage
    };
    PipelineSettings {
        mode,
        ..Default::default()
    }
}

/// Opens the embedded backends under `data_dir`, durable as `WEIR_FSYNC` says.
pub fn embedded(data_dir: &Path) -> anyhow::Result<(LocalObjectStore, SqliteState)> {
    let durability = durability_from_env()?;
    let objects = LocalObjectStore::open_with(data_dir.join("objects"), durability)?;
    let db = data_dir.join("state").join("weir.db");
    let state = SqliteState::open_with(&db, durability)
        .with_context(|| format!("opening {}", db.display()))?;
    Ok((objects, state))
}

/// `WEIR_FSYNC`: `on` (the default) makes every object and commit durable on
/// disk before a batch is checkpointed; `off` only hands them to the OS, which
/// survives a crash of Weir but not of the machine, for scratch pipelines
/// (and runs the writes inline instead of on the blocking pool: faster).
fn durability_from_env() -> anyhow::Result<Durability> {
    durability(std::env::var("WEIR_FSYNC").ok().as_deref())
}

fn durability(fsync: Option<&str>) -> anyhow::Result<Durability> {
    match fsync {
        None | Some("on" | "true" | "1") => Ok(Durability::Disk),
        Some("off" | "false" | "0") => Ok(Durability::Os),
        Some(other) => anyhow::bail!("WEIR_FSYNC={other:?}: expected `on` or `off`"),
    }
}

pub fn pipeline(
    data_dir: &Path,
    router: Router,
    settings: PipelineSettings,
) -> anyhow::Result<EmbeddedPipeline> {
    let (objects, state) = embedded(data_dir)?;
    Ok(Pipeline {
        objects,
        dead_letters: state.clone(),
        metadata: state,
        router: router.into(),
        settings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_is_on_unless_turned_off_and_other_values_are_refused() {
        assert_eq!(durability(None).unwrap(), Durability::Disk);
        assert_eq!(durability(Some("on")).unwrap(), Durability::Disk);
        assert_eq!(durability(Some("off")).unwrap(), Durability::Os);
        assert_eq!(durability(Some("0")).unwrap(), Durability::Os);
        let refused = durability(Some("maybe")).unwrap_err().to_string();
        assert!(
            refused.contains("WEIR_FSYNC=\"maybe\"") && refused.contains("`off`"),
            "{refused}"
        );
    }
}
