//! `weir registry`: uploads checked as a host would load them, activations,
//! conflicts and the audit log, through the real binary.

mod common;

use common::{text, wasm, weir};
use serde_json::Value;
use weir_testkit::build::repo_root;

fn run(args: &[&str], data: &str) -> (bool, String, String) {
    let output = weir(args)
        .args(["--data-dir", data])
        .env("USER", "alice")
        .output()
        .unwrap();
    (
        output.status.success(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[test]
fn uploads_are_checked_and_activations_are_revisioned_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let golden = repo_root().join("plugins/examples/transaction/golden.json");
    let golden = golden.to_str().unwrap();

    let (ok, stdout, stderr) = run(
        &["registry", "add", &wasm("transaction"), "--golden", golden],
        data,
    );
    assert!(ok, "{stderr}");
    let version: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(version["uploader"], "alice");
    let name_at = format!(
        "{}@{}",
        version["name"].as_str().unwrap(),
        version["version"].as_str().unwrap()
    );
    let (ok, _, stderr) = run(&["registry", "add", &wasm("transaction")], data);
    assert!(ok && stderr.contains("already there"), "{stderr}");

    let (ok, _, stderr) = run(&["registry", "add", &wasm("foreign")], data);
    assert!(
        !ok && stderr.contains("not a plugin a host would run"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(
        &["registry", "add", &wasm("metric"), "--golden", golden],
        data,
    );
    assert!(!ok && stderr.contains("golden case(s) failed"), "{stderr}");

    let activate = [
        "registry",
        "activate",
        &name_at,
        "--event-type",
        "transaction",
        "--tenant",
        "acme",
    ];
    let (ok, stdout, stderr) = run(
        &[
            &activate[..],
            &["--config", "threshold=500", "--expect-revision", "0"],
        ]
        .concat(),
        data,
    );
    assert!(ok, "{stderr}");
    let binding: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(binding["revision"], 1);
    assert_eq!(binding["config"], serde_json::json!([["threshold", "500"]]));
    let (ok, _, stderr) = run(&[&activate[..], &["--expect-revision", "0"]].concat(), data);
    assert!(!ok && stderr.contains("changed meanwhile"), "{stderr}");
    let (ok, _, stderr) = run(
        &[
            "registry",
            "rollback",
            "--event-type",
            "transaction",
            "--tenant",
            "acme",
        ],
        data,
    );
    assert!(!ok && stderr.contains("earlier version"), "{stderr}");

    let (ok, stdout, stderr) = run(&["registry", "bindings"], data);
    assert!(ok && stderr.contains("generation 1"), "{stderr}");
    assert_eq!(stdout.lines().count(), 1);
    let (_, stdout, _) = run(&["registry", "audit"], data);
    let actions: Vec<String> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(actions, ["activate", "add-version"]);
}

/// The processed transactions under `data`: (amount, is_high_value).
fn transactions(data: &std::path::Path) -> Vec<(f64, bool)> {
    let mut found = Vec::new();
    let mut stack = vec![data.join("objects/processed")];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            for line in std::fs::read_to_string(&path).unwrap_or_default().lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                let e = &v["enriched_data"];
                if let (Some(amount), Some(high)) =
                    (e["amount"].as_f64(), e["is_high_value"].as_bool())
                {
                    found.push((amount, high));
                }
            }
        }
    }
    found
}

#[test]
fn a_running_service_follows_an_activation_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let serve = weir(&[
        "serve",
        "--data-dir",
        data,
        "--batching-window-ms",
        "50",
        "--registry-poll-ms",
        "100",
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let produce = |seed: &str| {
        let args = [
            "produce",
            "--rate",
            "0",
            "--count",
            "30",
            "--types",
            "transaction",
            "--tenants",
            "acme",
            "--seed",
            seed,
        ];
        let (ok, _, stderr) = run(&args, data);
        assert!(ok, "{stderr}");
    };
    let wait_for = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while transactions(dir.path()).len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {n}",
                transactions(dir.path()).len()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    produce("1");
    wait_for(30);
    // The example's default threshold: only amounts over 1,000 are high.
    let before = transactions(dir.path());
    assert!(
        before
            .iter()
            .all(|(amount, high)| *high == (*amount > 1000.0))
    );
    let low_before = before
        .iter()
        .filter(|(amount, _)| *amount <= 1000.0)
        .count();

    let (ok, _, stderr) = run(&["registry", "add", &wasm("transaction")], data);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = run(&["registry", "list"], data);
    assert!(ok, "{stderr}");
    let v: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let sha = v["sha256"].as_str().unwrap();
    let args = [
        "registry",
        "activate",
        sha,
        "--event-type",
        "transaction",
        "--tenant",
        "acme",
        "--config",
        "high_value_threshold=0",
    ];
    let (ok, _, stderr) = run(&args, data);
    assert!(ok, "{stderr}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    produce("2");
    wait_for(60);
    let status = std::process::Command::new("kill")
        .args(["-INT", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = serve.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));

    let all = transactions(dir.path());
    let low = all.iter().filter(|(amount, _)| *amount <= 1000.0).count();
    let swapped = all
        .iter()
        .filter(|(amount, high)| *high && *amount <= 1000.0)
        .count();
    assert!(swapped > 0, "{all:?}");
    assert_eq!(
        swapped,
        low - low_before,
        "every record after the activation has acme's new threshold: {all:?}"
    );
    assert_eq!(
        all.len(),
        60,
        "nothing lost or processed twice across the swap"
    );
}
