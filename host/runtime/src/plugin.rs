//! A loaded plugin version: compiled, checked, pre-instantiated, described.

use std::sync::{Arc, Mutex};

use wasmtime::component::{Component, ComponentExportIndex, InstancePre};
use weir_core::PluginRef;

use crate::bindings::WitPluginInfo;
use crate::breaker::Breaker;
use crate::contract::{self, Contract};
use crate::sandbox::Sandbox;
use crate::schemas::Schemas;
use crate::{Limits, LoadError, Runtime};

/// What a plugin says about itself, plus what the host knows of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub event_types: Vec<String>,
    pub contract_version: String,
    pub input_schema: Option<String>,
    pub config_schema: Option<String>,
    /// SHA-256 of the component, hex: the version's identity.
    pub sha256: String,
    pub size_bytes: usize,
}

impl PluginInfo {
    pub fn plugin_ref(&self) -> PluginRef {
        PluginRef {
            name: self.name.clone(),
            version: self.version.clone(),
        }
    }

    fn from_wit(info: WitPluginInfo, sha256: String, size_bytes: usize) -> Result<Self, LoadError> {
        let valid_name = !info.name.is_empty()
            && info.name.len() <= 64
            && info
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_name {
            return Err(LoadError::BadInfo(format!(
                "name `{}` must be 1-64 lowercase letters, digits or `-`",
                info.name
            )));
        }
        if info.version.is_empty() || info.version.len() > 64 {
            return Err(LoadError::BadInfo(format!(
                "version `{}` must be 1-64 characters",
                info.version
            )));
        }
        if info.event_types.is_empty() {
            return Err(LoadError::BadInfo(
                "the plugin handles no event types".into(),
            ));
        }
        if !contract::is_supported_contract(&info.contract_version) {
            return Err(LoadError::BadInfo(format!(
                "built against contract {}, this host supports {}",
                info.contract_version,
                contract::SUPPORTED_CONTRACTS.join(", ")
            )));
        }
        Ok(Self {
            name: info.name,
            version: info.version,
            event_types: info.event_types,
            contract_version: info.contract_version,
            input_schema: info.input_schema,
            config_schema: info.config_schema,
            sha256,
            size_bytes,
        })
    }
}

/// A plugin version ready to run. Cheap to clone; share it between threads.
#[derive(Clone)]
pub struct Plugin {
    pub(crate) inner: Arc<PluginInner>,
}

pub(crate) struct PluginInner {
    pub(crate) runtime: Runtime,
    pub(crate) pre: InstancePre<Sandbox>,
    /// The contract version the plugin is called through.
    pub(crate) contract: Contract,
    /// Where `enricher.process` is, resolved once per version.
    pub(crate) process_export: ComponentExportIndex,
    pub(crate) info: PluginInfo,
    /// `name@version`, precomputed for messages.
    pub(crate) label: String,
    pub(crate) breaker: Mutex<Breaker>,
    /// Its declared schemas, compiled.
    pub(crate) schemas: Schemas,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("info", &self.inner.info)
            .finish()
    }
}

impl Plugin {
    pub(crate) fn prepare(
        runtime: Runtime,
        component: Component,
        contract: Contract,
        sha256: String,
        size_bytes: usize,
    ) -> Result<Self, LoadError> {
        let enricher = contract.enricher_export();
        let function = |name: &str| {
            component
                .get_export_index(None, enricher)
                .and_then(|interface| component.get_export_index(Some(&interface), name))
                .ok_or_else(|| LoadError::UnsupportedContract {
                    found: format!("{enricher} without `{name}`"),
                    supported: enricher.into(),
                })
        };
        let describe_export = function("describe")?;
        let process_export = function("process")?;
        let pre = runtime
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(LoadError::Wasmtime)?;
        let raw_info =
            crate::invoke::describe(&runtime, &pre, &describe_export, &Limits::default())
                .map_err(LoadError::Describe)?;
        let info = PluginInfo::from_wit(raw_info, sha256, size_bytes)?;
        let schemas = Schemas::compile(&info)?;
        let label = format!("{}@{}", info.name, info.version);
        let breaker = Mutex::new(Breaker::new(runtime.inner.settings.breaker));
        Ok(Self {
            inner: Arc::new(PluginInner {
                runtime,
                pre,
                contract,
                process_export,
                info,
                label,
                breaker,
                schemas,
            }),
        })
    }

    pub fn info(&self) -> &PluginInfo {
        &self.inner.info
    }

    /// `name@version`.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// A configuration's faults against the plugin's configuration schema,
    /// each naming where and what (at most three); empty when it matches or
    /// the plugin declares no schema.
    pub fn config_faults(&self, config: &[(String, String)]) -> Vec<String> {
        match &self.inner.schemas.config {
            Some(schema) => crate::schemas::config_faults(schema, config),
            None => Vec::new(),
        }
    }

    /// Whether the plugin's circuit breaker is open now.
    pub fn is_disabled(&self) -> bool {
        self.inner
            .breaker
            .lock()
            .is_ok_and(|b| b.is_open(std::time::Instant::now()))
    }
}
