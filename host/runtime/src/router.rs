//! Routing: which plugin version enriches a (tenant, event type).
//!
//! A tenant's own binding wins; otherwise the event type's default binding; an
//! event type with neither passes through unenriched (and is counted as such by
//! the caller).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

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

/// Bindings by event type, then by tenant (`None`: the event type's default).
/// Lookups borrow the record's strings: no allocation per record.
#[derive(Debug, Clone, Default)]
pub struct Router {
    by_event_type: HashMap<String, EventTypeBindings>,
}

#[derive(Debug, Clone, Default)]
struct EventTypeBindings {
    tenants: HashMap<String, Arc<Binding>>,
    default: Option<Arc<Binding>>,
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
