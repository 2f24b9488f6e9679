//! A plugin that misbehaves on request; only Weir's tests use it.
//!
//! Each event's payload names an `attack`. Batch-wide attacks (loop, memory,
//! panic, stack overflow, sleep, exit, wrong count) take the whole invocation down; per-event
//! attacks answer for their event only (`remember` reports the state an earlier
//! event left, `echo` returns the event's fields as the plugin received them). Events without an attack are enriched with `{"ok": true}`, so
//! tests can see which records survived.
//!
//! It implements the raw export on purpose: the SDK cannot produce invalid JSON.

use std::hash::{BuildHasher, Hasher};

use weir_plugin_sdk::__private::bindings::weir::plugin::log::{Level, log};
use weir_plugin_sdk::__private::{
    Guest, RawBatch, RawEvents, RawInfo, RawOutcome, bindings, export_enricher, texts,
};
use weir_plugin_sdk::json;

struct Hostile;

/// `wasi:random` called directly, as a runtime of another language would.
mod random {
    weir_plugin_sdk::__private::wit_bindgen::generate!({
        inline: r#"
            package weir:hostile;

            world random-user {
                import wasi:random/random@0.2.0;
            }

            package wasi:random@0.2.0 {
                interface random {
                    get-random-bytes: func(len: u64) -> list<u8>;
                    get-random-u64: func() -> u64;
                }
            }
        "#,
        runtime_path: "weir_plugin_sdk::__private::wit_bindgen::rt",
        generate_all,
    });
}

/// One event's texts, as the plugin received them.
struct Texts<'a> {
    payload: &'a str,
    partition_key: &'a str,
    sequence_number: &'a str,
    arrival_time: &'a str,
    event_time: &'a str,
}

/// The tenant of the last `remember` attack. Instance state lives for one
/// batch: a later batch (perhaps another tenant's) must find this empty.
static REMEMBERED: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

fn attack_of(event: &Texts<'_>) -> String {
    serde_json::from_str::<serde_json::Value>(event.payload)
        .ok()
        .and_then(|v| v.get("attack").and_then(|a| a.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

#[inline(never)]
#[allow(unconditional_recursion)] // a stack overflow is the point
fn recurse(depth: u64) -> u64 {
    let frame = [depth; 64];
    std::hint::black_box(&frame);
    recurse(depth + 1) + frame[3]
}

fn one(batch: &RawBatch, event: &Texts<'_>, attack: &str) -> RawOutcome {
    let fields = match attack {
        "huge-output" => json!({ "blob": "x".repeat(4 << 20) }),
        "invalid-json" => return RawOutcome::Enrich("{not json".to_owned()),
        "not-an-object" => return RawOutcome::Enrich("[1,2,3]".to_owned()),
        "read-file" => {
            let result = std::fs::read_to_string("/etc/passwd")
                .map(|s| format!("read {} bytes", s.len()))
                .unwrap_or_else(|e| format!("error: {e}"));
            let listing = std::fs::read_dir("/")
                .map(|d| d.count())
                .map_err(|e| e.to_string());
            json!({ "file": result, "root_listing": format!("{listing:?}") })
        }
        "env" => json!({
            "vars": std::env::vars().count(),
            "home": std::env::var("HOME").ok(),
            "args": std::env::args().count(),
        }),
        "clock" => {
            let since_epoch = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let started = std::time::Instant::now();
            json!({ "unix_seconds": since_epoch, "elapsed_nanos": started.elapsed().as_nanos() as u64 })
        }
        "random" => {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(42);
            json!({ "hash": hasher.finish() })
        }
        "print" => {
            println!("to stdout, line 1\nto stdout, line 2");
            eprintln!("to stderr");
            json!({ "printed": true })
        }
        "print-flood" => {
            let line = "flood ".repeat(100);
            for _ in 0..2_000 {
                println!("{line}");
                eprintln!("{line}");
            }
            json!({ "printed": 2 * 2_000 * line.len() })
        }
        "log-flood" => {
            for i in 0..10_000 {
                log(
                    Level::Error,
                    &"flood ".repeat(1000),
                    &[("i".to_owned(), i.to_string())],
                );
            }
            json!({ "logged": 10_000 })
        }
        "remember" => {
            let mut remembered = REMEMBERED.lock().unwrap_or_else(|e| e.into_inner());
            let earlier = std::mem::replace(&mut *remembered, batch.tenant.clone());
            json!({ "earlier_tenant": earlier })
        }
        "echo" => json!({
            "payload": event.payload,
            "partition_key": event.partition_key,
            "sequence_number": event.sequence_number,
            "arrival_time": event.arrival_time,
            "event_time": event.event_time,
        }),
        "drop" => return RawOutcome::Drop("asked to drop".to_owned()),
        "long-reason" => {
            use bindings::weir::plugin::types::{Rejection, RejectionKind};
            return RawOutcome::Reject(Rejection {
                kind: RejectionKind::InvalidField,
                message: "é".repeat(50_000),
            });
        }
        // `count` outputs, each of which the envelope gives a copy of the record.
        "explode" => {
            let count = serde_json::from_str::<serde_json::Value>(event.payload)
                .ok()
                .and_then(|v| v.get("count").and_then(serde_json::Value::as_u64))
                .unwrap_or(2);
            return RawOutcome::Emit((0..count).map(|i| format!("{{\"i\":{i}}}")).collect());
        }
        _ => json!({ "ok": true, "sequence": event.sequence_number, "tenant": batch.tenant }),
    };
    RawOutcome::Enrich(fields.to_string())
}

impl Guest for Hostile {
    fn describe() -> RawInfo {
        RawInfo {
            name: "hostile".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            event_types: vec!["hostile".to_owned()],
            contract_version: weir_plugin_sdk::CONTRACT_VERSION.to_owned(),
            input_schema: None,
            config_schema: None,
        }
    }

    fn process(batch: RawBatch, events: RawEvents) -> Result<Vec<RawOutcome>, String> {
        let events = events
            .events
            .iter()
            .map(|raw| {
                let [
                    payload,
                    partition_key,
                    sequence_number,
                    arrival_time,
                    event_time,
                ] = texts(&events.text, raw).ok_or("a span outside the batch text")?;
                Ok(Texts {
                    payload,
                    partition_key,
                    sequence_number,
                    arrival_time,
                    event_time,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let attacks: Vec<String> = events.iter().map(attack_of).collect();
        for attack in &attacks {
            match attack.as_str() {
                "loop" => loop {
                    std::hint::black_box(0);
                },
                "memory" => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![1u8; 1 << 20]);
                        std::hint::black_box(&hoard);
                    }
                }
                "panic" => panic!("hostile plugin panics on purpose"),
                "stack-overflow" => {
                    std::hint::black_box(recurse(0));
                }
                "sleep" => std::thread::sleep(std::time::Duration::from_secs(3600)),
                "exit" => std::process::exit(3),
                "random-bomb" => {
                    let bytes = random::wasi::random::random::get_random_bytes(64 << 20);
                    std::hint::black_box(bytes);
                }
                "wrong-count" => return Ok(Vec::new()),
                "batch-error" => return Err("hostile plugin refuses the batch".to_owned()),
                _ => {}
            }
        }
        Ok(events
            .iter()
            .zip(&attacks)
            .map(|(e, a)| one(&batch, e, a))
            .collect())
    }
}

export_enricher!(Hostile with_types_in bindings);
