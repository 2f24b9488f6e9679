//! Per-invocation limits, configurable per plugin binding (plugin and tenant).

use std::time::Duration;

/// What one batch invocation of a plugin may use. The defaults are safe for
/// untrusted code and generous for the seed enrichers (which use ~2 MiB and a
/// few microseconds per record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory the plugin may grow to, in bytes.
    pub memory_bytes: usize,
    /// CPU (wall) time per batch, enforced by epoch interruption, so the
    /// effective bound is this plus up to one epoch tick.
    pub cpu_time: Duration,
    /// Size of one output record (each `enrich` or `emit` JSON text), in bytes.
    pub max_record_output_bytes: usize,
    /// Size of all outputs of one batch, in bytes: each output's JSON and its
    /// envelope's metadata (256 bytes), and a copy of the record for every
    /// output after an event's first (the envelope carries the original).
    pub max_batch_output_bytes: usize,
    /// Log lines a plugin may emit per batch; the rest are counted and dropped.
    pub max_log_lines: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            cpu_time: Duration::from_secs(1),
            max_record_output_bytes: 1 << 20,
            max_batch_output_bytes: 16 << 20,
            max_log_lines: 100,
        }
    }
}
