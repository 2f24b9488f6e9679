//! Every example plugin passes its golden cases, as compiled components.

use weir_runtime::Limits;
use weir_testkit::build::{EXAMPLE_PLUGINS, repo_plugin, repo_root};
use weir_testkit::{Harness, golden};

#[test]
fn example_plugins_pass_their_golden_cases() {
    for name in EXAMPLE_PLUGINS {
        let harness = Harness::load(repo_plugin(name));
        let cases = golden::load(
            &repo_root()
                .join("plugins/examples")
                .join(name)
                .join("golden.json"),
        )
        .unwrap();
        assert!(!cases.cases.is_empty());
        for result in golden::run(&harness.plugin, &cases, &Limits::default()) {
            assert!(
                result.passed(),
                "{name}: case `{}`: {:#?}",
                result.name,
                result.problems
            );
        }
    }
}

/// The SDK serves a batch's allocations from a fixed arena and the system
/// allocator past it: a batch far larger than the arena, with payloads of
/// every size, must come out exactly as the same events in small batches.
#[test]
fn batches_larger_than_the_sdk_arena_are_enriched_like_small_ones() {
    let harness = Harness::load(repo_plugin("transaction"));
    let payloads: Vec<serde_json::Value> = (0..3000)
        .map(|i| {
            serde_json::json!({
                "event_type": "transaction",
                "timestamp": "2024-01-15T10:30:00Z",
                "amount": (i % 2000) as f64 + 0.5,
                // Sizes from a few bytes to several KiB, so that buffers grow,
                // move and are freed in every order.
                "note": "x".repeat((i * 37) % 5000),
            })
        })
        .collect();
    let whole = harness.run(&payloads);
    let in_small_batches: Vec<_> = payloads.chunks(10).flat_map(|c| harness.run(c)).collect();
    assert_eq!(whole.len(), payloads.len());
    assert!(
        whole
            .iter()
            .all(|o| matches!(o, weir_core::Outcome::Enrich(_))),
        "{:?}",
        whole
            .iter()
            .find(|o| !matches!(o, weir_core::Outcome::Enrich(_)))
    );
    assert_eq!(whole, in_small_batches);
}

/// The transaction plugin declares `amount` a required number: a host holds
/// each payload to that before the plugin sees it, keeps the batch's order,
/// and does not call the plugin at all when no payload passes.
#[test]
fn payloads_are_held_to_the_input_schema_before_the_plugin_sees_them() {
    use weir_core::{Outcome, RejectionKind};

    let harness = Harness::load(repo_plugin("transaction"));
    let event = |amount: serde_json::Value| {
        let mut payload = serde_json::json!({
            "event_type": "transaction",
            "timestamp": "2024-01-15T10:30:00Z",
        });
        if !amount.is_null() {
            payload["amount"] = amount;
        }
        payload
    };
    let report = harness.run_batch(
        "default",
        &[],
        &[
            event(serde_json::json!(5)),
            event(serde_json::json!("12")),
            event(serde_json::Value::Null),
            event(serde_json::json!(2500)),
        ],
    );
    let kinds: Vec<Option<RejectionKind>> = report
        .outcomes
        .iter()
        .map(|o| match o {
            Outcome::Reject(r) => Some(r.kind),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            None,
            Some(RejectionKind::InvalidField),
            Some(RejectionKind::MissingField),
            None
        ]
    );
    let Outcome::Enrich(last) = &report.outcomes[3] else {
        unreachable!()
    };
    assert_eq!(last.to_map()["amount_category"], "large");
    let Outcome::Reject(ill_typed) = &report.outcomes[1] else {
        unreachable!()
    };
    let label = harness.plugin.label();
    assert_eq!(
        ill_typed.message,
        format!(
            "the payload does not match the input schema of {label}: /amount: \"12\" is not of type \"number\""
        )
    );
    assert!(report.fault.is_none());

    // Nothing passes: the plugin is not instantiated. Unscreened, the plugin
    // itself refuses the same payload, in its own words.
    let none_pass = harness.run_batch("default", &[], &[event(serde_json::json!("12"))]);
    assert!(matches!(&none_pass.outcomes[..], [Outcome::Reject(_)]));
    assert_eq!(none_pass.instantiate, std::time::Duration::ZERO);
    let events = [weir_testkit::payload_event(
        &event(serde_json::json!("12")),
        "default",
        1,
        weir_testkit::DEFAULT_TIME,
    )
    .unwrap()];
    let unscreened = harness
        .plugin
        .process_unscreened(&[], &events, &Limits::default());
    let [Outcome::Reject(own)] = &unscreened.outcomes[..] else {
        panic!("{:?}", unscreened.outcomes)
    };
    assert_eq!(own.kind, RejectionKind::InvalidField);
    assert!(!own.message.contains("input schema"), "{}", own.message);
    assert!(unscreened.instantiate > std::time::Duration::ZERO);
}
