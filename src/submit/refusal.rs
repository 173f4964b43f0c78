//! What a refusal teaches, and what becomes of a refused batch.
//!
//! `TooManyInvalidationsInProgress` although the books had room: one fresh look at the distribution (`Budget::
//! refusal_explained`) tells people's invalidations from a model that is wrong. When the look explains it, the batch
//! waits for room as before; otherwise the worker believes less of the quotas the batch used (per distribution, and
//! the account's rates) and, when the batch no longer fits what it believes, splits it to fit: nothing is handed
//! back or dead-lettered for a refusal, and a single path is the smallest split.

use metrics::counter;
use tracing::{error, info, warn};

use super::decide::Refusal;
use super::shape::{split, split_to_fit, splittable};
use super::{Outcome, Submitter, timed};
use crate::batch::Batch;
use crate::batch::window::SealReason;
use crate::limit::account::Generation;
use crate::model::message::Disposition;
use crate::ports::budget::{Allowance, JointWrites};
use crate::ports::cdn::Cdn;
use crate::ports::ledger::BatchRecord;
use crate::retry::retry_transient;

/// What a batch refused as too much in progress does next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Lesson {
    /// Split to fit what the worker believes is left.
    Refit(Allowance),
    /// The account's rate refused it: it goes again as the account's buckets allow, which pace it already.
    AtRate,
    /// The distribution is full: it waits for room, as the books say.
    WaitForRoom,
}

impl<C: Cdn, L: JointWrites> Submitter<C, L> {
    /// CloudFront refused `batch` (recorded as `record`, sent under the account's beliefs `under`) as too much in
    /// progress: learns what the refusal teaches, and says what the batch does next.
    ///
    /// Both models refuse with the same error, so the refusal is laid at the door of one only on evidence. The
    /// account's rate is to blame when it has been binding (most recent calls waited for its bucket or emptied it),
    /// or when nothing else was in progress on the distribution (an in-progress quota would have to be smaller than
    /// one batch); a rate nobody configured is found then, at a cut of what the batch held. Otherwise the
    /// distribution's in-progress quota is: believed below what was in progress with the batch, never below what
    /// CloudFront accepted in progress lately, so blaming it wrongly costs little, where a wrongly found rate would
    /// hold every distribution back.
    pub(super) async fn learn_from_refusal(&self, record: &BatchRecord, batch: &Batch, under: Generation) -> Lesson {
        let (distribution, reference) = (&record.distribution_id, &record.caller_reference);
        let need = Allowance::of(&record.paths);
        let key = self.budget.key(&record.target());
        let Some(in_progress) = self.budget.unexplained_refusal(&key, reference, need).await else {
            return Lesson::WaitForRoom;
        };
        counter!("cfi_refusals_unexplained_total").increment(1);
        let account = &self.accounts.of(distribution).buckets;
        let rate = account.is_binding() || in_progress.is_empty();
        if rate {
            account.refused(need, under);
        } else {
            self.budget.learn_refused(&key, need, in_progress);
        }
        // What the new belief leaves beside what CloudFront holds: the part that fits goes now, and is the next
        // probe of the belief, so a limit far below the configuration is found within seconds, not a refusal per
        // completion of what is in progress.
        let room = self.fit(&record.target()).min(self.budget.capacity(&key) - in_progress);
        let resumed = batch.content.reason == SealReason::Resumed;
        if !need.fits_in(room) && !resumed && splittable_to(batch, room) {
            Lesson::Refit(room)
        } else if rate {
            Lesson::AtRate
        } else {
            Lesson::WaitForRoom
        }
    }

    /// A batch recorded before the worker came to believe less, and now larger than it believes one call may
    /// carry: split before its call, rather than after CloudFront refuses it. Never one that may have been created.
    pub(super) fn outgrown(&self, batch: &Batch, maybe_created: bool) -> Option<Refusal> {
        let fit = self.fit(&batch.content.target());
        let need = Allowance::of(&batch.content.paths);
        let resumed = batch.content.reason == SealReason::Resumed;
        (!maybe_created && !resumed && !need.fits_in(fit) && splittable_to(batch, fit)).then_some(Refusal::Refit(fit))
    }

    /// The largest batch the worker believes CloudFront takes now for `target`: its budget's in-progress room as
    /// believed, and this worker's share of its account's buckets.
    pub(super) fn fit(&self, target: &crate::model::Target) -> Allowance {
        let capacity = self.budget.capacity(&self.budget.key(target));
        capacity.min(self.accounts.of(&target.distribution).buckets.largest())
    }

    /// The batch cannot succeed as it is: record why, then split it, dead-letter its messages or batch them afresh.
    pub(super) async fn refused(&self, mut record: BatchRecord, batch: Batch, refusal: Refusal) -> Outcome {
        let members = batch.content.members.len();
        let (reason, code) = match &refusal {
            Refusal::DeadLetter { reason, code } => (reason.clone(), *code),
            Refusal::Narrow => (
                "CloudFront refused a path; narrowing the batch down to find the message".to_owned(),
                "InvalidArgument",
            ),
            Refusal::Refit(fit) => (
                format!(
                    "CloudFront allows less in progress than the worker believed; split to fit {} paths and {} wildcards",
                    fit.paths, fit.wildcards
                ),
                "TooManyInvalidationsInProgress",
            ),
            Refusal::Rebatch => {
                ("the CallerReference was recorded with other paths".to_owned(), "InvalidationBatchAlreadyExists")
            }
        };
        if matches!(refusal, Refusal::Refit(_)) {
            info!(caller_reference = %record.caller_reference, distribution_id = %record.distribution_id, reason, "splitting the batch to fit what CloudFront allows");
        } else if refusal == Refusal::Narrow {
            warn!(caller_reference = %record.caller_reference, distribution_id = %record.distribution_id, messages = members, "CloudFront refused the paths; narrowing the batch down to find the offending message");
        } else {
            error!(caller_reference = %record.caller_reference, distribution_id = %record.distribution_id, code, error = %reason, "the batch was refused");
        }
        if !matches!(refusal, Refusal::Refit(_)) {
            counter!("cfi_batches_refused_total", "code" => code).increment(1);
        }
        self.budget.release(&self.budget.key(&record.target()), &record.caller_reference).await;
        record.fail(&reason);
        // Only a refusal for good is announced: a split or a rebatch goes on under new batches.
        record.outbox = self.announce_failures && matches!(refusal, Refusal::DeadLetter { .. });
        // Held until it is written: a record left pending would be resumed by a redelivery and submitted again.
        match retry_transient(self.retry.outage, || timed("record_outcome", self.ledger.record_outcome(&record))).await
        {
            Ok(()) if record.outbox => {
                if let Some(tracker) = &self.tracker {
                    // A full channel only delays the event: the record waits in the outbox for adoption.
                    let _ = tracker.try_send(record.failure_owed());
                }
            }
            Ok(()) => {}
            Err(e) => {
                warn!(caller_reference = %record.caller_reference, error = %e, "could not record the failure in the ledger")
            }
        }
        let deliveries = batch.content.members.iter().map(|m| m.delivery.clone()).collect();
        match refusal {
            Refusal::Narrow => Outcome::SubmitInstead(marked_may_be_covered(split(batch, self.ownership.clock))),
            Refusal::Refit(fit) => Outcome::InParts(
                marked_may_be_covered(
                    split_to_fit(&batch, fit, self.ownership.clock)
                        .unwrap_or_else(|| split(batch, self.ownership.clock)),
                ),
                None,
            ),
            Refusal::DeadLetter { reason, code } => Outcome::Done(Disposition::DeadLetter { deliveries, reason, code }),
            // The record is failed now, so the messages are batched afresh when they come back.
            Refusal::Rebatch => Outcome::Done(Disposition::Release(deliveries)),
        }
    }
}

/// The parts of a refused batch, marked to look for invalidations that cover them before their calls.
fn marked_may_be_covered(mut parts: Vec<Batch>) -> Vec<Batch> {
    parts.iter_mut().for_each(|part| part.may_be_covered = true);
    parts
}

/// Whether `batch` can be cut so that a first part fits `fit`: it holds several messages, or several paths.
fn splittable_to(batch: &Batch, fit: Allowance) -> bool {
    (fit.paths > 0 || fit.wildcards > 0)
        && (splittable(batch) || batch.content.members.iter().any(|member| member.paths.len() > 1))
}
