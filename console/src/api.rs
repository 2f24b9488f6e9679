//! The REST API under `/api/v1`: JSON in and out, bearer tokens, errors as
//! `{"error": "..."}` with a status that says what kind. Each route is in the
//! OpenAPI document ([`crate::openapi`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use weir_core::registry::{BindingKey, BindingLimits, Registry};

use crate::checks::TestRun;
use crate::ops::{UploadForm, parse_tenant};
use crate::{ApiCaller, ApiError, Console, Role, now};

type Shared<R> = State<Arc<Console<R>>>;

pub fn routes<R: Registry + 'static>() -> Router<Arc<Console<R>>> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/plugins", get(plugins::<R>))
        .route("/api/v1/versions", get(versions::<R>).post(upload::<R>))
        .route("/api/v1/versions/{version}", get(version::<R>))
        .route("/api/v1/versions/{version}/component", get(component::<R>))
        .route("/api/v1/versions/{version}/schemas", get(schemas::<R>))
        .route("/api/v1/versions/{version}/golden", get(golden::<R>))
        .route(
            "/api/v1/versions/{version}/golden/run",
            post(run_golden::<R>),
        )
        .route("/api/v1/versions/{version}/test", post(test_run::<R>))
        .route("/api/v1/bindings", get(bindings::<R>))
        .route("/api/v1/bindings/{tenant}/{event_type}", put(activate::<R>))
        .route(
            "/api/v1/bindings/{tenant}/{event_type}/rollback",
            post(rollback::<R>),
        )
        .route("/api/v1/shadows", get(shadows::<R>))
        .route(
            "/api/v1/shadows/{tenant}/{event_type}",
            put(start_shadow::<R>).delete(discard_shadow::<R>),
        )
        .route(
            "/api/v1/shadows/{tenant}/{event_type}/promote",
            post(promote_shadow::<R>),
        )
        .route("/api/v1/tail/{tenant}/{event_type}", get(tail::<R>))
        .route("/api/v1/audit", get(audit::<R>))
        .route("/api/v1/denied", get(denied::<R>))
        .route("/api/v1/tokens", get(tokens::<R>).post(create_token::<R>))
        .route("/api/v1/tokens/{name}", delete(revoke_token::<R>))
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

async fn whoami(ApiCaller(caller): ApiCaller) -> Json<Value> {
    Json(json!(caller))
}

async fn plugins<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "plugins": c.plugins(&caller).await? })))
}

#[derive(Debug, Deserialize)]
struct VersionsQuery {
    name: Option<String>,
}

async fn versions<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
    Query(query): Query<VersionsQuery>,
) -> Result<Json<Value>, ApiError> {
    let versions = c.visible_versions(&caller, query.name.as_deref()).await?;
    Ok(Json(json!({ "versions": versions })))
}

async fn upload<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
    multipart: Multipart,
) -> Result<impl IntoResponse, ApiError> {
    let form = UploadForm::read(multipart).await?;
    let uploaded = c.upload(&caller, form).await?;
    let status = if uploaded.added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!(uploaded))))
}

async fn version<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(c.version(&caller, &reference).await?)))
}

async fn component<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
    Path(reference): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (version, bytes) = c.component(&caller, &reference).await?;
    let disposition = format!(
        "attachment; filename=\"{}-{}.wasm\"",
        version.name, version.version
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/wasm".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    ))
}

async fn schemas<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(c.schemas(&caller, &reference).await?)))
}

async fn golden<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
    Path(reference): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let version = c.version(&caller, &reference).await?;
    let cases = c.registry.golden(&version.sha256).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "{} was uploaded without golden cases",
            version.label()
        ))
    })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], cases))
}

async fn run_golden<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let cases = c.run_golden(&caller, &reference).await?;
    let passed = cases.iter().all(|c| c.passed);
    Ok(Json(json!({ "passed": passed, "cases": cases })))
}

async fn test_run<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
    Path(reference): Path<String>,
    Json(run): Json<TestRun>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(c.test_run(&caller, &reference, run).await?)))
}

async fn bindings<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
) -> Result<Json<Value>, ApiError> {
    let (generation, bindings) = c.visible_bindings(&caller).await?;
    Ok(Json(
        json!({ "generation": generation, "bindings": bindings }),
    ))
}

/// `PUT /api/v1/bindings/{tenant}/{event_type}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Activation {
    /// SHA-256 or `name@version`.
    version: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// Only if the binding is still at this revision (0: only if new).
    #[serde(default)]
    expected_revision: Option<u64>,
    /// The binding's own limits (`memory_mib`, `cpu_ms`) over the host's.
    #[serde(default)]
    limits: BindingLimits,
}

fn binding_key(tenant: &str, event_type: String) -> BindingKey {
    BindingKey {
        tenant: parse_tenant(tenant),
        event_type,
    }
}

async fn activate<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
    Path((tenant, event_type)): Path<(String, String)>,
    Json(activation): Json<Activation>,
) -> Result<Json<Value>, ApiError> {
    let key = binding_key(&tenant, event_type);
    let config = activation.config.into_iter().collect();
    let record = c
        .activate(
            &caller,
            &key,
            &activation.version,
            config,
            activation.limits,
            activation.expected_revision,
        )
        .await?;
    Ok(Json(json!(record)))
}

async fn rollback<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
    Path((tenant, event_type)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = binding_key(&tenant, event_type);
    Ok(Json(json!(c.rollback(&caller, &key).await?)))
}

async fn shadows<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "shadows": c.visible_shadows(&caller).await? }),
    ))
}

/// `PUT /api/v1/shadows/{tenant}/{event_type}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShadowStart {
    /// SHA-256 or `name@version` of the candidate.
    version: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// 1 to 100.
    share_percent: u8,
}

async fn start_shadow<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
    Path((tenant, event_type)): Path<(String, String)>,
    Json(start): Json<ShadowStart>,
) -> Result<Json<Value>, ApiError> {
    let key = binding_key(&tenant, event_type);
    let config = start.config.into_iter().collect();
    let record = c
        .start_shadow(&caller, &key, &start.version, config, start.share_percent)
        .await?;
    Ok(Json(json!(record)))
}

async fn promote_shadow<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
    Path((tenant, event_type)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = binding_key(&tenant, event_type);
    Ok(Json(json!(c.promote_shadow(&caller, &key).await?)))
}

async fn discard_shadow<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
    Path((tenant, event_type)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = binding_key(&tenant, event_type);
    Ok(Json(json!(c.discard_shadow(&caller, &key).await?)))
}

#[derive(Debug, Deserialize)]
struct LimitQuery {
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

async fn audit<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
    Query(query): Query<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "entries": c.visible_audit(&caller, query.limit).await? }),
    ))
}

#[derive(Debug, Deserialize)]
struct TailQuery {
    #[serde(default = "default_tail")]
    limit: usize,
}

fn default_tail() -> usize {
    20
}

async fn tail<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
    Path((tenant, event_type)): Path<(String, String)>,
    Query(query): Query<TailQuery>,
) -> Result<Json<Value>, ApiError> {
    let key = binding_key(&tenant, event_type);
    Ok(Json(json!(c.recent(&caller, &key, query.limit).await?)))
}

async fn admin_only<R: Registry + 'static>(
    c: &Console<R>,
    caller: &crate::Principal,
    action: &str,
) -> Result<(), ApiError> {
    c.require(
        caller,
        caller.is_admin(),
        action,
        "only an admin token may do this",
    )
    .await
}

async fn denied<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
    Query(query): Query<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&c, &caller, "GET /api/v1/denied").await?;
    Ok(Json(
        json!({ "denied": c.access.denied(query.limit).await? }),
    ))
}

async fn tokens<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
) -> Result<Json<Value>, ApiError> {
    admin_only(&c, &caller, "GET /api/v1/tokens").await?;
    Ok(Json(json!({ "tokens": c.access.tokens().await? })))
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    /// A tenant token's tenant; none: an admin token.
    #[serde(default)]
    tenant: Option<String>,
}

async fn create_token<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
    Json(new): Json<NewToken>,
) -> Result<impl IntoResponse, ApiError> {
    admin_only(&c, &caller, "POST /api/v1/tokens").await?;
    if new.name.trim().is_empty() {
        return Err(ApiError::bad_request(
            "a token needs a name (it is the actor in the audit log)",
        ));
    }
    let role = match new.tenant.clone() {
        Some(t) => Role::Tenant(t),
        None => Role::Admin,
    };
    let token = c
        .access
        .create_token(&new.name, role.clone(), &now())
        .await?;
    tracing::info!(name = %new.name, by = %caller.name, "console token created");
    let principal = crate::Principal {
        name: new.name,
        role,
    };
    let mut body = json!(principal);
    body["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(body)))
}

async fn revoke_token<R: Registry + 'static>(
    State(c): Shared<R>,
    ApiCaller(caller): ApiCaller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin_only(&c, &caller, "DELETE /api/v1/tokens").await?;
    if c.access.revoke(&name).await? {
        tracing::info!(name = %name, by = %caller.name, "console token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no token named `{name}`")))
    }
}
