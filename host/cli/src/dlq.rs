//! `weir dlq`: inspect dead letters and redrive them once their cause is fixed.
//!
//! `list` writes JSON Lines (one letter a line, with its id; payloads as text,
//! or base64 when they are not UTF-8), filtered by stage, kind, shard or
//! reason. `show` prints one letter. `redrive` puts the chosen letters'
//! payloads back on the stream, with their partition keys, so they take the
//! same path as new records; once the stream accepted them they leave the
//! queue. Throttled puts are retried with backoff.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use weir_core::backend::{DeadLetter, DeadLetterFilter};
use weir_core::stream::{PutRecord, PutResult, StreamSink};
use weir_embedded::{EmbeddedStream, SqliteState};

use crate::wiring::StreamArgs;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Dead letters as JSON Lines, oldest first.
    List {
        #[command(flatten)]
        target: StreamArgs,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// One dead letter, pretty-printed.
    Show {
        #[command(flatten)]
        target: StreamArgs,
        /// The letter's id (from `weir dlq list`).
        id: i64,
    },
    /// Put dead letters back on the stream and remove them from the queue.
    Redrive {
        #[command(flatten)]
        target: StreamArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Required when no filter narrows the choice: redrive every letter.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// Where it failed: intake, enrich, ...
    #[arg(long)]
    stage: Option<String>,
    /// The error kind: not-json, missing-field, cpu-limit, ...
    #[arg(long)]
    kind: Option<String>,
    #[arg(long)]
    shard: Option<String>,
    /// Letters whose reason contains this text.
    #[arg(long)]
    reason: Option<String>,
    #[arg(long)]
    limit: Option<usize>,
}

impl FilterArgs {
    fn filter(&self) -> DeadLetterFilter {
        DeadLetterFilter {
            stage: self.stage.clone(),
            kind: self.kind.clone(),
            shard_id: self.shard.clone(),
            reason_contains: self.reason.clone(),
            limit: self.limit,
            id: None,
        }
    }

    fn is_narrowed(&self) -> bool {
        self.stage.is_some() || self.kind.is_some() || self.shard.is_some() || self.reason.is_some()
    }
}

pub fn open_state(target: &StreamArgs) -> anyhow::Result<SqliteState> {
    let db = target.data_dir.join("state").join("weir.db");
    if !db.exists() {
        bail!(
            "no Weir state at {}; give the --data-dir the pipeline ran with",
            db.display()
        );
    }
    SqliteState::open(&db).with_context(|| format!("opening {}", db.display()))
}

fn with_id(id: i64, letter: &DeadLetter) -> serde_json::Value {
    let mut value = serde_json::to_value(letter).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("id".into(), json!(id));
    }
    value
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async move {
        match command {
            Command::List { target, filter } => {
                let letters = open_state(&target)?.dead_letters(filter.filter()).await?;
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                for (id, letter) in &letters {
                    writeln!(out, "{}", with_id(*id, letter))?;
                }
                out.flush()?;
                eprintln!("{} dead letter(s)", letters.len());
                Ok(ExitCode::SUCCESS)
            }
            Command::Show { target, id } => {
                let filter = DeadLetterFilter { id: Some(id), ..Default::default() };
                let Some((id, letter)) = open_state(&target)?.dead_letters(filter).await?.pop() else {
                    bail!("no dead letter with id {id}; `weir dlq list` shows the ids");
                };
                println!("{}", serde_json::to_string_pretty(&with_id(id, &letter))?);
                Ok(ExitCode::SUCCESS)
            }
            Command::Redrive { target, filter, all } => {
                if !filter.is_narrowed() && !all {
                    bail!("choose what to redrive with --stage, --kind, --shard or --reason, or say --all");
                }
                let state = open_state(&target)?;
                let letters = state.dead_letters(filter.filter()).await?;
                let stream = EmbeddedStream::open(state.clone(), target.settings()).await?;
                let redriven = redrive(&stream, &letters).await?;
                let removed = state.delete_dead_letters(redriven).await?;
                eprintln!("redrove {removed} dead letter(s) onto stream `{}`", target.stream);
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// Puts the letters' payloads back on the stream, retrying throttled ones;
/// returns the ids the stream accepted.
async fn redrive(
    stream: &EmbeddedStream,
    letters: &[(i64, DeadLetter)],
) -> anyhow::Result<Vec<i64>> {
    let mut accepted = Vec::new();
    for chunk in letters.chunks(500) {
        let mut pending: Vec<&(i64, DeadLetter)> = chunk.iter().collect();
        for attempt in 0..10u32 {
            let records = pending
                .iter()
                .map(|(_, l)| PutRecord {
                    partition_key: l.partition_key.clone(),
                    data: l.payload.clone(),
                })
                .collect();
            let results = stream.put_records(records).await?;
            let mut throttled = Vec::new();
            for (letter, result) in pending.into_iter().zip(results) {
                match result {
                    PutResult::Accepted { .. } => accepted.push(letter.0),
                    PutResult::Throttled { .. } => throttled.push(letter),
                    PutResult::Refused { reason } => {
                        eprintln!("dead letter {} stays: {reason}", letter.0)
                    }
                }
            }
            if throttled.is_empty() {
                break;
            }
            pending = throttled;
            tokio::time::sleep(Duration::from_millis(100 << attempt.min(4))).await;
        }
    }
    Ok(accepted)
}
