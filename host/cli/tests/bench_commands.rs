//! The benchmarks run end to end on a few events (their figures are for
//! release builds and a person reading them; here they must only work and
//! cover what they claim).

mod common;

use common::{text, weir};

/// Runs `weir bench <which>` on 300 events in batches of 50, `repeat` runs
/// each; its standard output.
fn bench(which: &str, repeat: &str) -> String {
    let output = weir(&[
        "bench",
        which,
        "--events",
        "300",
        "--repeat",
        repeat,
        "--batch-size",
        "50",
    ])
    .output()
    .unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    stdout
}

/// The first figure after `label` on the line of `stdout` starting with it.
fn figure(stdout: &str, label: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no `{label}` in {stdout}"));
    line[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|f| f.trim_end_matches('x').parse().ok())
        .unwrap_or_else(|| panic!("no figure in {line}"))
}

#[test]
fn the_pipeline_benchmark_measures_every_configuration_and_the_yardstick() {
    let stdout = bench("pipeline", "1");
    let figure = |label: &str| figure(&stdout, label);
    for label in [
        "weir two-stage, 1 core, no fsync",
        "weir single-stage, 1 core, no fsync",
        "weir single-stage, 2 cores, no fsync",
        "weir two-stage, 2 cores, no fsync",
        "weir single-stage, 2 cores, fsync",
        "python seed pipeline, 1 core",
        "weir two-stage / python, 1 core",
        "2 cores / 1 core, single-stage",
        "object writes alone, single-stage 1 core",
    ] {
        assert!(figure(label) > 0.0, "{label}");
    }
    // Each Weir run says where its time went: shares of its core time.
    let share = |line: &str, part: &str| -> f64 {
        let after = line
            .split(part)
            .nth(1)
            .unwrap_or_else(|| panic!("no `{part}` in {line}"));
        let share: f64 = after
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches('%')
            .parse()
            .unwrap();
        assert!((0.0..=100.0).contains(&share), "{line}");
        share
    };
    let weir_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("weir ") && l.contains("rec/s"))
        .collect();
    assert_eq!(weir_lines.len(), 5, "{stdout}");
    for line in &weir_lines {
        assert!(
            share(line, "objects ") + share(line, "commits ") <= 100.0,
            "{line}"
        );
    }
    // The object writes alone go faster than the whole pipeline that made them.
    assert!(
        figure("object writes alone, single-stage 1 core")
            > figure("weir single-stage, 1 core, no fsync"),
        "{stdout}"
    );
}

#[test]
fn the_plugin_benchmark_measures_the_footprint_the_sandbox_and_the_yardstick() {
    let stdout = bench("plugins", "2");
    let figure = |label: &str| figure(&stdout, label);
    let loaded = figure("RSS, all 5 example plugins loaded, idle");
    assert!(loaded >= figure("RSS before loading"), "{stdout}");
    for label in [
        "compile, per plugin (no cache)",
        "load from the compiled cache, per plugin",
        "weir plugin run (transaction.wasm)",
        "python seed transformer",
        "weir / python",
        "sandboxed (wasm, limits on)",
        "native, same logic",
        "instantiate, per batch",
    ] {
        assert!(figure(label) > 0.0, "{label}: {stdout}");
    }
    // The ratio is the two times' quotient: events/s the other way round.
    let ratio = figure("wasm / native time");
    let quotient = figure("native, same logic") / figure("sandboxed (wasm, limits on)");
    assert!((ratio - quotient).abs() <= 0.01 + ratio * 0.01, "{stdout}");
}
