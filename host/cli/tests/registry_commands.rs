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

    // A version with the schemas it declares, by name@version.
    let (ok, stdout, stderr) = run(&["registry", "show", &name_at], data);
    assert!(ok, "{stderr}");
    let shown: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(shown["version"]["sha256"], version["sha256"]);
    assert_eq!(
        shown["input_schema"]["required"],
        serde_json::json!(["amount"])
    );
    assert_eq!(shown["config_schema"]["additionalProperties"], false);
    let (ok, _, stderr) = run(&["registry", "show", "transaction@9.9.9"], data);
    assert!(
        !ok && stderr.contains("no version transaction@9.9.9"),
        "{stderr}"
    );

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
    // A key the plugin's configuration schema does not have: refused.
    let (ok, _, stderr) = run(
        &[&activate[..], &["--config", "threshold=500"]].concat(),
        data,
    );
    assert!(
        !ok && stderr.contains("does not take this configuration"),
        "{stderr}"
    );
    let (ok, stdout, stderr) = run(
        &[
            &activate[..],
            &[
                "--config",
                "high_value_threshold=500",
                "--expect-revision",
                "0",
            ],
        ]
        .concat(),
        data,
    );
    assert!(ok, "{stderr}");
    let binding: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(binding["revision"], 1);
    assert_eq!(
        binding["config"],
        serde_json::json!([["high_value_threshold", "500"]])
    );
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
    processed(data)
        .iter()
        .filter_map(|v| {
            let e = &v["enriched_data"];
            Some((e["amount"].as_f64()?, e["is_high_value"].as_bool()?))
        })
        .collect()
}

/// Every processed record under a data directory.
fn processed(data: &std::path::Path) -> Vec<Value> {
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
                found.push(serde_json::from_str(line).unwrap());
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

/// One HTTP/1.1 request on a fresh connection: the status and the body.
fn http(
    address: &str,
    method: &str,
    path: &str,
    token: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Kills the demo however the test ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_demo_serves_the_console_and_its_pipeline_follows_what_the_console_activates() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let mut demo = Running(
        weir(&[
            "demo",
            "--events",
            "200",
            "--trickle",
            "50",
            "--console-listen",
            "127.0.0.1:0",
        ])
        .args(["--data-dir", data.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap(),
    );
    // Its stdout, read on a thread to the end (the demo keeps printing).
    let stdout = std::io::BufReader::new(demo.0.stdout.take().unwrap());
    let (lines, printed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let (mut address, mut admin, mut acme) = (None, None, None);
    while acme.is_none() {
        let line = printed
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the demo printed its console's address and tokens");
        let last = line
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_owned();
        if let Some(url) = line.strip_prefix("console at http://") {
            address = Some(url.trim_end_matches('/').to_owned());
        } else if line.trim_start().starts_with("admin token") {
            admin = Some(last);
        } else if line.trim_start().starts_with("tenant acme token") {
            acme = Some(last);
        }
    }
    let (address, admin, acme) = (
        address.expect("the demo printed the console's address"),
        admin.expect("an admin token"),
        acme.expect("a tenant token"),
    );
    let (status, body) = http(
        &address,
        "GET",
        "/api/v1/bindings",
        &admin,
        "application/json",
        b"",
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"tenant\":\"acme\""),
        "the demo's own acme binding: {body}"
    );

    // Tenant acme uploads its own plugin and activates it for its transactions.
    let component = std::fs::read(common::wasm("tagger")).unwrap();
    let boundary = "demo-test-boundary";
    let mut upload = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"component\"; filename=\"tagger.wasm\"\r\n\r\n"
    )
    .into_bytes();
    upload.extend_from_slice(&component);
    upload.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (status, body) = http(
        &address,
        "POST",
        "/api/v1/versions",
        &acme,
        &format!("multipart/form-data; boundary={boundary}"),
        &upload,
    );
    assert_eq!(status, 201, "{body}");
    let activation = br#"{"version": "tagger@2.0.0", "config": {"tag": "live"}}"#;
    let (status, body) = http(
        &address,
        "PUT",
        "/api/v1/bindings/acme/transaction",
        &acme,
        "application/json",
        activation,
    );
    assert_eq!(status, 200, "{body}");

    // The running pipeline picks it up: acme's new transactions carry the tag;
    // other tenants keep the default.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let records = processed(&data);
        let tagged = records
            .iter()
            .filter(|r| r["metadata"]["plugin"] == "tagger@2.0.0")
            .collect::<Vec<_>>();
        if !tagged.is_empty() {
            assert!(tagged.iter().all(|r| {
                r["enriched_data"]["tenant_id"] == "acme" && r["enriched_data"]["tag"] == "live"
            }));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no record by the activated version yet"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_replay_backfills_a_time_range_with_a_chosen_version() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    common::Demo::run(400, &data);
    let data_str = data.to_str().unwrap();
    let (ok, _, stderr) = run(&["registry", "add", &wasm("tagger")], data_str);
    assert!(ok, "{stderr}");
    let before = processed(&data).len();

    let (ok, stdout, stderr) = run(
        &[
            "replay",
            "--event-type",
            "transaction",
            "--from",
            "2024-01-15T00:00:00Z",
            "--to",
            "2024-01-16T00:00:00Z",
            "--version",
            "tagger@2.0.0",
            "--tenant",
            "acme",
            "--config",
            "tag=backfill",
        ],
        data_str,
    );
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("replayed") && stderr.contains("objects"),
        "progress: {stderr}"
    );
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(summary["objects"].as_u64().unwrap() > 0, "{summary}");

    let after = processed(&data);
    assert_eq!(
        after.len(),
        before,
        "rewritten in place: no record added or lost"
    );
    let transactions: Vec<&Value> = after
        .iter()
        .filter(|r| r["enriched_data"]["event_type"] == "transaction")
        .collect();
    assert!(!transactions.is_empty());
    for record in transactions {
        let acme = record["enriched_data"]["tenant_id"] == "acme";
        let plugin = &record["metadata"]["plugin"];
        if acme {
            assert_eq!(plugin, "tagger@2.0.0", "{record}");
            assert_eq!(record["enriched_data"]["tag"], "backfill");
        } else {
            assert_eq!(plugin, "transaction@1.0.0", "{record}");
        }
    }

    let (ok, _, stderr) = run(
        &[
            "replay",
            "--event-type",
            "transaction",
            "--from",
            "2024-01-15T10:00:00Z",
            "--to",
            "2024-01-15T09:00:00Z",
        ],
        data_str,
    );
    assert!(
        !ok && stderr.contains("--to must be after --from"),
        "{stderr}"
    );
}
