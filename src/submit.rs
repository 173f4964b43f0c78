//! Submission: one CreateInvalidation per batch, recorded in the ledger before and after the call.
//!
//! Order matters for idempotency: the intent record (with the CallerReference) is written first, so whatever
//! fails later (the call, its answer, the ledger update) is retried with the same reference, and CloudFront
//! returns the existing invalidation instead of creating and billing a second one.

use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use metrics::{counter, histogram};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::ack::Disposition;
use crate::batch::Batch;
use crate::batch::window::{SealReason, SealedBatch};
use crate::clock::WallClock;
use crate::limit::CreateRateLimiter;
use crate::ports::cdn::{Cdn, CdnError, RetryAfter};
use crate::ports::ledger::{BatchRecord, BatchStatus, Ledger, LedgerError};
use crate::retry::RetryPolicy;
use crate::telemetry::log_allowed;
use crate::track::Submitted;

/// Who this worker is in the ledger, and how long its records and claims last.
#[derive(Debug, Clone)]
pub struct Ownership {
    /// Unique per process: recorded as the owner of the batches it submits.
    pub worker_id: String,
    /// How long another worker must wait before taking over a pending batch of this one.
    pub lease: Duration,
    /// How long ledger records are kept (DynamoDB TTL).
    pub retention: Duration,
    pub clock: WallClock,
}

pub struct Submitter<C, L> {
    pub cdn: Arc<C>,
    pub ledger: Arc<L>,
    pub limiter: CreateRateLimiter,
    pub retry: RetryPolicy,
    pub ownership: Ownership,
    /// Where accepted invalidations go to have their completion tracked; `None` when tracking is off.
    pub tracker: Option<mpsc::Sender<Submitted>>,
}

/// What became of one batch.
enum Outcome {
    Done(Disposition),
    /// CloudFront refused the batch's paths: submit the halves separately to isolate the offending message.
    Split(Vec<Batch>),
}

impl<C: Cdn, L: Ledger> Submitter<C, L> {
    /// Submits batches concurrently (at most `max_concurrent`) until every sender is gone.
    pub async fn run(
        self: Arc<Self>,
        mut batches: mpsc::Receiver<Batch>,
        to_ack: mpsc::Sender<Disposition>,
        max_concurrent: usize,
    ) {
        let slots = Arc::new(Semaphore::new(max_concurrent));
        let mut running = JoinSet::new();
        while let Some(batch) = batches.recv().await {
            let slot = Arc::clone(&slots).acquire_owned().await.expect("semaphore is never closed");
            let submitter = Arc::clone(&self);
            let to_ack = to_ack.clone();
            running.spawn(async move {
                for disposition in submitter.submit(batch).await {
                    let _ = to_ack.send(disposition).await;
                }
                drop(slot);
            });
            while running.try_join_next().is_some() {}
        }
        while running.join_next().await.is_some() {}
    }

    /// Takes a batch as far as it can go and says what is to become of its messages. A batch CloudFront refuses
    /// as invalid is bisected by message until the offending messages are alone.
    pub async fn submit(&self, batch: Batch) -> Vec<Disposition> {
        let mut to_submit = vec![batch];
        let mut dispositions = Vec::new();
        while let Some(batch) = to_submit.pop() {
            match self.submit_one(batch).await {
                Outcome::Done(disposition) => dispositions.push(disposition),
                Outcome::Split(halves) => to_submit.extend(halves),
            }
        }
        dispositions
    }

    async fn submit_one(&self, batch: Batch) -> Outcome {
        let mut record = self.intent_record(&batch);
        let message_ids = record.message_ids.clone();
        if let Err(e) = self.ledger_call(|| timed("record_intent", self.ledger.record_intent(&record))).await {
            error!(caller_reference = %record.caller_reference, error = %e, "cannot record the batch intent; not submitting without it, the messages will be delivered again");
            return Outcome::Done(Disposition::Release(message_ids));
        }
        let mut transient_delays = self.retry.transient.build();
        let mut quota_delays = self.retry.quota.build();
        loop {
            let failure = match self.create_and_record(&mut record).await {
                Ok(()) => return Outcome::Done(Disposition::Covered(batch.content.members)),
                Err(failure) => failure,
            };
            let delay = match &failure {
                Failure::Cdn(e) if e.retry_after() == RetryAfter::QuotaFreed => quota_delays.next(),
                Failure::Cdn(e) if e.retry_after() == RetryAfter::Never => return self.refused(record, batch, e).await,
                _ => transient_delays.next(),
            };
            let Some(delay) = delay else {
                error!(caller_reference = %record.caller_reference, error = %failure, "giving up on the batch for now; its messages will be delivered again");
                counter!("cfi_batches_abandoned_total").increment(1);
                return Outcome::Done(Disposition::Release(message_ids));
            };
            if let Some(suppressed) = log_allowed("submission_retry") {
                warn!(caller_reference = %record.caller_reference, error = %failure, ?delay, suppressed, "batch submission failed, retrying with the same CallerReference");
            }
            counter!("cfi_submission_retries_total").increment(1);
            tokio::time::sleep(delay).await;
        }
    }

    async fn create_and_record(&self, record: &mut BatchRecord) -> Result<(), Failure> {
        self.limiter.until_ready().await;
        let started = tokio::time::Instant::now();
        let outcome =
            self.cdn.create_invalidation(&record.distribution_id, &record.caller_reference, &record.paths).await;
        histogram!("cfi_create_invalidation_seconds").record(started.elapsed().as_secs_f64());
        let code = outcome.as_ref().map_or_else(CdnError::code, |_| "Created");
        counter!("cfi_cloudfront_responses_total", "code" => code).increment(1);
        if let Err(CdnError::Throttled(_)) = outcome {
            self.limiter.throttled();
        }
        let invalidation = outcome.map_err(Failure::Cdn)?;
        record.accept(&invalidation, self.ownership.clock.now());
        info!(
            distribution_id = %record.distribution_id,
            caller_reference = %record.caller_reference,
            invalidation_id = %invalidation.id,
            paths = record.paths.len(),
            "invalidation accepted"
        );
        counter!("cfi_paths_submitted_total").increment(record.paths.len() as u64);
        timed("record_outcome", self.ledger.record_outcome(record)).await.map_err(Failure::Ledger)?;
        self.track(record, invalidation.id);
        Ok(())
    }

    /// Hands an accepted invalidation to the tracker without waiting: tracking must never hold up submission, so
    /// when the tracker is behind, the record simply stays `accepted`.
    fn track(&self, record: &BatchRecord, invalidation_id: String) {
        let (Some(tracker), Some(submitted_at)) = (&self.tracker, record.submitted_at) else {
            return;
        };
        let submitted = Submitted {
            caller_reference: record.caller_reference.clone(),
            distribution_id: record.distribution_id.clone(),
            invalidation_id,
            submitted_at,
        };
        if let Err(TrySendError::Full(_)) = tracker.try_send(submitted) {
            counter!("cfi_completion_tracking_abandoned_total", "reason" => "busy").increment(1);
        }
    }

    /// CloudFront refused the batch for good: record why, then split it, dead-letter or release its messages.
    async fn refused(&self, mut record: BatchRecord, batch: Batch, error: &CdnError) -> Outcome {
        let reason = error.to_string();
        let splittable = matches!(error, CdnError::InvalidArgument(_)) && batch.content.members.len() > 1;
        if splittable {
            warn!(caller_reference = %record.caller_reference, distribution_id = %record.distribution_id, messages = batch.content.members.len(), error = %reason, "CloudFront refused the paths; splitting the batch to find the offending message");
        } else {
            error!(caller_reference = %record.caller_reference, distribution_id = %record.distribution_id, code = error.code(), error = %reason, "CloudFront refused the batch");
        }
        counter!("cfi_batches_refused_total", "code" => error.code()).increment(1);
        record.fail(&reason);
        if let Err(e) = self.ledger_call(|| timed("record_outcome", self.ledger.record_outcome(&record))).await {
            warn!(caller_reference = %record.caller_reference, error = %e, "could not record the failure in the ledger");
        }
        if splittable {
            return Outcome::Split(split(batch, self.ownership.clock));
        }
        Outcome::Done(match error {
            // The request itself is wrong: retrying the same messages can never succeed.
            CdnError::NoSuchDistribution(_) | CdnError::InvalidArgument(_) | CdnError::BatchTooLarge(_) => {
                Disposition::DeadLetter { message_ids: record.message_ids, reason, code: error.code() }
            }
            // Only a resumed batch can meet its reference with other paths (its recorded paths were cut short):
            // the record is now failed, so the messages are batched afresh when they come back.
            // Permissions and credentials get fixed by operators; the messages wait for redelivery (and redrive).
            _ => Disposition::Release(record.message_ids),
        })
    }

    async fn ledger_call<F, Fut>(&self, mut call: F) -> Result<(), LedgerError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), LedgerError>>,
    {
        let mut delays = self.retry.transient.build();
        loop {
            match call().await {
                Err(e) if e.is_retryable() => match delays.next() {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => return Err(e),
                },
                outcome => return outcome,
            }
        }
    }
}

/// Runs a ledger call and records its latency.
async fn timed<T>(operation: &'static str, call: impl Future<Output = T>) -> T {
    let started = tokio::time::Instant::now();
    let outcome = call.await;
    histogram!("cfi_ledger_seconds", "operation" => operation).record(started.elapsed().as_secs_f64());
    outcome
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Cdn(CdnError),
    #[error("invalidation accepted but not recorded: {0}")]
    Ledger(LedgerError),
}

impl<C, L> Submitter<C, L> {
    fn intent_record(&self, batch: &Batch) -> BatchRecord {
        let content = &batch.content;
        let mut requesters: Vec<String> = content.members.iter().filter_map(|m| m.requester.clone()).collect();
        requesters.sort_unstable();
        requesters.dedup();
        let now = self.ownership.clock.now();
        BatchRecord {
            caller_reference: batch.caller_reference.clone(),
            distribution_id: content.distribution_id.clone(),
            paths: content.paths.clone(),
            message_ids: content.members.iter().map(|m| m.message_id.clone()).collect(),
            requesters,
            requested_paths: content.requested_paths,
            seal_reason: content.reason.as_str().to_owned(),
            created_at: batch.sealed_at,
            status: BatchStatus::Pending,
            invalidation_id: None,
            cloudfront_status: None,
            submitted_at: None,
            completed_at: None,
            time_to_complete: None,
            failure: None,
            owner: self.ownership.worker_id.clone(),
            lease_until: now + self.ownership.lease,
            expires_at: now + self.ownership.retention,
        }
    }
}

/// Two batches with half the members each, each with a new CallerReference (their paths differ).
fn split(batch: Batch, clock: WallClock) -> Vec<Batch> {
    let distribution_id = batch.content.distribution_id;
    let mut first = batch.content.members;
    let second = first.split_off(first.len() / 2);
    [first, second]
        .into_iter()
        .map(|members| {
            Batch::seal(SealedBatch::from_members(distribution_id.clone(), members, SealReason::Split), clock)
        })
        .collect()
}
