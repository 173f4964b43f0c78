use std::io::BufRead;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use cf_invalidator::aws::dynamodb::DynamoLedger;
use cf_invalidator::aws::sqs::SqsQueue;
use cf_invalidator::model::DistributionId;
use cf_invalidator::model::path::InvalidationPath;
use cf_invalidator::ports::BatchRecord;
use cf_invalidator::wait::{self, SentMessage, Standing};
use serde_json::{Value, json};

use crate::cli::SendArgs;

/// Paths per message: well under the 3,000 a message may carry, so one deploy spreads over several batches.
const ITEMS_PER_MESSAGE: usize = 1_000;

/// Body size per message: under 256 KiB, the limit of queues created before SQS allowed 1 MiB.
const BYTES_PER_MESSAGE: usize = 200_000;

/// Messages sent before progress is reported on standard error.
const PROGRESS_AFTER: usize = 10;

/// How often --wait reads the ledger.
const WAIT_POLL: Duration = Duration::from_secs(2);

/// Batches are looked for from this long before the send: the worker's clock may be behind this one.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// How `send --wait` ended when it did not end in completion: the exit code and a one-line reason.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct WaitEnded {
    pub code: u8,
    pub reason: String,
}

/// Exit code of a --wait that timed out.
pub const EXIT_TIMEOUT: u8 = 2;
/// Exit code of a --wait that saw a message dead-lettered (refused, or its batch refused by CloudFront).
pub const EXIT_DEAD_LETTERED: u8 = 3;

pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    let distribution = super::parse_distribution(&args.distribution)?;
    let paths = collect_paths(&args)?;
    let items: Vec<Item> = paths.iter().map(|p| Item::Path(p)).chain(args.tags.iter().map(|t| Item::Tag(t))).collect();
    anyhow::ensure!(!items.is_empty(), "no paths or tags given");
    let config = super::aws_config().await?;
    let queue = SqsQueue::new(super::sqs(&config), &args.queue_url);
    let since = SystemTime::now() - CLOCK_SKEW;
    let chunks = chunk(&items);
    let mut sent = Vec::with_capacity(chunks.len());
    for (n, chunk) in chunks.iter().enumerate() {
        let mut body = serde_json::json!({ "distribution_id": distribution.as_str() });
        let (paths, tags): (Vec<&Item>, Vec<&Item>) = chunk.iter().partition(|item| matches!(item, Item::Path(_)));
        body["paths"] = paths.iter().map(|i| i.text()).collect::<Vec<_>>().into();
        if !tags.is_empty() {
            body["tags"] = tags.iter().map(|i| i.text()).collect::<Vec<_>>().into();
        }
        if let Some(requester) = &args.requester {
            body["requester"] = requester.as_str().into();
        }
        if args.urgent {
            body["priority"] = "urgent".into();
        }
        if let Some(key) = &args.idempotency_key {
            // Each chunk is its own request; the key stays unique per chunk.
            body["idempotency_key"] = if chunks.len() == 1 { key.clone() } else { format!("{key}#{n}") }.into();
        }
        let message_id = queue.send_message(&body.to_string(), &[]).await?;
        sent.push(SentMessage { message_id, paths: chunk.iter().map(Item::as_sent).collect() });
        if chunks.len() > PROGRESS_AFTER {
            eprint!("\rsent {}/{} messages", n + 1, chunks.len());
        }
    }
    if chunks.len() > PROGRESS_AFTER {
        eprintln!();
    }
    let summary = format!(
        "sent {} paths and {} tags for {distribution} in {} message(s)",
        paths.len(),
        args.tags.len(),
        chunks.len()
    );
    if !args.wait {
        println!("{summary}");
        return Ok(());
    }
    eprintln!("{summary}; waiting for CloudFront to complete them");
    let table = args.table.as_deref().context("--wait needs --table")?;
    let ledger = DynamoLedger::new(super::dynamodb(&config), table);
    wait_for_completion(&ledger, &distribution, &sent, since, &args).await
}

/// Reads the ledger every WAIT_POLL until the sent messages are completed, one is dead-lettered, or time is up;
/// progress goes to standard error whenever it changes.
async fn wait_for_completion(
    ledger: &DynamoLedger,
    distribution: &DistributionId,
    sent: &[SentMessage],
    since: SystemTime,
    args: &SendArgs,
) -> anyhow::Result<()> {
    let timeout: Duration = args.wait_timeout.into();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut shown = String::new();
    loop {
        let look = match wait::look(ledger, distribution, sent, since).await {
            Ok(look) => Some(look),
            Err(e) => {
                eprintln!("could not read the ledger ({e}); trying again");
                None
            }
        };
        if let Some(look) = &look {
            let line = progress(look, sent.len());
            if line != shown {
                eprintln!("{line}");
                shown = line;
            }
        }
        let ended = match look.as_ref().map(|l| &l.standing) {
            Some(Standing::Completed) => None,
            Some(Standing::DeadLettered { message_id, reason }) => Some(WaitEnded {
                code: EXIT_DEAD_LETTERED,
                reason: format!("message {message_id} was dead-lettered: {reason}"),
            }),
            _ if tokio::time::Instant::now() >= deadline => Some(WaitEnded {
                code: EXIT_TIMEOUT,
                reason: format!("not completed within {}: {shown}", humantime::format_duration(timeout)),
            }),
            _ => {
                tokio::time::sleep(WAIT_POLL).await;
                continue;
            }
        };
        if args.json {
            let batches = look.map(|l| l.batches).unwrap_or_default();
            println!("{}", result_json(ended.as_ref(), &batches, sent.len()));
        }
        return match ended {
            None => Ok(()),
            Some(ended) => Err(ended.into()),
        };
    }
}

/// One line: how many messages are accepted and completed, and each invalidation with its status.
fn progress(look: &wait::Look, messages: usize) -> String {
    let counts = match &look.standing {
        Standing::Completed => format!("completed: all {messages} message(s)"),
        Standing::Waiting { accepted, completed } => {
            format!("accepted {accepted}/{messages} message(s), completed {completed}/{messages}")
        }
        Standing::DeadLettered { message_id, .. } => format!("message {message_id} was dead-lettered"),
    };
    let invalidations: Vec<String> = look
        .batches
        .iter()
        .map(|b| format!("{} {}", b.invalidation_id.as_deref().unwrap_or("(not yet created)"), b.status.as_str()))
        .collect();
    if invalidations.is_empty() { counts } else { format!("{counts}; {}", invalidations.join(", ")) }
}

fn result_json(ended: Option<&WaitEnded>, batches: &[BatchRecord], messages: usize) -> Value {
    let time = |at: Option<SystemTime>| at.map(|at| humantime::format_rfc3339_millis(at).to_string());
    let status = match ended {
        None => "completed",
        Some(WaitEnded { code: EXIT_DEAD_LETTERED, .. }) => "dead_lettered",
        Some(_) => "timeout",
    };
    json!({
        "status": status,
        "reason": ended.map(|e| e.reason.as_str()),
        "messages": messages,
        "invalidations": batches.iter().map(|b| json!({
            "invalidation_id": b.invalidation_id,
            "caller_reference": b.caller_reference.as_str(),
            "status": b.status.as_str(),
            "paths": b.paths.len(),
            "created_at": time(Some(b.created_at)),
            "submitted_at": time(b.submitted_at),
            "completed_at": time(b.completed_at),
            "time_to_complete_ms": b.time_to_complete.map(|t| t.as_millis() as u64),
        })).collect::<Vec<_>>(),
    })
}

#[derive(Debug, Clone, Copy)]
enum Item<'a> {
    Path(&'a str),
    Tag(&'a str),
}

impl<'a> Item<'a> {
    fn text(&self) -> &'a str {
        match self {
            Self::Path(text) | Self::Tag(text) => text,
        }
    }

    /// As the worker will submit it: a path encoded once, a tag as `#tag`. An invalid one is sent as it is: the
    /// worker dead-letters its message, which ends the wait.
    fn as_sent(&self) -> String {
        let encoded = match self {
            Self::Path(path) => InvalidationPath::parse(path).ok(),
            Self::Tag(tag) => InvalidationPath::tag(tag).ok(),
        };
        encoded.map_or_else(|| self.text().to_owned(), InvalidationPath::into_string)
    }
}

/// Splits items into messages of at most ITEMS_PER_MESSAGE items and about BYTES_PER_MESSAGE bytes of JSON.
fn chunk<'a>(items: &'a [Item<'a>]) -> Vec<&'a [Item<'a>]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, item) in items.iter().enumerate() {
        // A JSON string costs its text, its quotes and a comma, and up to 6 bytes per escaped character.
        let cost = item.text().len() * 6 + 3;
        if index > start && (index - start == ITEMS_PER_MESSAGE || bytes + cost > BYTES_PER_MESSAGE) {
            chunks.push(&items[start..index]);
            start = index;
            bytes = 0;
        }
        bytes += cost;
    }
    if start < items.len() {
        chunks.push(&items[start..]);
    }
    chunks
}

fn collect_paths(args: &SendArgs) -> anyhow::Result<Vec<String>> {
    let mut paths = Vec::new();
    for path in &args.paths {
        if path == "-" {
            paths.extend(read_lines(std::io::stdin().lock())?);
        } else {
            paths.push(path.clone());
        }
    }
    if let Some(file) = &args.file {
        let opened = std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        paths.extend(read_lines(std::io::BufReader::new(opened))?);
    }
    Ok(paths)
}

fn read_lines(reader: impl BufRead) -> anyhow::Result<Vec<String>> {
    let mut paths = Vec::new();
    for line in reader.lines() {
        let line = line.context("reading paths")?;
        let trimmed = line.trim();
        if !trimmed.is_empty() {
            paths.push(trimmed.to_owned());
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_by_count_and_by_size() {
        let short: Vec<String> = (0..2_500).map(|i| format!("/p{i}")).collect();
        let items: Vec<Item> = short.iter().map(|p| Item::Path(p)).collect();
        let sizes: Vec<usize> = chunk(&items).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [1_000, 1_000, 500]);

        let long: Vec<String> = (0..100).map(|i| format!("/{i}/{}", "x".repeat(3_000))).collect();
        let items: Vec<Item> = long.iter().map(|p| Item::Path(p)).collect();
        for chunk in chunk(&items) {
            let body = serde_json::json!({"paths": chunk.iter().map(|i| i.text()).collect::<Vec<_>>()}).to_string();
            assert!(body.len() <= BYTES_PER_MESSAGE, "{}", body.len());
        }
        assert_eq!(chunk(&items).iter().map(|c| c.len()).sum::<usize>(), 100);
    }
}
