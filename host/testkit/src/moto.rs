//! A real AWS-compatible server for the AWS backends' tests: moto
//! (`moto[server]` from PyPI).
//!
//! `.ci/run` starts one and exports `AWS_ENDPOINT_URL`; without it, the first
//! test that asks starts one on a free port for this test process, and a
//! watchdog stops it when the process ends. Tests keep apart by naming their
//! resources uniquely ([`unique_prefix`]).

use std::net::{TcpListener, TcpStream};
use std::process::Child;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The endpoint URL of a running moto server.
pub fn endpoint() -> String {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT
        .get_or_init(|| match std::env::var("AWS_ENDPOINT_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => start(),
        })
        .clone()
}

static WATCHDOG: OnceLock<Mutex<Child>> = OnceLock::new();

fn start() -> String {
    let python = crate::python::python_with("moto.server", "moto[server]");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // The watchdog stops moto once this process is gone: test processes end
    // without running destructors of statics.
    let script = format!(
        "\"{python}\" -m moto.server -H 127.0.0.1 -p {port} >/dev/null 2>&1 & server=$!; \
         while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; kill $server",
        python = python.display(),
        parent = std::process::id(),
    );
    let watchdog = Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .expect("starting moto");
    // Kept, never waited for: it ends with this process.
    WATCHDOG.get_or_init(|| Mutex::new(watchdog));
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto did not listen on port {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    format!("http://127.0.0.1:{port}")
}

/// A prefix no other test of this run uses: `weir-t{pid}-{n}`.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "weir-t{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
