use std::io::BufRead;

use anyhow::Context;
use cf_invalidator::aws::sqs::SqsQueue;
use cf_invalidator::ports::Queue;

use crate::cli::SendArgs;

/// Paths per message: well under the 3,000 a message may carry, so one deploy spreads over several batches.
const ITEMS_PER_MESSAGE: usize = 1_000;

/// Body size per message: under 256 KiB, the limit of queues created before SQS allowed 1 MiB.
const BYTES_PER_MESSAGE: usize = 200_000;

/// Messages sent before progress is reported on standard error.
const PROGRESS_AFTER: usize = 10;

pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    let distribution = super::parse_distribution(&args.distribution)?;
    let paths = collect_paths(&args)?;
    let items: Vec<Item> = paths.iter().map(|p| Item::Path(p)).chain(args.tags.iter().map(|t| Item::Tag(t))).collect();
    anyhow::ensure!(!items.is_empty(), "no paths or tags given");
    let config = super::aws_config().await?;
    let queue = SqsQueue::new(super::sqs(&config), &args.queue_url);
    let chunks = chunk(&items);
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
        if let Some(key) = &args.idempotency_key {
            // Each chunk is its own request; the key stays unique per chunk.
            body["idempotency_key"] = if chunks.len() == 1 { key.clone() } else { format!("{key}#{n}") }.into();
        }
        queue.send(&body.to_string(), &[]).await?;
        if chunks.len() > PROGRESS_AFTER {
            eprint!("\rsent {}/{} messages", n + 1, chunks.len());
        }
    }
    if chunks.len() > PROGRESS_AFTER {
        eprintln!();
    }
    println!(
        "sent {} paths and {} tags for {distribution} in {} message(s)",
        paths.len(),
        args.tags.len(),
        chunks.len()
    );
    Ok(())
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
