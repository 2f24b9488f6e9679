//! The bootstrap binary's init against moto: everything set up before the
//! first event, and configuration errors named.

use std::process::Command;

use weir_aws::{AwsClients, AwsSettings, provision};
use weir_testkit::build::{EXAMPLE_PLUGINS, repo_plugin, shared_cache_dir};
use weir_testkit::moto;

/// The example plugins, as a function package ships them.
fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in EXAMPLE_PLUGINS {
        let from = repo_plugin(name);
        std::fs::copy(&from, dir.path().join(from.file_name().unwrap())).unwrap();
    }
    dir
}

fn bootstrap(settings: &AwsSettings, plugin_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bootstrap"));
    command
        .env("AWS_ENDPOINT_URL", moto::endpoint())
        .env("AWS_ACCESS_KEY_ID", "weir")
        .env("AWS_SECRET_ACCESS_KEY", "weir")
        .env("AWS_REGION", "us-east-1")
        .env("WEIR_STREAM", &settings.stream)
        .env("WEIR_RAW_BUCKET", &settings.raw_bucket)
        .env("WEIR_PROCESSED_BUCKET", &settings.processed_bucket)
        .env("WEIR_METADATA_TABLE", &settings.metadata_table)
        .env("WEIR_METRICS_TABLE", &settings.metrics_table)
        .env("WEIR_DEAD_LETTER_QUEUE", &settings.dead_letter_queue)
        .env("WEIR_REGISTRY_TABLE", &settings.registry_table)
        .env("WEIR_PLUGIN_DIR", plugin_dir)
        .env("WEIR_CACHE_DIR", shared_cache_dir())
        .env("WEIR_INIT_CHECK", "1");
    command
}

#[tokio::test]
async fn init_sets_up_clients_queue_and_plugins_once_and_reports_its_cost() {
    let clients = AwsClients::for_local_endpoint(&moto::endpoint()).await;
    let settings = AwsSettings::with_prefix(&moto::unique_prefix());
    provision::create_all(&clients, &settings, 1).await.unwrap();
    let plugins = plugin_dir();
    let output = bootstrap(&settings, plugins.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["init_ms"].as_f64().unwrap() > 0.0);
    assert!(report["rss_kib"].as_u64().unwrap() > 0);
    assert!(
        stderr.contains("\"ready\""),
        "a structured `ready` log line: {stderr}"
    );
}

#[tokio::test]
async fn a_missing_queue_or_a_bad_mode_fails_init_with_the_setting_named() {
    let settings = AwsSettings::with_prefix(&moto::unique_prefix());
    let plugins = plugin_dir();
    let output = bootstrap(&settings, plugins.path()).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("WEIR_DEAD_LETTER_QUEUE"), "{stderr}");

    let output = bootstrap(&settings, plugins.path())
        .env("WEIR_MODE", "three-stage")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("WEIR_MODE `three-stage`"), "{stderr}");
}

#[tokio::test]
async fn init_binds_what_the_registry_has_activated_over_the_shipped_plugins() {
    let clients = AwsClients::for_local_endpoint(&moto::endpoint()).await;
    let settings = AwsSettings::with_prefix(&moto::unique_prefix());
    provision::create_all(&clients, &settings, 1).await.unwrap();
    let plugins = plugin_dir();
    let run = || {
        let output = bootstrap(&settings, plugins.path()).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let before = run();
    assert_eq!(
        before["acme_transaction"], "transaction@1.0.0",
        "the shipped default"
    );
    assert_eq!(before["registry_generation"], 0);

    // An operator activates the tagger for acme in the registry on AWS.
    let backends = weir_aws::AwsBackends::connect(&clients, &settings)
        .await
        .unwrap();
    weir_testkit::registry_contract::bind_tagger_for_acme(&backends.registry).await;

    let after = run();
    assert_eq!(after["acme_transaction"], "tagger@2.0.0", "{after}");
    assert_eq!(after["registry_generation"], 1);
}

#[test]
fn the_deploy_template_configures_what_the_bootstrap_reads() {
    let template =
        std::fs::read_to_string(weir_testkit::build::repo_root().join("deploy/template.yaml"))
            .unwrap();
    // Every setting a function reads, and the seeds' event source mapping.
    for needle in [
        "WEIR_STREAM:",
        "WEIR_RAW_BUCKET:",
        "WEIR_PROCESSED_BUCKET:",
        "WEIR_METADATA_TABLE:",
        "WEIR_METRICS_TABLE:",
        "WEIR_REGISTRY_TABLE:",
        "WEIR_DEAD_LETTER_QUEUE:",
        "WEIR_REGISTRY_TTL_MS:",
        "WEIR_PLUGIN_DIR:",
        "WEIR_MODE:",
        "Runtime: provided.al2023",
        "Handler: bootstrap",
        "BatchSize: 100",
        "MaximumBatchingWindowInSeconds: 5",
        "ParallelizationFactor: 2",
        "MaximumRetryAttempts: 3",
        "BisectBatchOnFunctionError: true",
        "FunctionResponseTypes: [ReportBatchItemFailures]",
        "IndexName: ShardIndex",
        "MessageRetentionPeriod: 1209600",
        "AttributeName: ttl",
        "Mode: Active",
    ] {
        assert!(
            template.contains(needle),
            "deploy/template.yaml lacks `{needle}`"
        );
    }
    // The resource names the code defaults to, under the template's prefix.
    let defaults = AwsSettings::with_prefix("PREFIX");
    for name in [
        &defaults.stream,
        &defaults.metadata_table,
        &defaults.metrics_table,
        &defaults.checkpoints_table,
        &defaults.registry_table,
        &defaults.dead_letter_queue,
    ] {
        let templated = name.replace("PREFIX", "${NamePrefix}");
        assert!(
            template.contains(&templated),
            "deploy/template.yaml names no `{templated}`"
        );
    }
}
