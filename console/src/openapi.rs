//! The API's OpenAPI 3.1 document, served at `/api/v1/openapi.json`. A test
//! checks that every route the router serves is here and the other way round.

use serde_json::{Value, json};

fn error_responses() -> Value {
    json!({
        "400": { "$ref": "#/components/responses/Error" },
        "401": { "$ref": "#/components/responses/Error" },
        "403": { "$ref": "#/components/responses/Error" },
        "404": { "$ref": "#/components/responses/Error" }
    })
}

fn op(summary: &str, ok: &str, ok_schema: Value) -> Value {
    let mut responses = error_responses();
    responses[ok] = json!({
        "description": "success",
        "content": { "application/json": { "schema": ok_schema } }
    });
    json!({ "summary": summary, "responses": responses })
}

fn with_body(mut operation: Value, schema: Value) -> Value {
    operation["requestBody"] = json!({
        "required": true,
        "content": { "application/json": { "schema": schema } }
    });
    operation
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description, "schema": { "type": "string" } })
}

/// The document.
pub fn document() -> Value {
    let version_param = path_param("version", "a version's SHA-256, or name@version");
    let binding_params = json!([
        path_param("tenant", "the tenant, or `*` for the default binding"),
        path_param("event_type", "the event type")
    ]);
    let limit = json!([{ "name": "limit", "in": "query", "schema": { "type": "integer", "default": 100 } }]);
    let mut upload = op(
        "Upload a plugin version (checked as a host would load it, golden cases run)",
        "201",
        json!({
            "type": "object",
            "properties": {
                "version": reference("PluginVersion"),
                "added": { "type": "boolean" },
                "golden": { "type": "array", "items": reference("CaseResult") }
            }
        }),
    );
    upload["requestBody"] = json!({
        "required": true,
        "content": { "multipart/form-data": { "schema": {
            "type": "object",
            "required": ["component"],
            "properties": {
                "component": { "type": "string", "format": "binary", "description": "the .wasm component" },
                "golden": { "type": "string", "format": "binary", "description": "golden case file (JSON)" },
                "notes": { "type": "string" },
                "tenant": { "type": "string", "description": "owner tenant; none: shared (admins only)" }
            }
        } } }
    });
    upload["responses"]["413"] = json!({ "$ref": "#/components/responses/Error" });
    upload["responses"]["422"] = json!({ "$ref": "#/components/responses/Error" });

    let mut activate = with_body(
        op(
            "Point a binding at a version, atomically (audited)",
            "200",
            reference("Binding"),
        ),
        json!({
            "type": "object",
            "required": ["version"],
            "properties": {
                "version": { "type": "string", "description": "SHA-256 or name@version" },
                "config": { "type": "object", "additionalProperties": { "type": "string" } },
                "expected_revision": { "type": "integer", "description": "only if the binding is at this revision; 0: only if new" },
                "limits": { "type": "object", "properties": { "memory_mib": { "type": "integer", "minimum": 1, "maximum": 4096 }, "cpu_ms": { "type": "integer", "minimum": 1, "maximum": 60000 } } }
            }
        }),
    );
    activate["parameters"] = binding_params.clone();
    activate["responses"]["409"] = json!({ "$ref": "#/components/responses/Error" });
    activate["responses"]["422"] = json!({ "$ref": "#/components/responses/Error" });
    let mut rollback = op(
        "Point a binding back at its previous version (audited)",
        "200",
        reference("Binding"),
    );
    rollback["parameters"] = binding_params.clone();
    let mut start_shadow = with_body(
        op(
            "Run a candidate version in the binding's shadow on a share of its records (audited)",
            "200",
            reference("Shadow"),
        ),
        json!({
            "type": "object",
            "required": ["version", "share_percent"],
            "properties": {
                "version": { "type": "string", "description": "SHA-256 or name@version" },
                "config": { "type": "object", "additionalProperties": { "type": "string" } },
                "share_percent": { "type": "integer", "minimum": 1, "maximum": 100 }
            }
        }),
    );
    start_shadow["parameters"] = binding_params.clone();
    let mut discard_shadow = op(
        "End the shadow without promoting it (audited)",
        "200",
        reference("Shadow"),
    );
    discard_shadow["parameters"] = binding_params.clone();
    let mut promote_shadow = op(
        "Make the candidate the active version and end the shadow (audited)",
        "200",
        reference("Binding"),
    );
    promote_shadow["parameters"] = binding_params.clone();
    let mut tail = op(
        "A binding's newest processed records and dead letters (a tenant sees its own)",
        "200",
        json!({ "type": "object", "properties": {
            "records": { "type": "array" },
            "dead_letters": { "type": "array" },
            "dead_letters_elsewhere": { "type": "string", "description": "Where the dead letters are when the tail cannot show them (SQS on AWS)" }
        } }),
    );
    let mut tail_params = binding_params.as_array().cloned().unwrap_or_default();
    tail_params.push(json!({ "name": "limit", "in": "query", "schema": { "type": "integer", "default": 20, "maximum": 200 } }));
    tail["parameters"] = Value::Array(tail_params);

    let with_params = |mut operation: Value, params: Value| {
        operation["parameters"] = params;
        operation
    };
    let on_version = |operation: Value| with_params(operation, json!([version_param.clone()]));

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Weir console API",
            "version": "1",
            "description": "Upload, version, test, bind, activate and roll back Weir plugins. Authenticate with `Authorization: Bearer <token>`; admin tokens may do everything, tenant tokens only for their own tenant."
        },
        "security": [{ "bearer": [] }],
        "paths": {
            "/api/v1/openapi.json": { "get": { "summary": "This document", "security": [], "responses": { "200": { "description": "the document" } } } },
            "/api/v1/whoami": { "get": op("The caller's token name and role", "200", reference("Principal")) },
            "/api/v1/plugins": { "get": op("Plugins the caller may see, with their versions", "200", json!({ "type": "object" })) },
            "/api/v1/versions": {
                "get": with_params(
                    op("Versions the caller may see, newest first", "200", json!({ "type": "object", "properties": { "versions": { "type": "array", "items": reference("PluginVersion") } } })),
                    json!([{ "name": "name", "in": "query", "schema": { "type": "string" } }])
                ),
                "post": upload
            },
            "/api/v1/versions/{version}": { "get": on_version(op("One version's metadata", "200", reference("PluginVersion"))) },
            "/api/v1/versions/{version}/component": { "get": on_version(json!({ "summary": "The component", "responses": { "200": { "description": "the .wasm", "content": { "application/wasm": {} } } } })) },
            "/api/v1/versions/{version}/schemas": { "get": on_version(op("What the version declares: the JSON Schemas hosts hold its payloads and configurations to (null: none)", "200", json!({ "type": "object", "properties": { "plugin": { "type": "string" }, "input_schema": { "type": ["object", "null"] }, "config_schema": { "type": ["object", "null"] } } }))) },
            "/api/v1/versions/{version}/golden": { "get": on_version(op("The golden cases uploaded with the version", "200", json!({ "type": "object" }))) },
            "/api/v1/versions/{version}/golden/run": { "post": on_version(op("Run the version's golden cases", "200", json!({ "type": "object", "properties": { "passed": { "type": "boolean" }, "cases": { "type": "array", "items": reference("CaseResult") } } }))) },
            "/api/v1/versions/{version}/test": { "post": on_version(with_body(
                op("Run events through the version as the host would", "200", reference("TestRunReport")),
                json!({
                    "type": "object",
                    "required": ["events"],
                    "properties": {
                        "tenant": { "type": "string", "default": "default" },
                        "config": { "type": "object", "additionalProperties": { "type": "string" } },
                        "processing_time": { "type": "string", "format": "date-time" },
                        "events": { "type": "array", "items": { "type": "object" } }
                    }
                })
            )) },
            "/api/v1/bindings": { "get": op("The generation and the bindings the caller may see", "200", json!({ "type": "object", "properties": { "generation": { "type": "integer" }, "bindings": { "type": "array", "items": reference("Binding") } } })) },
            "/api/v1/bindings/{tenant}/{event_type}": { "put": activate },
            "/api/v1/bindings/{tenant}/{event_type}/rollback": { "post": rollback },
            "/api/v1/shadows": { "get": op("Shadows of the bindings the caller may see, with how the candidate compares", "200", json!({ "type": "object", "properties": { "shadows": { "type": "array", "items": reference("Shadow") } } })) },
            "/api/v1/shadows/{tenant}/{event_type}": { "put": start_shadow, "delete": discard_shadow },
            "/api/v1/shadows/{tenant}/{event_type}/promote": { "post": promote_shadow },
            "/api/v1/tail/{tenant}/{event_type}": { "get": tail },
            "/api/v1/audit": { "get": with_params(op("Changes, newest first (a tenant sees its own)", "200", json!({ "type": "object" })), limit.clone()) },
            "/api/v1/denied": { "get": with_params(op("Denied actions, newest first (admins)", "200", json!({ "type": "object" })), limit) },
            "/api/v1/tokens": {
                "get": op("API tokens, without their secrets (admins)", "200", json!({ "type": "object" })),
                "post": with_body(
                    op("Create a token; the answer is the only time it is shown (admins)", "201", json!({ "type": "object" })),
                    json!({ "type": "object", "required": ["name"], "properties": { "name": { "type": "string" }, "tenant": { "type": "string", "description": "none: an admin token" } } })
                )
            },
            "/api/v1/tokens/{name}": { "delete": with_params(
                json!({ "summary": "Revoke a token (admins)", "responses": { "204": { "description": "revoked" }, "404": { "$ref": "#/components/responses/Error" } } }),
                json!([path_param("name", "the token's name")])
            ) }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "responses": {
                "Error": {
                    "description": "what went wrong and what to do",
                    "content": { "application/json": { "schema": { "type": "object", "properties": { "error": { "type": "string" } } } } }
                }
            },
            "schemas": {
                "Principal": { "type": "object", "properties": { "name": { "type": "string" }, "role": { "enum": ["admin", "tenant"] }, "tenant": { "type": "string" } } },
                "PluginVersion": { "type": "object", "properties": {
                    "name": { "type": "string" }, "version": { "type": "string" }, "sha256": { "type": "string" },
                    "size": { "type": "integer" }, "contract": { "type": "string" },
                    "event_types": { "type": "array", "items": { "type": "string" } },
                    "uploader": { "type": "string" }, "uploaded_at": { "type": "string" }, "notes": { "type": "string" },
                    "tenant": { "type": ["string", "null"] }
                } },
                "Binding": { "type": "object", "properties": {
                    "key": { "type": "object", "properties": { "tenant": { "type": ["string", "null"] }, "event_type": { "type": "string" } } },
                    "sha256": { "type": "string" },
                    "config": { "type": "array", "items": { "type": "array", "items": { "type": "string" } } },
                    "limits": { "type": "object", "properties": { "memory_mib": { "type": "integer" }, "cpu_ms": { "type": "integer" } } },
                    "revision": { "type": "integer" }, "activated_by": { "type": "string" }, "activated_at": { "type": "string" }
                } },
                "Shadow": { "type": "object", "properties": {
                    "key": { "type": "object" }, "sha256": { "type": "string" }, "candidate": { "type": "string" },
                    "share_percent": { "type": "integer" }, "config": { "type": "array" },
                    "tally": { "type": "object", "properties": {
                        "compared": { "type": "integer" }, "identical": { "type": "integer" },
                        "differing": { "type": "integer" }, "candidate_rejected": { "type": "integer" },
                        "samples": { "type": "array", "items": { "type": "object", "properties": {
                            "sequence_number": { "type": "string" }, "active": { "type": "string" }, "candidate": { "type": "string" }
                        } } }
                    } }
                } },
                "CaseResult": { "type": "object", "properties": { "name": { "type": "string" }, "passed": { "type": "boolean" }, "problems": { "type": "array", "items": { "type": "string" } }, "elapsed_micros": { "type": "integer" } } },
                "TestRunReport": { "type": "object", "properties": {
                    "plugin": { "type": "string" },
                    "outcomes": { "type": "array", "items": { "type": "object", "properties": { "outcome": { "enum": ["enrich", "emit", "drop", "reject"] } } } },
                    "elapsed_micros": { "type": "integer" }, "peak_memory_bytes": { "type": "integer" }, "fault": { "type": ["string", "null"] },
                    "printed": { "type": "array", "items": { "type": "object", "properties": { "stream": { "enum": ["stdout", "stderr"] }, "text": { "type": "string" } } } }
                } }
            }
        }
    })
}
