//! Reserving room for a batch in its distribution's in-progress budget, in the same write as its intent, doing on
//! the way what `choose` says: it waits for room or the month, goes in part, or is coalesced into wildcards.

use metrics::{counter, histogram};
use tokio::time::Instant;

use super::choose::{Choice, Known, Wait, choose};
use super::decide::{Attempts, Failure, Refusal};
use super::spend::{MonthWait, Spend};
use super::{DYNAMODB, Submitter};
use crate::batch::Batch;
use crate::batch::window::SealReason;
use crate::limit::BudgetKey;
use crate::limit::budget::{Grant, Turn};
use crate::limit::waiting::Waiting;
use crate::model::Target;
use crate::ports::budget::{Allowance, JointWrites};
use crate::ports::cdn::Cdn;
use crate::ports::ledger::{BatchRecord, billing_month};
use crate::telemetry::outages;

/// What reserving budget did with a batch.
pub(super) enum Reserved {
    /// Room is reserved for the batch (maybe coalesced into wildcards on the way), and its intent recorded.
    Whole(Batch, Box<BatchRecord>),
    /// Only part of it fits: submit the parts separately, the one that fits first, with the distribution's turn
    /// when the batch held it.
    InParts(Vec<Batch>, Option<Turn>),
    /// The ledger refused the batch's reservation for good.
    Refused(Batch, Refusal),
    /// Invalidations accepted since it was sealed cover it, found while it waited for the month.
    Covered(Batch),
}

/// A batch asking for room: its place in the distribution's backlog, and the distribution's turn.
struct Asking {
    waiting: Waiting,
    turn: Turn,
    since: Instant,
}

impl<C: Cdn, L: JointWrites> Submitter<C, L> {
    /// Takes the batch to a reservation of room in its distribution's budget, recording its intent in the same write
    /// (under a monthly path budget only if it fits what is left), doing what `choose` says on the way: a batch that
    /// may still change (nothing recorded yet) goes in part, is coalesced, or waits for the month. A resumed batch's
    /// intent is recorded, and counted, already. While it asks for room it holds its distribution's turn and counts
    /// in its backlog; waiting for the month it holds neither. A batch that goes in part hands its turn to the part
    /// that fits (`turn`, when it is that part): the batches queued behind would otherwise weigh the same room
    /// before that part takes it, and each split to it, leaving parts that fill the next room only in part.
    pub(super) async fn reserve(&self, mut batch: Batch, attempts: &mut Attempts, mut turn: Option<Turn>) -> Reserved {
        let (distribution, target) = (batch.content.distribution_id.clone(), batch.content.target());
        let key = self.budget.key(&target);
        self.budget.serves(&target);
        // The intent goes with the reservation, and the batch may change, until it is recorded.
        let mut unrecorded = batch.content.reason != SealReason::Resumed;
        // A joint write whose answer was lost may have recorded the intent: once recorded, the batch is submitted
        // as it is, never reshaped, or its record would be left pending for a redelivery to resume and pay again.
        let mut maybe_recorded = false;
        let mut known = Known {
            reshapable: unrecorded,
            fit: Allowance::default(),
            room: None,
            weighed: None,
            month_left: None,
            wildcard_room: 0,
            overloaded: None,
        };
        let mut record = self.intent_record(&batch);
        let mut asking: Option<Asking> = None;
        let mut month = MonthWait::default();
        loop {
            known.reshapable = unrecorded && !maybe_recorded;
            self.learn_known(&target, &key, &mut known);
            let choice = choose(&batch, &known, self.ownership.clock);
            if !matches!(choice, Choice::Wait(Wait::Month)) {
                month.hold = None;
            }
            match choice {
                Choice::InParts(parts) => {
                    counter!("cfi_batches_split_to_fit_total").increment(1);
                    return Reserved::InParts(parts, asking.map(|asking| asking.turn).or(turn));
                }
                Choice::Coalesce(plan, why) => {
                    batch = self.coalesced(&batch, plan, why, &known);
                    record = self.intent_record(&batch);
                    // Coalesced to fit the room it found: it asks again.
                    known.room = None;
                    if let Some(asking) = &mut asking {
                        // The backlog shrank by what coalescing saved.
                        asking.waiting = self.budget.waiting(&key, Allowance::of(&batch.content.paths));
                    }
                }
                Choice::Wait(Wait::Room) => {
                    known.weighed = known.room.take();
                    self.budget.room_may_have_changed(&key).await;
                }
                Choice::Wait(Wait::Month) => {
                    (asking, turn) = (None, None);
                    batch = match self.wait_for_month(batch, &mut month, known.month_left).await {
                        Spend::Submit(batch) => batch,
                        Spend::Covered(batch) => return Reserved::Covered(batch),
                    };
                    record = self.intent_record(&batch);
                }
                Choice::Reserve => {
                    let need = Allowance::of(&batch.content.paths);
                    let asking = match &mut asking {
                        Some(asking) => asking,
                        None => asking.insert(Asking {
                            waiting: self.budget.waiting(&key, need),
                            turn: match turn.take() {
                                Some(turn) => turn,
                                None => self.budget.turn(&key).await,
                            },
                            since: Instant::now(),
                        }),
                    };
                    let cap = self.month_cap(&distribution);
                    self.renew_terms(&mut record);
                    let intent = unrecorded.then_some((&record, cap.as_ref()));
                    match self.budget.try_reserve(&key, &batch.caller_reference, need, intent).await {
                        Ok(Grant::Reserved) => {
                            if let (Some(cap), true) = (&cap, unrecorded) {
                                self.month_to_date.commit(
                                    &cap.month,
                                    cap.account.as_deref(),
                                    record.paths.len() as u64,
                                );
                            }
                            outages().answered(DYNAMODB);
                            histogram!("cfi_budget_wait_seconds").record(asking.since.elapsed().as_secs_f64());
                            return Reserved::Whole(batch, Box::new(record));
                        }
                        Ok(Grant::NoRoom(room)) if maybe_recorded => {
                            // Until the ledger says whether the lost write recorded the intent, the batch waits as
                            // it is.
                            if let Ok(recorded) = self.ledger.batch(&batch.caller_reference).await {
                                (unrecorded, maybe_recorded) = (recorded.is_none(), false);
                            }
                            known.room = Some(room);
                        }
                        Ok(Grant::NoRoom(room)) => known.room = Some(room),
                        Ok(Grant::OverCap { spent }) => {
                            // Other workers spent the month's budget since this batch was shaped: shape it again.
                            let cap = cap.expect("only an intent under a cap is refused for it");
                            self.month_to_date.saw_spent(&cap.month, cap.account.as_deref(), spent);
                            // The refusal wrote nothing: the batch is shaped again as one not recorded.
                            maybe_recorded = false;
                        }
                        Err(e) => {
                            maybe_recorded |= unrecorded;
                            match self.wait_out(&batch.caller_reference, &key, Failure::Ledger(e), attempts).await {
                                Ok(_) => {}
                                Err(refusal) => return Reserved::Refused(batch, refusal),
                            }
                        }
                    }
                }
            }
        }
    }

    /// What the batch's next choice weighs, as the worker knows it now.
    fn learn_known(&self, target: &Target, key: &BudgetKey, known: &mut Known) {
        known.fit = self.fit(target);
        known.wildcard_room = self.budget.last_room(key).wildcards;
        known.month_left = self.spending.monthly_path_budget.map(|limit| {
            let month = billing_month(self.ownership.clock.now());
            let account = self.accounts.month_account(&target.distribution);
            limit.saturating_sub(self.month_to_date.spent(&month, account.as_deref()))
        });
        known.overloaded = self.overloaded(key);
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
