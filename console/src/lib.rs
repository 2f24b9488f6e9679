//! Weir's console: upload, version, test, bind, activate and roll back
//! plugins, over a REST API (`/api/v1`, described by an OpenAPI document at
//! `/api/v1/openapi.json`) and server-rendered HTML pages for people.
//!
//! It works on any [`Registry`]; hosts following that registry pick up what
//! the console activates. Uploads pass the host's own checks
//! ([`checks::check_upload`]). The API takes `Authorization: Bearer` tokens;
//! the pages take a session cookie from signing in with a token, and every
//! form they post carries the session's CSRF token.

pub mod api;
pub mod auth;
pub mod checks;
mod error;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod tail;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use weir_core::registry::Registry;
use weir_runtime::Runtime;

pub use auth::{AccessStore, Principal, Role};
pub use error::ApiError;

/// The console's limits.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// The largest request body, uploads included.
    pub max_upload_bytes: usize,
    /// How long a signed-in browser stays signed in.
    pub session_ttl: Duration,
    /// The most events one test run takes.
    pub max_test_events: usize,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            max_upload_bytes: 16 * 1024 * 1024,
            session_ttl: Duration::from_secs(8 * 3600),
            max_test_events: 1000,
        }
    }
}

/// What the handlers share.
pub struct Console<R> {
    pub registry: R,
    pub runtime: Runtime,
    pub access: AccessStore,
    pub sessions: auth::Sessions,
    pub settings: ConsoleSettings,
    /// Where the live tail reads; `None` on backends without one.
    pub tail: Option<Arc<dyn tail::Tail>>,
}

impl<R> std::fmt::Debug for Console<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<R: Registry + 'static> Console<R> {
    pub fn new(
        registry: R,
        runtime: Runtime,
        access: AccessStore,
        settings: ConsoleSettings,
    ) -> Self {
        Self {
            sessions: auth::Sessions::new(settings.session_ttl),
            registry,
            runtime,
            access,
            settings,
            tail: None,
        }
    }

    /// With a live tail of the pipeline's output.
    pub fn with_tail(mut self, tail: impl tail::Tail) -> Self {
        self.tail = Some(Arc::new(tail));
        self
    }

    /// Logs a refusal and returns the error to answer with.
    pub(crate) async fn deny(
        &self,
        who: &str,
        action: String,
        status: StatusCode,
        reason: impl Into<String>,
    ) -> ApiError {
        let reason = reason.into();
        self.access
            .record_denied(auth::Denied {
                at: now(),
                who: who.to_owned(),
                action,
                reason: reason.clone(),
            })
            .await;
        ApiError::new(status, reason)
    }

    /// Refuses `caller` unless `allowed`, logging the refusal.
    pub(crate) async fn require(
        &self,
        caller: &Principal,
        allowed: bool,
        action: impl Into<String>,
        reason: impl Into<String>,
    ) -> Result<(), ApiError> {
        if allowed {
            return Ok(());
        }
        Err(self
            .deny(&caller.name, action.into(), StatusCode::FORBIDDEN, reason)
            .await)
    }
}

/// The console's routes: the API and the pages.
pub fn router<R: Registry + 'static>(console: Arc<Console<R>>) -> axum::Router {
    let limit = console.settings.max_upload_bytes;
    api::routes::<R>()
        .merge(pages::routes::<R>())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(console)
}

/// Serves the console on `listener` until the process ends.
pub async fn serve<R: Registry + 'static>(
    listener: tokio::net::TcpListener,
    console: Arc<Console<R>>,
) -> std::io::Result<()> {
    axum::serve(listener, router(console)).await
}

/// RFC 3339 UTC, now.
pub(crate) fn now() -> String {
    weir_core::time::format_utc(chrono::Utc::now())
}

/// An API caller, from its bearer token.
#[derive(Debug, Clone)]
pub struct ApiCaller(pub Principal);

impl<R: Registry + 'static> FromRequestParts<Arc<Console<R>>> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console<R>>,
    ) -> Result<Self, Self::Rejection> {
        let action = format!("{} {}", parts.method, parts.uri.path());
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let Some(token) = header.and_then(|v| v.strip_prefix("Bearer ")) else {
            let reason =
                "no API token: send `Authorization: Bearer <token>` (`weir console token create`)";
            return Err(console
                .deny("anonymous", action, StatusCode::UNAUTHORIZED, reason)
                .await);
        };
        match console.access.authenticate(token.trim()).await? {
            Some(principal) => Ok(Self(principal)),
            None => Err(console
                .deny(
                    "anonymous",
                    action,
                    StatusCode::UNAUTHORIZED,
                    "unknown or revoked API token",
                )
                .await),
        }
    }
}

pub(crate) const SESSION_COOKIE: &str = "weir_session";

/// A signed-in browser; anyone else is sent to the sign-in page.
#[derive(Debug, Clone)]
pub struct PageCaller {
    pub session_id: String,
    pub session: auth::Session,
}

pub(crate) fn session_cookie(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

impl<R: Registry + 'static> FromRequestParts<Arc<Console<R>>> for PageCaller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console<R>>,
    ) -> Result<Self, Self::Rejection> {
        let found = session_cookie(parts)
            .and_then(|id| console.sessions.get(id).map(|s| (id.to_owned(), s)));
        match found {
            Some((session_id, session)) => Ok(Self {
                session_id,
                session,
            }),
            None => Err(Redirect::to("/login").into_response()),
        }
    }
}
