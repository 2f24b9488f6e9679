//! The HTML pages: sign in with a token, plugins and their versions (with a
//! field-by-field comparison of two versions), uploads, test runs and golden
//! cases, bindings with activation and rollback, shadows with their
//! comparison, promotion and discarding, the audit log. Rendered on
//! the server (maud escapes every value); every form carries the session's
//! CSRF token.

mod bindings;
mod versions;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use weir_core::registry::{PluginVersion, Registry};

use crate::auth::same_secret;
use crate::{ApiError, Console, PageCaller, SESSION_COOKIE};

type Shared<R> = State<Arc<Console<R>>>;

pub fn routes<R: Registry + 'static>() -> Router<Arc<Console<R>>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/bindings") }))
        .route("/login", get(login_page).post(login::<R>))
        .route("/logout", post(logout::<R>))
        .route(
            "/plugins",
            get(versions::plugins::<R>).post(versions::upload::<R>),
        )
        .route("/plugins/{name}", get(versions::plugin::<R>))
        .route("/plugins/{name}/diff", get(versions::diff::<R>))
        .route("/versions/{version}", get(versions::version::<R>))
        .route("/versions/{version}/test", post(versions::test_run::<R>))
        .route("/versions/{version}/golden", post(versions::golden::<R>))
        .route("/bindings", get(bindings::bindings::<R>))
        .route("/bindings/activate", post(bindings::activate::<R>))
        .route("/bindings/rollback", post(bindings::rollback::<R>))
        .route("/shadows/start", post(bindings::start_shadow::<R>))
        .route("/shadows/promote", post(bindings::promote_shadow::<R>))
        .route("/shadows/discard", post(bindings::discard_shadow::<R>))
        .route("/audit", get(bindings::audit::<R>))
        .route("/tail", get(bindings::tail::<R>))
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 0; color: #1d2733; }
nav { background: #17324d; padding: .6rem 1.2rem; display: flex; gap: 1.2rem; align-items: center; }
nav a, nav span { color: #fff; text-decoration: none; }
nav form { margin-left: auto; }
main { padding: 1rem 1.5rem; max-width: 80rem; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; }
th, td { border-bottom: 1px solid #d5dbe1; padding: .3rem .7rem; text-align: left; vertical-align: top; }
code, pre { font-family: ui-monospace, monospace; font-size: .9em; }
pre { background: #f3f5f7; padding: .5rem; overflow-x: auto; }
.error { background: #fde8e8; border: 1px solid #e0a0a0; padding: .6rem; }
.ok { color: #17602b; } .bad { color: #a11; }
.differs { background: #fff4cc; }
fieldset { border: 1px solid #d5dbe1; margin: 1rem 0; }
textarea { width: 100%; font-family: ui-monospace, monospace; }
";

fn layout(title: &str, caller: Option<&PageCaller>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · Weir console" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                nav {
                    strong { a href="/" { "Weir" } }
                    @if let Some(caller) = caller {
                        a href="/plugins" { "Plugins" }
                        a href="/bindings" { "Bindings" }
                        a href="/audit" { "Audit" }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(caller.session.csrf);
                            span { (caller.session.principal.name) " (" (role_label(caller)) ") " }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

fn role_label(caller: &PageCaller) -> String {
    match caller.session.principal.tenant() {
        None => "admin".into(),
        Some(t) => format!("tenant {t}"),
    }
}

fn error_page(caller: Option<&PageCaller>, error: ApiError) -> Response {
    let body = html! { p.error role="alert" { (error.message) } };
    (error.status, layout("Refused", caller, body)).into_response()
}

fn csrf_field(caller: &PageCaller) -> Markup {
    html! { input type="hidden" name="csrf" value=(caller.session.csrf); }
}

/// Refuses a form post without the session's CSRF token, logging it.
async fn check_csrf<R: Registry + 'static>(
    c: &Console<R>,
    caller: &PageCaller,
    given: Option<&str>,
    action: &str,
) -> Result<(), ApiError> {
    if given.is_some_and(|g| same_secret(g, &caller.session.csrf)) {
        return Ok(());
    }
    Err(c
        .deny(
            &caller.session.principal.name,
            action.to_owned(),
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or stale: reload the page and try again",
        )
        .await)
}

async fn login_page() -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            form method="post" action="/login" {
                label { "API token " input type="password" name="token" autocomplete="off" size="70"; }
                " "
                button type="submit" { "Sign in" }
            }
            p { "Create a token with " code { "weir console token create" } "." }
        },
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    token: String,
}

async fn login<R: Registry + 'static>(
    State(c): Shared<R>,
    Form(form): Form<LoginForm>,
) -> Response {
    match c.access.authenticate(form.token.trim()).await {
        Ok(Some(principal)) => {
            let id = c.sessions.start(principal);
            let cookie = format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict");
            ([(header::SET_COOKIE, cookie)], Redirect::to("/bindings")).into_response()
        }
        Ok(None) => {
            let error = c
                .deny(
                    "anonymous",
                    "POST /login".into(),
                    StatusCode::UNAUTHORIZED,
                    "unknown or revoked token",
                )
                .await;
            error_page(None, error)
        }
        Err(e) => error_page(None, e.into()),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    csrf: Option<String>,
}

async fn logout<R: Registry + 'static>(
    State(c): Shared<R>,
    caller: PageCaller,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = check_csrf(&c, &caller, form.csrf.as_deref(), "POST /logout").await {
        return error_page(Some(&caller), e);
    }
    c.sessions.end(&caller.session_id);
    let cookie = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

fn short(sha256: &str) -> &str {
    &sha256[..sha256.len().min(12)]
}

fn owner(version: &PluginVersion) -> &str {
    version.tenant.as_deref().unwrap_or("shared")
}

/// Configuration from a textarea: one `key=value` per line.
fn parse_config(text: &str) -> Result<Vec<(String, String)>, ApiError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            line.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| {
                    ApiError::bad_request(format!("configuration line `{line}` is not key=value"))
                })
        })
        .collect()
}
