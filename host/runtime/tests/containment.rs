//! The sandbox holds: each hostile behaviour is contained, reported with a
//! clear reason naming the plugin, and the host (and other plugins) go on.
//! Every test runs the real compiled `hostile` component.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir_core::{Outcome, RejectionKind};
use weir_runtime::{Fault, Limits};
use weir_testkit::Harness;
use weir_testkit::build::repo_plugin;

fn hostile() -> Harness {
    let mut harness = Harness::load(repo_plugin("hostile"));
    harness.limits.cpu_time = Duration::from_millis(200);
    harness
}

fn attack(name: &str) -> Value {
    json!({"event_type": "hostile", "timestamp": "2024-01-15T10:30:00Z", "attack": name})
}

fn benign() -> Value {
    json!({"event_type": "hostile", "timestamp": "2024-01-15T10:30:00Z"})
}

fn rejection(outcome: &Outcome) -> (RejectionKind, &str) {
    match outcome {
        Outcome::Reject(r) => (r.kind, r.message.as_str()),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// After a fault, the same plugin still serves the next batch.
fn assert_still_serves(harness: &Harness) {
    let outcomes = harness.run(&[benign()]);
    assert!(
        matches!(&outcomes[0], Outcome::Enrich(f) if f.to_map()["ok"] == true),
        "{outcomes:?}"
    );
}

#[test]
fn an_infinite_loop_hits_the_cpu_limit() {
    let harness = hostile();
    let started = Instant::now();
    let report = harness.run_batch("t", &[], &[benign(), attack("loop")]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the deadline did not fire"
    );
    assert_eq!(
        report.fault,
        Some(Fault::CpuLimit(Duration::from_millis(200)))
    );
    assert_eq!(report.outcomes.len(), 2, "every record is accounted for");
    for outcome in &report.outcomes {
        let (kind, message) = rejection(outcome);
        assert_eq!(kind, RejectionKind::CpuLimit);
        assert!(
            message.contains("hostile@6.6.6") && message.contains("CPU time limit"),
            "{message}"
        );
    }
    assert_still_serves(&harness);
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let mut harness = hostile();
    harness.limits.memory_bytes = 16 << 20;
    let report = harness.run_batch("t", &[], &[attack("memory")]);
    assert_eq!(report.fault, Some(Fault::MemoryLimit(16 << 20)));
    let (kind, message) = rejection(&report.outcomes[0]);
    assert_eq!(kind, RejectionKind::MemoryLimit);
    assert!(message.contains("memory limit of 16 MiB"), "{message}");
    assert!(report.peak_memory_bytes <= 16 << 20);
    assert_still_serves(&harness);
}

#[test]
fn panics_and_stack_overflows_are_traps() {
    let harness = hostile();
    for name in ["panic", "stack-overflow"] {
        let report = harness.run_batch("t", &[], &[attack(name), benign()]);
        assert!(
            matches!(report.fault, Some(Fault::Trap(_))),
            "{name}: {:?}",
            report.fault
        );
        for outcome in &report.outcomes {
            let (kind, message) = rejection(outcome);
            assert_eq!(kind, RejectionKind::PluginTrap, "{name}");
            assert!(message.contains("hostile@6.6.6 trapped"), "{message}");
        }
    }
    assert_still_serves(&harness);
}

#[test]
fn bad_output_rejects_only_its_own_record() {
    let harness = hostile();
    let report = harness.run_batch(
        "t",
        &[],
        &[
            benign(),
            attack("huge-output"),
            attack("invalid-json"),
            attack("not-an-object"),
            benign(),
        ],
    );
    assert_eq!(report.fault, None);
    assert!(matches!(&report.outcomes[0], Outcome::Enrich(_)));
    assert!(matches!(&report.outcomes[4], Outcome::Enrich(_)));
    let expectations = [
        (1, "exceeds the limit"),
        (2, "not valid JSON"),
        (3, "not an object"),
    ];
    for (index, phrase) in expectations {
        let (kind, message) = rejection(&report.outcomes[index]);
        assert_eq!(kind, RejectionKind::InvalidOutput);
        assert!(message.contains(phrase), "record {index}: {message}");
    }
}

#[test]
fn a_wrong_number_of_outcomes_rejects_the_batch() {
    let report = hostile().run_batch("t", &[], &[attack("wrong-count"), benign()]);
    assert!(
        matches!(&report.fault, Some(Fault::InvalidOutput(m)) if m.contains("0 outcomes for 2 events"))
    );
    assert_eq!(report.outcomes.len(), 2);
}

#[test]
fn a_batch_error_rejects_every_record_with_the_plugins_reason() {
    let report = hostile().run_batch("t", &[], &[attack("batch-error"), benign()]);
    for outcome in &report.outcomes {
        let (kind, message) = rejection(outcome);
        assert_eq!(kind, RejectionKind::BatchError);
        assert!(message.contains("refuses the batch"), "{message}");
    }
}

#[test]
fn no_files_no_environment_and_a_frozen_clock() {
    let harness = hostile();
    let run = || {
        harness.run(&[
            attack("read-file"),
            attack("env"),
            attack("clock"),
            attack("random"),
        ])
    };
    let outcomes = run();
    let fields: Vec<serde_json::Map<String, Value>> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Enrich(f) => f.to_map(),
            other => panic!("expected enrich, got {other:?}"),
        })
        .collect();
    let file = fields[0]["file"].as_str().unwrap();
    assert!(file.starts_with("error:"), "the plugin read a file: {file}");
    assert!(
        fields[0]["root_listing"]
            .as_str()
            .unwrap()
            .starts_with("Err"),
        "{:?}",
        fields[0]
    );
    assert_eq!(fields[1]["vars"], 0);
    assert_eq!(fields[1]["home"], Value::Null);
    // The clock is frozen at the batch's processing time (2024-01-15T10:31:00Z).
    assert_eq!(fields[2]["unix_seconds"], 1_705_314_660);
    assert_eq!(fields[2]["elapsed_nanos"], 0);
    // Randomness is a fixed sequence: the same batch gives the same output.
    assert_eq!(outcomes, run());
}

#[test]
fn log_floods_are_capped() {
    let report = hostile().run_batch("t", &[], &[attack("log-flood")]);
    assert!(
        matches!(&report.outcomes[0], Outcome::Enrich(_)),
        "{:?}",
        report.outcomes[0]
    );
    assert_eq!(
        report.log_lines_dropped,
        10_000 - Limits::default().max_log_lines
    );
}

#[test]
fn drops_are_outcomes_not_faults() {
    let report = hostile().run_batch("t", &[], &[attack("drop"), benign()]);
    assert_eq!(report.fault, None);
    assert_eq!(report.outcomes[0], Outcome::Drop("asked to drop".into()));
}

#[test]
fn nothing_a_batch_leaves_in_the_instance_reaches_the_next_batch() {
    let harness = hostile();
    let earlier_tenants = |tenant: &str| -> Vec<Value> {
        let report = harness.run_batch(tenant, &[], &[attack("remember"), attack("remember")]);
        report
            .outcomes
            .iter()
            .map(|o| match o {
                Outcome::Enrich(fields) => fields.to_map()["earlier_tenant"].clone(),
                other => panic!("expected an enrichment, got {other:?}"),
            })
            .collect()
    };
    // Within a batch the plugin's state lives on: the second event sees the first.
    assert_eq!(earlier_tenants("alice"), [json!(""), json!("alice")]);
    // A later batch, on a recycled instance slot, starts from the pristine
    // module, whoever ran before it (many batches, so slots are reused).
    for round in 0..50 {
        let tenant = if round % 2 == 0 { "bob" } else { "carol" };
        assert_eq!(
            earlier_tenants(tenant),
            [json!(""), json!(tenant)],
            "round {round}"
        );
    }
}

#[test]
fn one_plugins_fault_leaves_another_plugin_running_alongside() {
    let hostile = hostile();
    let transaction = Harness::load(repo_plugin("transaction"));
    let looping = std::thread::spawn(move || hostile.run_batch("evil", &[], &[attack("loop")]));
    let payload =
        json!({"event_type": "transaction", "timestamp": "2024-01-15T10:30:00Z", "amount": 5});
    for _ in 0..20 {
        let outcomes = transaction.run(std::slice::from_ref(&payload));
        assert!(
            matches!(&outcomes[0], Outcome::Enrich(f) if f.to_map()["amount_category"] == "micro")
        );
    }
    let report = looping.join().expect("the host thread survives");
    assert!(matches!(report.fault, Some(Fault::CpuLimit(_))));
}

/// Runs `f` where every Weir host calls plugins: inside a tokio runtime's
/// task, where wasmtime-wasi's own blocking WASI calls (`block_on` on the
/// ambient runtime) would panic the host's thread.
fn in_async_host<T>(f: impl FnOnce() -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async { f() })
}

#[test]
fn a_panic_inside_an_async_host_is_a_trap_that_carries_its_message() {
    let harness = hostile();
    let report = in_async_host(|| harness.run_batch("t", &[], &[attack("panic"), benign()]));
    let Some(Fault::Trap(why)) = &report.fault else {
        panic!("{:?}", report.fault);
    };
    assert!(why.contains("unreachable"), "{why}");
    assert!(
        why.contains("its stderr:") && why.contains("hostile plugin panics on purpose"),
        "the panic message is in the reason: {why}"
    );
    let (_, message) = rejection(&report.outcomes[1]);
    assert!(
        message.contains("hostile plugin panics on purpose"),
        "{message}"
    );
    in_async_host(|| assert_still_serves(&harness));
}

#[test]
fn printing_never_fails_a_plugin_even_past_what_is_kept() {
    let harness = hostile();
    let report = in_async_host(|| {
        harness.run_batch(
            "t",
            &[],
            &[attack("print"), attack("print-flood"), benign()],
        )
    });
    assert!(report.fault.is_none(), "{:?}", report.fault);
    assert!(
        matches!(&report.outcomes[0], Outcome::Enrich(f) if f.to_map()["printed"] == true),
        "{:?}",
        report.outcomes[0]
    );
    // 2 × 1.2 MB printed, 16 KiB of each stream kept: Rust's `println!` panics
    // when a write fails, so an enriched event means every write succeeded.
    assert!(
        matches!(&report.outcomes[1], Outcome::Enrich(f) if f.to_map()["printed"] == 2_400_000),
        "{:?}",
        report.outcomes[1]
    );
    assert!(matches!(&report.outcomes[2], Outcome::Enrich(_)));
    // The report holds what was kept, a line an entry, stream by stream.
    let printed: Vec<(&str, &str)> = report
        .printed
        .iter()
        .map(|l| (l.stream, l.text.as_str()))
        .collect();
    assert_eq!(
        printed[..2],
        [
            ("stdout", "to stdout, line 1"),
            ("stdout", "to stdout, line 2")
        ]
    );
    assert!(printed.contains(&("stderr", "to stderr")), "{printed:?}");
    let kept: usize = report.printed.iter().map(|l| l.text.len()).sum();
    assert!(kept <= 2 * 16 * 1024, "{kept} bytes kept of 2.4 MB printed");
}

#[test]
fn a_plugin_that_exits_faults_its_batch_and_the_host_goes_on() {
    let harness = hostile();
    let report = in_async_host(|| harness.run_batch("t", &[], &[attack("exit"), benign()]));
    assert!(
        matches!(&report.fault, Some(Fault::Trap(why)) if why == "it exited (status 1) instead of returning its outcomes"),
        "{:?}",
        report.fault
    );
    assert_eq!(rejection(&report.outcomes[1]).0, RejectionKind::PluginTrap);
    assert_still_serves(&harness);
}

#[test]
fn a_plugin_that_sleeps_traps_at_once() {
    let harness = hostile();
    let started = Instant::now();
    let report = in_async_host(|| harness.run_batch("t", &[], &[attack("sleep"), benign()]));
    // The attack sleeps for an hour.
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        matches!(&report.fault, Some(Fault::Trap(why)) if why.starts_with("plugins may not wait")),
        "{:?}",
        report.fault
    );
    for outcome in &report.outcomes {
        let (kind, message) = rejection(outcome);
        assert_eq!(kind, RejectionKind::PluginTrap);
        assert!(message.contains("hostile@6.6.6 trapped"), "{message}");
    }
    assert_still_serves(&harness);
}

fn explode(count: u64, padding: usize) -> Value {
    json!({"event_type": "hostile", "timestamp": "2024-01-15T10:30:00Z",
           "attack": "explode", "count": count, "padding": "p".repeat(padding)})
}

#[test]
fn emitting_many_outputs_is_allowed_within_the_batch_output_limit() {
    let report = hostile().run_batch(
        "t",
        &[],
        &[explode(3, 100_000), explode(1_000, 0), benign()],
    );
    assert_eq!(report.fault, None);
    assert!(matches!(&report.outcomes[0], Outcome::Emit(records) if records.len() == 3));
    assert!(matches!(&report.outcomes[1], Outcome::Emit(records) if records.len() == 1_000));
    assert!(matches!(&report.outcomes[2], Outcome::Enrich(_)));
}

#[test]
fn outputs_that_would_multiply_a_record_past_the_limit_reject_the_batch() {
    // Each output line carries the original record: 40 outputs of a 500 KB
    // record are 20 MB to write, from 40 tiny outputs; and 100,000 `{"i":n}`
    // (1.2 MB of JSON) are 100,000 envelopes.
    for payload in [explode(40, 500_000), explode(100_000, 0)] {
        let report = hostile().run_batch("t", &[], &[payload, benign()]);
        assert!(
            matches!(&report.fault, Some(Fault::InvalidOutput(m))
                if m.contains("exceeds the limit of 16777216 bytes")),
            "{:?}",
            report.fault
        );
        for outcome in &report.outcomes {
            assert_eq!(rejection(outcome).0, RejectionKind::InvalidOutput);
        }
    }
}

#[test]
fn a_plugins_reasons_are_kept_to_4_kib() {
    let report = hostile().run_batch("t", &[], &[attack("long-reason"), benign()]);
    assert_eq!(report.fault, None);
    let (kind, message) = rejection(&report.outcomes[0]);
    assert_eq!(kind, RejectionKind::InvalidField);
    // 100,000 bytes of "é": 4,096 kept (a character boundary), the rest said.
    assert!(
        message.starts_with(&"é".repeat(2_048)),
        "{}",
        &message[..20]
    );
    assert!(
        message.ends_with("… (95904 more bytes not kept)"),
        "{}",
        &message[4_000..]
    );
    assert!(matches!(&report.outcomes[1], Outcome::Enrich(_)));
}

#[test]
fn a_plugin_asking_for_64_mib_of_random_bytes_is_refused_before_the_host_makes_them() {
    let report = hostile().run_batch("t", &[], &[attack("random-bomb"), benign()]);
    assert!(
        matches!(&report.fault, Some(Fault::Trap(why))
            if why.contains("requested len 67108864 exceeds limit 65536")),
        "{:?}",
        report.fault
    );
    assert_still_serves(&hostile());
}
