//! Routing: which plugin version enriches a (tenant, event type).
//!
//! A tenant's own binding wins; otherwise the event type's default binding; an
//! event type with neither passes through unenriched (and is counted as such by
//! the caller).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use weir_core::registry::ShadowTally;

use crate::{Limits, Plugin};

/// A plugin version bound to a tenant (or to all tenants) for an event type,
/// with that binding's configuration and limits.
#[derive(Debug, Clone)]
pub struct Binding {
    pub plugin: Plugin,
    pub config: Vec<(String, String)>,
    pub limits: Limits,
}

/// Where a record goes.
#[derive(Debug, Clone)]
pub enum Route<'a> {
    /// The tenant's own binding.
    Tenant(&'a Arc<Binding>),
    /// The event type's default binding.
    Default(&'a Arc<Binding>),
    /// No binding: the record passes through unenriched.
    PassThrough,
}

impl<'a> Route<'a> {
    pub fn binding(&self) -> Option<&'a Arc<Binding>> {
        match self {
            Route::Tenant(b) | Route::Default(b) => Some(b),
            Route::PassThrough => None,
        }
    }
}

/// A candidate version in the shadow of a binding: it sees a share of the
/// binding's records, its outcomes are compared with the active version's
/// and tallied, and never written.
#[derive(Debug)]
pub struct Shadow {
    pub plugin: Plugin,
    pub config: Vec<(String, String)>,
    pub limits: Limits,
    pub share_percent: u8,
    /// The candidate's SHA-256: what its tally is filed under.
    pub sha256: String,
    tally: Mutex<ShadowTally>,
}

impl Shadow {
    pub fn new(
        plugin: Plugin,
        config: Vec<(String, String)>,
        share_percent: u8,
        sha256: String,
    ) -> Self {
        Self {
            plugin,
            config,
            limits: Limits::default(),
            share_percent,
            sha256,
            tally: Mutex::new(ShadowTally::default()),
        }
    }

    /// Whether the candidate sees the record with this sequence number: a
    /// stable choice (FNV-1a of the sequence number), so a retried batch
    /// shadows the same records.
    pub fn sees(&self, sequence_number: &str) -> bool {
        let hash = sequence_number
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        hash % 100 < u64::from(self.share_percent)
    }

    /// Adds a batch's comparisons.
    pub fn record(&self, tally: ShadowTally) {
        self.tally
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(tally);
    }

    /// What was tallied since the last call.
    pub fn take_tally(&self) -> ShadowTally {
        std::mem::take(&mut *self.tally.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Bindings by event type, then by tenant (`None`: the event type's default).
/// Lookups borrow the record's strings: no allocation per record.
#[derive(Debug, Clone, Default)]
pub struct Router {
    by_event_type: HashMap<String, ByTenant<Binding>>,
    shadows: HashMap<String, ByTenant<Shadow>>,
}

/// Per tenant, and a default for the others.
#[derive(Debug)]
struct ByTenant<T> {
    tenants: HashMap<String, Arc<T>>,
    default: Option<Arc<T>>,
}

impl<T> Default for ByTenant<T> {
    fn default() -> Self {
        Self {
            tenants: HashMap::new(),
            default: None,
        }
    }
}

impl<T> Clone for ByTenant<T> {
    fn clone(&self) -> Self {
        Self {
            tenants: self.tenants.clone(),
            default: self.default.clone(),
        }
    }
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds `event_type` for `tenant`, or for every tenant without a binding of
    /// its own when `tenant` is `None`. Replaces any earlier binding.
    pub fn bind(&mut self, tenant: Option<&str>, event_type: &str, binding: Binding) {
        let bindings = self.by_event_type.entry(event_type.to_owned()).or_default();
        let binding = Arc::new(binding);
        match tenant {
            Some(t) => {
                bindings.tenants.insert(t.to_owned(), binding);
            }
            None => bindings.default = Some(binding),
        }
    }

    /// The binding of exactly `tenant` (or the default, `None`) for
    /// `event_type`, without falling back from a tenant to the default.
    pub fn binding_of(&self, tenant: Option<&str>, event_type: &str) -> Option<&Arc<Binding>> {
        let bindings = self.by_event_type.get(event_type)?;
        match tenant {
            Some(t) => bindings.tenants.get(t),
            None => bindings.default.as_ref(),
        }
    }

    /// Binds `plugin` as the default for every event type it declares, with
    /// no config and default limits: how a host runs plugins shipped with it
    /// before a registry says otherwise.
    pub fn bind_declared(&mut self, plugin: &crate::Plugin) {
        for event_type in &plugin.info().event_types {
            let binding = Binding {
                plugin: plugin.clone(),
                config: Vec::new(),
                limits: crate::Limits::default(),
            };
            self.bind(None, event_type, binding);
        }
    }

    /// Puts a candidate in the shadow of `tenant`'s binding of `event_type`
    /// (every tenant's when `None`).
    pub fn shadow(&mut self, tenant: Option<&str>, event_type: &str, shadow: Shadow) {
        let shadows = self.shadows.entry(event_type.to_owned()).or_default();
        let shadow = Arc::new(shadow);
        match tenant {
            Some(t) => {
                shadows.tenants.insert(t.to_owned(), shadow);
            }
            None => shadows.default = Some(shadow),
        }
    }

    /// The shadow a record of `tenant` and `event_type` is compared in: the
    /// tenant's own, or the event type's default.
    pub fn resolve_shadow(&self, tenant: &str, event_type: &str) -> Option<&Arc<Shadow>> {
        let shadows = self.shadows.get(event_type)?;
        shadows.tenants.get(tenant).or(shadows.default.as_ref())
    }

    /// Every shadow with its (tenant or default, event type).
    pub fn shadows(&self) -> Vec<(Option<&str>, &str, &Arc<Shadow>)> {
        let mut all = Vec::new();
        for (event_type, shadows) in &self.shadows {
            if let Some(default) = &shadows.default {
                all.push((None, event_type.as_str(), default));
            }
            for (tenant, shadow) in &shadows.tenants {
                all.push((Some(tenant.as_str()), event_type.as_str(), shadow));
            }
        }
        all
    }

    pub fn resolve(&self, tenant: &str, event_type: &str) -> Route<'_> {
        let Some(bindings) = self.by_event_type.get(event_type) else {
            return Route::PassThrough;
        };
        match (bindings.tenants.get(tenant), &bindings.default) {
            (Some(b), _) => Route::Tenant(b),
            (None, Some(b)) => Route::Default(b),
            (None, None) => Route::PassThrough,
        }
    }
}

/// The router a running host uses, swapped whole when an activation
/// arrives. A batch takes a [`SharedRouter::snapshot`] when it starts and
/// finishes on it: in-flight batches keep the versions they started with.
#[derive(Debug, Clone, Default)]
pub struct SharedRouter(Arc<RwLock<Arc<Router>>>);

impl SharedRouter {
    pub fn new(router: Router) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(router))))
    }

    /// The router as it is now.
    pub fn snapshot(&self) -> Arc<Router> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `router` in place for the batches that start from now on.
    pub fn replace(&self, router: Router) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(router);
    }
}

impl From<Router> for SharedRouter {
    fn from(router: Router) -> Self {
        Self::new(router)
    }
}
