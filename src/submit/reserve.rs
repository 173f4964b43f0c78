//! Reserving room for a batch in its distribution's in-progress budget, in the same write as its intent: it waits
//! for room, goes in part when only part fits, or is coalesced into wildcards when the distribution is overloaded.

use tokio::time::Instant;

use metrics::{counter, histogram};

use super::decide::{Attempts, Failure, Refusal};
use super::shape::{split_to_fit, split_worth_a_call};
use super::{DYNAMODB, Submitter};
use crate::batch::Batch;
use crate::batch::window::SealReason;
use crate::limit::budget::Grant;
use crate::ports::budget::{Allowance, JointWrites};
use crate::ports::cdn::Cdn;
use crate::ports::ledger::BatchRecord;
use crate::telemetry::outages;

/// What reserving budget did with a batch.
pub(super) enum Reserved {
    /// Room is reserved for the batch (maybe coalesced into wildcards on the way), and its intent recorded.
    Whole(Batch, Box<BatchRecord>),
    /// Only part of it fits: submit the parts separately, the one that fits first.
    InParts(Vec<Batch>),
    /// Recording the intent would take the month past its path budget, as spent so far: nothing was written.
    OverCap(Batch, u64),
    /// The ledger refused the batch's reservation for good.
    Refused(Batch, Refusal),
}

impl<C: Cdn, L: JointWrites> Submitter<C, L> {
    /// Waits until the batch's paths fit the distribution's budget and reserves them, recording the batch's intent
    /// in the same write (under a monthly path budget only if it fits what is left); a batch that may still change
    /// (nothing recorded yet) goes in part when only part fits, or is coalesced when the distribution is
    /// overloaded. A resumed batch's intent is recorded, and counted, already.
    pub(super) async fn reserve(&self, mut batch: Batch, attempts: &mut Attempts) -> Reserved {
        let (distribution, target) = (batch.content.distribution_id.clone(), batch.content.target());
        let key = self.budget.key(&target);
        self.budget.serves(&target);
        let mut reshapable = batch.content.reason != SealReason::Resumed;
        // A joint write whose answer was lost may have recorded the intent: once recorded, the batch is submitted
        // as it is, never reshaped, or its record would be left pending for a redelivery to resume and pay again.
        let mut maybe_recorded = false;
        let cap = self.month_cap(&distribution);
        let mut need = Allowance::of(&batch.content.paths);
        let mut waiting = self.budget.waiting(&key, need);
        let _turn = self.budget.turn(&key).await;
        let started = Instant::now();
        let mut record = self.intent_record(&batch);
        // Reshaping depends only on the batch and the room: a wake that finds the same room finds the same answer.
        let mut reshaped_for = None;
        let record = loop {
            let fit = self.fit(&target);
            if reshapable
                && !need.fits_in(fit)
                && let Some(parts) = split_to_fit(&batch, fit, self.ownership.clock)
            {
                return Reserved::InParts(parts);
            }
            self.renew_terms(&mut record);
            let intent = reshapable.then_some((&record, cap.as_ref()));
            let room = match self.budget.try_reserve(&key, &batch.caller_reference, need, intent).await {
                Ok(Grant::Reserved) => break record,
                Ok(Grant::NoRoom(room)) if reshapable && maybe_recorded => {
                    // Until the ledger says whether the lost write recorded the intent, the batch waits as it is.
                    if let Ok(recorded) = self.ledger.batch(&batch.caller_reference).await {
                        (reshapable, maybe_recorded) = (recorded.is_none(), false);
                    }
                    if !reshapable || maybe_recorded {
                        self.budget.room_may_have_changed(&key).await;
                        continue;
                    }
                    room
                }
                Ok(Grant::NoRoom(room)) => room,
                Ok(Grant::OverCap { spent }) => return Reserved::OverCap(batch, spent),
                Err(e) => {
                    maybe_recorded |= reshapable;
                    match self.wait_out(&batch.caller_reference, &key, Failure::Ledger(e), attempts).await {
                        Ok(_) => continue,
                        Err(refusal) => return Reserved::Refused(batch, refusal),
                    }
                }
            };
            if reshapable && reshaped_for.replace(room) != Some(room) {
                if let Some(parts) = split_worth_a_call(&batch, room, fit, self.ownership.clock) {
                    counter!("cfi_batches_split_to_fit_total").increment(1);
                    return Reserved::InParts(parts);
                }
                if let Some(coalesced) = self.coalesce_if_overloaded(&batch, room) {
                    batch = coalesced;
                    record = self.intent_record(&batch);
                    need = Allowance::of(&batch.content.paths);
                    // The backlog shrank by what coalescing saved.
                    waiting = self.budget.waiting(&key, need);
                    continue;
                }
            }
            self.budget.room_may_have_changed(&key).await;
        };
        if let (Some(cap), true) = (&cap, reshapable) {
            self.month_to_date.commit(&cap.month, cap.account.as_deref(), record.paths.len() as u64);
        }
        outages().answered(DYNAMODB);
        drop(waiting);
        histogram!("cfi_budget_wait_seconds").record(started.elapsed().as_secs_f64());
        Reserved::Whole(batch, Box::new(record))
    }

    /// Reserves again for a recorded batch, waiting as long as it takes.
    pub(super) async fn reserve_as_recorded(
        &self,
        record: &BatchRecord,
        attempts: &mut Attempts,
    ) -> Result<(), Refusal> {
        let need = Allowance::of(&record.paths);
        let key = self.budget.key(&record.target());
        let _turn = self.budget.turn(&key).await;
        loop {
            match self.budget.try_reserve(&key, &record.caller_reference, need, None).await {
                Ok(Grant::Reserved) => return Ok(()),
                Ok(Grant::NoRoom(_)) => self.budget.room_may_have_changed(&key).await,
                Ok(Grant::OverCap { .. }) => unreachable!("no intent is written with this reservation"),
                Err(e) => {
                    self.wait_out(&record.caller_reference, &key, Failure::Ledger(e), attempts).await?;
                }
            }
        }
    }
}
