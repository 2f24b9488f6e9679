//! `weir dlq`: inspect dead letters and redrive them once their cause is fixed.
//!
//! `list` writes JSON Lines (one letter a line, with its id; payloads as text,
//! or base64 when they are not UTF-8), filtered by stage, kind, shard or
//! reason. `show` prints one letter. `redrive` puts the chosen letters'
//! payloads back on the stream, with their partition keys, so they take the
//! same path as new records; once the stream accepted them they leave the
//! queue. Throttled puts are retried with backoff.
//!
//! The letters are in SQLite under the data directory, or (`--backend aws`)
//! in the SQS queue, read by a scan that hides them while it reads and
//! leaves every letter it does not delete as it found it.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use weir_aws::{AwsBackends, AwsClients, AwsSettings, ScanRequest};
use weir_core::backend::{DeadLetter, DeadLetterFilter};
use weir_core::stream::{PutRecord, PutResult, StreamSink};
use weir_embedded::{EmbeddedStream, SqliteState};

use crate::wiring::{Backend, BackendArgs as Target, StreamArgs};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Dead letters as JSON Lines, oldest first.
    List {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// One dead letter, pretty-printed.
    Show {
        #[command(flatten)]
        target: Target,
        /// The letter's id (from `weir dlq list`; on AWS, the SQS message id).
        id: String,
    },
    /// Put dead letters back on the stream and remove them from the queue.
    Redrive {
        #[command(flatten)]
        target: Target,
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

fn with_id(id: serde_json::Value, letter: &DeadLetter) -> serde_json::Value {
    let mut value = serde_json::to_value(letter).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("id".into(), id);
    }
    value
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let target = match &command {
        Command::List { target, .. }
        | Command::Show { target, .. }
        | Command::Redrive { target, .. } => target.clone(),
    };
    if let Command::Redrive { filter, all, .. } = &command
        && !filter.is_narrowed()
        && !all
    {
        bail!("choose what to redrive with --stage, --kind, --shard or --reason, or say --all");
    }
    tokio.block_on(async move {
        match target.backend {
            Backend::Embedded => embedded(command, &target.stream).await,
            Backend::Aws => on_aws(command, &target.aws).await,
        }
    })
}

async fn embedded(command: Command, target: &StreamArgs) -> anyhow::Result<ExitCode> {
    let state = open_state(target)?;
    match command {
        Command::List { filter, .. } => {
            let letters = state.dead_letters(filter.filter()).await?;
            print_lines(
                letters
                    .iter()
                    .map(|(id, letter)| with_id(json!(id), letter)),
            )?;
        }
        Command::Show { id, .. } => {
            let number: i64 = id.parse().with_context(|| {
                format!(
                    "dead letter id {id:?}: ids here are numbers, as `weir dlq list` shows them"
                )
            })?;
            let filter = DeadLetterFilter {
                id: Some(number),
                ..Default::default()
            };
            let Some((id, letter)) = state.dead_letters(filter).await?.pop() else {
                bail!("no dead letter with id {id}; `weir dlq list` shows the ids");
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&with_id(json!(id), &letter))?
            );
        }
        Command::Redrive { filter, .. } => {
            let letters = state.dead_letters(filter.filter()).await?;
            let stream = EmbeddedStream::open(state.clone(), target.settings()).await?;
            let chosen: Vec<_> = letters.iter().map(|(id, letter)| (*id, letter)).collect();
            let mut redriven = Vec::new();
            let outcome = redrive(&stream, &chosen, &mut redriven).await;
            let removed = state.delete_dead_letters(redriven).await?;
            eprintln!(
                "redrove {removed} dead letter(s) onto stream `{}`",
                target.stream
            );
            outcome?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn on_aws(command: Command, settings: &AwsSettings) -> anyhow::Result<ExitCode> {
    let backends = AwsBackends::connect(&AwsClients::from_env().await, settings).await?;
    let request = match &command {
        Command::List { filter, .. } | Command::Redrive { filter, .. } => ScanRequest {
            filter: filter.filter(),
            message_id: None,
        },
        Command::Show { id, .. } => ScanRequest {
            message_id: Some(id.clone()),
            ..Default::default()
        },
    };
    let scan = backends
        .dead_letters
        .scan(&request, progress(&settings.dead_letter_queue))
        .await?;
    for unreadable in &scan.unreadable {
        eprintln!(
            "message {} of the queue is not a dead letter Weir can read ({}); it stays",
            unreadable.message_id, unreadable.why
        );
    }
    let letters: Vec<_> = scan
        .letters
        .iter()
        .map(|queued| (queued.message_id.as_str(), &queued.letter))
        .collect();
    let mut delete = Vec::new();
    let outcome = match &command {
        Command::List { .. } => print_lines(
            letters
                .iter()
                .map(|(id, letter)| with_id(json!(id), letter)),
        ),
        Command::Show { id, .. } => match letters.first() {
            // No `?` before the scan is finished: its letters would stay hidden.
            Some((id, letter)) => serde_json::to_string_pretty(&with_id(json!(id), letter))
                .map(|text| println!("{text}"))
                .map_err(anyhow::Error::from),
            None => Err(anyhow::anyhow!(
                "no dead letter with message id {id} in {} (`weir dlq list --backend aws` shows the ids; a letter another reader holds is hidden for up to {} s)",
                settings.dead_letter_queue,
                weir_aws::HOLD.as_secs()
            )),
        },
        Command::Redrive { .. } => redrive(&backends.stream, &letters, &mut delete).await,
    };
    // Whatever happened, what the stream took leaves the queue and the rest
    // is visible again.
    let delete: Vec<String> = delete.into_iter().map(str::to_owned).collect();
    let delete: Vec<&str> = delete.iter().map(String::as_str).collect();
    let removed = scan.finish(&delete).await?;
    if matches!(command, Command::Redrive { .. }) {
        eprintln!(
            "redrove {removed} dead letter(s) onto stream `{}`",
            settings.stream
        );
    }
    outcome?;
    Ok(ExitCode::SUCCESS)
}

/// Reports a long scan's progress on stderr, every 2 s.
fn progress(queue: &str) -> impl FnMut(usize) + use<'_> {
    let mut last = Instant::now();
    move |read| {
        if last.elapsed() >= Duration::from_secs(2) {
            eprintln!("reading {queue}: {read} message(s) so far");
            last = Instant::now();
        }
    }
}

fn print_lines(lines: impl Iterator<Item = serde_json::Value>) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut count = 0;
    for line in lines {
        writeln!(out, "{line}")?;
        count += 1;
    }
    out.flush()?;
    eprintln!("{count} dead letter(s)");
    Ok(())
}

/// Puts the letters' payloads back on the stream, retrying throttled ones,
/// and adds the ids the stream accepted to `accepted`, also when it fails
/// part way: those are on the stream and must leave the queue.
async fn redrive<I: Copy + std::fmt::Display>(
    stream: &impl StreamSink,
    letters: &[(I, &DeadLetter)],
    accepted: &mut Vec<I>,
) -> anyhow::Result<()> {
    const ATTEMPTS: u32 = 10;
    for chunk in letters.chunks(500) {
        let mut pending: Vec<&(I, &DeadLetter)> = chunk.iter().collect();
        for attempt in 1..=ATTEMPTS {
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
            if attempt == ATTEMPTS {
                for (id, _) in throttled {
                    eprintln!(
                        "dead letter {id} stays: the stream still throttled it after {ATTEMPTS} attempts"
                    );
                }
                break;
            }
            pending = throttled;
            tokio::time::sleep(Duration::from_millis(100 << attempt.min(4))).await;
        }
    }
    Ok(())
}
