//! Plugins and versions: the list, uploads, a version's page (activation,
//! shadow and test-run forms), comparisons, test runs and golden cases.

use axum::Form;
use axum::extract::{Multipart, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use weir_core::OutcomeView;
use weir_core::registry::{PluginVersion, Registry};

use super::{
    CsrfForm, Shared, check_csrf, csrf_field, error_page, layout, owner, parse_config, short,
};
use crate::checks::{CaseSummary, TestRun, TestRunReport, config_hint, sample_payload};
use crate::ops::UploadForm;
use crate::{ApiError, PageCaller};

pub(super) async fn plugins<R: Registry + 'static>(
    State(c): Shared<R>,
    caller: PageCaller,
) -> Response {
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

pub(super) async fn upload<R: Registry + 'static>(
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

pub(super) async fn plugin<R: Registry + 'static>(
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
pub(super) struct DiffQuery {
    a: String,
    b: String,
}

pub(super) async fn diff<R: Registry + 'static>(
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

pub(super) async fn version<R: Registry + 'static>(
    State(c): Shared<R>,
    caller: PageCaller,
    Path(reference): Path<String>,
) -> Response {
    let v = match c.version(&caller.session.principal, &reference).await {
        Ok(v) => v,
        Err(e) => return error_page(Some(&caller), e),
    };
    let has_golden = matches!(c.registry.golden(&v.sha256).await, Ok(Some(_)));
    let schemas = c.schemas_of(v.clone()).await;
    let input_schema = schemas.as_ref().ok().and_then(|d| d.input_schema.as_ref());
    let sample = Value::Array(vec![sample_payload(
        v.event_types.first().map_or("", String::as_str),
        input_schema,
    )]);
    let sample = serde_json::to_string_pretty(&sample).unwrap_or_default();
    let config_schema = schemas.as_ref().ok().and_then(|d| d.config_schema.as_ref());
    let hint = config_hint(config_schema);
    let schema_cell = |schema: Option<&serde_json::Value>, none: &'static str| match schema {
        Some(schema) => {
            html! { pre.schema { (serde_json::to_string_pretty(schema).unwrap_or_default()) } }
        }
        None => html! { (none) },
    };
    let own_tenant = caller
        .session
        .principal
        .tenant()
        .unwrap_or("default")
        .to_owned();
    let body = html! {
        table {
            tr { th { "SHA-256" } td { code { (v.sha256) } } }
            tr { th { "Size" } td { (v.size) " bytes" } }
            tr { th { "Contract" } td { (v.contract) } }
            tr { th { "Event types" } td { (v.event_types.join(", ")) } }
            tr { th { "Owner" } td { (owner(&v)) } }
            tr { th { "Uploaded" } td { (v.uploaded_at) " by " (v.uploader) } }
            tr { th { "Notes" } td { (v.notes) } }
            @match &schemas {
                Ok(declared) => {
                    tr { th { "Input schema" } td { (schema_cell(declared.input_schema.as_ref(), "none declared: every payload of its event types reaches it")) } }
                    tr { th { "Configuration schema" } td { (schema_cell(declared.config_schema.as_ref(), "none declared: any configuration is bound")) } }
                }
                Err(e) => tr { th { "Schemas" } td.error { (e.message) } },
            }
        }
        p { "Hosts hold every payload to the input schema before the plugin sees it (one that does not match is dead-lettered with the schema's reasons), and a configuration to the configuration schema before it is bound." }
        fieldset {
            legend { "Activate" }
            form method="post" action="/bindings/activate" {
                (csrf_field(&caller))
                input type="hidden" name="version" value=(v.sha256);
                label { "Tenant (* for the default) " input type="text" name="tenant" value=(caller.session.principal.tenant().unwrap_or("*")) required; }
                " "
                label { "Event type " select name="event_type" { @for t in &v.event_types { option { (t) } } } }
                p { label { "Configuration, one key=value per line" textarea name="config" rows="3" placeholder=(hint) {} } }
                p {
                    "Limits (empty: the host's defaults) "
                    label { "memory MiB " input type="number" name="memory_mib" min="1" max="4096"; }
                    " "
                    label { "CPU ms per batch " input type="number" name="cpu_ms" min="1" max="60000"; }
                }
                button type="submit" { "Activate" }
            }
        }
        fieldset {
            legend { "Shadow" }
            p { "Run this version beside a binding's active version on a share of its records: nothing it returns is written; the bindings page shows how it compares." }
            form method="post" action="/shadows/start" {
                (csrf_field(&caller))
                input type="hidden" name="version" value=(v.sha256);
                label { "Tenant (* for the default) " input type="text" name="tenant" value=(caller.session.principal.tenant().unwrap_or("*")) required; }
                " "
                label { "Event type " select name="event_type" { @for t in &v.event_types { option { (t) } } } }
                " "
                label { "Share (%) " input type="number" name="share_percent" min="1" max="100" value="10" required; }
                p { label { "Configuration, one key=value per line" textarea name="config" rows="2" placeholder=(hint) {} } }
                button type="submit" { "Start shadow" }
            }
        }
        fieldset {
            legend { "Test run" }
            form method="post" action={ "/versions/" (v.sha256) "/test" } enctype="multipart/form-data" {
                (csrf_field(&caller))
                label { "Tenant " input type="text" name="tenant" value=(own_tenant); }
                p { label { "Configuration, one key=value per line" textarea name="config" rows="2" placeholder=(hint) {} } }
                p { label { "Events (a JSON array, or one JSON object per line)" textarea name="events" rows="8" { (sample) } } }
                p { label { "or a file of them " input type="file" name="events_file" accept=".json,.jsonl"; } }
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

/// A test run as the page posts it (multipart: the events typed in, or a
/// file of them).
#[derive(Debug, Default)]
struct TestForm {
    csrf: Option<String>,
    tenant: String,
    config: String,
    events: String,
    events_file: Option<String>,
}

impl TestForm {
    async fn read(mut multipart: Multipart) -> Result<Self, ApiError> {
        let mut form = Self::default();
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?
        {
            let name = field.name().unwrap_or_default().to_owned();
            let text = field
                .text()
                .await
                .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
            match name.as_str() {
                "csrf" => form.csrf = Some(text),
                "tenant" => form.tenant = text,
                "config" => form.config = text,
                "events" => form.events = text,
                "events_file" if !text.trim().is_empty() => form.events_file = Some(text),
                _ => {}
            }
        }
        Ok(form)
    }
}

/// Events as a JSON array, or JSON Lines (one per line).
fn parse_events(text: &str) -> Result<Vec<serde_json::Value>, ApiError> {
    let text = text.trim();
    if text.starts_with('[') {
        return serde_json::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("the events are not a JSON array: {e}")));
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line)
                .map_err(|e| ApiError::bad_request(format!("events line {}: not JSON: {e}", n + 1)))
        })
        .collect()
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
        @if !report.printed.is_empty() {
            h2 { "Printed" }
            pre.printed { @for line in &report.printed { (line.stream) ": " (line.text) "\n" } }
        }
    };
    layout(
        &format!("Test run of {}", report.plugin),
        Some(caller),
        body,
    )
}

pub(super) async fn test_run<R: Registry + 'static>(
    State(c): Shared<R>,
    caller: PageCaller,
    Path(reference): Path<String>,
    multipart: Multipart,
) -> Response {
    let result = async {
        let form = TestForm::read(multipart).await?;
        check_csrf(&c, &caller, form.csrf.as_deref(), "POST /versions/test").await?;
        let events = parse_events(form.events_file.as_deref().unwrap_or(&form.events))?;
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

pub(super) async fn golden<R: Registry + 'static>(
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
