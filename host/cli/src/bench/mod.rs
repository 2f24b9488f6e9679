//! `weir bench`: figures for the speed and footprint targets, always against
//! a yardstick measured in the same run.
//!
//! - [`plugins`]: the plugin platform (sandbox overhead, instantiation,
//!   footprint, `weir plugin run` against the Python seed transformer).
//! - [`pipeline`]: the whole record path on the embedded backends, on one core
//!   and on two, against the Python seed pipeline.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub mod pipeline;
pub mod plugins;
mod timed;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// The plugin platform: sandbox overhead, footprint, plugin run vs Python.
    Plugins(plugins::Args),
    /// The whole pipeline, one core and two, vs the Python seed pipeline.
    Pipeline(pipeline::Args),
}

/// Runs a command to completion with stdout to `out`; its wall time in seconds.
fn time_process(command: &mut Command, out: &Path) -> anyhow::Result<f64> {
    let stdout = std::fs::File::create(out)?;
    let started = Instant::now();
    let status = command
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {command:?}"))?;
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(secs)
}

/// The best and the median of run times in seconds.
fn best_and_median(runs: &mut [f64]) -> (f64, f64) {
    runs.sort_by(f64::total_cmp);
    (runs[0], runs[runs.len() / 2])
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}
