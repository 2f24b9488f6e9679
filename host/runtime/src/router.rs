//! Routing: which plugin version enriches a (tenant, event type).
//!
//! A tenant's own binding wins; otherwise the event type's default binding; an
//! event type with neither passes through unenriched (and is counted as such by
//! the caller).

use std::collections::HashMap;
use std::sync::Arc;

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

#[derive(Debug, Clone, Default)]
pub struct Router {
    tenant: HashMap<(String, String), Arc<Binding>>,
    default: HashMap<String, Arc<Binding>>,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds `event_type` for `tenant`, or for every tenant without a binding of
    /// its own when `tenant` is `None`. Replaces any earlier binding.
    pub fn bind(&mut self, tenant: Option<&str>, event_type: &str, binding: Binding) {
        let binding = Arc::new(binding);
        match tenant {
            Some(t) => {
                self.tenant
                    .insert((t.to_owned(), event_type.to_owned()), binding);
            }
            None => {
                self.default.insert(event_type.to_owned(), binding);
            }
        }
    }

    pub fn resolve(&self, tenant: &str, event_type: &str) -> Route<'_> {
        // A borrowed tuple key would need an allocation-free lookup type; the
        // two short strings cost less than the hashing.
        if let Some(b) = self.tenant.get(&(tenant.to_owned(), event_type.to_owned())) {
            return Route::Tenant(b);
        }
        match self.default.get(event_type) {
            Some(b) => Route::Default(b),
            None => Route::PassThrough,
        }
    }
}
