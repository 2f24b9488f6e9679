//! The per-batch store state: an empty WASI context, the memory limiter, the
//! plugin's log sink and the capture of what it prints. What a plugin can
//! reach is exactly what is here.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

use crate::bindings::LogLevel;
use crate::bindings::{v0_1, v0_2};

pub(crate) struct Sandbox {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) memory: MemoryLimiter,
    pub(crate) log: LogSink,
    pub(crate) printed: Printed,
}

impl Sandbox {
    /// `now`: the batch's processing time, since the Unix epoch. The plugin's
    /// clocks are frozen at it and its random numbers are a fixed sequence, so
    /// the same batch always gives the same output.
    pub(crate) fn new(now: Duration, memory_bytes: usize, log: LogSink) -> Self {
        let printed = Printed::default();
        let wasi = WasiCtxBuilder::new()
            .stdout(printed.stdout.clone())
            .stderr(printed.stderr.clone())
            .wall_clock(FrozenWallClock(now))
            .monotonic_clock(FrozenMonotonicClock)
            .secure_random(StdRng::seed_from_u64(0))
            .insecure_random(StdRng::seed_from_u64(0))
            .insecure_random_seed(0)
            // wasmtime-wasi's default is 64 MiB a call, made byte by byte on
            // the host, where the CPU limit cannot stop it (16 s in a debug
            // build); seeding a hash map takes 16 bytes.
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryLimiter {
                limit: memory_bytes,
                peak: 0,
                hit: false,
            },
            log,
            printed,
        }
    }
}

/// What a plugin wrote to stdout and stderr in a batch, its first
/// [`PRINTED_BYTES`] each (`wasi_sync` drops the rest without failing the
/// write). It becomes the plugin's log lines, stderr at warn, and the tail of
/// stderr goes into a trap's reason: a Rust plugin's panic message is there.
pub(crate) struct Printed {
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

/// The most random bytes one `wasi:random` call may ask for.
const MAX_RANDOM_BYTES: u64 = 64 << 10;

/// Per stream and batch.
pub(crate) const PRINTED_BYTES: usize = 16 * 1024;

/// The part of stderr a trap's reason carries.
const STDERR_IN_TRAP_BYTES: usize = 512;

impl Default for Printed {
    fn default() -> Self {
        Self {
            stdout: MemoryOutputPipe::new(PRINTED_BYTES),
            stderr: MemoryOutputPipe::new(PRINTED_BYTES),
        }
    }
}

/// A line a plugin printed, as its batch's report gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrintedLine {
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    pub text: String,
}

/// What a batch printed: its lines, and the end of stderr for a trap's reason.
pub(crate) struct Forwarded {
    pub(crate) lines: Vec<PrintedLine>,
    pub(crate) stderr_tail: Option<String>,
}

impl Printed {
    /// Logs what was printed, a line a log line (within the batch's log
    /// budget), and returns it with the end of stderr, if anything was
    /// written there.
    pub(crate) fn forward(&self, log: &mut LogSink) -> Forwarded {
        let stdout = self.stdout.contents();
        let stderr = self.stderr.contents();
        if stdout.is_empty() && stderr.is_empty() {
            // Every batch of a plugin that prints nothing: nothing to make.
            return Forwarded {
                lines: Vec::new(),
                stderr_tail: None,
            };
        }
        let streams = [
            (&stdout, LogLevel::Info, "stdout"),
            (&stderr, LogLevel::Warn, "stderr"),
        ];
        let mut lines = Vec::new();
        for (bytes, level, stream) in streams {
            let field = [("stream".to_owned(), stream.to_owned())];
            for line in String::from_utf8_lossy(bytes).lines() {
                if !line.trim().is_empty() {
                    log.write(level, line, &field);
                    lines.push(PrintedLine {
                        stream,
                        text: line.to_owned(),
                    });
                }
            }
        }
        Forwarded {
            lines,
            stderr_tail: tail(&stderr),
        }
    }
}

/// The end of stderr, on one line.
fn tail(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    (!text.is_empty()).then(|| {
        let start = text.ceil_char_boundary(text.len().saturating_sub(STDERR_IN_TRAP_BYTES));
        text[start..]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    })
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

struct FrozenWallClock(Duration);

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

struct FrozenMonotonicClock;

impl HostMonotonicClock for FrozenMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Caps linear memory, and remembers the peak and whether the cap was hit (so a
/// trap that follows a refused `memory.grow` is reported as a memory limit).
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: usize,
    pub(crate) peak: usize,
    pub(crate) hit: bool,
}

/// Tables hold function references; no honest plugin needs more.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Forwards plugin log lines to `tracing`, tagged with the plugin, up to a
/// budget per batch; longer messages are truncated.
#[derive(Debug)]
pub(crate) struct LogSink {
    pub(crate) plugin: String,
    pub(crate) budget: u32,
    pub(crate) dropped: u32,
}

const MAX_LOG_MESSAGE_BYTES: usize = 1024;

fn truncate(text: &str) -> &str {
    &text[..text.floor_char_boundary(MAX_LOG_MESSAGE_BYTES)]
}

impl v0_1::weir::plugin::log::Host for Sandbox {
    fn log(&mut self, level: LogLevel, message: String, fields: Vec<(String, String)>) {
        self.log.write(level, &message, &fields);
    }
}

impl v0_2::weir::plugin::log::Host for Sandbox {
    fn log(
        &mut self,
        level: v0_2::weir::plugin::log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) {
        use v0_2::weir::plugin::log::Level;
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        self.log.write(level, &message, &fields);
    }
}

impl LogSink {
    fn write(&mut self, level: LogLevel, message: &str, fields: &[(String, String)]) {
        if self.budget == 0 {
            self.dropped += 1;
            return;
        }
        self.budget -= 1;
        let plugin = self.plugin.as_str();
        let message = truncate(message);
        let fields: Vec<String> = fields
            .iter()
            .take(16)
            .map(|(k, v)| format!("{}={}", truncate(k), truncate(v)))
            .collect();
        let fields = fields.join(" ");
        match level {
            LogLevel::Trace => tracing::trace!(target: "weir::plugin", plugin, fields, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "weir::plugin", plugin, fields, "{message}"),
            LogLevel::Info => tracing::info!(target: "weir::plugin", plugin, fields, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "weir::plugin", plugin, fields, "{message}"),
            LogLevel::Error => tracing::error!(target: "weir::plugin", plugin, fields, "{message}"),
        }
    }
}

impl v0_1::weir::plugin::types::Host for Sandbox {}
impl v0_2::weir::plugin::types::Host for Sandbox {}
