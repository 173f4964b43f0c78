use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use cf_invalidator::aws::dynamodb::DynamoLedger;
use cf_invalidator::aws::sqs::SqsQueue;
use cf_invalidator::intake::parse::{IntakeRules, Parsed, parse_message};
use cf_invalidator::model::request::InvalidationRequest;
use cf_invalidator::model::{DistributionId, Target};
use cf_invalidator::ports::BatchRecord;
use cf_invalidator::ports::Batches;
use cf_invalidator::retry::Transient;
use cf_invalidator::wait::{self, SentMessage, Standing, Wait};
use serde_json::{Value, json};

use super::exit::say;
use super::output::outln;
use crate::cli::SendArgs;

/// Paths per message: well under the 3,000 a message may carry, so one deploy spreads over several batches.
const ITEMS_PER_MESSAGE: usize = 1_000;

/// Body size per message: under 256 KiB, the limit of queues created before SQS allowed 1 MiB.
const BYTES_PER_MESSAGE: usize = 200_000;

/// Messages sent before progress is reported on standard error.
const PROGRESS_AFTER: usize = 10;

/// Progress lines at most, when standard error is not a terminal (a CI log keeps every line).
const PROGRESS_LINES: usize = 10;

/// How `send --wait` ended when it did not end in completion: the exit code and a one-line reason.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct WaitEnded {
    pub code: u8,
    /// As `--json` says it: `timeout`, `dead_lettered` or `stale`.
    pub status: &'static str,
    pub reason: String,
}

/// Exit code of a --wait that timed out.
pub const EXIT_TIMEOUT: u8 = 2;
/// Exit code of a --wait that saw a message dead-lettered (refused, or its batch refused by CloudFront).
pub const EXIT_DEAD_LETTERED: u8 = 3;
/// Exit code of a --wait --verify whose check at the edge ended without showing the new objects: as final as a
/// dead letter, for a CI step to stop on.
pub const EXIT_STALE: u8 = 3;

pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    let distribution = super::parse_distribution(&args.distribution)?;
    let paths = collect_paths(&args)?;
    let items: Vec<Item> = paths.iter().map(|p| Item::Path(p)).chain(args.tags.iter().map(|t| Item::Tag(t))).collect();
    anyhow::ensure!(!items.is_empty(), "no paths or tags given");
    let messages = messages(&items, &distribution, &args)?;
    let config = super::aws_config().await?;
    let queue = SqsQueue::new(super::sqs(&config), &args.queue_url);
    let ledger = match &args.table {
        Some(table) if args.wait => Some(DynamoLedger::new(super::dynamodb(&config), table)),
        _ => None,
    };
    if let Some(ledger) = &ledger {
        readable(ledger, &distribution).await?;
    }
    let mut sent = Vec::with_capacity(messages.len());
    let mut progress = Progress::new(messages.len());
    for (body, request) in &messages {
        let message_id = queue.send_message(body, &[]).await?;
        sent.push(SentMessage {
            message_id,
            paths: request.paths.iter().map(|p| p.as_str().to_owned()).collect(),
            // Read once SQS answered, so never before SQS's SentTimestamp while the clocks agree.
            sent_at: SystemTime::now(),
            idempotency_key: request.idempotency_key.clone(),
        });
        progress.sent(sent.len());
    }
    let summary = format!(
        "sent {} paths and {} tags for {distribution} in {} message(s)",
        paths.len(),
        args.tags.len(),
        messages.len()
    );
    let Some(ledger) = ledger else {
        return outln!("{summary}");
    };
    say(format_args!("{summary}; waiting for CloudFront to complete them"));
    let messages = sent.len();
    let wait = Wait::new(Target::new(distribution, args.tenant.clone()), sent);
    let wait = if args.verify { wait.verifying() } else { wait };
    wait_for_completion(&ledger, wait, messages, &args).await
}

/// The messages to send, each body with the request the worker will read from it, checked by the worker's own
/// parser before any is sent: what the worker would dead-letter is refused here, with its reason.
fn messages(
    items: &[Item],
    distribution: &DistributionId,
    args: &SendArgs,
) -> anyhow::Result<Vec<(String, InvalidationRequest)>> {
    let chunks = chunk(items);
    let mut messages = Vec::with_capacity(chunks.len());
    for (n, chunk) in chunks.iter().enumerate() {
        let body = body(chunk, distribution, args, (n, chunks.len()));
        let request = match parse_message(&body, &IntakeRules::default()) {
            Ok(Parsed::Requests(mut requests)) if requests.len() == 1 => requests.remove(0),
            Ok(parsed) => anyhow::bail!("the worker would not read this message as one request: {parsed:?}"),
            Err(rejection) if chunks.len() == 1 => anyhow::bail!("refused, nothing sent: {rejection}"),
            Err(rejection) => {
                anyhow::bail!("refused, nothing sent: message {} of {}: {rejection}", n + 1, chunks.len())
            }
        };
        messages.push((body, request));
    }
    Ok(messages)
}

/// One message's body; `(n, of)` numbers it among the messages of this send.
fn body(chunk: &[Item], distribution: &DistributionId, args: &SendArgs, (n, of): (usize, usize)) -> String {
    let mut body = json!({ "distribution_id": distribution.as_str() });
    if let Some(tenant) = &args.tenant {
        body["tenant_id"] = tenant.as_str().into();
    }
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
    if args.wait && args.table.is_some() {
        body["awaited"] = true.into();
    }
    if let Some(key) = &args.idempotency_key {
        // Each chunk is its own request; the key stays unique per chunk.
        body["idempotency_key"] = if of == 1 { key.clone() } else { format!("{key}#{n}") }.into();
    }
    body.to_string()
}

/// The first look --wait will take, taken before anything is sent: a missing table or index, or a role that may
/// not read it, is refused at once instead of being retried until the timeout. A ledger that does not answer
/// may answer later: the wait keeps trying.
async fn readable(ledger: &DynamoLedger, distribution: &DistributionId) -> anyhow::Result<()> {
    match ledger.list(distribution, SystemTime::now(), 1).await {
        Err(e) if !e.is_transient() => Err(anyhow::Error::new(e).context("--wait cannot read the ledger (--table)")),
        _ => Ok(()),
    }
}

/// Progress on standard error for large sends: one line redrawn on a terminal, a few plain lines in a log.
struct Progress {
    messages: usize,
    redraw: bool,
}

impl Progress {
    fn new(messages: usize) -> Self {
        Self { messages, redraw: std::io::stderr().is_terminal() }
    }

    fn sent(&mut self, sent: usize) {
        if self.messages <= PROGRESS_AFTER {
            return;
        }
        let line = format!("sent {sent}/{} messages", self.messages);
        if self.redraw {
            let end = if sent == self.messages { "\n" } else { "" };
            let _ = write!(std::io::stderr().lock(), "\r{line}{end}");
        } else if sent == self.messages || sent.is_multiple_of(self.messages.div_ceil(PROGRESS_LINES)) {
            say(format_args!("{line}"));
        }
    }
}

/// Reads the ledger every `wait::POLL` until the sent messages are completed, one is dead-lettered, or time is up;
/// progress goes to standard error whenever it changes.
async fn wait_for_completion(
    ledger: &DynamoLedger,
    mut wait: Wait,
    messages: usize,
    args: &SendArgs,
) -> anyhow::Result<()> {
    let timeout: Duration = args.wait_timeout.into();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut shown = String::new();
    loop {
        let look = match wait.look(ledger, SystemTime::now()).await {
            Ok(look) => Some(look),
            Err(e) if e.is_transient() => {
                say(format_args!("could not read the ledger ({e}); trying again"));
                None
            }
            Err(e) => return Err(anyhow::Error::new(e).context("--wait cannot read the ledger (--table)")),
        };
        // A dead letter's reason ends the wait on the last line; it is not announced twice.
        if let Some(look) = look.as_ref().filter(|l| !matches!(l.standing, Standing::DeadLettered { .. })) {
            let line = progress(look, messages);
            if line != shown {
                say(format_args!("{line}"));
                shown = line;
            }
        }
        let ended = match look.as_ref().map(|l| &l.standing) {
            Some(Standing::Completed) => None,
            Some(Standing::DeadLettered { message_id, reason }) => Some(WaitEnded {
                code: EXIT_DEAD_LETTERED,
                status: "dead_lettered",
                reason: format!("message {message_id} was dead-lettered: {reason}"),
            }),
            Some(Standing::Unproven { caller_reference, outcome, stale_paths }) => Some(WaitEnded {
                code: EXIT_STALE,
                status: "stale",
                reason: format!(
                    "batch {caller_reference} completed, but its check at the edge ended {}; stale: {}",
                    outcome.as_str(),
                    if stale_paths.is_empty() { "none seen".to_owned() } else { stale_paths.join(" ") }
                ),
            }),
            _ if tokio::time::Instant::now() >= deadline => Some(WaitEnded {
                code: EXIT_TIMEOUT,
                status: "timeout",
                reason: format!("not completed within {}: {shown}", humantime::format_duration(timeout)),
            }),
            _ => {
                tokio::time::sleep(wait::POLL).await;
                continue;
            }
        };
        if args.json {
            let batches = look.map(|l| l.batches).unwrap_or_default();
            outln!("{}", result_json(ended.as_ref(), &batches, messages))?;
        }
        return match ended {
            None => Ok(()),
            Some(ended) => Err(ended.into()),
        };
    }
}

/// One line: how many messages are accepted and completed, each invalidation with its status, and how many
/// batches CloudFront has not been asked for yet.
fn progress(look: &wait::Look, messages: usize) -> String {
    let mut parts = vec![match &look.standing {
        Standing::Completed => format!("completed: all {messages} message(s)"),
        Standing::Waiting { accepted, completed } => {
            format!("accepted {accepted}/{messages} message(s), completed {completed}/{messages}")
        }
        Standing::DeadLettered { message_id, .. } => format!("message {message_id} was dead-lettered"),
        Standing::Verifying => format!("completed: all {messages} message(s); waiting for the check at the edge"),
        Standing::Unproven { caller_reference, outcome, .. } => {
            format!("the check at the edge of {caller_reference} ended {}", outcome.as_str())
        }
    }];
    let (submitted, waiting): (Vec<&BatchRecord>, Vec<&BatchRecord>) =
        look.batches.iter().partition(|b| b.invalidation_id.is_some());
    let invalidations: Vec<String> = submitted
        .iter()
        .filter_map(|b| Some(format!("{} {}{}", b.invalidation_id.as_deref()?, b.status.as_str(), edge_note(b))))
        .collect();
    if !invalidations.is_empty() {
        parts.push(invalidations.join(", "));
    }
    if !waiting.is_empty() {
        parts.push(format!("{} batch(es) waiting for their CreateInvalidation", waiting.len()));
    }
    parts.join("; ")
}

/// A batch's check at the edge, when it has one.
fn edge_note(batch: &BatchRecord) -> String {
    batch.verification.as_ref().map(|v| format!(" (edge: {})", v.outcome.as_str())).unwrap_or_default()
}

fn result_json(ended: Option<&WaitEnded>, batches: &[BatchRecord], messages: usize) -> Value {
    let time = |at: Option<SystemTime>| at.map(|at| humantime::format_rfc3339_millis(at).to_string());
    let status = ended.map_or("completed", |ended| ended.status);
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
            "edge": b.verification.as_ref().map(|v| json!({
                "outcome": v.outcome.as_str(),
                "at": time(Some(v.at)),
                "checked": v.checked,
                "fresh": v.fresh,
                "stale": v.stale,
                "stale_paths": v.stale_paths,
            })),
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
    use cf_invalidator::fake::pending_record;
    use cf_invalidator::ports::ledger::BatchStatus;

    use super::*;

    #[test]
    fn progress_names_each_invalidation_and_counts_batches_not_submitted_yet() {
        let at = SystemTime::UNIX_EPOCH;
        let accepted = BatchRecord {
            status: BatchStatus::Accepted,
            invalidation_id: Some("I2ABC".into()),
            ..pending_record("EAAA", &["/a"], &["m1"], at)
        };
        let look = wait::Look {
            standing: Standing::Waiting { accepted: 1, completed: 0 },
            batches: vec![accepted, pending_record("EAAA", &["/b"], &["m2"], at)],
        };
        assert_eq!(
            progress(&look, 2),
            "accepted 1/2 message(s), completed 0/2; I2ABC accepted; 1 batch(es) waiting for their CreateInvalidation"
        );
        let none_yet = wait::Look { standing: Standing::Waiting { accepted: 0, completed: 0 }, batches: vec![] };
        assert_eq!(progress(&none_yet, 1), "accepted 0/1 message(s), completed 0/1");
    }

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
