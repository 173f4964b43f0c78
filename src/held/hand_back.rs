//! Handing messages back to the queue at once (visibility 0) when the worker stops with them unfinished: another
//! worker receives them now, instead of after their visibility timeout (minutes, when SQS was slow and the
//! heartbeat lengthened it).

use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use tokio::task::JoinSet;
use tracing::warn;

use crate::ports::queue::{MAX_BATCH_ENTRIES, Queue, Receipt};

/// ChangeMessageVisibilityBatch calls under way at once: a worker holding tens of thousands of messages hands them
/// back within a shutdown timeout.
const CALLS_AT_ONCE: usize = 16;

/// Makes `receipts` visible again, ten per call; answers how many SQS took back. One try each: what fails comes
/// back after its visibility timeout anyway. The caller bounds how long it waits.
pub async fn hand_back<Q: Queue>(queue: Arc<Q>, receipts: Vec<Receipt>) -> usize {
    let mut chunks = receipts.chunks(MAX_BATCH_ENTRIES).map(<[Receipt]>::to_vec).collect::<Vec<_>>().into_iter();
    let mut calls = JoinSet::new();
    let mut handed_back = 0;
    loop {
        while calls.len() < CALLS_AT_ONCE
            && let Some(chunk) = chunks.next()
        {
            let queue = Arc::clone(&queue);
            calls.spawn(async move { (chunk.len(), queue.extend_visibility(&chunk, Duration::ZERO).await) });
        }
        let Some(call) = calls.join_next().await else { break };
        match call {
            Ok((sent, Ok(failures))) => handed_back += sent - failures.len(),
            Ok((sent, Err(e))) => {
                warn!(messages = sent, error = %e, "could not hand messages back; they return after their visibility timeout")
            }
            Err(e) => warn!(error = %e, "a hand-back call failed"),
        }
    }
    counter!("cfi_messages_handed_back_total").increment(handed_back as u64);
    handed_back
}

#[cfg(all(test, feature = "test-support"))]
mod tests {
    use super::*;
    use crate::fake::MemoryQueue;

    #[tokio::test(start_paused = true)]
    async fn handed_back_messages_are_received_again_at_once() {
        let queue = Arc::new(MemoryQueue::default());
        for n in 0..25 {
            queue.send(&format!("{{\"n\":{n}}}"), &[]).await.unwrap();
        }
        let long = Duration::from_secs(3_600);
        let mut received = Vec::new();
        while received.len() < 25 {
            received.extend(queue.receive(10, Duration::ZERO, long).await.unwrap());
        }
        let receipts: Vec<Receipt> = received
            .iter()
            .map(|m| Receipt { message_id: m.message_id.clone(), receipt_handle: m.receipt_handle.clone() })
            .collect();
        assert_eq!(hand_back(Arc::clone(&queue), receipts).await, 25);
        let mut again = 0;
        loop {
            let batch = queue.receive(10, Duration::ZERO, long).await.unwrap();
            if batch.is_empty() {
                break;
            }
            again += batch.len();
        }
        assert_eq!(again, 25, "every message is visible again before its hour is up");
    }
}
