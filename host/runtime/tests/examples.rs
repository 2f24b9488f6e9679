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
