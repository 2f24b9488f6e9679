//! Bindings, shadows and the audit log: activation, rollback, starting,
//! promoting and discarding shadows.

use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use weir_core::registry::{BindingKey, BindingLimits, PluginVersion, Registry};

use super::{Shared, check_csrf, csrf_field, error_page, layout, parse_config, short};
use crate::ops::parse_tenant;
use crate::{ApiError, PageCaller};

pub(super) async fn bindings<R: Registry + 'static>(
    State(c): Shared<R>,
    caller: PageCaller,
) -> Response {
    let principal = &caller.session.principal;
    let (generation, bindings) = match c.visible_bindings(principal).await {
        Ok(b) => b,
        Err(e) => return error_page(Some(&caller), e),
    };
    let versions = c
        .visible_versions(principal, None)
        .await
        .unwrap_or_default();
    let shadows = match c.visible_shadows(principal).await {
        Ok(s) => s,
        Err(e) => return error_page(Some(&caller), e),
    };
    let label = |sha: &str| {
        versions
            .iter()
            .find(|v| v.sha256 == sha)
            .map_or_else(|| short(sha).to_owned(), PluginVersion::label)
    };
    let body = html! {
        p { "Registry generation " (generation) ". Running hosts pick up a change within their poll interval." }
        table id="bindings" {
            thead { tr { th { "Tenant" } th { "Event type" } th { "Active version" } th {} th { "Revision" } th { "Configuration" } th { "Activated" } th {} } }
            tbody {
                @for b in &bindings {
                    tr data-binding=(b.key.to_string()) {
                        td { (b.key.tenant.as_deref().unwrap_or("* (default)")) }
                        td { (b.key.event_type) }
                        td.active-version { a href={ "/versions/" (b.sha256) } { (label(&b.sha256)) } }
                        td { a href={ "/tail?tenant=" (b.key.tenant.as_deref().unwrap_or("*")) "&event_type=" (b.key.event_type) } { "live tail" } }
                        td { (b.revision) }
                        td {
                            @for (k, v) in &b.config { code { (k) "=" (v) } " " }
                            @if let Some(m) = b.limits.memory_mib { code { "memory " (m) " MiB" } " " }
                            @if let Some(ms) = b.limits.cpu_ms { code { "cpu " (ms) " ms" } }
                        }
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
        h2 { "Shadows" }
        @if shadows.is_empty() {
            p { "None. Start one from a version's page." }
        } @else {
            table id="shadows" {
                thead { tr { th { "Binding" } th { "Candidate" } th { "Share" } th { "Compared" } th { "Identical" } th { "Differing" } th { "Rejected by it" } th { "Samples" } th {} } }
                tbody {
                    @for view in &shadows {
                        @let key = &view.record.key;
                        tr data-shadow=(key.to_string()) {
                            td { (key.to_string()) }
                            td { a href={ "/versions/" (view.record.sha256) } { (view.candidate) } }
                            td { (view.record.share_percent) "%" }
                            td.compared { (view.tally.compared) }
                            td.identical { (view.tally.identical) }
                            td.differing { (view.tally.differing) }
                            td { (view.tally.candidate_rejected) }
                            td {
                                @for sample in &view.tally.samples {
                                    details {
                                        summary { "record " (sample.sequence_number) }
                                        p { "active: " code { (sample.active) } }
                                        p { "candidate: " code { (sample.candidate) } }
                                    }
                                }
                            }
                            td {
                                @if principal.may_change_binding(key) {
                                    @for (action, label) in [("/shadows/promote", "Promote"), ("/shadows/discard", "Discard")] {
                                        form method="post" action=(action) {
                                            (csrf_field(&caller))
                                            input type="hidden" name="tenant" value=(key.tenant.as_deref().unwrap_or("*"));
                                            input type="hidden" name="event_type" value=(key.event_type);
                                            button type="submit" { (label) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Bindings", Some(&caller), body).into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct ActivateForm {
    csrf: Option<String>,
    tenant: String,
    event_type: String,
    version: String,
    #[serde(default)]
    config: String,
    /// Empty: the host's default.
    #[serde(default)]
    memory_mib: String,
    #[serde(default)]
    cpu_ms: String,
}

/// An optional number from a form field.
fn optional_number<T: std::str::FromStr>(field: &str, text: &str) -> Result<Option<T>, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| ApiError::bad_request(format!("{field} `{text}` is not a whole number")))
}

pub(super) async fn activate<R: Registry + 'static>(
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
        let limits = BindingLimits {
            memory_mib: optional_number("memory (MiB)", &form.memory_mib)?,
            cpu_ms: optional_number("CPU time (ms)", &form.cpu_ms)?,
        };
        c.activate(
            &caller.session.principal,
            &key,
            &form.version,
            config,
            limits,
            None,
        )
        .await
        .map(drop)
    }
    .await;
    back_to_bindings(&caller, result)
}

#[derive(Debug, Deserialize)]
pub(super) struct ShadowForm {
    csrf: Option<String>,
    tenant: String,
    event_type: String,
    version: String,
    share_percent: u8,
    #[serde(default)]
    config: String,
}

pub(super) async fn start_shadow<R: Registry + 'static>(
    State(c): Shared<R>,
    caller: PageCaller,
    Form(form): Form<ShadowForm>,
) -> Response {
    let result = async {
        check_csrf(&c, &caller, form.csrf.as_deref(), "POST /shadows/start").await?;
        let key = BindingKey {
            tenant: parse_tenant(&form.tenant),
            event_type: form.event_type.trim().to_owned(),
        };
        let config = parse_config(&form.config)?;
        c.start_shadow(
            &caller.session.principal,
            &key,
            &form.version,
            config,
            form.share_percent,
        )
        .await
        .map(drop)
    }
    .await;
    back_to_bindings(&caller, result)
}

pub(super) async fn promote_shadow<R: Registry + 'static>(
    State(c): Shared<R>,
    caller: PageCaller,
    Form(form): Form<BindingForm>,
) -> Response {
    let result = async {
        let key = form
            .checked_key(&c, &caller, "POST /shadows/promote")
            .await?;
        c.promote_shadow(&caller.session.principal, &key)
            .await
            .map(drop)
    }
    .await;
    back_to_bindings(&caller, result)
}

pub(super) async fn discard_shadow<R: Registry + 'static>(
    State(c): Shared<R>,
    caller: PageCaller,
    Form(form): Form<BindingForm>,
) -> Response {
    let result = async {
        let key = form
            .checked_key(&c, &caller, "POST /shadows/discard")
            .await?;
        c.discard_shadow(&caller.session.principal, &key)
            .await
            .map(drop)
    }
    .await;
    back_to_bindings(&caller, result)
}

/// A binding named by a form: `tenant` (`*` for the default) and `event_type`.
#[derive(Debug, Deserialize)]
pub(super) struct BindingForm {
    csrf: Option<String>,
    tenant: String,
    event_type: String,
}

impl BindingForm {
    /// The binding, once the form's CSRF token is checked.
    async fn checked_key<R: Registry + 'static>(
        self,
        c: &crate::Console<R>,
        caller: &PageCaller,
        action: &str,
    ) -> Result<BindingKey, ApiError> {
        check_csrf(c, caller, self.csrf.as_deref(), action).await?;
        Ok(BindingKey {
            tenant: parse_tenant(&self.tenant),
            event_type: self.event_type,
        })
    }
}

/// Back to the bindings page after a change, or the reason it was refused.
fn back_to_bindings(caller: &PageCaller, result: Result<(), ApiError>) -> Response {
    match result {
        Ok(()) => Redirect::to("/bindings").into_response(),
        Err(e) => error_page(Some(caller), e),
    }
}

pub(super) async fn rollback<R: Registry + 'static>(
    State(c): Shared<R>,
    caller: PageCaller,
    Form(form): Form<BindingForm>,
) -> Response {
    let result = async {
        let key = form
            .checked_key(&c, &caller, "POST /bindings/rollback")
            .await?;
        c.rollback(&caller.session.principal, &key).await.map(drop)
    }
    .await;
    back_to_bindings(&caller, result)
}

pub(super) async fn audit<R: Registry + 'static>(
    State(c): Shared<R>,
    caller: PageCaller,
) -> Response {
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

#[derive(Debug, Deserialize)]
pub(super) struct TailQuery {
    tenant: String,
    event_type: String,
}

/// A binding's newest records and dead letters, reloading every 2 s.
pub(super) async fn tail<R: Registry + 'static>(
    State(c): Shared<R>,
    caller: PageCaller,
    Query(query): Query<TailQuery>,
) -> Response {
    let key = BindingKey {
        tenant: parse_tenant(&query.tenant),
        event_type: query.event_type,
    };
    let recent = match c.recent(&caller.session.principal, &key, 20).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&caller), e),
    };
    let body = html! {
        meta http-equiv="refresh" content="2";
        p { "The newest records and dead letters of " code { (key.to_string()) } ", reloaded every 2 seconds." }
        h2 { "Records" }
        table id="tail-records" {
            thead { tr { th { "Processed" } th { "Tenant" } th { "Plugin" } th { "Record" } } }
            tbody {
                @for r in &recent.records {
                    tr {
                        td { (r["processed_timestamp"].as_str().unwrap_or("")) }
                        td { (r["enriched_data"]["tenant_id"].as_str().unwrap_or("default")) }
                        td { (r["metadata"]["plugin"].as_str().unwrap_or("(pass-through)")) }
                        td { code { (r["enriched_data"].to_string()) } }
                    }
                }
            }
        }
        h2 { "Dead letters" }
        @if let Some(place) = &recent.dead_letters_elsewhere {
            p id="tail-dead-letters-elsewhere" { "Not shown here: they are " (place) "." }
        }
        table id="tail-dead-letters" {
            thead { tr { th { "Failed" } th { "Stage" } th { "Kind" } th { "Reason" } th { "Payload" } } }
            tbody {
                @for d in &recent.dead_letters {
                    tr {
                        td { (d.failed_at) } td { (d.stage) } td { (d.kind) } td { (d.reason) }
                        td { code { (String::from_utf8_lossy(&d.payload)) } }
                    }
                }
            }
        }
    };
    layout(&format!("Live tail of {key}"), Some(&caller), body).into_response()
}
