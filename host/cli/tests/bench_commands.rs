//! The benchmarks run end to end on a few events (their figures are for
//! release builds and a person reading them; here they must only work and
//! cover what they claim).

mod common;

use common::{text, weir};

#[test]
fn the_pipeline_benchmark_measures_every_configuration_and_the_yardstick() {
    let output = weir(&[
        "bench",
        "pipeline",
        "--events",
        "300",
        "--repeat",
        "1",
        "--batch-size",
        "50",
    ])
    .output()
    .unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    for label in [
        "weir two-stage, 1 core, no fsync",
        "weir single-stage, 1 core, no fsync",
        "weir single-stage, 2 cores, no fsync",
        "weir two-stage, 2 cores, no fsync",
        "weir single-stage, 2 cores, fsync",
        "python seed pipeline, 1 core",
        "weir two-stage / python, 1 core",
        "2 cores / 1 core, single-stage",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` in {stdout}"));
        let figure: f64 = line[label.len()..]
            .split_whitespace()
            .next()
            .and_then(|f| f.trim_end_matches('x').parse().ok())
            .unwrap_or_else(|| panic!("no figure in {line}"));
        assert!(figure > 0.0, "{line}");
    }
}
