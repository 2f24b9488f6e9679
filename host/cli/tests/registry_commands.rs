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
    assert!(!ok && stderr.contains("golden cases failed"), "{stderr}");

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
