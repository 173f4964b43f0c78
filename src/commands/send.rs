use std::io::BufRead;

use anyhow::Context;
use cf_invalidator::aws::sqs::SqsQueue;
use cf_invalidator::ports::Queue;

use crate::cli::SendArgs;

/// Paths per message: well under the 3,000 a message may carry, and far under SQS's 1 MiB body limit even for
/// long paths, so that one producer's deploy spreads over several batches instead of one huge message.
const PATHS_PER_MESSAGE: usize = 1_000;

pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    let distribution = super::parse_distribution(&args.distribution)?;
    let paths = collect_paths(&args)?;
    anyhow::ensure!(!paths.is_empty(), "no paths given");
    let config = super::aws_config().await?;
    let queue = SqsQueue::new(super::sqs(&config), &args.queue_url);
    let chunks = paths.chunks(PATHS_PER_MESSAGE).count();
    for (n, chunk) in paths.chunks(PATHS_PER_MESSAGE).enumerate() {
        let mut body = serde_json::json!({ "distribution_id": distribution.as_str(), "paths": chunk });
        if let Some(requester) = &args.requester {
            body["requester"] = requester.as_str().into();
        }
        if let Some(key) = &args.idempotency_key {
            // Each chunk is its own request; the key stays unique per chunk.
            body["idempotency_key"] = if chunks == 1 { key.clone() } else { format!("{key}#{n}") }.into();
        }
        queue.send(&body.to_string(), &[]).await?;
    }
    println!("sent {} paths for {distribution} in {chunks} message(s)", paths.len());
    Ok(())
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
