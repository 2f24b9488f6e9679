//! Helpers shared by the `weir` command's tests.
#![allow(dead_code)] // each test file uses its own subset

use std::path::Path;
use std::process::{Command, Output, Stdio};

use weir_testkit::build::{repo_plugin, shared_cache_dir};

/// The `weir` binary under test, sharing the test run's compiled plugins.
pub fn weir(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command.args(args).env("WEIR_CACHE_DIR", shared_cache_dir());
    command
}

pub fn run_with_stdin(mut command: Command, stdin: &str) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A repository plugin's component path.
pub fn wasm(name: &str) -> String {
    repo_plugin(name).display().to_string()
}

/// The summary `weir demo` printed.
pub struct Demo {
    pub stdout: String,
}

impl Demo {
    /// Runs `weir demo` with `events` into `data_dir`; panics with its output if it fails.
    pub fn run(events: usize, data_dir: &Path) -> Self {
        let events = events.to_string();
        let output = weir(&[
            "demo",
            "--events",
            &events,
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--no-console",
        ])
        .output()
        .unwrap();
        let stdout = text(&output.stdout);
        assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
        Self { stdout }
    }

    /// The number on the summary line starting with `label`.
    pub fn count(&self, label: &str) -> u64 {
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` in {}", self.stdout));
        line[label.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}
