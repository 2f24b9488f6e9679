//! Who may do what: every API operation (every one the OpenAPI document
//! lists) called as admin, tenant A (acme), tenant B (globex) and without a
//! token, with the exact status each must get; then what each may see.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::{Answer, Fixture, component, fixture, golden};

struct Call {
    method: &'static str,
    /// The OpenAPI path it exercises.
    template: &'static str,
    path: &'static str,
    body: Option<Value>,
    /// Admin, tenant A, tenant B, no token.
    expect: [u16; 4],
}

fn call(
    method: &'static str,
    template: &'static str,
    path: &'static str,
    body: Option<Value>,
    expect: [u16; 4],
) -> Call {
    Call {
        method,
        template,
        path,
        body,
        expect,
    }
}

async fn setup(f: &Fixture) {
    let shared = f
        .upload(
            &f.admin,
            &component("transaction"),
            Some(&golden("transaction")),
            None,
        )
        .await;
    assert_eq!(shared.status, StatusCode::CREATED);
    f.upload(&f.admin, &component("tagger"), None, None).await;
    // Tenant A's own plugin: no tenant field, so it is acme's.
    let own = f
        .upload(&f.tenant_a, &component("metric"), None, None)
        .await;
    assert_eq!(own.json()["version"]["tenant"], "acme", "{}", own.text());
    for version in ["transaction@1.0.0", "tagger@2.0.0"] {
        let answer = f
            .api(
                "PUT",
                "/api/v1/bindings/acme/transaction",
                Some(&f.admin),
                Some(json!({ "version": version })),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    f.api(
        "PUT",
        "/api/v1/bindings/globex/transaction",
        Some(&f.admin),
        Some(json!({ "version": "transaction@1.0.0" })),
    )
    .await;
    f.api(
        "POST",
        "/api/v1/tokens",
        Some(&f.admin),
        Some(json!({ "name": "throwaway" })),
    )
    .await;
}

async fn upload_as(f: &Fixture, token: Option<&str>) -> Answer {
    match token {
        Some(token) => {
            f.upload(token, &component("user-action"), None, Some("acme"))
                .await
        }
        None => f.api("POST", "/api/v1/versions", None, None).await,
    }
}

#[tokio::test]
async fn every_operation_answers_each_role_as_it_must() {
    let f = fixture().await;
    setup(&f).await;
    let calls = vec![
        call(
            "GET",
            "/api/v1/openapi.json",
            "/api/v1/openapi.json",
            None,
            [200, 200, 200, 200],
        ),
        call(
            "GET",
            "/api/v1/whoami",
            "/api/v1/whoami",
            None,
            [200, 200, 200, 401],
        ),
        call(
            "GET",
            "/api/v1/plugins",
            "/api/v1/plugins",
            None,
            [200, 200, 200, 401],
        ),
        call(
            "GET",
            "/api/v1/versions",
            "/api/v1/versions",
            None,
            [200, 200, 200, 401],
        ),
        // Uploads for tenant acme (the first adds it, then it is already there).
        call("POST", "/api/v1/versions", "", None, [201, 200, 403, 401]),
        // Tenant A's own version: hidden from B.
        call(
            "GET",
            "/api/v1/versions/{version}",
            "/api/v1/versions/metric@1.0.0",
            None,
            [200, 200, 404, 401],
        ),
        call(
            "GET",
            "/api/v1/versions/{version}/component",
            "/api/v1/versions/metric@1.0.0/component",
            None,
            [200, 200, 404, 401],
        ),
        call(
            "GET",
            "/api/v1/versions/{version}/schemas",
            "/api/v1/versions/metric@1.0.0/schemas",
            None,
            [200, 200, 404, 401],
        ),
        call(
            "GET",
            "/api/v1/versions/{version}/golden",
            "/api/v1/versions/transaction@1.0.0/golden",
            None,
            [200, 200, 200, 401],
        ),
        call(
            "POST",
            "/api/v1/versions/{version}/golden/run",
            "/api/v1/versions/transaction@1.0.0/golden/run",
            None,
            [200, 200, 200, 401],
        ),
        call(
            "POST",
            "/api/v1/versions/{version}/test",
            "/api/v1/versions/transaction@1.0.0/test",
            Some(
                json!({ "tenant": "acme", "events": [{ "event_type": "transaction", "amount": 1, "timestamp": "2024-01-15T10:30:00Z" }] }),
            ),
            [200, 200, 403, 401],
        ),
        call(
            "GET",
            "/api/v1/bindings",
            "/api/v1/bindings",
            None,
            [200, 200, 200, 401],
        ),
        call(
            "PUT",
            "/api/v1/bindings/{tenant}/{event_type}",
            "/api/v1/bindings/acme/transaction",
            Some(json!({ "version": "tagger@2.0.0" })),
            [200, 200, 403, 401],
        ),
        // The default binding is the operators'.
        call(
            "PUT",
            "/api/v1/bindings/{tenant}/{event_type}",
            "/api/v1/bindings/*/transaction",
            Some(json!({ "version": "transaction@1.0.0" })),
            [200, 403, 403, 401],
        ),
        // B may not bind A's own version even for itself: it cannot see it.
        call(
            "PUT",
            "/api/v1/bindings/{tenant}/{event_type}",
            "/api/v1/bindings/globex/metric",
            Some(json!({ "version": "metric@1.0.0" })),
            [200, 403, 404, 401],
        ),
        call(
            "POST",
            "/api/v1/bindings/{tenant}/{event_type}/rollback",
            "/api/v1/bindings/acme/transaction/rollback",
            None,
            [200, 200, 403, 401],
        ),
        call(
            "GET",
            "/api/v1/shadows",
            "/api/v1/shadows",
            None,
            [200, 200, 200, 401],
        ),
        call(
            "GET",
            "/api/v1/tail/{tenant}/{event_type}",
            "/api/v1/tail/acme/transaction",
            None,
            [200, 200, 403, 401],
        ),
        call(
            "PUT",
            "/api/v1/shadows/{tenant}/{event_type}",
            "/api/v1/shadows/acme/transaction",
            Some(json!({ "version": "tagger@2.0.0", "share_percent": 50 })),
            [200, 200, 403, 401],
        ),
        // The admin promotes it, ending it: tenant A, allowed, finds none.
        call(
            "POST",
            "/api/v1/shadows/{tenant}/{event_type}/promote",
            "/api/v1/shadows/acme/transaction/promote",
            None,
            [200, 404, 403, 401],
        ),
        call(
            "PUT",
            "/api/v1/shadows/{tenant}/{event_type}",
            "/api/v1/shadows/*/transaction",
            Some(json!({ "version": "tagger@2.0.0", "share_percent": 5 })),
            [200, 403, 403, 401],
        ),
        call(
            "DELETE",
            "/api/v1/shadows/{tenant}/{event_type}",
            "/api/v1/shadows/*/transaction",
            None,
            [200, 403, 403, 401],
        ),
        call(
            "GET",
            "/api/v1/audit",
            "/api/v1/audit",
            None,
            [200, 200, 200, 401],
        ),
        call(
            "GET",
            "/api/v1/denied",
            "/api/v1/denied",
            None,
            [200, 403, 403, 401],
        ),
        call(
            "GET",
            "/api/v1/tokens",
            "/api/v1/tokens",
            None,
            [200, 403, 403, 401],
        ),
        call(
            "POST",
            "/api/v1/tokens",
            "/api/v1/tokens",
            Some(json!({ "name": "made-in-the-matrix" })),
            [201, 403, 403, 401],
        ),
        call(
            "DELETE",
            "/api/v1/tokens/{name}",
            "/api/v1/tokens/throwaway",
            None,
            [204, 403, 403, 401],
        ),
    ];

    // The matrix covers every documented operation.
    let doc = f
        .api("GET", "/api/v1/openapi.json", None, None)
        .await
        .json();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let covered: BTreeSet<(String, String)> = calls
        .iter()
        .map(|c| (c.method.to_owned(), c.template.to_owned()))
        .collect();
    assert_eq!(
        documented, covered,
        "the matrix and the OpenAPI document list the same operations"
    );

    let callers = [
        ("admin", Some(f.admin.as_str())),
        ("tenant A", Some(f.tenant_a.as_str())),
        ("tenant B", Some(f.tenant_b.as_str())),
        ("no token", None),
    ];
    let denied_before = f.console.access.denied(1000).await.unwrap().len();
    let mut denials = 0;
    for c in &calls {
        for ((who, token), expected) in callers.iter().zip(c.expect) {
            let answer = if c.template == "/api/v1/versions" && c.method == "POST" {
                upload_as(&f, *token).await
            } else {
                f.api(c.method, c.path, *token, c.body.clone()).await
            };
            assert_eq!(
                answer.status.as_u16(),
                expected,
                "{} {} as {who}: {}",
                c.method,
                c.path,
                answer.text()
            );
            if matches!(expected, 401 | 403)
                || (expected == 404 && who == &"tenant B" && c.path.contains("metric"))
            {
                denials += 1;
            }
        }
    }
    // Every refusal is in the log of denied actions, with who it was.
    let denied = f.console.access.denied(1000).await.unwrap();
    assert_eq!(denied.len() - denied_before, denials);
    assert!(denied.iter().any(|d| d.who == "globex-ci"));
    assert!(denied.iter().any(|d| d.who == "anonymous"));
}

fn names(answer: &Answer, list: &str, field: &str) -> BTreeSet<String> {
    answer.json()[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v[field]
                .as_str()
                .map_or_else(|| v[field].to_string(), str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn each_tenant_sees_the_shared_things_and_its_own_only() {
    let f = fixture().await;
    setup(&f).await;
    let versions_of = |token: String| {
        let f = &f;
        async move {
            names(
                &f.api("GET", "/api/v1/versions", Some(&token), None).await,
                "versions",
                "name",
            )
        }
    };
    let all: BTreeSet<String> = ["metric", "tagger", "transaction"].map(String::from).into();
    assert_eq!(versions_of(f.admin.clone()).await, all);
    assert_eq!(versions_of(f.tenant_a.clone()).await, all);
    let shared: BTreeSet<String> = ["tagger", "transaction"].map(String::from).into();
    assert_eq!(versions_of(f.tenant_b.clone()).await, shared);

    let bindings = f
        .api("GET", "/api/v1/bindings", Some(&f.tenant_b), None)
        .await
        .json();
    for b in bindings["bindings"].as_array().unwrap() {
        assert_ne!(b["key"]["tenant"], "acme", "B sees no binding of A: {b}");
    }
    let audit = f
        .api("GET", "/api/v1/audit", Some(&f.tenant_b), None)
        .await
        .json();
    let subjects: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert!(subjects.contains(&"globex/transaction"), "{subjects:?}");
    assert!(
        subjects
            .iter()
            .all(|s| !s.starts_with("acme/") && *s != "metric@1.0.0"),
        "{subjects:?}"
    );
    let audit_a = f
        .api("GET", "/api/v1/audit", Some(&f.tenant_a), None)
        .await
        .json();
    assert!(
        audit_a["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["subject"] == "metric@1.0.0")
    );

    // A revoked token no longer works.
    f.api(
        "POST",
        "/api/v1/tokens",
        Some(&f.admin),
        Some(json!({ "name": "short-lived", "tenant": "globex" })),
    )
    .await;
    let created = f
        .api(
            "POST",
            "/api/v1/tokens",
            Some(&f.admin),
            Some(json!({ "name": "short-lived-2", "tenant": "globex" })),
        )
        .await
        .json();
    let token = created["token"].as_str().unwrap().to_owned();
    assert_eq!(created["tenant"], "globex");
    assert_eq!(
        f.api("GET", "/api/v1/whoami", Some(&token), None)
            .await
            .status,
        StatusCode::OK
    );
    f.api(
        "DELETE",
        "/api/v1/tokens/short-lived-2",
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(
        f.api("GET", "/api/v1/whoami", Some(&token), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Tokens are listed without their secrets, and stored hashed.
    let listed = f
        .api("GET", "/api/v1/tokens", Some(&f.admin), None)
        .await
        .text();
    assert!(!listed.contains("weir_"));
    let needle = f.admin.as_bytes();
    for entry in std::fs::read_dir(f.dir.path().join("state")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("console.db")
        {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "the token itself is in {}",
                path.display()
            );
        }
    }
}
