//! The REST API through the router: uploads checked as a host would,
//! activation with revisions, rollback, the audit log, and the OpenAPI
//! document (test runs: `test_runs`).

use axum::http::StatusCode;
use serde_json::json;
use weir_console::ConsoleSettings;

use crate::common::{component, fixture, fixture_on, fixture_with, golden};

#[tokio::test]
async fn uploads_pass_the_hosts_checks_or_are_refused_with_a_reason() {
    let f = fixture().await;
    let transaction = component("transaction");

    let first = f
        .upload(&f.admin, &transaction, Some(&golden("transaction")), None)
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
    let body = first.json();
    assert_eq!(body["version"]["name"], "transaction");
    assert_eq!(body["version"]["uploader"], "root");
    assert_eq!(body["version"]["tenant"], serde_json::Value::Null);
    assert!(
        body["golden"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["passed"] == true)
    );
    assert!(!body["golden"].as_array().unwrap().is_empty());

    // The same component again: accepted, nothing added.
    let again = f.upload(&f.admin, &transaction, None, None).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["added"], false);

    // Not a component at all.
    let junk = f
        .upload(&f.admin, b"\0asm but not really", None, None)
        .await;
    assert_eq!(junk.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        junk.json()["error"]
            .as_str()
            .unwrap()
            .contains("not a plugin a host would run")
    );

    // A component that escapes the sandbox's imports: the host refuses it, so the console does.
    let foreign = f.upload(&f.admin, &component("foreign"), None, None).await;
    assert_eq!(
        foreign.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        foreign.text()
    );

    // Golden cases that fail: refused, naming the case.
    let wrong = r#"{"cases": [{"name": "wrong on purpose",
        "events": [{"event_type": "user_action", "action": "login", "timestamp": "2024-01-15T10:30:00Z"}],
        "expect": [{"enrich": {"tag": "red"}}]}]}"#;
    let failed = f
        .upload(&f.admin, &component("tagger"), Some(wrong), None)
        .await;
    assert_eq!(failed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        failed.json()["error"]
            .as_str()
            .unwrap()
            .contains("wrong on purpose"),
        "{}",
        failed.text()
    );

    // A case file that is not one.
    let bad = f
        .upload(&f.admin, &component("tagger"), Some("{\"cases\": 3}"), None)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Nothing refused was recorded.
    let versions = f
        .api("GET", "/api/v1/versions", Some(&f.admin), None)
        .await
        .json();
    assert_eq!(versions["versions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn uploads_over_the_size_limit_are_refused_clearly() {
    let f = fixture_with(ConsoleSettings {
        max_upload_bytes: 64 * 1024,
        ..Default::default()
    })
    .await;
    let big = vec![0u8; 256 * 1024];
    let answer = f.upload(&f.admin, &big, None, None).await;
    assert_eq!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        answer.text()
    );
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("larger than the console takes")
    );
}

#[tokio::test]
async fn activations_are_revisioned_conflicts_refused_rollbacks_audited() {
    let f = fixture().await;
    f.upload(&f.admin, &component("transaction"), None, None)
        .await;
    f.upload(&f.admin, &component("tagger"), None, None).await;
    let put = |version: &str, expected: Option<u64>| {
        let config = if version.starts_with("tagger") {
            json!({ "tag": "blue" })
        } else {
            json!({ "currency": "EUR" })
        };
        json!({ "version": version, "config": config, "expected_revision": expected })
    };
    let path = "/api/v1/bindings/acme/transaction";

    let first = f
        .api(
            "PUT",
            path,
            Some(&f.admin),
            Some(put("transaction@1.0.0", Some(0))),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.json()["revision"], 1);
    // Expecting it to be new when it is not: a conflict, nothing changed.
    let stale = f
        .api(
            "PUT",
            path,
            Some(&f.admin),
            Some(put("tagger@2.0.0", Some(0))),
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert!(
        stale.json()["error"]
            .as_str()
            .unwrap()
            .contains("reload and try again")
    );
    let second = f
        .api(
            "PUT",
            path,
            Some(&f.admin),
            Some(put("tagger@2.0.0", Some(1))),
        )
        .await;
    assert_eq!(second.json()["revision"], 2);
    // A version that does not handle the event type.
    let metric = f
        .upload(&f.admin, &component("metric"), None, None)
        .await
        .json();
    let wrong = f
        .api(
            "PUT",
            path,
            Some(&f.admin),
            Some(put(metric["version"]["sha256"].as_str().unwrap(), None)),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    let limited = f
        .api(
            "PUT",
            "/api/v1/bindings/globex/transaction",
            Some(&f.admin),
            Some(
                json!({ "version": "tagger@2.0.0", "limits": { "memory_mib": 16, "cpu_ms": 200 } }),
            ),
        )
        .await;
    assert_eq!(
        limited.json()["limits"],
        json!({ "memory_mib": 16, "cpu_ms": 200 })
    );
    let excessive = f
        .api(
            "PUT",
            "/api/v1/bindings/globex/transaction",
            Some(&f.admin),
            Some(json!({ "version": "tagger@2.0.0", "limits": { "cpu_ms": 3_600_000 } })),
        )
        .await;
    assert_eq!(excessive.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        excessive.json()["error"]
            .as_str()
            .unwrap()
            .contains("cpu_ms")
    );
    let unknown = f
        .api("PUT", path, Some(&f.admin), Some(put("nothing@9", None)))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let back = f
        .api("POST", &format!("{path}/rollback"), Some(&f.admin), None)
        .await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.text());
    let bindings = f
        .api("GET", "/api/v1/bindings", Some(&f.admin), None)
        .await
        .json();
    let acme = &bindings["bindings"][0];
    assert_eq!(acme["revision"], 3);
    assert_eq!(acme["sha256"], first.json()["sha256"]);
    assert_eq!(acme["config"], json!([["currency", "EUR"]]));

    let audit = f
        .api("GET", "/api/v1/audit", Some(&f.admin), None)
        .await
        .json();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subject"] == "acme/transaction")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["rollback", "activate", "activate"]);
    assert_eq!(audit["entries"][0]["actor"], "root");
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let f = fixture().await;
    let doc = f
        .api("GET", "/api/v1/openapi.json", None, None)
        .await
        .json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15);
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            let concrete = path
                .replace("{version}", "transaction@1.0.0")
                .replace("{tenant}", "acme")
                .replace("{event_type}", "transaction")
                .replace("{name}", "nobody");
            let answer = f
                .api(&method.to_uppercase(), &concrete, Some(&f.admin), None)
                .await;
            // The router's own 404 and 405 have no JSON body; the handlers' do.
            let served = answer.status != StatusCode::METHOD_NOT_ALLOWED
                && (answer.status != StatusCode::NOT_FOUND || !answer.body.is_empty());
            assert!(served, "{method} {path}: {:?}", answer.status);
        }
    }
}

#[tokio::test]
async fn the_console_works_the_same_on_the_registry_on_aws() {
    use weir_aws::{AwsBackends, AwsClients, AwsSettings, provision};
    use weir_testkit::moto;
    let clients = AwsClients::for_local_endpoint(&moto::endpoint()).await;
    let settings = AwsSettings::with_prefix(&moto::unique_prefix());
    provision::create_all(&clients, &settings, 1).await.unwrap();
    let registry = AwsBackends::connect(&clients, &settings)
        .await
        .unwrap()
        .registry;
    let f = fixture_on(
        tempfile::tempdir().unwrap(),
        registry,
        ConsoleSettings::default(),
    )
    .await;

    let uploaded = f
        .upload(
            &f.admin,
            &component("transaction"),
            Some(&golden("transaction")),
            None,
        )
        .await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.text());
    assert_eq!(
        f.upload(&f.admin, &component("transaction"), None, None)
            .await
            .status,
        StatusCode::OK
    );
    let own = f
        .upload(&f.tenant_a, &component("tagger"), None, None)
        .await;
    assert_eq!(own.json()["version"]["tenant"], "acme");
    let path = "/api/v1/bindings/acme/transaction";
    for version in ["transaction@1.0.0", "tagger@2.0.0"] {
        let answer = f
            .api(
                "PUT",
                path,
                Some(&f.tenant_a),
                Some(json!({ "version": version })),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    }
    assert_eq!(
        f.api(
            "PUT",
            path,
            Some(&f.tenant_b),
            Some(json!({ "version": "tagger@2.0.0" }))
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let back = f
        .api("POST", &format!("{path}/rollback"), Some(&f.tenant_a), None)
        .await
        .json();
    assert_eq!(back["revision"], 3);
    let golden_run = f
        .api(
            "POST",
            "/api/v1/versions/transaction@1.0.0/golden/run",
            Some(&f.tenant_b),
            None,
        )
        .await
        .json();
    assert_eq!(golden_run["passed"], true);
    let b_versions = f
        .api("GET", "/api/v1/versions", Some(&f.tenant_b), None)
        .await
        .json();
    assert_eq!(
        b_versions["versions"].as_array().unwrap().len(),
        1,
        "B does not see A's tagger"
    );
}

#[tokio::test]
async fn a_shadow_is_started_compared_and_promoted_through_the_api() {
    use weir_core::registry::{Registry as _, ShadowSample, ShadowTally};
    use weir_testkit::registry_contract::acme;
    let f = fixture().await;
    f.upload(&f.admin, &component("transaction"), None, None)
        .await;
    f.upload(&f.admin, &component("tagger"), None, None).await;
    let binding = "/api/v1/bindings/acme/transaction";
    f.api(
        "PUT",
        binding,
        Some(&f.tenant_a),
        Some(json!({ "version": "transaction@1.0.0", "limits": { "memory_mib": 16, "cpu_ms": 200 } })),
    )
    .await;
    let shadow = "/api/v1/shadows/acme/transaction";
    let refused = f
        .api(
            "PUT",
            shadow,
            Some(&f.tenant_a),
            Some(json!({ "version": "tagger@2.0.0", "share_percent": 0 })),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let started = f
        .api(
            "PUT",
            shadow,
            Some(&f.tenant_a),
            Some(json!({ "version": "tagger@2.0.0", "share_percent": 25, "config": { "tag": "candidate" } })),
        )
        .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text());

    // What the hosts tallied (the pipeline's tests check the hosts' side).
    let acme = acme();
    let tally = ShadowTally {
        compared: 4,
        identical: 1,
        differing: 2,
        candidate_rejected: 1,
        samples: vec![ShadowSample {
            sequence_number: "42".into(),
            active: r#"{"outcome":"enrich"}"#.into(),
            candidate: r#"{"outcome":"reject"}"#.into(),
        }],
    };
    let sha = started.json()["sha256"].as_str().unwrap().to_owned();
    f.console
        .registry
        .add_shadow_tally(&acme, &sha, tally)
        .await
        .unwrap();
    let listed = f
        .api("GET", "/api/v1/shadows", Some(&f.tenant_a), None)
        .await
        .json();
    let entry = &listed["shadows"][0];
    assert_eq!(entry["candidate"], "tagger@2.0.0");
    assert_eq!(entry["share_percent"], 25);
    assert_eq!(entry["tally"]["compared"], 4);
    assert_eq!(entry["tally"]["samples"][0]["sequence_number"], "42");
    let others = f
        .api("GET", "/api/v1/shadows", Some(&f.tenant_b), None)
        .await
        .json();
    assert!(
        others["shadows"].as_array().unwrap().is_empty(),
        "B does not see A's shadow"
    );

    let promoted = f
        .api(
            "POST",
            &format!("{shadow}/promote"),
            Some(&f.tenant_a),
            None,
        )
        .await;
    assert_eq!(promoted.status, StatusCode::OK, "{}", promoted.text());
    let bindings = f
        .api("GET", "/api/v1/bindings", Some(&f.tenant_a), None)
        .await
        .json();
    let active = bindings["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["key"]["tenant"] == "acme")
        .unwrap()
        .clone();
    assert_eq!(active["sha256"], sha.as_str());
    assert_eq!(
        active["config"],
        json!([["tag", "candidate"]]),
        "with the candidate's configuration"
    );
    assert_eq!(
        active["limits"],
        json!({ "memory_mib": 16, "cpu_ms": 200 }),
        "and the binding's own limits"
    );
    let listed = f
        .api("GET", "/api/v1/shadows", Some(&f.tenant_a), None)
        .await
        .json();
    assert!(listed["shadows"].as_array().unwrap().is_empty());
    let audit = f
        .api("GET", "/api/v1/audit", Some(&f.tenant_a), None)
        .await
        .json();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["shadow-stop", "activate", "shadow-start"]);
    assert_eq!(
        f.api("DELETE", shadow, Some(&f.tenant_a), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_configuration_a_version_cannot_take_is_refused_before_it_is_bound() {
    let f = fixture().await;
    f.upload(&f.admin, &component("transaction"), None, None)
        .await;
    f.upload(&f.admin, &component("tagger"), None, None).await;
    let activate = |version: &str, config: serde_json::Value| {
        let body = json!({ "version": version, "config": config });
        f.api(
            "PUT",
            "/api/v1/bindings/acme/transaction",
            Some(&f.admin),
            Some(body),
        )
    };
    let refused = |answer: &crate::common::Answer, why: &str| {
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            answer.text()
        );
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(why), "no `{why}` in: {error}");
    };

    // The plugin's schema: a value of the wrong form, a key it does not know.
    let answer = activate(
        "transaction@1.0.0",
        json!({ "high_value_threshold": "lots" }),
    )
    .await;
    refused(&answer, "/high_value_threshold");
    refused(&answer, "does not take this configuration");
    let answer = activate("transaction@1.0.0", json!({ "threshold": "500" })).await;
    refused(&answer, "threshold");
    // The plugin's own check, without a schema: it refuses every batch.
    let answer = activate("tagger@2.0.0", json!({ "tag": "" })).await;
    refused(&answer, "refuses every batch under this configuration");
    refused(&answer, "`tag` may not be empty");
    // A shadow's candidate is checked as an activation is.
    let shadow = f
        .api(
            "PUT",
            "/api/v1/shadows/acme/transaction",
            Some(&f.admin),
            Some(
                json!({ "version": "tagger@2.0.0", "share_percent": 10, "config": { "tag": "" } }),
            ),
        )
        .await;
    refused(&shadow, "`tag` may not be empty");
    let bindings = f
        .api("GET", "/api/v1/bindings", Some(&f.admin), None)
        .await
        .json();
    assert_eq!(bindings["bindings"], json!([]), "nothing bound");
    assert_eq!(bindings["generation"], 0);

    let answer = activate(
        "transaction@1.0.0",
        json!({ "high_value_threshold": "500", "currency": "EUR" }),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["revision"], 1);
}
