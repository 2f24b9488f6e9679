//! Which contract versions this host accepts, and how a component is checked
//! against them before it is ever run.

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::LoadError;

/// The exported interfaces this host can call, newest first. A new contract
/// version is added here (with its bindings) beside the old ones.
pub const SUPPORTED_CONTRACTS: &[&str] = &["weir:plugin/enricher@0.1.0"];

/// Whether a plugin's self-declared contract version is one this host runs.
pub fn is_supported_contract(version: &str) -> bool {
    SUPPORTED_CONTRACTS
        .iter()
        .any(|c| c.rsplit('@').next() == Some(version))
}

/// Imports a plugin may have: WASI (which `wasm32-wasip2` guests import even
/// when they do no I/O; linked with an empty context) and the contract's own.
fn import_allowed(name: &str) -> bool {
    name.starts_with("wasi:") || name.starts_with("weir:plugin/")
}

/// Checks the component's imports and exports against the contract.
pub(crate) fn check(engine: &Engine, component: &Component) -> Result<(), LoadError> {
    let ty = component.component_type();
    if let Some((import, _)) = ty.imports(engine).find(|(name, _)| !import_allowed(name)) {
        return Err(LoadError::ForbiddenImport {
            import: import.to_owned(),
        });
    }
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    if !exports.iter().any(|e| SUPPORTED_CONTRACTS.contains(e)) {
        return Err(LoadError::UnsupportedContract {
            found: exports.join(", "),
            supported: SUPPORTED_CONTRACTS.join(", "),
        });
    }
    Ok(())
}
