//! The plugin commands (`weir plugin run|test|info|new`), driven as a user
//! would, on the real compiled plugins.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{run_with_stdin, text, wasm, weir};
use serde_json::Value;
use weir_testkit::build::{EXAMPLE_PLUGINS, repo_root};

#[test]
fn plugin_run_marks_every_outcome_and_accounts_for_every_line() {
    let input = [
        r#"{"event_type":"transaction","timestamp":"2024-01-15T10:30:00+01:00","amount":1500}"#,
        r#"{"event_type":"transaction","timestamp":"2024-01-15T10:30:00Z"}"#,
        r#"{"event_type":"transaction","timestamp":"2024-01-15T10:30:00Z","amount":"#,
        r#"[1,2,3]"#,
        r#"{"amount":5}"#,
        r#"{"event_type":"transaction","timestamp":"yesterday","amount":5}"#,
        "",
    ]
    .join("\n");
    let plugin = wasm("transaction");
    let args = [
        "plugin",
        "run",
        &plugin,
        "--tenant",
        "acme",
        "--config",
        "currency=EUR",
    ];
    let output = run_with_stdin(weir(&args), &input);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let lines: Vec<Value> = text(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kind = |v: &Value| v.as_object().unwrap().keys().next().unwrap().clone();
    let kinds: Vec<String> = lines.iter().map(kind).collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "output").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "rejected").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "invalid").count(),
        4,
        "{kinds:?}"
    );

    let out = lines.iter().find(|l| l.get("output").is_some()).unwrap();
    let enriched = &out["output"]["enriched_data"];
    assert_eq!(enriched["amount_category"], "large");
    assert_eq!(enriched["is_high_value"], true);
    assert_eq!(
        enriched["currency"], "EUR",
        "the tenant config reached the plugin"
    );
    assert_eq!(enriched["transaction_date"], "2024-01-15");
    assert_eq!(out["output"]["metadata"]["plugin"], "transaction@1.0.0");
    assert_eq!(out["output"]["record_id"].as_str().unwrap().len(), 64);

    let rejected = lines.iter().find(|l| l.get("rejected").is_some()).unwrap();
    assert_eq!(rejected["rejected"]["line"], 2);
    assert_eq!(rejected["rejected"]["kind"], "missing-field");
    let invalid: Vec<String> = lines
        .iter()
        .filter_map(|l| l.get("invalid"))
        .map(|i| i["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        invalid.iter().any(|m| m.contains("not JSON")),
        "{invalid:?}"
    );
    assert!(
        invalid.iter().any(|m| m.contains("not a JSON object")),
        "{invalid:?}"
    );
    assert!(
        invalid.iter().any(|m| m.contains("event_type")),
        "{invalid:?}"
    );
    assert!(
        invalid.iter().any(|m| m.contains("`yesterday`")),
        "{invalid:?}"
    );

    let summary = text(&output.stderr);
    assert!(
        summary.contains("6 events: 1 outputs, 0 dropped, 1 rejected, 4 invalid"),
        "{summary}"
    );
    assert!(summary.contains("events/s"), "{summary}");
}

#[test]
fn plugin_run_refuses_empty_input_and_bad_flags() {
    let plugin = wasm("metric");
    let output = run_with_stdin(weir(&["plugin", "run", &plugin]), "");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("no events"),
        "{}",
        text(&output.stderr)
    );
    let output = run_with_stdin(weir(&["plugin", "run", &plugin, "--config", "novalue"]), "");
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("not key=value"),
        "{}",
        text(&output.stderr)
    );
}

/// `--update` rewrites only what the plugin no longer meets: a stale
/// enrichment and a stale rejection kind are rewritten from the outcomes, a
/// met fragment stays a fragment, and the file then passes.
#[test]
fn plugin_test_update_rewrites_only_the_expectations_no_longer_met() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.json");
    let event = r#"{"event_type": "transaction", "timestamp": "2024-01-15T10:30:00Z""#;
    std::fs::write(
        &cases,
        format!(
            r#"{{"cases": [{{"name": "mixed", "tenant": "acme",
                "events": [{event}, "amount": 50}}, {event}}}, {event}, "amount": "x"}}],
                "expect": [
                    {{"enrich": {{"amount_category": "large"}}}},
                    {{"reject": {{"kind": "missing-field", "message_contains": "amount"}}}},
                    {{"reject": {{"kind": "unsupported"}}}}
                ]}}]}}"#
        ),
    )
    .unwrap();
    let path = cases.to_str().unwrap();
    let output = weir(&["plugin", "test", &wasm("transaction"), path, "--update"])
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains("rewrote case `mixed`, event 1")
            && stdout.contains("rewrote case `mixed`, event 3")
            && !stdout.contains("event 2")
            && stdout.contains("2 expectation(s) rewritten"),
        "{stdout}"
    );
    let updated: Value = serde_json::from_str(&std::fs::read_to_string(&cases).unwrap()).unwrap();
    let case = &updated["cases"][0];
    assert_eq!(case["tenant"], "acme", "the case's other keys stay");
    assert_eq!(case["expect"][0]["enrich"]["amount_category"], "small");
    assert_eq!(
        case["expect"][0]["enrich"]["transaction_date"],
        "2024-01-15"
    );
    assert_eq!(
        case["expect"][1],
        serde_json::json!({"reject": {"kind": "missing-field", "message_contains": "amount"}}),
        "a met expectation is kept as written"
    );
    assert_eq!(case["expect"][2]["reject"]["kind"], "invalid-field");
    let again = weir(&["plugin", "test", &wasm("transaction"), path])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", text(&again.stdout));
    let unchanged = weir(&["plugin", "test", &wasm("transaction"), path, "--update"])
        .output()
        .unwrap();
    assert!(text(&unchanged.stdout).contains("nothing rewritten"));
}

#[test]
fn plugin_test_passes_the_examples_and_fails_with_a_readable_diff() {
    for name in EXAMPLE_PLUGINS {
        let cases = repo_root()
            .join("plugins/examples")
            .join(name)
            .join("golden.json");
        let output = weir(&["plugin", "test", &wasm(name), cases.to_str().unwrap()])
            .output()
            .unwrap();
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "{name}: {stdout}{}",
            text(&output.stderr)
        );
        assert!(stdout.trim_end().ends_with(" passed, 0 failed"), "{stdout}");
    }

    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.json");
    std::fs::write(
        &wrong,
        r#"{"cases": [{"name": "wrong category", "budget": {"max_memory_bytes": 1024},
            "events": [{"event_type": "metric", "timestamp": "2024-01-15T10:30:00Z", "value": 50}],
            "expect": [{"enrich": {"metric_date": "2024-01-15", "value_range": "high", "is_anomaly": false}}]}]}"#,
    )
    .unwrap();
    let output = weir(&["plugin", "test", &wasm("metric"), wrong.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL wrong category"), "{stdout}");
    assert!(
        stdout.contains("field `value_range`: expected \"high\", got \"normal\""),
        "{stdout}"
    );
    assert!(stdout.contains("over the budget of 1024 bytes"), "{stdout}");
    assert!(stdout.contains("0 passed, 1 failed"), "{stdout}");

    std::fs::write(
        &wrong,
        r#"{"cases": [{"name": "x", "events": [], "expect": [], "surprise": 1}]}"#,
    )
    .unwrap();
    let output = weir(&["plugin", "test", &wasm("metric"), wrong.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("surprise"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn plugin_info_describes_or_says_why_it_refuses() {
    let output = weir(&["plugin", "info", &wasm("sensor")]).output().unwrap();
    assert!(output.status.success());
    let info: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(info["name"], "sensor");
    assert_eq!(info["event_types"][0], "sensor_reading");
    assert_eq!(
        info["input_schema"],
        Value::Null,
        "the sensor declares none"
    );
    let output = weir(&["plugin", "info", &wasm("transaction")])
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        info["input_schema"]["required"],
        serde_json::json!(["amount"]),
        "schemas print as JSON: {info}"
    );
    assert_eq!(info["config_schema"]["additionalProperties"], false);

    let output = weir(&["plugin", "info", &wasm("foreign")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("foreign.wasm") && stderr.contains("weir:plugin/enricher@0.1.0"),
        "{stderr}"
    );
}

fn cargo(dir: &Path, args: &[&str], target_dir: &Path) {
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(dir)
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir)
        .env_remove("RUSTFLAGS")
        .status()
        .unwrap();
    assert!(status.success(), "cargo {args:?} in {}", dir.display());
}

#[test]
fn a_scaffolded_plugin_builds_and_passes_its_own_tests() {
    let dir = tempfile::tempdir().unwrap();
    let crate_dir = dir.path().join("order-enricher");
    let output = weir(&[
        "plugin",
        "new",
        "order-enricher",
        "--event-type",
        "order",
        "--dir",
        crate_dir.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    // Share the repository plugins' target directory: the SDK's dependencies are built there.
    let target: PathBuf = repo_root().join("plugins/target");
    cargo(&crate_dir, &["test", "--quiet"], &target);
    cargo(
        &crate_dir,
        &["build", "--quiet", "--release", "--target", "wasm32-wasip2"],
        &target,
    );
    let component = target.join("wasm32-wasip2/release/order_enricher.wasm");
    let cases = crate_dir.join("golden.json");
    let output = weir(&[
        "plugin",
        "test",
        component.to_str().unwrap(),
        cases.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", text(&output.stdout));
    assert!(
        text(&output.stdout).contains("3 passed, 0 failed"),
        "{}",
        text(&output.stdout)
    );

    let again = weir(&[
        "plugin",
        "new",
        "order-enricher",
        "--dir",
        crate_dir.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(again.status.code(), Some(2), "refuses to overwrite");
    let bad = weir(&["plugin", "new", "Bad_Name"]).output().unwrap();
    assert!(
        text(&bad.stderr).contains("lowercase"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn plugin_run_shows_what_the_plugin_prints_and_keeps_stdout_for_outcomes() {
    let input = r#"{"event_type":"hostile","timestamp":"2024-01-15T10:30:00Z","attack":"print"}"#;
    let mut command = weir(&["plugin", "run", &wasm("hostile")]);
    command.env_remove("WEIR_LOG");
    let output = run_with_stdin(command, input);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let outcomes = text(&output.stdout);
    assert_eq!(outcomes.lines().count(), 1, "{outcomes}");
    assert!(outcomes.contains(r#""printed":true"#), "{outcomes}");
    let logs = text(&output.stderr);
    for line in ["to stdout, line 1", "to stdout, line 2", "to stderr"] {
        assert!(logs.contains(line), "{line} missing from the logs: {logs}");
    }
}
