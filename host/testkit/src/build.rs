//! Builds plugin crates for `wasm32-wasip2`, once per process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

const TARGET: &str = "wasm32-wasip2";

/// Builds every plugin of the cargo workspace (or crate) at `manifest_dir` in
/// release mode for `wasm32-wasip2`, once per process however often it is
/// called, and returns the directory holding the `.wasm` components.
///
/// Cargo itself skips the work when nothing changed, and serialises concurrent
/// builds of the same target directory across processes.
pub fn build_workspace(manifest_dir: &Path) -> Result<PathBuf, String> {
    static BUILT: OnceLock<Mutex<HashMap<PathBuf, Result<PathBuf, String>>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    built
        .entry(manifest_dir.to_owned())
        .or_insert_with(|| run_cargo_build(manifest_dir))
        .clone()
}

fn run_cargo_build(manifest_dir: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = manifest_dir.join("target");
    let status = Command::new(cargo)
        .current_dir(manifest_dir)
        .args(["build", "--release", "--target", TARGET, "--workspace"])
        .arg("--target-dir")
        .arg(&target_dir)
        // Variables of an enclosing `cargo test` must not leak into this build.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .map_err(|e| {
            format!(
                "cannot run cargo to build the plugins in {}: {e}",
                manifest_dir.display()
            )
        })?;
    if !status.success() {
        return Err(format!(
            "building the plugins in {} failed ({status}); is the {TARGET} target installed \
             (`rustup target add {TARGET}`)?",
            manifest_dir.display()
        ));
    }
    Ok(target_dir.join(TARGET).join("release"))
}

/// The repository's own plugins (`plugins/`), built once per test run.
/// `name` is the crate name (`transaction`, `user-action`, `hostile`, ...).
/// The crate names of the repository's example plugins (`plugins/examples/`).
pub const EXAMPLE_PLUGINS: [&str; 5] = [
    "transaction",
    "user-action",
    "metric",
    "system-event",
    "sensor",
];

pub fn repo_plugin(name: &str) -> PathBuf {
    let plugins = repo_root().join("plugins");
    let dir = build_workspace(&plugins).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        path.exists(),
        "no component {} after building {}",
        path.display(),
        plugins.display()
    );
    path
}

/// The repository root (this crate lives in `host/testkit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// A compilation cache shared by every test of a run (in the host's target dir),
/// so each plugin is compiled by Cranelift once, not once per test.
pub fn shared_cache_dir() -> PathBuf {
    repo_root().join("target").join("weir-test-cache")
}
