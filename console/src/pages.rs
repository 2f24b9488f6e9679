//! The HTML pages: sign in with a token, plugins and their versions (with a
//! field-by-field comparison of two versions), uploads, test runs and golden
//! cases, bindings with activation and rollback, the audit log. Rendered on
//! the server (maud escapes every value); every form carries the session's
//! CSRF token.

use std::sync::Arc;

use axum::extract::{Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use weir_core::registry::{BindingKey, PluginVersion, Registry};

use crate::auth::same_secret;
use crate::checks::{CaseSummary, OutcomeView, TestRun, TestRunReport};
use crate::ops::{UploadForm, parse_tenant};
use crate::{ApiError, Console, PageCaller, SESSION_COOKIE};

type Shared<R> = State<Arc<Console<R>>>;

pub fn routes<R: Registry + 'static>() -> Router<Arc<Console<R>>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/bindings") }))
        .route("/login", get(login_page).post(login::<R>))
        .route("/logout", post(logout::<R>))
        .route("/plugins", get(plugins::<R>).post(upload::<R>))
        .route("/plugins/{name}", get(plugin::<R>))
        .route("/plugins/{name}/diff", get(diff::<R>))
        .route("/versions/{version}", get(version::<R>))
        .route("/versions/{version}/test", post(test_run::<R>))
        .route("/versions/{version}/golden", post(golden::<R>))
        .route("/bindings", get(bindings::<R>))
        .route("/bindings/activate", post(activate::<R>))
        .route("/bindings/rollback", post(rollback::<R>))
        .route("/audit", get(audit::<R>))
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
struct LoginForm {
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
struct CsrfForm {
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

async fn plugins<R: Registry + 'static>(State(c): Shared<R>, caller: PageCaller) -> Response {
    let plugins = match c.plugins(&caller.session.principal).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(&caller), e),
    };
    let body = html! {
        table {
            thead { tr { th { "Plugin" } th { "Latest" } th { "Versions" } th { "Event types" } } }
            tbody {
                @for plugin in &plugins {
                    tr {
                        td { a href={ "/plugins/" (plugin.name) } { (plugin.name) } }
                        td { (plugin.versions[0].version) }
                        td { (plugin.versions.len()) }
                        td { (plugin.versions[0].event_types.join(", ")) }
                    }
                }
            }
        }
        (upload_form(&caller))
    };
    layout("Plugins", Some(&caller), body).into_response()
}

fn upload_form(caller: &PageCaller) -> Markup {
    html! {
        fieldset {
            legend { "Upload a version" }
            form method="post" action="/plugins" enctype="multipart/form-data" {
                (csrf_field(caller))
                p { label { "Component (.wasm) " input type="file" name="component" accept=".wasm" required; } }
                p { label { "Golden cases (JSON, optional) " input type="file" name="golden" accept=".json"; } }
                @if caller.session.principal.is_admin() {
                    p { label { "For tenant (empty: shared) " input type="text" name="tenant"; } }
                }
                p { label { "Notes " input type="text" name="notes" size="60"; } }
                button type="submit" { "Upload" }
            }
        }
    }
}

async fn upload<R: Registry + 'static>(
    State(c): Shared<R>,
    caller: PageCaller,
    multipart: Multipart,
) -> Response {
    let result = async {
        let form = UploadForm::read(multipart).await?;
        check_csrf(&c, &caller, form.csrf.as_deref(), "POST /plugins").await?;
        c.upload(&caller.session.principal, form).await
    }
    .await;
    match result {
        Ok(uploaded) => {
            Redirect::to(&format!("/versions/{}", uploaded.version.sha256)).into_response()
        }
        Err(e) => error_page(Some(&caller), e),
    }
}

fn versions_table(name: &str, versions: &[PluginVersion]) -> Markup {
    html! {
        table {
            thead { tr { th { "Version" } th { "SHA-256" } th { "Owner" } th { "Uploaded" } th { "By" } th { "Notes" } th {} } }
            tbody {
                @for (i, v) in versions.iter().enumerate() {
                    tr {
                        td { a href={ "/versions/" (v.sha256) } { (v.version) } }
                        td { code { (short(&v.sha256)) } }
                        td { (owner(v)) }
                        td { (v.uploaded_at) }
                        td { (v.uploader) }
                        td { (v.notes) }
                        td {
                            @if let Some(older) = versions.get(i + 1) {
                                a href={ "/plugins/" (name) "/diff?a=" (older.sha256) "&b=" (v.sha256) } { "compare with " (older.version) }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn plugin<R: Registry + 'static>(
    State(c): Shared<R>,
    caller: PageCaller,
    Path(name): Path<String>,
) -> Response {
    match c
        .visible_versions(&caller.session.principal, Some(&name))
        .await
    {
        Ok(versions) if versions.is_empty() => error_page(
            Some(&caller),
            ApiError::not_found(format!("no plugin named {name}")),
        ),
        Ok(versions) => layout(
            &format!("Plugin {name}"),
            Some(&caller),
            versions_table(&name, &versions),
        )
        .into_response(),
        Err(e) => error_page(Some(&caller), e),
    }
}

#[derive(Debug, Deserialize)]
struct DiffQuery {
    a: String,
    b: String,
}

async fn diff<R: Registry + 'static>(
    State(c): Shared<R>,
    caller: PageCaller,
    Path(name): Path<String>,
    Query(query): Query<DiffQuery>,
) -> Response {
    let principal = &caller.session.principal;
    let (a, b) = match (
        c.version(principal, &query.a).await,
        c.version(principal, &query.b).await,
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return error_page(Some(&caller), e),
    };
    let fields = |v: &PluginVersion| {
        vec![
            ("version", v.version.clone()),
            ("sha256", v.sha256.clone()),
            ("size", v.size.to_string()),
            ("contract", v.contract.clone()),
            ("event types", v.event_types.join(", ")),
            ("owner", owner(v).to_owned()),
            ("uploader", v.uploader.clone()),
            ("uploaded at", v.uploaded_at.clone()),
            ("notes", v.notes.clone()),
        ]
    };
    let body = html! {
        table {
            thead { tr { th { "Field" } th { (a.version) } th { (b.version) } } }
            tbody {
                @for ((field, left), (_, right)) in fields(&a).into_iter().zip(fields(&b)) {
                    tr class=[(left != right).then_some("differs")] {
                        th { (field) } td { (left) } td { (right) }
                    }
                }
            }
        }
    };
    layout(
        &format!("{name}: {} against {}", b.version, a.version),
        Some(&caller),
        body,
    )
    .into_response()
}

async fn version<R: Registry + 'static>(
    State(c): Shared<R>,
    caller: PageCaller,
    Path(reference): Path<String>,
) -> Response {
    let v = match c.version(&caller.session.principal, &reference).await {
        Ok(v) => v,
        Err(e) => return error_page(Some(&caller), e),
    };
    let has_golden = matches!(c.registry.golden(&v.sha256).await, Ok(Some(_)));
    let own_tenant = caller
        .session
        .principal
        .tenant()
        .unwrap_or("default")
        .to_owned();
    let sample = format!(
        "[{{\"event_type\": \"{}\", \"timestamp\": \"2024-01-15T10:30:00Z\"}}]",
        v.event_types.first().map_or("", String::as_str)
    );
    let body = html! {
        table {
            tr { th { "SHA-256" } td { code { (v.sha256) } } }
            tr { th { "Size" } td { (v.size) " bytes" } }
            tr { th { "Contract" } td { (v.contract) } }
            tr { th { "Event types" } td { (v.event_types.join(", ")) } }
            tr { th { "Owner" } td { (owner(&v)) } }
            tr { th { "Uploaded" } td { (v.uploaded_at) " by " (v.uploader) } }
            tr { th { "Notes" } td { (v.notes) } }
        }
        fieldset {
            legend { "Activate" }
            form method="post" action="/bindings/activate" {
                (csrf_field(&caller))
                input type="hidden" name="version" value=(v.sha256);
                label { "Tenant (* for the default) " input type="text" name="tenant" value=(caller.session.principal.tenant().unwrap_or("*")) required; }
                " "
                label { "Event type " select name="event_type" { @for t in &v.event_types { option { (t) } } } }
                p { label { "Configuration, one key=value per line" textarea name="config" rows="3" {} } }
                button type="submit" { "Activate" }
            }
        }
        fieldset {
            legend { "Test run" }
            form method="post" action={ "/versions/" (v.sha256) "/test" } {
                (csrf_field(&caller))
                label { "Tenant " input type="text" name="tenant" value=(own_tenant); }
                p { label { "Configuration, one key=value per line" textarea name="config" rows="2" {} } }
                p { label { "Events (a JSON array)" textarea name="events" rows="8" { (sample) } } }
                button type="submit" { "Run" }
            }
        }
        @if has_golden {
            form method="post" action={ "/versions/" (v.sha256) "/golden" } {
                (csrf_field(&caller))
                button type="submit" { "Run its golden cases" }
            }
        }
    };
    layout(&format!("{} {}", v.name, v.version), Some(&caller), body).into_response()
}

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

#[derive(Debug, Deserialize)]
struct TestForm {
    csrf: Option<String>,
    tenant: String,
    #[serde(default)]
    config: String,
    events: String,
}

fn outcome_row(i: usize, outcome: &OutcomeView) -> Markup {
    let (label, detail, class) = match outcome {
        OutcomeView::Enrich { fields } => (
            "enrich",
            serde_json::to_string_pretty(fields).unwrap_or_default(),
            "ok",
        ),
        OutcomeView::Emit { records } => (
            "emit",
            serde_json::to_string_pretty(records).unwrap_or_default(),
            "ok",
        ),
        OutcomeView::Drop { reason } => ("drop", reason.clone(), ""),
        OutcomeView::Reject { kind, message } => ("reject", format!("{kind}: {message}"), "bad"),
    };
    html! { tr { td { (i + 1) } td class=(class) { (label) } td { pre { (detail) } } } }
}

fn report_page(caller: &PageCaller, report: &TestRunReport) -> Markup {
    let body = html! {
        p { (report.outcomes.len()) " event(s) in " (report.elapsed_micros) " µs, peak memory " (report.peak_memory_bytes) " bytes" }
        @if let Some(fault) = &report.fault { p.error { (fault) } }
        table {
            thead { tr { th { "#" } th { "Outcome" } th { "Detail" } } }
            tbody { @for (i, o) in report.outcomes.iter().enumerate() { (outcome_row(i, o)) } }
        }
    };
    layout(
        &format!("Test run of {}", report.plugin),
        Some(caller),
        body,
    )
}

async fn test_run<R: Registry + 'static>(
    State(c): Shared<R>,
    caller: PageCaller,
    Path(reference): Path<String>,
    Form(form): Form<TestForm>,
) -> Response {
    let result = async {
        check_csrf(&c, &caller, form.csrf.as_deref(), "POST /versions/test").await?;
        let events = serde_json::from_str(&form.events).map_err(|e| {
            ApiError::bad_request(format!("the events are not a JSON array of objects: {e}"))
        })?;
        let run = TestRun {
            tenant: form.tenant.trim().to_owned(),
            config: parse_config(&form.config)?.into_iter().collect(),
            processing_time: None,
            events,
        };
        c.test_run(&caller.session.principal, &reference, run).await
    }
    .await;
    match result {
        Ok(report) => report_page(&caller, &report).into_response(),
        Err(e) => error_page(Some(&caller), e),
    }
}

fn golden_page(caller: &PageCaller, reference: &str, cases: &[CaseSummary]) -> Markup {
    let passed = cases.iter().filter(|c| c.passed).count();
    let body = html! {
        p { (passed) " of " (cases.len()) " passed" }
        table {
            thead { tr { th { "Case" } th { "Result" } th { "Problems" } th { "µs" } } }
            tbody {
                @for case in cases {
                    tr {
                        td { (case.name) }
                        td class=(if case.passed { "ok" } else { "bad" }) { (if case.passed { "passed" } else { "failed" }) }
                        td { (case.problems.join("; ")) }
                        td { (case.elapsed_micros) }
                    }
                }
            }
        }
    };
    layout(
        &format!("Golden cases of {}", short(reference)),
        Some(caller),
        body,
    )
}

async fn golden<R: Registry + 'static>(
    State(c): Shared<R>,
    caller: PageCaller,
    Path(reference): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let result = async {
        check_csrf(&c, &caller, form.csrf.as_deref(), "POST /versions/golden").await?;
        c.run_golden(&caller.session.principal, &reference).await
    }
    .await;
    match result {
        Ok(cases) => golden_page(&caller, &reference, &cases).into_response(),
        Err(e) => error_page(Some(&caller), e),
    }
}

async fn bindings<R: Registry + 'static>(State(c): Shared<R>, caller: PageCaller) -> Response {
    let principal = &caller.session.principal;
    let (generation, bindings) = match c.visible_bindings(principal).await {
        Ok(b) => b,
        Err(e) => return error_page(Some(&caller), e),
    };
    let versions = c
        .visible_versions(principal, None)
        .await
        .unwrap_or_default();
    let label = |sha: &str| {
        versions
            .iter()
            .find(|v| v.sha256 == sha)
            .map_or_else(|| short(sha).to_owned(), PluginVersion::label)
    };
    let body = html! {
        p { "Registry generation " (generation) ". Running hosts pick up a change within their poll interval." }
        table id="bindings" {
            thead { tr { th { "Tenant" } th { "Event type" } th { "Active version" } th { "Revision" } th { "Configuration" } th { "Activated" } th {} } }
            tbody {
                @for b in &bindings {
                    tr data-binding=(b.key.to_string()) {
                        td { (b.key.tenant.as_deref().unwrap_or("* (default)")) }
                        td { (b.key.event_type) }
                        td.active-version { a href={ "/versions/" (b.sha256) } { (label(&b.sha256)) } }
                        td { (b.revision) }
                        td { @for (k, v) in &b.config { code { (k) "=" (v) } " " } }
                        td { (b.activated_at) " by " (b.activated_by) }
                        td {
                            @if principal.may_change_binding(&b.key) && b.revision > 1 {
                                form method="post" action="/bindings/rollback" {
                                    (csrf_field(&caller))
                                    input type="hidden" name="tenant" value=(b.key.tenant.as_deref().unwrap_or("*"));
                                    input type="hidden" name="event_type" value=(b.key.event_type);
                                    button type="submit" { "Roll back" }
                                }
                            }
                        }
                    }
                }
            }
        }
        p { "To bind a version, open it from " a href="/plugins" { "Plugins" } "." }
    };
    layout("Bindings", Some(&caller), body).into_response()
}

#[derive(Debug, Deserialize)]
struct ActivateForm {
    csrf: Option<String>,
    tenant: String,
    event_type: String,
    version: String,
    #[serde(default)]
    config: String,
}

async fn activate<R: Registry + 'static>(
    State(c): Shared<R>,
    caller: PageCaller,
    Form(form): Form<ActivateForm>,
) -> Response {
    let result = async {
        check_csrf(&c, &caller, form.csrf.as_deref(), "POST /bindings/activate").await?;
        let key = BindingKey {
            tenant: parse_tenant(&form.tenant),
            event_type: form.event_type.trim().to_owned(),
        };
        let config = parse_config(&form.config)?;
        c.activate(&caller.session.principal, &key, &form.version, config, None)
            .await
    }
    .await;
    match result {
        Ok(_) => Redirect::to("/bindings").into_response(),
        Err(e) => error_page(Some(&caller), e),
    }
}

#[derive(Debug, Deserialize)]
struct RollbackForm {
    csrf: Option<String>,
    tenant: String,
    event_type: String,
}

async fn rollback<R: Registry + 'static>(
    State(c): Shared<R>,
    caller: PageCaller,
    Form(form): Form<RollbackForm>,
) -> Response {
    let result = async {
        check_csrf(&c, &caller, form.csrf.as_deref(), "POST /bindings/rollback").await?;
        let key = BindingKey {
            tenant: parse_tenant(&form.tenant),
            event_type: form.event_type,
        };
        c.rollback(&caller.session.principal, &key).await
    }
    .await;
    match result {
        Ok(_) => Redirect::to("/bindings").into_response(),
        Err(e) => error_page(Some(&caller), e),
    }
}

async fn audit<R: Registry + 'static>(State(c): Shared<R>, caller: PageCaller) -> Response {
    let principal = &caller.session.principal;
    let entries = match c.visible_audit(principal, 200).await {
        Ok(e) => e,
        Err(e) => return error_page(Some(&caller), e),
    };
    let denied = if principal.is_admin() {
        c.access.denied(100).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let body = html! {
        table {
            thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Subject" } th { "Before" } th { "After" } } }
            tbody {
                @for e in &entries {
                    tr {
                        td { (e.at) } td { (e.actor) } td { (e.action) } td { (e.subject) }
                        td { code { (e.before.as_deref().map_or("", short)) } }
                        td { code { (e.after.as_deref().map_or("", short)) } }
                    }
                }
            }
        }
        @if principal.is_admin() {
            h2 { "Denied actions" }
            table {
                thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Why" } } }
                tbody { @for d in &denied { tr { td { (d.at) } td { (d.who) } td { (d.action) } td { (d.reason) } } } }
            }
        }
    };
    layout("Audit log", Some(&caller), body).into_response()
}
