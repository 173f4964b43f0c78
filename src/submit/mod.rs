//! Submission: one CreateInvalidation per batch, recorded in the ledger before and after the call.
//!
//! Order matters for idempotency: the intent record (with the CallerReference) is written first, so whatever
//! fails later (the call, its answer, the ledger update) is retried with the same reference, and CloudFront
//! returns the existing invalidation instead of creating and billing a second one.
//!
//! A batch starts only with a CreateInvalidation permit; until then it waits in the schedule, where later batches of
//! its distribution join it. Then it reserves room in its distribution's in-progress budget (`limit::budget`),
//! in the same write as its intent: it waits for room, goes in part when only part fits (the rest back to the
//! schedule, to be filled up by the batches behind it), or, when the
//! distribution's backlog would not clear within the maximum delay, is coalesced into wildcards (`crate::plan`).
//! Before its call it takes its paths from the account's rate buckets (`limit::account`); a refusal its books
//! cannot explain teaches the worker to believe less and splits the batch to fit (`refusal`). Waiting batches hold no submission slot, and a distribution has only a few of the places for held batches
//! (`schedule`), so one saturated distribution never holds up the others.

mod call;
mod choose;
mod decide;
mod lease;
mod refusal;
mod reserve;
mod schedule;
mod shape;
mod spend;

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, histogram};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::warn;

use self::decide::{Attempts, Failure, Refusal, Step};
use self::refusal::Lesson;
use self::reserve::Reserved;
use self::schedule::Schedule;
use self::shape::splittable;
use self::spend::Spend;
pub use self::spend::{CostPolicy, Spending};

use crate::batch::Batch;
use crate::batch::window::{BatchLimits, SealReason};
use crate::billing::MonthToDate;
use crate::clock::WallClock;
use crate::held::SubmissionBacklog;
use crate::limit::Budget;
use crate::limit::accounts::{AccountKey, Accounts};
use crate::limit::budget::Turn;
use crate::model::CallerReference;
use crate::model::message::Disposition;
use crate::ports::budget::{Allowance, JointWrites};
use crate::ports::cdn::{Cdn, CdnError};
use crate::ports::ledger::Owed;
use crate::retry::{RetryPolicy, Transient};
use crate::telemetry::{log_allowed, outages};

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

/// When a distribution's backlog is coalesced into wildcards.
#[derive(Debug, Clone, Copy)]
pub struct Overload {
    /// `--coalesce auto`; off, batches only wait.
    pub coalesce: bool,
    /// A backlog that would take longer than this to clear under the budget is coalesced.
    pub max_delay: Duration,
}

/// Batches held at once, waiting for budget or being submitted: enough for many distributions to wait side by
/// side, few enough to keep memory and the heartbeat's work bounded.
const HELD_BATCHES_PER_CALL: usize = 16;

/// How long a rate-limiter permit stays good for the call it was taken for.
const PERMIT_LIFETIME: Duration = Duration::from_secs(1);

/// Batches of one distribution held at once: one reserving while others are in their calls. Its budget turn
/// lets one batch at a time reserve, so more would only wait, in places other distributions need.
const HELD_BATCHES_PER_DISTRIBUTION: usize = 4;

pub struct Submitter<C, L> {
    pub cdn: Arc<C>,
    pub ledger: Arc<L>,
    pub budget: Arc<Budget<C, L>>,
    pub overload: Overload,
    pub spending: Spending,
    /// Per account served: the CreateInvalidation rate limiter and this worker's share of the account's paths and
    /// wildcards per second.
    pub accounts: Arc<Accounts>,
    pub retry: RetryPolicy,
    pub ownership: Ownership,
    /// Where accepted invalidations go to have their completion tracked; `None` when tracking is off.
    pub tracker: Option<mpsc::Sender<Owed>>,
    /// Events are on: a batch refused for good goes in the ledger's outbox and to the tracker to be announced.
    pub announce_failures: bool,
    /// The month's billed paths (the ledger's counters, by every worker), for the cost of each batch. Other tools'
    /// and people's invalidations use the same free paths, so the cost logged is a floor.
    pub month_to_date: Arc<MonthToDate>,
    /// Where the number of batches in submission is told to intake, which stops receiving when it is too high.
    pub backlog: Arc<SubmissionBacklog>,
}

/// What became of one batch.
enum Outcome {
    Done(Disposition),
    /// Submit these instead, in order from the last: halves of a batch CloudFront refused as invalid (to isolate
    /// the offending message), the part of a batch that fits now and the rest, or the same batch, unrecorded, to
    /// be shaped again for what is left of the monthly path budget.
    SubmitInstead(Vec<Batch>),
    /// The part that fits goes now (the last), the rest (the others) back to the schedule, where the batches
    /// waiting behind fill it up: a rest submitted on its own would take a call for a sliver. The part that fits
    /// asks for room with the distribution's turn, when the split held it.
    InParts(Vec<Batch>, Option<Turn>),
}

/// What became of the batches a submission started with: dispositions for their messages, and the rests of
/// batches that went in part, to be scheduled again.
struct Finished {
    dispositions: Vec<Disposition>,
    put_back: Vec<Batch>,
}

impl<C: Cdn, L: JointWrites> Submitter<C, L> {
    /// Submits batches until every sender is gone: at most `max_concurrent` calls at once, and up to
    /// `HELD_BATCHES_PER_CALL` times as many batches held while they wait for budget, at most
    /// `HELD_BATCHES_PER_DISTRIBUTION` of them of one distribution. A batch starts only with a CreateInvalidation
    /// permit: until then it waits in the schedule, where later batches of its distribution join it up to
    /// `limits`, so that a backlog the rate holds back goes out in fewer, fuller invalidations, and no reservation
    /// holds room for a batch that waits for the rate. Batches beyond the places wait in arrival order, while later
    /// batches of other distributions go ahead.
    pub async fn run(
        self: Arc<Self>,
        mut batches: mpsc::Receiver<Batch>,
        to_ack: mpsc::Sender<Disposition>,
        max_concurrent: usize,
        limits: BatchLimits,
    ) {
        let mut schedule = Schedule::new(max_concurrent * HELD_BATCHES_PER_CALL, HELD_BATCHES_PER_DISTRIBUTION, limits);
        let calls = Arc::new(Semaphore::new(max_concurrent));
        let mut running = JoinSet::new();
        let mut receiving = true;
        loop {
            self.backlog.set_sealed(schedule.len());
            if !receiving && schedule.is_idle() {
                return;
            }
            // Each account's next batch waits for its own account's rate: a saturated account holds back none other.
            let heads = self.heads(&schedule);
            let permit = async {
                if heads.is_empty() {
                    return std::future::pending().await;
                }
                let submitter = &self;
                let waits = heads.iter().map(|&(ref account, urgent, waits_for_room)| {
                    Box::pin(async move {
                        // The batches before it wait for room already: a permit taken now would lapse before its
                        // call, which takes a fresh one once it has room.
                        if waits_for_room {
                            return (account, None);
                        }
                        submitter.permit(account, urgent).await;
                        (account, Some(Instant::now()))
                    })
                });
                futures_util::future::select_all(waits).await.0
            };
            tokio::select! {
                biased;
                Some(done) = running.join_next() => {
                    let (distribution, put_back): (_, Vec<Batch>) = done.expect("a submission task never panics");
                    schedule.finished(&distribution);
                    // Each in front of the one before: the parts go in the order they were to be submitted.
                    put_back.into_iter().for_each(|rest| schedule.put_back(rest));
                }
                (account, permitted_at) = permit => {
                    let in_account = |distribution: &_| self.accounts.key_of(distribution) == account;
                    let batch = schedule.next_where(in_account).expect("the schedule had a batch to start");
                    let (submitter, to_ack, calls) = (Arc::clone(&self), to_ack.clone(), Arc::clone(&calls));
                    running.spawn(async move {
                        let distribution = batch.content.distribution_id.clone();
                        let finished = submitter.submit(batch, &calls, permitted_at).await;
                        for disposition in finished.dispositions {
                            let _ = to_ack.send(disposition).await;
                        }
                        (distribution, finished.put_back)
                    });
                }
                received = batches.recv(), if receiving => match received {
                    Some(batch) => {
                        let room = self.budget.last_room(&self.budget.key(&batch.content.target()));
                        schedule.push(batch, room);
                    }
                    None => receiving = false,
                },
            }
        }
    }

    /// Each account with a batch to start: whether that batch is urgent, and whether batches of its distribution
    /// wait for room in its in-progress budget already.
    fn heads(&self, schedule: &Schedule) -> Vec<(AccountKey, bool, bool)> {
        let heads = self.accounts.iter().filter_map(|(account, _)| {
            let batch = schedule.peek_where(|distribution| self.accounts.key_of(distribution) == account)?;
            let waits_for_room = self.budget.backlog(&self.budget.key(&batch.content.target())) != Allowance::default();
            Some((account.clone(), batch.content.reason == SealReason::Urgent, waits_for_room))
        });
        heads.collect()
    }

    /// Waits for `account`'s rate limiter to allow one CreateInvalidation, before the calls of its batches that are
    /// not urgent.
    async fn permit(&self, account: &AccountKey, urgent: bool) {
        let limiter = &self.accounts.get(account).limiter;
        if urgent {
            limiter.until_ready_urgently().await;
        } else {
            limiter.until_ready().await;
        }
    }

    /// Takes a batch as far as it can go and says what is to become of its messages. A batch CloudFront refuses
    /// as invalid is narrowed down (`shape::split`) until the offending messages are alone. `permitted_at`: when the rate
    /// limiter granted the batch's first call, if it did.
    async fn submit(&self, batch: Batch, calls: &Semaphore, mut permitted_at: Option<Instant>) -> Finished {
        let mut to_submit = vec![batch];
        let mut finished = Finished { dispositions: Vec::new(), put_back: Vec::new() };
        let mut turn = None;
        while let Some(batch) = to_submit.pop() {
            match self.submit_one(batch, calls, &mut permitted_at, turn.take()).await {
                Outcome::Done(disposition) => finished.dispositions.push(disposition),
                Outcome::SubmitInstead(batches) => to_submit.extend(batches),
                Outcome::InParts(mut parts, handed) => {
                    to_submit.extend(parts.pop());
                    finished.put_back.extend(parts);
                    turn = handed;
                }
            }
        }
        finished
    }

    /// `permitted_at` is taken by the batch's first call: a batch split before it leaves the permit to its parts.
    async fn submit_one(
        &self,
        batch: Batch,
        calls: &Semaphore,
        permitted_at: &mut Option<Instant>,
        turn: Option<Turn>,
    ) -> Outcome {
        let age = self.ownership.clock.now().duration_since(batch.sealed_at).unwrap_or_default();
        let mut attempts = Attempts::new(&self.retry, splittable(&batch), age);
        let batch = match self.uncovered_since_sealed(batch).await {
            Spend::Submit(batch) => batch,
            Spend::Covered(batch) => return Outcome::Done(Disposition::Delete(batch.content.members)),
        };
        let batch = if batch.content.reason == SealReason::Resumed { batch } else { self.collapse_for_cost(batch) };
        let (batch, mut record) = match self.reserve(batch, &mut attempts, turn).await {
            Reserved::Whole(batch, record) => (batch, *record),
            Reserved::InParts(parts, turn) => return Outcome::InParts(parts, turn),
            Reserved::Covered(batch) => return Outcome::Done(Disposition::Delete(batch.content.members)),
            Reserved::Refused(batch, refusal) => return self.refused(self.intent_record(&batch), batch, refusal).await,
        };
        // From now on the reservation ages: a slow wait for a call must not let it run out.
        let mut reserved_at = Instant::now();
        let _leased = self.keep_leased(&record);
        let need = Allowance::of(&record.paths);
        // Whether an attempt may have created the invalidation (its answer lost, or the ledger failed after it): a
        // batch that may exist in CloudFront is never split, or its paths would be paid twice.
        let mut maybe_created = batch.content.reason == SealReason::Resumed;
        loop {
            let (outcome, under) = {
                let call = calls.acquire().await.expect("semaphore is never closed");
                // A permit that waited for budget would let calls bunch up beyond the rate: take a fresh one.
                if permitted_at.take().is_none_or(|at| at.elapsed() > PERMIT_LIFETIME) {
                    let account = self.accounts.key_of(&batch.content.distribution_id);
                    self.permit(account, batch.content.reason == SealReason::Urgent).await;
                }
                // After the permit: a call refused while this batch waited for it may have cut the belief below
                // the batch, which is split now rather than sent to be refused as well.
                if let Some(refit) = self.outgrown(&batch, maybe_created) {
                    drop(call);
                    return self.refused(record, batch, refit).await;
                }
                // After the permit: the account's buckets pace the calls that wait for them, and a permit that
                // waited for them would only be taken again.
                let taken = self.accounts.of(&batch.content.distribution_id).buckets.take(need).await;
                // After a long wait for a permit or retries, the reservation may be near its end: another worker
                // could delete it as expired and give its room away while this call is in flight.
                if reserved_at.elapsed() > self.budget.settings().lease / 2 {
                    if let Err(refusal) = self.reserve_as_recorded(&record, &mut attempts).await {
                        return self.refused(record, batch, refusal).await;
                    }
                    reserved_at = Instant::now();
                }
                (self.create_and_record(&mut record, taken.full).await, taken.under)
            };
            let failure = match outcome {
                Ok(()) => {
                    outages().answered(CLOUDFRONT);
                    outages().answered(DYNAMODB);
                    return Outcome::Done(Disposition::Delete(batch.content.members));
                }
                Err(failure) => failure,
            };
            if let Failure::Cdn(CdnError::TooManyInProgress(_)) = failure {
                match self.learn_from_refusal(&record, &batch, under).await {
                    Lesson::Refit(room) if !maybe_created => {
                        return self.refused(record, batch, Refusal::Refit(room)).await;
                    }
                    Lesson::AtRate => {
                        counter!("cfi_submission_retries_total").increment(1);
                        continue;
                    }
                    Lesson::Refit(_) | Lesson::WaitForRoom => {}
                }
            }
            maybe_created |= !failure.created_nothing();
            let reserve_again = match self
                .wait_out(&record.caller_reference, &self.budget.key(&record.target()), failure, &mut attempts)
                .await
            {
                Ok(reserve_again) => reserve_again,
                Err(refusal) => return self.refused(record, batch, refusal).await,
            };
            if reserve_again {
                // The resync the refusal triggered may show less room: wait for it, same paths, same reference.
                if let Err(refusal) = self.reserve_as_recorded(&record, &mut attempts).await {
                    return self.refused(record, batch, refusal).await;
                }
                reserved_at = Instant::now();
            }
        }
    }

    /// Waits as the state machine says after a failed call for batch `reference`, its messages held, and says
    /// whether the batch must reserve budget again (CloudFront said `budget`'s target is full); or why it cannot go
    /// on.
    async fn wait_out(
        &self,
        reference: &CallerReference,
        budget: &crate::limit::BudgetKey,
        failure: Failure,
        attempts: &mut Attempts,
    ) -> Result<bool, Refusal> {
        note_failure(&failure);
        let (delay, reserve_again) = match attempts.after(&failure, Instant::now()) {
            Step::Retry { delay, reserve_again } => (delay, reserve_again),
            Step::Refused(refusal) => return Err(refusal),
        };
        if let Some(suppressed) = log_allowed("submission_retry") {
            warn!(caller_reference = %reference, error = %failure, ?delay, suppressed, "a call for the batch failed; retrying with the same CallerReference while its messages wait held");
        }
        counter!("cfi_submission_retries_total").increment(1);
        if reserve_again {
            self.budget.resync_next(budget);
        }
        tokio::time::sleep(delay).await;
        Ok(reserve_again)
    }
}

/// Runs a ledger call and records its latency.
async fn timed<T>(operation: &'static str, call: impl Future<Output = T>) -> T {
    let started = tokio::time::Instant::now();
    let outcome = call.await;
    histogram!("cfi_ledger_seconds", "operation" => operation).record(started.elapsed().as_secs_f64());
    outcome
}

const CLOUDFRONT: &str = "cloudfront";
const DYNAMODB: &str = "dynamodb";

/// A failure that can heal starts (or continues) its dependency's outage.
fn note_failure(failure: &Failure) {
    if failure.is_transient() {
        outages().failed(if matches!(failure, Failure::Cdn(_)) { CLOUDFRONT } else { DYNAMODB });
    }
}
