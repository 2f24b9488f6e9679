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
    /// Rewrite the expectations the plugin no longer meets with what it
    /// returns now, keeping the ones it meets as written (the file is
    /// pretty-printed); review the diff before committing it.
    #[arg(long)]
    update: bool,
}

pub fn run(runtime: Runtime, args: Args) -> anyhow::Result<ExitCode> {
    let plugin = runtime
        .load_file(&args.plugin)
        .with_context(|| format!("loading plugin {}", args.plugin.display()))?;
    if args.update {
        return update(&plugin, &args);
    }
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

/// `--update`: the file rewritten where the plugin's outcomes changed.
fn update(plugin: &weir_runtime::Plugin, args: &Args) -> anyhow::Result<ExitCode> {
    let path = &args.cases;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the case file {}", path.display()))?;
    let updated = golden::update(
        plugin,
        &text,
        &path.display().to_string(),
        &args.limits.limits(),
    )
    .map_err(anyhow::Error::msg)?;
    for (case, event) in &updated.rewritten {
        println!("rewrote case `{case}`, event {event}");
    }
    if updated.rewritten.is_empty() {
        println!(
            "{}: every expectation is met; nothing rewritten",
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Written beside it and renamed over it: an interrupted write leaves the
    // old file whole.
    let staged = path.with_extension("json.updating");
    std::fs::write(&staged, &updated.text)
        .and_then(|()| std::fs::rename(&staged, path))
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "{}: {} expectation(s) rewritten from {}; review the diff",
        path.display(),
        updated.rewritten.len(),
        plugin.label()
    );
    Ok(ExitCode::SUCCESS)
}
