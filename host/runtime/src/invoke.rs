//! Running one batch through a plugin, and turning everything that can go wrong
//! into per-record rejections.

use std::time::{Duration, Instant};

use wasmtime::component::{ComponentExportIndex, ComponentType, Instance, InstancePre, Lower};
use wasmtime::{Store, Trap};
use weir_core::{Outcome, PluginEvent, Rejection, RejectionKind};

use crate::bindings::{DescribeFunc, EventRef, ProcessFunc, WitBatch, WitOutcome, WitPluginInfo};
use crate::breaker::BreakerChange;
use crate::contract::Contract;
use crate::lower_events::{EventBlock, EventList};
use crate::outputs::{bounded, validate};
use crate::sandbox::{LogSink, PrintedLine, Sandbox};
use crate::schemas;
use crate::{Limits, Plugin, Runtime};

/// A fault of the plugin that took its whole batch down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Trap(String),
    CpuLimit(Duration),
    MemoryLimit(usize),
    InvalidOutput(String),
    BatchError(String),
    CircuitOpen(String),
}

/// What went wrong, without naming the plugin: "trapped: …", "exceeded its
/// memory limit …".
impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Trap(why) => write!(f, "trapped: {why}"),
            Fault::CpuLimit(budget) => {
                write!(f, "exceeded its CPU time limit of {budget:?} for the batch")
            }
            Fault::MemoryLimit(bytes) => {
                write!(f, "exceeded its memory limit of {} MiB", bytes >> 20)
            }
            Fault::InvalidOutput(why) => write!(f, "broke the contract: {why}"),
            Fault::BatchError(why) => write!(f, "refused the batch: {why}"),
            Fault::CircuitOpen(why) => write!(f, "is {why}"),
        }
    }
}

impl Fault {
    fn rejection(&self, plugin: &str) -> Rejection {
        let kind = match self {
            Fault::Trap(_) => RejectionKind::PluginTrap,
            Fault::CpuLimit(_) => RejectionKind::CpuLimit,
            Fault::MemoryLimit(_) => RejectionKind::MemoryLimit,
            Fault::InvalidOutput(_) => RejectionKind::InvalidOutput,
            Fault::BatchError(_) => RejectionKind::BatchError,
            Fault::CircuitOpen(_) => RejectionKind::CircuitOpen,
        };
        Rejection::new(kind, format!("plugin {plugin} {self}"))
    }

    /// Whether this fault counts towards the circuit breaker.
    fn is_plugin_fault(&self) -> bool {
        !matches!(self, Fault::BatchError(_) | Fault::CircuitOpen(_))
    }
}

/// What one batch invocation produced.
#[derive(Debug, Clone)]
pub struct BatchReport {
    /// One outcome per input event, in order. Never shorter: faults are here as
    /// rejections.
    pub outcomes: Vec<Outcome>,
    /// The fault that took the whole batch down, if any.
    pub fault: Option<Fault>,
    /// Wall time of instantiation plus the call.
    pub elapsed: Duration,
    /// Instantiation alone.
    pub instantiate: Duration,
    /// The most linear memory the plugin had, in bytes.
    pub peak_memory_bytes: usize,
    /// Log lines over the budget, dropped.
    pub log_lines_dropped: u32,
    /// What the plugin printed to stdout and stderr, a line an entry (the
    /// first 16 KiB of each stream per call).
    pub printed: Vec<PrintedLine>,
}

pub(crate) fn describe(
    runtime: &Runtime,
    pre: &InstancePre<Sandbox>,
    export: &ComponentExportIndex,
    limits: &Limits,
) -> Result<WitPluginInfo, String> {
    let _slot = runtime.inner.slots.take();
    let mut store = new_store(runtime, limits, Duration::ZERO, "loading plugin".into());
    pre.instantiate(&mut store)
        .and_then(|instance| instance.get_typed_func(&mut store, export))
        .and_then(|describe: DescribeFunc| describe.call(&mut store, ()))
        .map(|(info,)| info)
        .map_err(|e| format!("{e:#}"))
}

/// Calls `process` with the events lowered as `Events`, the contract
/// version's own layout.
fn call_process<Events: ComponentType + Lower>(
    store: &mut Store<Sandbox>,
    instance: &Instance,
    export: &ComponentExportIndex,
    batch: &WitBatch,
    events: Events,
) -> wasmtime::Result<Result<Vec<WitOutcome>, String>> {
    let process: ProcessFunc<'_, Events> = instance.get_typed_func(&mut *store, export)?;
    process.call(store, (batch, events)).map(|(result,)| result)
}

fn new_store(runtime: &Runtime, limits: &Limits, now: Duration, plugin: String) -> Store<Sandbox> {
    let log = LogSink {
        plugin,
        budget: limits.max_log_lines,
        dropped: 0,
    };
    let mut store = Store::new(
        &runtime.inner.engine,
        Sandbox::new(now, limits.memory_bytes, log),
    );
    store.limiter(|s| &mut s.memory);
    let tick = runtime.inner.settings.epoch_tick.as_nanos().max(1);
    let ticks = limits.cpu_time.as_nanos().div_ceil(tick) as u64;
    // One extra tick: the ticker runs asynchronously, so the first tick may come
    // at once; with it the plugin always gets at least its budget.
    store.set_epoch_deadline(ticks.max(1) + 1);
    store.epoch_deadline_trap();
    store
}

impl Plugin {
    /// Runs a batch as a host does. `config` is the tenant's configuration.
    /// Never fails: whatever goes wrong becomes rejections, and the host goes
    /// on.
    ///
    /// When the plugin declares an input schema, each event's payload is held
    /// to it first: one that does not match is rejected on the plugin's
    /// behalf (`missing-field` or `invalid-field`, naming the schema's
    /// faults) and never reaches it, so a plugin can count on what it
    /// declared. The others go to [`Plugin::process_unscreened`].
    pub fn process(
        &self,
        config: &[(String, String)],
        events: &[PluginEvent<'_>],
        limits: &Limits,
    ) -> BatchReport {
        let Some(input) = &self.inner.schemas.input else {
            return self.process_unscreened(config, events, limits);
        };
        let verdicts: Vec<Option<Rejection>> = events
            .iter()
            .map(|event| schemas::screen(input, &event.payload, &self.inner.label))
            .collect();
        if verdicts.iter().all(Option::is_none) {
            return self.process_unscreened(config, events, limits);
        }
        let admitted: Vec<PluginEvent<'_>> = events
            .iter()
            .zip(&verdicts)
            .filter(|(_, verdict)| verdict.is_none())
            .map(|(event, _)| event.clone())
            .collect();
        let mut report = self.process_unscreened(config, &admitted, limits);
        let mut called = std::mem::take(&mut report.outcomes).into_iter();
        report.outcomes = verdicts
            .into_iter()
            .map(|verdict| match verdict {
                Some(rejection) => Outcome::Reject(rejection),
                // `process_unscreened` gives one outcome per event, in order.
                None => called.next().unwrap_or_else(|| {
                    Outcome::Reject(Rejection::new(
                        RejectionKind::InvalidOutput,
                        "the host lost this record's outcome (a bug: please report it)",
                    ))
                }),
            })
            .collect();
        report
    }

    /// Runs a batch through the plugin whatever its input schema says: what
    /// the sandbox costs, for benchmarks, and a dry run of a configuration.
    ///
    /// The contract gives a plugin batches of one tenant, event type and
    /// processing time; events that differ are split into runs of those, in
    /// order, and the plugin is called once per run.
    pub fn process_unscreened(
        &self,
        config: &[(String, String)],
        events: &[PluginEvent<'_>],
        limits: &Limits,
    ) -> BatchReport {
        let mut runs = events.chunk_by(|a, b| {
            a.tenant == b.tenant
                && a.event_type == b.event_type
                && a.processing_time == b.processing_time
        });
        let Some(first) = runs.next() else {
            return BatchReport {
                outcomes: Vec::new(),
                fault: None,
                elapsed: Duration::ZERO,
                instantiate: Duration::ZERO,
                peak_memory_bytes: 0,
                log_lines_dropped: 0,
                printed: Vec::new(),
            };
        };
        let mut report = self.invoke(config, first, limits);
        for run in runs {
            let next = self.invoke(config, run, limits);
            report.outcomes.extend(next.outcomes);
            report.fault = report.fault.or(next.fault);
            report.elapsed += next.elapsed;
            report.instantiate += next.instantiate;
            report.peak_memory_bytes = report.peak_memory_bytes.max(next.peak_memory_bytes);
            report.log_lines_dropped += next.log_lines_dropped;
            report.printed.extend(next.printed);
        }
        report
    }

    /// One call of the plugin, on events that share a tenant, event type and
    /// processing time.
    fn invoke(
        &self,
        config: &[(String, String)],
        events: &[PluginEvent<'_>],
        limits: &Limits,
    ) -> BatchReport {
        let started = Instant::now();
        let admitted = self.inner.breaker.lock().map(|mut b| b.admit(started));
        if let Ok(Err(why)) = admitted {
            return self.all_rejected(
                events.len(),
                Fault::CircuitOpen(why),
                started,
                Duration::ZERO,
                0,
                0,
            );
        }

        let now = events
            .first()
            .and_then(|e| weir_core::time::parse_rfc3339(&e.processing_time).ok())
            .and_then(|t| t.signed_duration_since(chrono_epoch()).to_std().ok())
            .unwrap_or_default();
        let _slot = self.inner.runtime.inner.slots.take();
        let mut store = new_store(&self.inner.runtime, limits, now, self.inner.label.clone());
        let result = self.inner.pre.instantiate(&mut store).map(|instance| {
            let instantiated = started.elapsed();
            let called = match events.first() {
                Some(first) => {
                    let batch = WitBatch::of(first, config);
                    let refs: Vec<EventRef<'_>> = events.iter().map(EventRef::from).collect();
                    let export = &self.inner.process_export;
                    match self.inner.contract {
                        Contract::V0_1 => {
                            call_process(&mut store, &instance, export, &batch, EventList(&refs))
                        }
                        Contract::V0_2 => {
                            call_process(&mut store, &instance, export, &batch, EventBlock(&refs))
                        }
                    }
                }
                None => Ok(Ok(Vec::new())),
            };
            (instantiated, called)
        });
        let (instantiate, called) = match result {
            Ok((instantiate, called)) => (instantiate, called),
            Err(e) => (started.elapsed(), Err(e)),
        };
        let sandbox = store.data_mut();
        let printed = sandbox.printed.forward(&mut sandbox.log);
        let (peak, dropped) = (sandbox.memory.peak, sandbox.log.dropped);

        let outcome = match called {
            Err(_) if sandbox.memory.hit => Err(Fault::MemoryLimit(limits.memory_bytes)),
            Err(e) if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) => {
                Err(Fault::CpuLimit(limits.cpu_time))
            }
            Err(e) => {
                let trap = if let Some(trap) = e.downcast_ref::<Trap>() {
                    trap.to_string()
                } else if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                    format!(
                        "it exited (status {}) instead of returning its outcomes",
                        exit.0
                    )
                } else {
                    // A host call's refusal; without the wasm backtrace around it.
                    e.root_cause().to_string()
                };
                Err(Fault::Trap(match printed.stderr_tail {
                    // A Rust plugin's panic message, for one.
                    Some(stderr) => format!("{trap}; its stderr: {stderr}"),
                    None => trap,
                }))
            }
            Ok(Err(why)) => Err(Fault::BatchError(bounded(why))),
            Ok(Ok(outcomes)) => validate(&self.inner.label, outcomes, events, limits),
        };
        match outcome {
            Ok(outcomes) => {
                let had_invalid = outcomes.iter().any(
                    |o| matches!(o, Outcome::Reject(r) if r.kind == RejectionKind::InvalidOutput),
                );
                self.record(
                    had_invalid.then_some("invalid output for some records"),
                    started,
                );
                BatchReport {
                    outcomes,
                    fault: None,
                    elapsed: started.elapsed(),
                    instantiate,
                    peak_memory_bytes: peak,
                    log_lines_dropped: dropped,
                    printed: printed.lines,
                }
            }
            Err(fault) => {
                // At debug only: golden cases and the console's checks fault
                // on purpose. The pipeline warns, naming tenant and event type.
                tracing::debug!(plugin = %self.inner.label, %fault, records = events.len(), "plugin fault");
                if fault.is_plugin_fault() {
                    self.record(Some(&format!("{fault:?}")), started);
                }
                let mut report =
                    self.all_rejected(events.len(), fault, started, instantiate, peak, dropped);
                report.printed = printed.lines;
                report
            }
        }
    }

    fn record(&self, fault: Option<&str>, now: Instant) {
        let Ok(mut breaker) = self.inner.breaker.lock() else {
            return;
        };
        let plugin = &self.inner.label;
        match breaker.record(fault, now) {
            Some(BreakerChange::Opened {
                consecutive_faults,
                cooldown,
            }) => tracing::error!(
                plugin = %plugin,
                consecutive_faults,
                cooldown_seconds = cooldown.as_secs_f64(),
                last_fault = fault.unwrap_or_default(),
                "circuit breaker open: the plugin's records are dead-lettered without running it until the cooldown ends; fix the plugin or its binding's config, or roll the binding back"
            ),
            Some(BreakerChange::Closed) => tracing::info!(
                plugin = %plugin,
                "circuit breaker closed: a trial batch after the cooldown succeeded"
            ),
            None => {}
        }
    }

    fn all_rejected(
        &self,
        n: usize,
        fault: Fault,
        started: Instant,
        instantiate: Duration,
        peak_memory_bytes: usize,
        log_lines_dropped: u32,
    ) -> BatchReport {
        let rejection = fault.rejection(&self.inner.label);
        BatchReport {
            outcomes: vec![Outcome::Reject(rejection); n],
            fault: Some(fault),
            elapsed: started.elapsed(),
            instantiate,
            peak_memory_bytes,
            log_lines_dropped,
            printed: Vec::new(),
        }
    }
}

fn chrono_epoch() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::UNIX_EPOCH
}
