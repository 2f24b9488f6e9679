//! Why a plugin could not be loaded.

use std::path::PathBuf;

/// A plugin the host refuses to load (or a runtime that cannot start). Each
/// message says what is wrong and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read plugin file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "not a WebAssembly component: {reason}. Build the plugin for the wasm32-wasip2 target \
         (`cargo build --release --target wasm32-wasip2`)"
    )]
    NotAComponent { reason: String },

    #[error(
        "the component does not implement a Weir plugin contract: it exports [{found}], but a \
         plugin must export one of [{supported}]. Build it with weir-plugin-sdk and `export_plugin!`"
    )]
    UnsupportedContract { found: String, supported: String },

    #[error(
        "the component imports `{import}`, which Weir does not provide. Plugins may import only \
         WASI and weir:plugin/log; remove the dependency that pulls it in"
    )]
    ForbiddenImport { import: String },

    #[error("the plugin failed to describe itself: {0}")]
    Describe(String),

    #[error("the plugin describes itself wrongly: {0}")]
    BadInfo(String),

    #[error("cannot use the compilation cache at {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot start the epoch ticker thread that enforces CPU limits: {0}")]
    Ticker(std::io::Error),

    #[error("wasmtime refused the component: {0:#}")]
    Wasmtime(wasmtime::Error),
}
