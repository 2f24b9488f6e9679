//! Loading: what the host accepts, what it refuses and why, the compilation
//! cache, the circuit breaker and routing; and events reaching a plugin
//! intact. Real compiled components throughout.

use std::borrow::Cow;
use std::time::Duration;

use serde_json::json;
use weir_core::{Outcome, PluginEvent, Record, RejectionKind, StreamContext};
use weir_runtime::router::{Binding, Route, Router};
use weir_runtime::{BreakerSettings, Fault, Limits, LoadError, Runtime, RuntimeSettings};
use weir_testkit::build::repo_plugin;

fn runtime(settings: RuntimeSettings) -> Runtime {
    Runtime::new(settings).expect("runtime")
}

fn event(payload: serde_json::Value) -> PluginEvent<'static> {
    event_of("t", payload)
}

fn event_of(tenant: &str, payload: serde_json::Value) -> PluginEvent<'static> {
    let text = payload.to_string();
    let ctx = StreamContext {
        tenant,
        partition_key: "p",
        sequence_number: "1",
        arrival_time: "2024-01-15T10:30:00Z",
        processing_time: "2024-01-15T10:31:00Z",
    };
    PluginEvent::from_payload(&Record::parse(&text).unwrap(), ctx)
        .unwrap()
        .into_owned()
}

#[test]
fn a_foreign_component_is_refused_naming_what_is_missing() {
    let err = runtime(RuntimeSettings::default())
        .load_file(repo_plugin("foreign"))
        .unwrap_err();
    assert!(
        matches!(err, LoadError::UnsupportedContract { .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("other:thing/greeter@1.0.0"),
        "names what it found: {message}"
    );
    assert!(
        message.contains("weir:plugin/enricher@0.2.0")
            && message.contains("weir:plugin/enricher@0.1.0"),
        "names what is required: {message}"
    );
}

#[test]
fn core_modules_and_garbage_are_refused() {
    let rt = runtime(RuntimeSettings::default());
    let core_module = b"\0asm\x01\0\0\0";
    let err = rt.load(core_module).unwrap_err().to_string();
    assert!(
        err.contains("core WebAssembly module") && err.contains("wasm32-wasip2"),
        "{err}"
    );
    let err = rt.load(b"#!/bin/sh\nrm -rf /\n").unwrap_err().to_string();
    assert!(err.contains("magic bytes"), "{err}");
    let err = rt
        .load_file("/nonexistent/plugin.wasm")
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/plugin.wasm"), "{err}");
}

#[test]
fn a_loaded_plugin_describes_itself() {
    let plugin = runtime(RuntimeSettings::default())
        .load_file(repo_plugin("transaction"))
        .unwrap();
    let info = plugin.info();
    assert_eq!(plugin.label(), "transaction@1.0.0");
    assert_eq!(info.event_types, vec!["transaction"]);
    assert_eq!(info.contract_version, "0.2.0");
    assert!(info.input_schema.as_deref().unwrap().contains("amount"));
    assert_eq!(info.sha256.len(), 64);
}

#[test]
fn compiled_plugins_are_cached_on_disk_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let settings = RuntimeSettings {
        cache_dir: Some(dir.path().to_owned()),
        ..Default::default()
    };
    let bytes = std::fs::read(repo_plugin("metric")).unwrap();
    let first = runtime(settings.clone()).load(&bytes).unwrap();
    let artifacts: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(artifacts.len(), 1, "one artifact per plugin version");
    // A new runtime (a new process, in effect) loads the artifact instead of compiling.
    let second = runtime(settings).load(&bytes).unwrap();
    assert_eq!(first.info(), second.info());
    let payload = json!({"event_type": "metric", "value": 150});
    let outcomes = second
        .process(&[], &[event(payload)], &Limits::default())
        .outcomes;
    assert!(matches!(&outcomes[0], Outcome::Enrich(f) if f.to_map()["value_range"] == "high"));
}

#[test]
fn a_corrupt_cache_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let settings = RuntimeSettings {
        cache_dir: Some(dir.path().to_owned()),
        ..Default::default()
    };
    let bytes = std::fs::read(repo_plugin("user-action")).unwrap();
    runtime(settings.clone()).load(&bytes).unwrap();
    let artifact = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&artifact, b"garbage").unwrap();
    runtime(settings)
        .load(&bytes)
        .expect("recompiles over a corrupt artifact");
}

#[test]
fn repeated_faults_open_the_circuit_breaker() {
    let breaker = BreakerSettings {
        failure_threshold: 2,
        cooldown: Duration::from_secs(3600),
    };
    let rt = runtime(RuntimeSettings {
        breaker,
        ..Default::default()
    });
    let hostile = rt.load_file(repo_plugin("hostile")).unwrap();
    let panic = event(json!({"event_type": "hostile", "attack": "panic"}));
    let benign = event(json!({"event_type": "hostile"}));
    for _ in 0..2 {
        let report = hostile.process(&[], std::slice::from_ref(&panic), &Limits::default());
        assert!(matches!(report.fault, Some(Fault::Trap(_))));
    }
    assert!(hostile.is_disabled());
    let report = hostile.process(&[], std::slice::from_ref(&benign), &Limits::default());
    let Outcome::Reject(r) = &report.outcomes[0] else {
        panic!("expected rejection")
    };
    assert_eq!(r.kind, RejectionKind::CircuitOpen);
    assert!(
        r.message.contains("2 consecutive faulted batches"),
        "{}",
        r.message
    );

    // Another plugin of the same runtime is unaffected.
    let metric = rt.load_file(repo_plugin("metric")).unwrap();
    let outcomes = metric.process(
        &[],
        &[event(json!({"event_type": "metric", "value": 1}))],
        &Limits::default(),
    );
    assert!(matches!(outcomes.outcomes[0], Outcome::Enrich(_)));
}

#[test]
fn routing_prefers_the_tenant_then_the_default_then_passes_through() {
    let rt = runtime(RuntimeSettings::default());
    let transaction = rt.load_file(repo_plugin("transaction")).unwrap();
    let binding = |config: Vec<(String, String)>| Binding {
        plugin: transaction.clone(),
        config,
        limits: Limits::default(),
    };
    let mut router = Router::new();
    router.bind(None, "transaction", binding(vec![]));
    router.bind(
        Some("acme"),
        "transaction",
        binding(vec![("currency".into(), "EUR".into())]),
    );

    let payload = event(json!({"event_type": "transaction", "amount": 3}));
    let currency_for = |tenant: &str| {
        let route = router.resolve(tenant, "transaction");
        let b = route.binding().unwrap();
        let report = b
            .plugin
            .process(&b.config, std::slice::from_ref(&payload), &b.limits);
        match &report.outcomes[0] {
            Outcome::Enrich(f) => f.to_map()["currency"].clone(),
            other => panic!("{other:?}"),
        }
    };
    assert!(matches!(
        router.resolve("acme", "transaction"),
        Route::Tenant(_)
    ));
    assert_eq!(currency_for("acme"), "EUR");
    assert!(matches!(
        router.resolve("globex", "transaction"),
        Route::Default(_)
    ));
    assert_eq!(currency_for("globex"), "USD");
    assert!(matches!(
        router.resolve("acme", "page_view"),
        Route::PassThrough
    ));
}

#[test]
fn a_mixed_call_reaches_the_plugin_as_homogeneous_batches_in_order() {
    let plugin = runtime(RuntimeSettings::default())
        .load_file(repo_plugin("hostile"))
        .unwrap();
    let events: Vec<PluginEvent> = ["a", "a", "b", "a"]
        .iter()
        .map(|t| event_of(t, json!({"event_type": "hostile"})))
        .collect();
    let report = plugin.process(&[], &events, &Limits::default());
    let tenants: Vec<String> = report
        .outcomes
        .iter()
        .map(|o| match o {
            Outcome::Enrich(f) => f.to_map()["tenant"].as_str().unwrap().to_owned(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        tenants,
        ["a", "a", "b", "a"],
        "each run saw its own tenant, in order"
    );
}

/// Each contract version lays a batch's events out its own way (0.2.0: one
/// text and spans; 0.1.0: strings of their own): both plugins echo what they
/// received.
#[test]
fn every_field_of_every_event_reaches_plugins_of_every_contract_intact() {
    let rt = Runtime::new(RuntimeSettings::default()).expect("runtime");
    for (plugin, contract) in [("hostile", "0.2.0"), ("contract-v0-1", "0.1.0")] {
        let plugin = rt.load_file(repo_plugin(plugin)).expect("plugin");
        assert_eq!(plugin.info().contract_version, contract);
        echoes_every_field(&plugin);
    }
}

fn echoes_every_field(plugin: &weir_runtime::Plugin) {
    let sent: Vec<PluginEvent<'static>> = (0..60)
        .map(|i| {
            let payload = match i {
                // Beyond the SDK's arena and the memory the host keeps resident.
                7 => json!({"attack": "echo", "blob": "ü".repeat(200_000)}),
                _ => json!({"attack": "echo", "n": i, "label": "température ✓"}),
            };
            PluginEvent {
                payload: Cow::Owned(payload.to_string()),
                event_type: Cow::Borrowed("hostile"),
                tenant: Cow::Borrowed("t"),
                partition_key: Cow::Owned(match i {
                    3 => String::new(),
                    _ => format!("capteur-{i}-温度"),
                }),
                sequence_number: Cow::Owned(format!("4959033827149025660855969253836157{i:022}")),
                arrival_time: Cow::Owned(format!("2024-01-15T10:30:{:02}.125Z", i % 60)),
                event_time: Cow::Owned(format!("2024-01-15T10:{:02}:00Z", i % 60)),
                processing_time: Cow::Borrowed("2024-01-15T10:31:00Z"),
            }
        })
        .collect();
    let report = plugin.process(&[], &sent, &Limits::default());
    assert_eq!(report.fault, None, "{}", plugin.label());
    assert_eq!(report.outcomes.len(), sent.len());
    for (event, outcome) in sent.iter().zip(&report.outcomes) {
        let Outcome::Enrich(fields) = outcome else {
            panic!("expected the echo, got {outcome:?}");
        };
        let got = fields.to_map();
        for (name, value) in [
            ("payload", &event.payload),
            ("partition_key", &event.partition_key),
            ("sequence_number", &event.sequence_number),
            ("arrival_time", &event.arrival_time),
            ("event_time", &event.event_time),
        ] {
            assert_eq!(
                got[name],
                value.as_ref(),
                "{name} of event {} in {}",
                event.sequence_number,
                plugin.label()
            );
        }
    }
}

/// The transaction plugin in a runtime of `slots` instance slots.
fn transaction_with_slots(slots: u32) -> weir_runtime::Plugin {
    runtime(RuntimeSettings {
        max_concurrent_instances: slots,
        ..Default::default()
    })
    .load_file(repo_plugin("transaction"))
    .unwrap()
}

fn transaction_event(amount: u32) -> PluginEvent<'static> {
    event(
        json!({"event_type": "transaction", "timestamp": "2024-01-15T10:30:00Z",
                 "amount": amount, "currency": "EUR"}),
    )
}

#[test]
fn calls_beyond_the_instance_pool_wait_for_a_slot_instead_of_faulting() {
    // One slot, four threads calling at once: without waiting, every call that
    // met the slot taken would fail to instantiate and count as a plugin fault.
    let plugin = transaction_with_slots(1);
    let events: Vec<PluginEvent<'static>> = (0..300).map(transaction_event).collect();
    let faults = std::thread::scope(|scope| {
        let callers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    (0..25)
                        .filter_map(|_| plugin.process(&[], &events, &Limits::default()).fault)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        callers
            .into_iter()
            .flat_map(|caller| caller.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert!(faults.is_empty(), "{faults:?}");
}

#[test]
fn a_pool_of_no_instances_is_taken_for_one() {
    let plugin = transaction_with_slots(0);
    let report = plugin.process(&[], &[transaction_event(1)], &Limits::default());
    assert_eq!(report.fault, None);
}
