//! Batching: windows per target (a distribution, or one tenant of it) that merge and deduplicate paths until a
//! batch is sealed.

pub mod merge;
pub mod window;

use std::sync::Arc;
use std::time::SystemTime;

use metrics::{counter, histogram};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::info;

use self::window::{Batcher, SealReason, SealedBatch};
use crate::clock::WallClock;
use crate::held::SubmissionBacklog;
use crate::intake::Accepted;
use crate::model::CallerReference;
use crate::model::message::BatchMember;
use crate::model::path::count_wildcards;
use crate::ports::ledger::BatchRecord;

/// A sealed batch with its identity: the CallerReference is minted here, once, and never again for this batch.
#[derive(Debug, Clone)]
pub struct Batch {
    pub caller_reference: CallerReference,
    pub sealed_at: SystemTime,
    pub content: SealedBatch,
    /// Set when the paths were replaced by wildcards to get through an overload: what was done and why.
    pub coalescing: Option<String>,
    /// Invalidations accepted since it was sealed may cover it: it is a part of a batch CloudFront refused (whose
    /// record is failed, so a redelivery of its messages is batched afresh) or the rest of a batch that went in part
    /// and waited in the schedule (a redelivery to another worker meanwhile finds no record of it). It looks for
    /// them in the ledger before its call.
    pub may_be_covered: bool,
}

impl Batch {
    pub fn seal(content: SealedBatch, clock: WallClock) -> Self {
        Self {
            caller_reference: CallerReference::mint(),
            sealed_at: clock.now(),
            content,
            coalescing: None,
            may_be_covered: false,
        }
    }

    /// A recorded batch taken over from a stopped worker, with its CallerReference and paths, carrying `member`
    /// (the redelivered message that found it).
    pub fn resume(record: BatchRecord, member: BatchMember) -> Self {
        let content = SealedBatch {
            distribution_id: record.distribution_id,
            tenant_id: record.tenant_id,
            wildcard_count: count_wildcards(&record.paths),
            paths: record.paths,
            members: vec![member],
            requested_paths: record.requested_paths,
            reason: SealReason::Resumed,
        };
        Self {
            caller_reference: record.caller_reference,
            sealed_at: record.created_at,
            content,
            coalescing: record.coalescing,
            may_be_covered: false,
        }
    }
}

/// Runs the windows until intake is closed, then seals what is still open.
pub async fn run(
    mut batcher: Batcher,
    clock: WallClock,
    mut incoming: mpsc::Receiver<Accepted>,
    outgoing: mpsc::Sender<Batch>,
    backlog: Arc<SubmissionBacklog>,
) {
    loop {
        backlog.set_open_windows(batcher.open_windows());
        let next_deadline = batcher.next_deadline();
        let window_closes = async {
            match next_deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        let batches = tokio::select! {
            biased;
            () = window_closes => sealed(batcher.seal_due(Instant::now()), clock),
            accepted = incoming.recv() => match accepted {
                Some(accepted) => add(&mut batcher, accepted, clock),
                None => break,
            },
        };
        if !forward(batches, &outgoing).await {
            return;
        }
    }
    forward(sealed(batcher.seal_all(), clock), &outgoing).await;
}

/// Batches the message's requests and hands on the stopped workers' batches it resumes, all knowing how many
/// parts the message has.
fn add(batcher: &mut Batcher, accepted: Accepted, clock: WallClock) -> Vec<Batch> {
    let Accepted { delivery, requests, resumed } = accepted;
    let (full, parts) = batcher.add(Instant::now(), delivery.clone(), requests, resumed.len() as u32);
    let mut batches = sealed(full, clock);
    batches.extend(resumed.into_iter().map(|(record, paths)| {
        let member = BatchMember {
            delivery: delivery.clone(),
            requester: None,
            paths,
            parts,
            halvings: 0,
            urgent: false,
            idempotency_key: None,
            awaited: false,
            sent_at: None,
        };
        Batch::resume(record, member)
    }));
    batches
}

fn sealed(contents: Vec<SealedBatch>, clock: WallClock) -> Vec<Batch> {
    contents.into_iter().map(|content| Batch::seal(content, clock)).collect()
}

async fn forward(batches: Vec<Batch>, outgoing: &mpsc::Sender<Batch>) -> bool {
    for batch in batches {
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
        if c.reason != SealReason::Resumed {
            // A resumed batch's paths were counted when it was first sealed.
            counter!("cfi_paths_requested_total").increment(c.requested_paths as u64);
        }
        histogram!("cfi_batch_paths").record(c.paths.len() as f64);
        histogram!("cfi_batch_messages").record(c.members.len() as f64);
        if outgoing.send(batch).await.is_err() {
            return false;
        }
    }
    true
}
