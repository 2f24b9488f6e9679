//! Test runs of a version through the REST API: each event's outcome, what
//! the plugin printed, and its golden cases run again.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::{component, fixture, golden};

#[tokio::test]
async fn a_test_run_shows_what_the_plugin_printed_and_a_panics_message() {
    let f = fixture().await;
    let uploaded = f.upload(&f.admin, &component("hostile"), None, None).await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.text());
    let sha = uploaded.json()["version"]["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = |attack: &str| json!({ "event_type": "hostile", "timestamp": "2024-01-15T10:30:00Z", "attack": attack });
    let path = format!("/api/v1/versions/{sha}/test");
    let printing = json!({ "events": [event("print")] });
    let report = f
        .api("POST", &path, Some(&f.admin), Some(printing))
        .await
        .json();
    assert_eq!(report["outcomes"][0]["outcome"], "enrich", "{report}");
    assert_eq!(
        report["printed"],
        json!([
            { "stream": "stdout", "text": "to stdout, line 1" },
            { "stream": "stdout", "text": "to stdout, line 2" },
            { "stream": "stderr", "text": "to stderr" }
        ])
    );
    let panicking = json!({ "events": [event("panic")] });
    let report = f
        .api("POST", &path, Some(&f.admin), Some(panicking))
        .await
        .json();
    let fault = report["fault"].as_str().unwrap();
    assert!(
        fault.contains("hostile plugin panics on purpose"),
        "{fault}"
    );
    assert!(
        report["printed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["stream"] == "stderr" && l["text"] == "hostile plugin panics on purpose"),
        "{report}"
    );
}

#[tokio::test]
async fn a_test_run_shows_each_events_outcome_and_golden_cases_run_again() {
    let f = fixture().await;
    let uploaded = f
        .upload(
            &f.admin,
            &component("transaction"),
            Some(&golden("transaction")),
            None,
        )
        .await
        .json();
    let sha = uploaded["version"]["sha256"].as_str().unwrap().to_owned();
    let run = json!({
        "tenant": "acme",
        "config": { "high_value_threshold": "500" },
        "events": [
            { "event_type": "transaction", "amount": 700, "timestamp": "2024-01-15T10:30:00Z" },
            { "event_type": "transaction", "timestamp": "2024-01-15T10:30:00Z" }
        ]
    });
    let report = f
        .api(
            "POST",
            &format!("/api/v1/versions/{sha}/test"),
            Some(&f.admin),
            Some(run),
        )
        .await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.text());
    let report = report.json();
    let outcomes = report["outcomes"].as_array().unwrap();
    assert_eq!(outcomes[0]["outcome"], "enrich");
    assert_eq!(
        outcomes[0]["fields"]["is_high_value"], true,
        "the tenant's threshold applies"
    );
    assert_eq!(outcomes[1]["outcome"], "reject");
    assert_eq!(outcomes[1]["kind"], "missing-field");
    assert!(
        outcomes[1]["message"]
            .as_str()
            .unwrap()
            .contains("does not match the input schema of transaction@"),
        "a test run screens payloads as hosts do: {report}"
    );

    // What the version declares, for whoever binds it.
    let schemas = f
        .api(
            "GET",
            &format!("/api/v1/versions/{sha}/schemas"),
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(schemas.status, StatusCode::OK, "{}", schemas.text());
    let schemas = schemas.json();
    assert_eq!(schemas["input_schema"]["required"], json!(["amount"]));
    assert_eq!(
        schemas["config_schema"]["additionalProperties"], false,
        "{schemas}"
    );

    // By name@version too; a broken event names itself.
    let broken = f
        .api(
            "POST",
            "/api/v1/versions/transaction@1.0.0/test",
            Some(&f.admin),
            Some(json!({ "events": [ [1, 2] ] })),
        )
        .await;
    assert_eq!(broken.status, StatusCode::BAD_REQUEST);
    assert!(
        broken.json()["error"]
            .as_str()
            .unwrap()
            .contains("test event 1")
    );

    let golden_run = f
        .api(
            "POST",
            &format!("/api/v1/versions/{sha}/golden/run"),
            Some(&f.admin),
            None,
        )
        .await
        .json();
    assert_eq!(golden_run["passed"], true);
    let stored = f
        .api(
            "GET",
            &format!("/api/v1/versions/{sha}/golden"),
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(stored.text(), golden("transaction"));
    let wasm = f
        .api(
            "GET",
            &format!("/api/v1/versions/{sha}/component"),
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(wasm.body, component("transaction"));
    assert_eq!(wasm.headers["content-type"], "application/wasm");
}
