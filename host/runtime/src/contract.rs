//! Which contract versions this host accepts, and how a component is checked
//! against them before it is ever run.

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::LoadError;

/// A contract version this host runs. The versions differ only in how a
/// batch's events are laid out in the plugin's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contract {
    /// Each event's texts are strings of their own.
    V0_1,
    /// A batch's texts are one string; events hold spans of it.
    V0_2,
}

impl Contract {
    /// Newest first: a component exporting several is called through the newest.
    const ALL: [Contract; 2] = [Contract::V0_2, Contract::V0_1];

    /// The exported interface a plugin of this version implements.
    pub(crate) const fn enricher_export(self) -> &'static str {
        match self {
            Contract::V0_1 => "weir:plugin/enricher@0.1.0",
            Contract::V0_2 => "weir:plugin/enricher@0.2.0",
        }
    }
}

/// The exported interfaces this host can call, newest first. A new contract
/// version is added here (with its bindings) beside the old ones.
pub const SUPPORTED_CONTRACTS: &[&str] = &[
    Contract::ALL[0].enricher_export(),
    Contract::ALL[1].enricher_export(),
];
// A version added to `Contract::ALL` must be listed above too.
const _: () = assert!(SUPPORTED_CONTRACTS.len() == Contract::ALL.len());

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

/// Checks the component's imports and exports against the contract; returns
/// the newest version it implements.
pub(crate) fn check(engine: &Engine, component: &Component) -> Result<Contract, LoadError> {
    let ty = component.component_type();
    if let Some((import, _)) = ty.imports(engine).find(|(name, _)| !import_allowed(name)) {
        return Err(LoadError::ForbiddenImport {
            import: import.to_owned(),
        });
    }
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    Contract::ALL
        .into_iter()
        .find(|c| exports.contains(&c.enricher_export()))
        .ok_or_else(|| LoadError::UnsupportedContract {
            found: exports.join(", "),
            supported: SUPPORTED_CONTRACTS.join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_export_has_its_version_and_the_newest_comes_first() {
        assert_eq!(
            SUPPORTED_CONTRACTS,
            ["weir:plugin/enricher@0.2.0", "weir:plugin/enricher@0.1.0"]
        );
        assert!(is_supported_contract("0.2.0"));
        assert!(is_supported_contract("0.1.0"));
        assert!(!is_supported_contract("0.3.0"));
    }
}
