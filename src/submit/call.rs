//! The call itself: CreateInvalidation, what its answer teaches, and the outcome recorded.

use metrics::{counter, histogram};
use tokio::sync::mpsc::error::TrySendError;
use tracing::info;

use super::decide::Failure;
use super::{Submitter, timed};
use crate::plan;
use crate::ports::budget::{Allowance, JointWrites};
use crate::ports::cdn::{Cdn, CdnError};
use crate::ports::ledger::{BatchRecord, Owed, billing_month};

impl<C: Cdn, L: JointWrites> Submitter<C, L> {
    /// `full_bucket`: the call took what the account's buckets allowed (it waited for them, or emptied one), so
    /// its acceptance proves the rate believed, and probes it up; a call well within them proves nothing of it.
    pub(super) async fn create_and_record(&self, record: &mut BatchRecord, full_bucket: bool) -> Result<(), Failure> {
        let started = tokio::time::Instant::now();
        let outcome = self.cdn.create_invalidation(record.target(), &record.caller_reference, &record.paths).await;
        histogram!("cfi_create_invalidation_seconds").record(started.elapsed().as_secs_f64());
        let code = outcome.as_ref().map_or_else(CdnError::code, |_| "Created");
        counter!("cfi_cloudfront_responses_total", "code" => code).increment(1);
        let account = self.accounts.of(&record.distribution_id);
        if let Err(CdnError::Throttled(_)) = outcome {
            account.limiter.throttled();
        }
        let invalidation = outcome.map_err(Failure::Cdn)?;
        let need = Allowance::of(&record.paths);
        let key = self.budget.key(&record.target());
        self.budget.learn_accepted(&key, &record.caller_reference, need);
        if full_bucket {
            account.buckets.accepted(need);
        }
        record.accept(&invalidation, self.ownership.clock.now());
        info!(
            distribution_id = %record.distribution_id,
            caller_reference = %record.caller_reference,
            invalidation_id = %invalidation.id,
            paths = record.paths.len(),
            "invalidation accepted"
        );
        counter!("cfi_paths_submitted_total").increment(record.paths.len() as u64);
        let month = billing_month(self.ownership.clock.now());
        let billed_before = self.month_to_date.billed_before(&month, record.account.as_deref());
        let cost = plan::cost(&record.paths, billed_before);
        counter!("cfi_paths_billed_total").increment(cost.paths_billed as u64);
        info!(caller_reference = %record.caller_reference, paths_billed = cost.paths_billed, month_paths_billed_before = billed_before, estimated_cost_usd = cost.dollars, "invalidation cost, after the account's free paths this month");
        // The reservation's end moves a lease ahead in the same write: only an invalidation that takes long needs
        // its reservation renewed.
        let until = self.budget.lease_end();
        timed("record_outcome", self.ledger.record_acceptance(&key, record, until)).await.map_err(Failure::Ledger)?;
        self.budget.accepted(&key, &record.caller_reference, &invalidation.id, until);
        self.month_to_date.add(&month, record.account.as_deref(), cost.paths_billed as u64);
        self.track(record);
        Ok(())
    }

    /// Hands an accepted invalidation to the tracker without waiting: tracking must never hold up submission, so
    /// when the tracker is behind, the record waits in the ledger for a tracker to adopt it.
    fn track(&self, record: &BatchRecord) {
        let (Some(tracker), Some(submitted)) = (&self.tracker, record.submitted()) else {
            return;
        };
        if let Err(TrySendError::Full(_)) = tracker.try_send(Owed::Batch(submitted)) {
            counter!("cfi_completion_tracking_abandoned_total", "reason" => "busy").increment(1);
        }
    }
}
