//! `weir plugin run`: the quickest way to try a plugin on real data.
//!
//! Reads events as JSON Lines, runs them through the plugin in batches, and
//! writes one line per outcome to stdout: `{"output": <envelope>}` per output
//! record, `{"dropped": ...}`, `{"rejected": ...}`, or `{"invalid": ...}` for an
//! input line that is not an event. A summary with throughput goes to stderr.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::json;
use weir_core::envelope::{self, EnvelopeContext, Original};
use weir_core::{Outcome, PluginEvent, Record, StreamContext};
use weir_runtime::{Limits, Plugin, Runtime};

use crate::LimitArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plugin component (.wasm).
    plugin: PathBuf,
    /// Events as JSON Lines; standard input when absent.
    #[arg(long)]
    input: Option<PathBuf>,
    /// The tenant the events belong to.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Tenant configuration, `key=value`; repeatable.
    #[arg(long = "config", value_parser = parse_key_value)]
    config: Vec<(String, String)>,
    /// Events per plugin invocation.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_size: u32,
    /// The processing time given to the plugin (RFC 3339); now by default.
    #[arg(long)]
    processing_time: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{text}` is not key=value"))
}

#[derive(Debug, Default)]
struct Totals {
    events: u64,
    outputs: u64,
    dropped: u64,
    rejected: u64,
    invalid: u64,
    bytes_in: u64,
}

pub fn run(runtime: Runtime, args: Args) -> anyhow::Result<ExitCode> {
    let plugin = runtime
        .load_file(&args.plugin)
        .with_context(|| format!("loading plugin {}", args.plugin.display()))?;
    let processing_time = match &args.processing_time {
        Some(t) => weir_core::time::normalise(t)
            .map_err(anyhow::Error::msg)
            .context("--processing-time")?,
        None => weir_core::time::format_utc(chrono::Utc::now()),
    };
    // Large reads: the input is read once, front to back.
    let input: Box<dyn BufRead> = match &args.input {
        Some(path) => Box::new(BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(path)
                .with_context(|| format!("opening --input {}", path.display()))?,
        )),
        None => Box::new(BufReader::with_capacity(1 << 20, std::io::stdin().lock())),
    };
    let mut stdout = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let runner = Runner {
        plugin: &plugin,
        limits: args.limits.limits(),
        config: &args.config,
        tenant: &args.tenant,
        processing_time: &processing_time,
    };

    let started = Instant::now();
    let mut totals = Totals::default();
    let mut batch = Lines::with_capacity(args.batch_size as usize);
    let mut out = Vec::with_capacity(1 << 20);
    let mut input = input;
    let mut line_no = 0;
    loop {
        line_no += 1;
        let read = batch
            .read_line(&mut input, line_no)
            .with_context(|| format!("reading input line {line_no}"))?;
        totals.bytes_in += read as u64;
        if read == 0 {
            break;
        }
        if batch.len() == args.batch_size as usize {
            totals.events += batch.len() as u64;
            runner.flush(&batch, &mut out, &mut totals);
            batch.clear();
            stdout.write_all(&out)?;
            out.clear();
        }
    }
    totals.events += batch.len() as u64;
    runner.flush(&batch, &mut out, &mut totals);
    stdout.write_all(&out)?;
    stdout.flush()?;

    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{} events: {} outputs, {} dropped, {} rejected, {} invalid; {:.3} s, {:.0} events/s, {:.1} MB/s ({})",
        totals.events,
        totals.outputs,
        totals.dropped,
        totals.rejected,
        totals.invalid,
        secs,
        totals.events as f64 / secs,
        totals.bytes_in as f64 / secs / 1e6,
        plugin.label(),
    );
    if totals.events == 0 {
        bail!("no events on the input; give JSON Lines, one event object per line");
    }
    Ok(ExitCode::SUCCESS)
}

fn invalid(out: &mut Vec<u8>, totals: &mut Totals, line: usize, why: &str) {
    totals.invalid += 1;
    let _ = serde_json::to_writer(
        &mut *out,
        &json!({"invalid": {"line": line, "message": why}}),
    );
    out.push(b'\n');
}

/// The input lines of the batch being gathered, in one buffer (no allocation
/// per line), with their line numbers.
struct Lines {
    text: String,
    lines: Vec<(usize, std::ops::Range<usize>)>,
}

impl Lines {
    fn with_capacity(lines: usize) -> Self {
        Self {
            text: String::with_capacity(lines * 256),
            lines: Vec::with_capacity(lines),
        }
    }

    /// Reads one line; keeps it unless it is blank. Returns the bytes read
    /// (0 at the end of the input).
    fn read_line(&mut self, input: &mut dyn BufRead, line_no: usize) -> std::io::Result<usize> {
        let start = self.text.len();
        let read = input.read_line(&mut self.text)?;
        let line = self.text[start..].trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            self.text.truncate(start);
        } else {
            self.lines.push((line_no, start..start + line.len()));
        }
        Ok(read)
    }

    fn len(&self) -> usize {
        self.lines.len()
    }

    fn iter(&self) -> impl Iterator<Item = (usize, &str)> {
        self.lines
            .iter()
            .map(|(line, range)| (*line, &self.text[range.clone()]))
    }

    fn clear(&mut self) {
        self.text.clear();
        self.lines.clear();
    }
}

struct Runner<'a> {
    plugin: &'a Plugin,
    limits: Limits,
    config: &'a [(String, String)],
    tenant: &'a str,
    processing_time: &'a str,
}

impl Runner<'_> {
    /// Runs one batch of input lines and appends their outcome lines to `out`.
    fn flush(&self, batch: &Lines, out: &mut Vec<u8>, totals: &mut Totals) {
        let mut accepted: Vec<(usize, Record<'_>)> = Vec::with_capacity(batch.len());
        let mut events = Vec::with_capacity(batch.len());
        // The line number is the sequence number; events borrow it.
        let sequences: Vec<String> = batch.iter().map(|(line, _)| line.to_string()).collect();
        for ((line, text), sequence) in batch.iter().zip(&sequences) {
            let ctx = StreamContext {
                tenant: self.tenant,
                partition_key: self.tenant,
                sequence_number: sequence,
                arrival_time: self.processing_time,
                processing_time: self.processing_time,
            };
            let parsed = Record::parse(text).and_then(|record| {
                PluginEvent::from_payload(&record, ctx).map(|event| (record, event))
            });
            match parsed {
                Ok((record, event)) => {
                    accepted.push((line, record));
                    events.push(event);
                }
                Err(why) => invalid(out, totals, line, &why),
            }
        }
        if events.is_empty() {
            return;
        }
        let report = self.plugin.process(self.config, &events, &self.limits);
        let plugin_ref = self.plugin.info().plugin_ref();
        let ctx = EnvelopeContext {
            source: "weir-plugin-run",
            shard_id: "input",
            processed_timestamp: self.processing_time,
            plugin: Some(&plugin_ref),
        };
        let mut lines = Vec::new();
        for ((line, record), (event, outcome)) in
            accepted.iter().zip(events.iter().zip(&report.outcomes))
        {
            let original = Original {
                record,
                sequence_number: &event.sequence_number,
            };
            match outcome {
                Outcome::Enrich(_) => {
                    // One line: write the marker around it in place.
                    out.extend_from_slice(b"{\"output\":");
                    totals.outputs += envelope::write_outcome(out, original, outcome, ctx) as u64;
                    out.pop(); // the envelope's newline
                    out.extend_from_slice(b"}\n");
                }
                Outcome::Emit(_) => {
                    lines.clear();
                    totals.outputs +=
                        envelope::write_outcome(&mut lines, original, outcome, ctx) as u64;
                    for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                        out.extend_from_slice(b"{\"output\":");
                        out.extend_from_slice(line);
                        out.extend_from_slice(b"}\n");
                    }
                }
                Outcome::Drop(reason) => {
                    totals.dropped += 1;
                    let _ = serde_json::to_writer(
                        &mut *out,
                        &json!({"dropped": {"line": line, "reason": reason}}),
                    );
                    out.push(b'\n');
                }
                Outcome::Reject(r) => {
                    totals.rejected += 1;
                    let _ = serde_json::to_writer(
                        &mut *out,
                        &json!({"rejected": {"line": line, "kind": r.kind, "message": r.message}}),
                    );
                    out.push(b'\n');
                }
            }
        }
    }
}
