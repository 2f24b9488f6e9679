//! Hot swap: a running host follows the registry's activations without a
//! restart or a redeploy.
//!
//! [`RegistryRouter::refresh`] reads the registry's generation (one cheap
//! read) and, when it moved, builds a new router: the host's base bindings,
//! then every registry binding over them, each version loaded once (by
//! SHA-256) through the runtime's checks and compiled cache. The new router
//! replaces the old one whole in the [`SharedRouter`]; batches already
//! running finish on the snapshot they started with, so every output record
//! and metadata entry names the version that produced it.
//!
//! A version this host refuses to load (one an earlier Weir accepted, say)
//! holds back its own binding only: that binding keeps the version it runs
//! (on a host that never ran one, it is left out, so its records take the
//! event type's default or pass through), every other change is applied, and
//! the refusal is logged as an error naming the binding and the version. A
//! refused version is not tried again by this host.
//!
//! Shadows come the same way: a candidate runs on its share of a binding's
//! records beside the active version (see the enrich stage), its tally kept
//! in the router and sent to the registry by each refresh.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use weir_core::backend::BackendError;
use weir_core::registry::{BindingKey, BindingLimits, Registry, RegistryError};
use weir_runtime::router::{Binding, Router, Shadow, SharedRouter};
use weir_runtime::{Limits, Plugin, Runtime};

/// Builds routers from a registry, for one host.
#[derive(Debug)]
pub struct RegistryRouter<R> {
    registry: R,
    runtime: Runtime,
    base: Router,
    /// Versions loaded so far, by SHA-256.
    loaded: HashMap<String, Plugin>,
    /// Versions this host refused to load, by SHA-256, with why: the same
    /// bytes are refused the same way, so they are not compiled again.
    refused: HashMap<String, String>,
    generation: Option<u64>,
}

impl<R: Registry> RegistryRouter<R> {
    /// `base`: the bindings the host has without the registry (the plugins
    /// shipped with it); registry bindings go over them.
    pub fn new(registry: R, runtime: Runtime, base: Router) -> Self {
        Self {
            registry,
            runtime,
            base,
            loaded: HashMap::new(),
            refused: HashMap::new(),
            generation: None,
        }
    }

    /// The registry generation the router was last built from.
    pub fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// Sends what the running router's shadows tallied since the last call
    /// to the registry; a tally that cannot be sent is kept for the next.
    pub async fn flush_shadow_tallies(&self, shared: &SharedRouter) -> Result<(), RegistryError> {
        let router = shared.snapshot();
        for (tenant, event_type, shadow) in router.shadows() {
            let tally = shadow.take_tally();
            if tally.compared == 0 {
                continue;
            }
            let key = BindingKey {
                tenant: tenant.map(str::to_owned),
                event_type: event_type.to_owned(),
            };
            if let Err(e) = self
                .registry
                .add_shadow_tally(&key, &shadow.sha256, tally.clone())
                .await
            {
                shadow.record(tally);
                return Err(e);
            }
        }
        Ok(())
    }

    /// A version's plugin, loaded once per host.
    async fn plugin(&mut self, sha256: &str, what: &str) -> Result<Plugin, RegistryError> {
        if let Some(plugin) = self.loaded.get(sha256) {
            return Ok(plugin.clone());
        }
        if let Some(why) = self.refused.get(sha256) {
            return Err(RegistryError::Refused(why.clone()));
        }
        let bytes = self
            .registry
            .component(sha256)
            .await?
            .ok_or_else(|| RegistryError::NotFound(format!("the component of {sha256}")))?;
        // Compiling a version not in the cache takes a few hundred milliseconds:
        // off the async threads, which the shards' batches run on.
        let runtime = self.runtime.clone();
        let loaded = tokio::task::spawn_blocking(move || runtime.load(&bytes))
            .await
            .map_err(|e| {
                BackendError::retryable(format!("loading version {sha256} of {what}"), e)
            })?;
        let plugin = match loaded {
            Ok(plugin) => plugin,
            Err(e) => {
                let why = format!("version {sha256} of {what} does not load on this host: {e}");
                self.refused.insert(sha256.to_owned(), why.clone());
                return Err(RegistryError::Refused(why));
            }
        };
        self.loaded.insert(sha256.to_owned(), plugin.clone());
        Ok(plugin)
    }

    /// Sends the shadows' tallies, then puts a new router in `shared` if the
    /// registry changed since the last call; returns the generation it now
    /// follows when it did.
    pub async fn refresh(&mut self, shared: &SharedRouter) -> Result<Option<u64>, RegistryError> {
        // Before a new router replaces the shadows that tallied them.
        self.flush_shadow_tallies(shared).await?;
        let generation = self.registry.generation().await?;
        if self.generation == Some(generation) {
            return Ok(None);
        }
        let (generation, bindings) = self.registry.bindings().await?;
        let shadows = self.registry.shadows().await?;
        let mut router = self.base.clone();
        let running = shared.snapshot();
        for record in bindings {
            let (tenant, event_type) = (record.key.tenant.as_deref(), &record.key.event_type);
            let plugin = match self
                .plugin(&record.sha256, &format!("binding {}", record.key))
                .await
            {
                Ok(plugin) => plugin,
                Err(RegistryError::Refused(why)) => {
                    let kept = running.binding_of(tenant, event_type);
                    tracing::error!(
                        binding = %record.key,
                        version = record.sha256,
                        error = why,
                        kept = kept.map(|b| b.plugin.label()),
                        "a binding's version does not load on this host: the binding keeps the version it runs (none: its records take the event type's default or pass through) until it is pointed at another version; every other change is applied"
                    );
                    if let Some(kept) = kept {
                        router.bind(tenant, event_type, Binding::clone(kept));
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            let binding = Binding {
                plugin,
                config: record.config,
                limits: limits_of(record.limits),
            };
            router.bind(
                record.key.tenant.as_deref(),
                &record.key.event_type,
                binding,
            );
        }
        for (record, _) in shadows {
            let plugin = match self
                .plugin(&record.sha256, &format!("the shadow of {}", record.key))
                .await
            {
                Ok(plugin) => plugin,
                Err(RegistryError::Refused(why)) => {
                    tracing::error!(shadow = %record.key, version = record.sha256, error = why, "a shadow's candidate does not load on this host: no shadow runs there");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let shadow = Shadow::new(plugin, record.config, record.share_percent, record.sha256);
            router.shadow(record.key.tenant.as_deref(), &record.key.event_type, shadow);
        }
        shared.replace(router);
        self.generation = Some(generation);
        Ok(Some(generation))
    }
}

/// A binding's limits over the host's defaults.
fn limits_of(own: BindingLimits) -> Limits {
    let defaults = Limits::default();
    Limits {
        memory_bytes: own
            .memory_mib
            .map_or(defaults.memory_bytes, |m| (m as usize) << 20),
        cpu_time: own.cpu_ms.map_or(defaults.cpu_time, Duration::from_millis),
        ..defaults
    }
}

/// Refreshes `shared` from the registry every `every` until `stop`
/// resolves: the service's hot-swap loop. Failures are logged and retried;
/// the running router stays.
pub async fn follow_registry<R: Registry>(
    mut registry: RegistryRouter<R>,
    shared: SharedRouter,
    every: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        match registry.refresh(&shared).await {
            Ok(Some(generation)) => tracing::info!(generation, "registry bindings activated"),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not follow the registry; keeping the running bindings")
            }
        }
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
