//! `weir plugin test`: check a plugin against its golden cases.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use weir_runtime::Runtime;
use weir_testkit::golden;

use crate::LimitArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plugin component (.wasm).
    plugin: PathBuf,
    /// The golden case file (JSON; see the README, "Golden cases").
    cases: PathBuf,
    #[command(flatten)]
    limits: LimitArgs,
}

pub fn run(runtime: Runtime, args: Args) -> anyhow::Result<ExitCode> {
    let plugin = runtime
        .load_file(&args.plugin)
        .with_context(|| format!("loading plugin {}", args.plugin.display()))?;
    let file = golden::load(&args.cases).map_err(anyhow::Error::msg)?;
    let results = golden::run(&plugin, &file, &args.limits.limits());
    let failed = results.iter().filter(|r| !r.passed()).count();
    println!("{} against {}", plugin.label(), args.cases.display());
    for result in &results {
        let verdict = if result.passed() { "ok  " } else { "FAIL" };
        println!(
            "{verdict} {}  ({} µs, {:.1} MiB)",
            result.name,
            result.elapsed.as_micros(),
            result.peak_memory_bytes as f64 / f64::from(1 << 20)
        );
        for problem in &result.problems {
            println!("       {problem}");
        }
    }
    println!("{} passed, {} failed", results.len() - failed, failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
