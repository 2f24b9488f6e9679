//! Sample events of every type the example plugins handle, generated from a
//! seed so runs are repeatable: what the producer function, `weir produce`,
//! the demo and the benchmarks put on streams.

use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use serde_json::{Value, json};

pub const EVENT_TYPES: [&str; 5] = [
    "transaction",
    "user_action",
    "metric",
    "system_event",
    "sensor_reading",
];

#[derive(Debug)]
pub struct Sampler {
    rng: StdRng,
    base_seconds: i64,
}

impl Sampler {
    pub fn new(seed: u64) -> Self {
        // 2024-01-15T10:00:00Z, the seeds' example day.
        Self {
            rng: StdRng::seed_from_u64(seed),
            base_seconds: 1_705_312_800,
        }
    }

    fn timestamp(&mut self) -> String {
        let t = self.base_seconds + self.rng.random_range(0..7200);
        let time = chrono::DateTime::from_timestamp(t, 0).unwrap_or_default();
        weir_core::time::format_utc(time)
    }

    fn money(&mut self) -> f64 {
        let exponent = self.rng.random_range(-1.0..3.6_f64);
        (10f64.powf(exponent) * 100.0).round() / 100.0
    }

    fn pick(&mut self, choices: &[&'static str]) -> &'static str {
        choices[self.rng.random_range(0..choices.len())]
    }

    /// One event of `event_type`.
    pub fn event(&mut self, event_type: &str) -> Value {
        let timestamp = self.timestamp();
        let user = format!("user-{:04}", self.rng.random_range(0..5000));
        match event_type {
            "transaction" => json!({
                "event_type": "transaction", "timestamp": timestamp, "user_id": user,
                "transaction_id": format!("tx-{:016x}", self.rng.next_u64()),
                "amount": self.money(), "currency": "USD",
            }),
            "user_action" => json!({
                "event_type": "user_action", "timestamp": timestamp, "user_id": user,
                "action": self.pick(&["click", "view", "purchase", "login"]),
                "session_duration": self.rng.random_range(0..900),
                "page": format!("/products/{}", self.rng.random_range(0..200)),
            }),
            "metric" => json!({
                "event_type": "metric", "timestamp": timestamp,
                "metric_name": self.pick(&["cpu_usage", "latency_ms", "queue_depth"]),
                "value": (self.rng.random_range(-5.0..130.0_f64) * 10.0).round() / 10.0,
                "host": format!("host-{:02}", self.rng.random_range(0..20)),
            }),
            "system_event" => json!({
                "event_type": "system_event", "timestamp": timestamp,
                "component": self.pick(&["api", "db", "cache", "queue"]),
                "severity": self.pick(&["DEBUG", "info", "Warning", "ERR", "critical", "notice"]),
                "message": "health check",
            }),
            _ => json!({
                "event_type": "sensor_reading", "timestamp": timestamp,
                "sensorId": format!("sensor-{:03}", self.rng.random_range(0..100)),
                "temperature": (self.rng.random_range(-10.0..45.0_f64) * 10.0).round() / 10.0,
                "humidity": (self.rng.random_range(10.0..95.0_f64) * 10.0).round() / 10.0,
            }),
        }
    }
}

/// The partition key of a generated event: its natural key, so one user's,
/// sensor's or host's events keep their order in one shard.
pub fn partition_key(event: &Value) -> String {
    ["sensorId", "user_id", "host", "component"]
        .iter()
        .find_map(|k| event.get(*k).and_then(|v| v.as_str()))
        .unwrap_or("default")
        .to_owned()
}
