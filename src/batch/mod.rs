//! Batching: per-distribution windows that merge and deduplicate paths until a batch is sealed.

pub mod merge;
pub mod window;

use std::time::SystemTime;

use metrics::{counter, histogram};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::info;

use self::window::{Batcher, SealedBatch};
use crate::intake::Accepted;
use crate::model::CallerReference;

/// A sealed batch with its identity: the CallerReference is minted here, once, and never again for this batch.
#[derive(Debug, Clone)]
pub struct Batch {
    pub caller_reference: CallerReference,
    pub sealed_at: SystemTime,
    pub content: SealedBatch,
}

impl Batch {
    pub fn seal(content: SealedBatch) -> Self {
        Self { caller_reference: CallerReference::mint(), sealed_at: SystemTime::now(), content }
    }
}

/// Runs the windows until intake is closed, then seals what is still open.
pub async fn run(mut batcher: Batcher, mut incoming: mpsc::Receiver<Accepted>, outgoing: mpsc::Sender<Batch>) {
    loop {
        let next_deadline = batcher.next_deadline();
        let window_closes = async {
            match next_deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        let sealed = tokio::select! {
            biased;
            () = window_closes => batcher.seal_due(Instant::now()),
            accepted = incoming.recv() => match accepted {
                Some(accepted) => batcher.add(Instant::now(), accepted.message_id, accepted.request),
                None => break,
            },
        };
        if !forward(sealed, &outgoing).await {
            return;
        }
    }
    forward(batcher.seal_all(), &outgoing).await;
}

async fn forward(sealed: Vec<SealedBatch>, outgoing: &mpsc::Sender<Batch>) -> bool {
    for content in sealed {
        let batch = Batch::seal(content);
        let c = &batch.content;
        info!(
            distribution_id = %c.distribution_id,
            caller_reference = %batch.caller_reference,
            paths = c.paths.len(),
            requested_paths = c.requested_paths,
            messages = c.members.len(),
            reason = c.reason.as_str(),
            "batch sealed"
        );
        counter!("cfi_batches_sealed_total", "reason" => c.reason.as_str()).increment(1);
        counter!("cfi_paths_requested_total").increment(c.requested_paths as u64);
        histogram!("cfi_batch_paths").record(c.paths.len() as f64);
        if outgoing.send(batch).await.is_err() {
            return false;
        }
    }
    true
}
