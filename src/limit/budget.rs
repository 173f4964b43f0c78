//! The in-progress budget: a batch goes to CloudFront only when its paths fit what the distribution has left of
//! its two quotas (3,000 paths and 15 wildcard paths in progress by default, aws-facts.md A1; less where refusals
//! taught the worker so, `refusals`), counting
//! - every worker's reservations, shared through the ledger table (`Budgets`), and
//! - invalidations nobody reserved (a person in the console, another tool, a worker whose reservation expired
//!   while CloudFront was still busy), found by a resync (`resync`).
//!
//! A reservation is written with a conditional write on the budget's version, so two workers can never both take
//! the last room; it lasts until the tracker sees the invalidation completed (it renews the reservation at each
//! check) or, if its worker dies, until its lease runs out. The protocol and its failure cases are in
//! docs/design.md, "Shared in-progress budget".

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use metrics::{counter, gauge};
use tokio::sync::{Notify, OwnedMutexGuard};
use tokio::time::Instant;
use tracing::warn;

use super::belief::{InProgressBelief, LimitBoard};
use super::resync::{TenantsSeen, Unreserved, notice_expired};
use super::room::{self, Ask, Decision, Limits, expired_before};
use super::waiting::{Waiting, WaitingBoard};
use crate::clock::WallClock;
use crate::model::{CallerReference, DistributionId, Target};
use crate::ports::budget::{
    Allowance, BudgetItem, BudgetState, JointWrites, QUOTA, RELEASED_AT_ONCE, Recorded, ReservationWrite,
};
use crate::ports::cdn::Cdn;
use crate::ports::ledger::{BatchRecord, Completion, LedgerError, MonthCap};
use crate::telemetry::log_allowed;

#[derive(Debug, Clone, Copy)]
pub struct BudgetSettings {
    /// What this worker lets all workers use: the quotas minus the headroom left to people.
    pub capacity: Allowance,
    /// How long a reservation lasts without renewal: what a dead worker's reservations cost the others.
    pub lease: Duration,
    /// How often a batch waiting for room reads the budget again, for room other workers released.
    pub poll: Duration,
    /// How long a resync's picture of other people's invalidations is trusted.
    pub resync_every: Duration,
    /// How long an invalidation is expected to stay in progress until the tracker has seen some complete.
    pub expected_completion: Duration,
    /// Whose budget a tenant's batches reserve in.
    pub tenant_limits: TenantLimits,
}

/// `--tenant-limits`: AWS does not say whether a tenant's invalidations have in-progress quotas of their own or
/// share the distribution's (docs/tenants.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TenantLimits {
    /// A tenant's batches reserve room in its distribution's budget, with the whole distribution's and the other
    /// tenants': the worker can only wait longer than it must, never be refused.
    #[default]
    Shared,
    /// Each tenant has a budget of its own with the same limits; the distribution's counts only whole-distribution
    /// batches.
    Separate,
}

/// The budget a target's batches reserve in (`budget#<name>` in the ledger): its distribution's, or under
/// `TenantLimits::Separate` a tenant's own. Made by `Budget::key` alone, so that no batch picks its budget by
/// another rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BudgetKey(Target);

impl BudgetKey {
    pub fn distribution(&self) -> &DistributionId {
        &self.0.distribution
    }

    /// The distribution, or the tenant whose own budget it is.
    pub fn target(&self) -> &Target {
        &self.0
    }
}

/// A whole distribution's batches reserve in the distribution's budget whatever the setting.
impl From<&DistributionId> for BudgetKey {
    fn from(distribution: &DistributionId) -> Self {
        Self(Target::from(distribution))
    }
}

/// `E…`, or `E…/dt_…` for a tenant's own budget.
impl std::fmt::Display for BudgetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl BudgetItem for BudgetKey {}

impl BudgetSettings {
    /// The quotas minus `reserve`.
    pub fn capacity_leaving(reserve: Allowance) -> Allowance {
        QUOTA - reserve
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Reserved, and the intent recorded if one came with the ask.
    Reserved,
    /// Not enough room now; this much is left.
    NoRoom(Allowance),
    /// The intent would take the month past its path budget: nothing was written.
    OverCap { spent: u64 },
}

/// A batch's intent, to record in the same write as its reservation: the record, and the month's path budget.
pub type IntentWrite<'a> = (&'a BatchRecord, Option<&'a MonthCap>);

/// Distributions whose state a worker keeps before it forgets those no batch holds: far above what an account
/// has (CloudFront's default quota is 200 distributions), so only a producer inventing ids reaches it.
const LOCAL_DISTRIBUTIONS: usize = 10_000;

/// At `LOCAL_DISTRIBUTIONS`, forgets what no batch holds now: a cache, its copy of the budget read again when next
/// needed.
fn forget_idle(local: &mut HashMap<BudgetKey, Arc<Local>>) {
    if local.len() >= LOCAL_DISTRIBUTIONS {
        local.retain(|_, entry| Arc::strong_count(entry) > 1);
    }
}

pub struct Budget<C, S> {
    pub(super) cdn: Arc<C>,
    pub(super) store: Arc<S>,
    pub(super) settings: BudgetSettings,
    owner: String,
    pub(super) clock: WallClock,
    local: Mutex<HashMap<BudgetKey, Arc<Local>>>,
    /// How long CloudFront takes to complete an invalidation, as the tracker last saw it (smoothed).
    completion: Mutex<Duration>,
    board: Option<Arc<WaitingBoard>>,
    /// Where what the worker believes of the quotas shows, and its cuts wait to be shared.
    pub(super) limits: Arc<LimitBoard>,
    /// Distributions whose batches wait for room since the tracker last asked: it looks at them sooner.
    wanted: Mutex<HashSet<BudgetKey>>,
    room_wanted: Notify,
}

/// What this worker keeps per distribution.
#[derive(Debug, Default)]
pub(super) struct Local {
    /// One batch per distribution at a time asks for room: the others queue here instead of each reading the
    /// budget on every poll.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Wakes the batch waiting for room when this worker releases some on the distribution. One permit is kept
    /// when nobody waits yet, so a release between a refusal and the wait is not missed (a spare permit costs one
    /// more look).
    released: Notify,
    /// The budget as this worker last read or wrote it. A reservation is first tried against it: a single worker
    /// then never reads before writing, and a stale copy only costs a failed conditional write. It is not trusted
    /// once one of its reservations looks expired (another worker may have renewed it), nor to refuse room.
    pub(super) known: Mutex<Option<BudgetState>>,
    /// What is in progress without a reservation, as the last resync saw it.
    pub(super) unreserved: Mutex<Unreserved>,
    /// The distribution's tenants a resync lists too.
    pub(super) tenants: Mutex<TenantsSeen>,
    /// What this worker's batches waiting for room on the distribution need together.
    backlog: Arc<Mutex<Allowance>>,
    /// The room the last reservation attempt found, if any was made.
    last_room: Mutex<Option<Allowance>>,
    /// What the worker believes of the distribution's quotas, once a refusal taught it anything.
    pub(super) belief: Mutex<Option<InProgressBelief>>,
    /// The most CloudFront accepted in progress (by the books), and when it last rose or was seen.
    pub(super) peak: Mutex<Option<(Allowance, Instant)>>,
}

/// A distribution's turn to ask for room: one batch of this worker at a time holds it.
pub type Turn = OwnedMutexGuard<()>;

/// How much the newest completion time moves the estimate: smooth, yet quick to follow CloudFront slowing down.
const COMPLETION_SMOOTHING: f64 = 0.25;

impl<C: Cdn, S: JointWrites> Budget<C, S> {
    pub fn new(cdn: Arc<C>, store: Arc<S>, settings: BudgetSettings, owner: String, clock: WallClock) -> Self {
        Self {
            cdn,
            store,
            settings,
            owner,
            clock,
            local: Mutex::default(),
            completion: Mutex::new(settings.expected_completion),
            board: None,
            limits: Arc::default(),
            wanted: Mutex::default(),
            room_wanted: Notify::new(),
        }
    }

    /// Shows the batches waiting for room on `board` too.
    pub fn with_board(self, board: Arc<WaitingBoard>) -> Self {
        Self { board: Some(board), ..self }
    }

    /// Shows what the worker believes of the quotas on `limits`.
    pub fn with_limits(self, limits: Arc<LimitBoard>) -> Self {
        Self { limits, ..self }
    }

    /// Counts `need` in the distribution's backlog while the returned guard lives.
    pub fn waiting(&self, key: &BudgetKey, need: Allowance) -> Waiting {
        let shown = self.board.as_ref().map(|board| {
            let since = self.clock.now();
            board.add(key.distribution(), since);
            (Arc::clone(board), key.distribution().clone(), since)
        });
        Waiting::new(Arc::clone(&self.local(key).backlog), need, shown)
    }

    /// What this worker's batches waiting on the distribution need together.
    pub fn backlog(&self, key: &BudgetKey) -> Allowance {
        *self.local(key).backlog.lock().unwrap()
    }

    /// The distribution's room as the last reservation attempt found it, or all of the capacity before any: what
    /// a batch reshaped to save money can expect to fit, before it asks.
    pub fn last_room(&self, key: &BudgetKey) -> Allowance {
        self.local(key).last_room.lock().unwrap().unwrap_or_else(|| self.capacity(key))
    }

    /// How long an invalidation is expected to stay in progress, which is how often room frees up.
    pub fn completion_estimate(&self) -> Duration {
        *self.completion.lock().unwrap()
    }

    /// The tracker saw invalidations of `distribution` complete: record them (as `Ledger::record_completion`,
    /// with an answer each, in their order), return their room in the same writes, and learn from the time they
    /// took.
    pub async fn completed(&self, key: &BudgetKey, completions: &[Completion]) -> Vec<Recorded> {
        {
            let mut estimate = self.completion.lock().unwrap();
            for completion in completions {
                let took = completion.time_to_complete;
                *estimate = estimate.mul_f64(1.0 - COMPLETION_SMOOTHING) + took.mul_f64(COMPLETION_SMOOTHING);
            }
        }
        let mut answers = Vec::with_capacity(completions.len());
        for part in completions.chunks(RELEASED_AT_ONCE) {
            match self.store.release_completed(key, part).await {
                Ok(recorded) => {
                    self.released(key, part.iter().map(|c| &c.caller_reference));
                    answers.extend(recorded);
                }
                Err(e) => answers.extend(part.iter().map(|_| Err(e.clone()))),
            }
        }
        answers
    }

    /// The batch was accepted, which the ledger noted on its reservation with its new end, `until`.
    pub fn accepted(&self, key: &BudgetKey, id: &CallerReference, invalidation_id: &str, until: SystemTime) {
        let local = self.local(key);
        let mut known = local.known.lock().unwrap();
        if let Some(reservation) = known.iter_mut().flat_map(|s| &mut s.reservations).find(|r| &r.id == id) {
            reservation.until = until;
            reservation.invalidation_id = Some(invalidation_id.to_owned());
        }
    }

    /// When a reservation made now lasts until: what acceptance moves its end to.
    pub fn lease_end(&self) -> SystemTime {
        self.clock.now() + self.settings.lease
    }

    pub fn settings(&self) -> &BudgetSettings {
        &self.settings
    }

    fn limits(&self, key: &BudgetKey) -> Limits {
        let BudgetSettings { lease, resync_every, .. } = self.settings;
        Limits { capacity: self.capacity(key), configured: self.settings.capacity, lease, resync_every }
    }

    /// The budget `target`'s batches reserve in: the one place the setting is read.
    pub fn key(&self, target: &Target) -> BudgetKey {
        match self.settings.tenant_limits {
            TenantLimits::Shared => BudgetKey::from(&target.distribution),
            TenantLimits::Separate => BudgetKey(target.clone()),
        }
    }

    pub(super) fn local(&self, key: &BudgetKey) -> Arc<Local> {
        let mut local = self.local.lock().unwrap();
        // Looked up several times per batch: clone the id only the first time.
        if let Some(known) = local.get(key) {
            return Arc::clone(known);
        }
        forget_idle(&mut local);
        Arc::clone(local.entry(key.clone()).or_default())
    }

    /// Waits until no other batch of this worker is asking for room on `distribution`.
    pub async fn turn(&self, key: &BudgetKey) -> Turn {
        let turn = Arc::clone(&self.local(key).turn);
        turn.lock_owned().await
    }

    /// The known budget if it can be trusted now: none of its reservations has expired by its own account.
    fn known(local: &Local, now: SystemTime) -> Option<BudgetState> {
        let known = local.known.lock().unwrap();
        known.as_ref().filter(|state| expired_before(&state.reservations, now).next().is_none()).cloned()
    }

    /// Reserves `need` for batch `id` if it fits now, recording `intent` in the same write.
    pub async fn try_reserve(
        &self,
        key: &BudgetKey,
        id: &CallerReference,
        need: Allowance,
        intent: Option<IntentWrite<'_>>,
    ) -> Result<Grant, LedgerError> {
        let local = self.local(key);
        loop {
            let now = self.clock.now();
            let (state, fresh) = match Self::known(&local, now) {
                Some(state) => (state, false),
                None => (self.store.read_budget(key).await?, true),
            };
            // A reservation that ran out may stand for an invalidation still in progress (its worker died, or
            // CloudFront is slow): only a resync can tell. Each worker resyncs once when it first sees one expire,
            // so expired reservations stay in the budget for a resync interval before they are deleted.
            if fresh {
                notice_expired(&local, expired_before(&state.reservations, now));
            }
            let Some(unreserved) = self.unreserved_usage(key, &local, &state.reservations).await else {
                // Room cannot be known until a resync succeeds: wait rather than guess.
                return Ok(Grant::NoRoom(Allowance::default()));
            };
            let room = room::room_for(id, self.capacity(key), unreserved, &state.reservations, now);
            gauge!("cfi_budget_room_paths", "distribution_id" => crate::telemetry::distribution_label(key.distribution().as_str()))
                .set(room.paths as f64);
            *local.last_room.lock().unwrap() = Some(room);
            let ask = Ask { id, owner: &self.owner, need, now };
            let (reservation, deletable) = match room::decide(&state, fresh, unreserved, &ask, self.limits(key)) {
                Decision::Reserve { reservation, deletable } => (reservation, deletable),
                Decision::NoRoom(room) => {
                    *local.known.lock().unwrap() = Some(state);
                    return Ok(Grant::NoRoom(room));
                }
                // Others may have released room since: refuse only on what the store says.
                Decision::ReadAgain => {
                    local.known.lock().unwrap().take();
                    continue;
                }
            };
            let written = match intent {
                Some((record, cap)) => {
                    self.store.reserve_recording(key, state.version, &reservation, &deletable, record, cap).await?
                }
                None => match self.store.write_reservation(key, state.version, &reservation, &deletable).await? {
                    true => ReservationWrite::Written,
                    false => ReservationWrite::VersionMoved,
                },
            };
            match written {
                ReservationWrite::Written => {
                    *local.known.lock().unwrap() = Some(room::after_write(state, reservation, &deletable));
                    return Ok(Grant::Reserved);
                }
                ReservationWrite::OverCap { spent } => return Ok(Grant::OverCap { spent }),
                ReservationWrite::VersionMoved => {}
            }
            // Another worker reserved in between: read again and decide on what it left.
            local.known.lock().unwrap().take();
            if fresh {
                counter!("cfi_budget_conflicts_total").increment(1);
            }
        }
    }

    /// Returns when room may have been freed on the distribution: by this worker at once, by others within a
    /// poll. Meanwhile the tracker is asked to look at the distribution's invalidations soon, so that room returns
    /// within seconds of their completion rather than at the next regular look.
    pub async fn room_may_have_changed(&self, key: &BudgetKey) {
        if self.wanted.lock().unwrap().insert(key.clone()) {
            self.room_wanted.notify_one();
        }
        let local = self.local(key);
        tokio::select! {
            biased;
            () = local.released.notified() => {}
            () = tokio::time::sleep(self.settings.poll) => {}
        }
    }

    /// Returns the distributions whose batches waited for room since the last call, once there are any.
    pub async fn wanted(&self) -> HashSet<BudgetKey> {
        loop {
            let wanted = std::mem::take(&mut *self.wanted.lock().unwrap());
            if !wanted.is_empty() {
                return wanted;
            }
            self.room_wanted.notified().await;
        }
    }

    /// The invalidation is still in progress: keep its reservation alive, and note which invalidation it is so
    /// resyncs recognise it without asking CloudFront.
    pub async fn renew(&self, key: &BudgetKey, id: &CallerReference, invalidation_id: &str) {
        let until = self.lease_end();
        match self.store.renew_reservation(key, id, until, Some(invalidation_id)).await {
            Ok(true) => self.accepted(key, id, invalidation_id, until),
            // Expired and deleted: from now on resyncs count the invalidation as unreserved.
            Ok(false) => counter!("cfi_budget_renewals_too_late_total").increment(1),
            Err(e) => {
                if let Some(suppressed) = log_allowed("budget_renew_failed") {
                    warn!(budget = %key, caller_reference = %id, error = %e, suppressed, "could not renew a reservation; it will be renewed at the next check");
                }
            }
        }
    }

    /// The batch's invalidation completed, or the batch will not be submitted: return its room.
    pub async fn release(&self, key: &BudgetKey, id: &CallerReference) {
        if let Err(e) = self.store.release_reservation(key, id).await {
            // Harmless beyond the delay: the reservation expires with its lease.
            if let Some(suppressed) = log_allowed("budget_release_failed") {
                warn!(budget = %key, caller_reference = %id, error = %e, suppressed, "could not release a reservation; its room returns when its lease ends");
            }
        }
        self.released(key, [id]);
    }

    /// Forgets the reservation and wakes a batch waiting for room.
    fn released<'a>(&self, key: &BudgetKey, ids: impl IntoIterator<Item = &'a CallerReference>) {
        let local = self.local(key);
        if let Some(known) = local.known.lock().unwrap().as_mut() {
            let ids: HashSet<&CallerReference> = ids.into_iter().collect();
            known.reservations.retain(|r| !ids.contains(&r.id));
        }
        local.released.notify_one();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// CloudFront's quotas with the default headroom, for unit tests.
    pub(crate) fn settings() -> BudgetSettings {
        BudgetSettings {
            capacity: QUOTA - Allowance { paths: 100, wildcards: 2 },
            lease: Duration::from_secs(120),
            poll: Duration::from_secs(2),
            resync_every: Duration::from_secs(60),
            expected_completion: Duration::from_secs(30),
            tenant_limits: TenantLimits::Shared,
        }
    }

    #[test]
    fn a_producer_inventing_distributions_leaves_a_bounded_map_and_keeps_what_batches_hold() {
        let id = |n: usize| BudgetKey::from(&DistributionId::parse(&format!("EINVENT{n:06}")).unwrap());
        let mut local: HashMap<BudgetKey, Arc<Local>> = HashMap::new();
        let held = Arc::clone(local.entry(id(0)).or_default());
        for n in 1..=LOCAL_DISTRIBUTIONS * 2 {
            forget_idle(&mut local);
            local.entry(id(n)).or_default();
        }
        assert!(local.len() <= LOCAL_DISTRIBUTIONS, "{} distributions kept", local.len());
        assert!(Arc::ptr_eq(&local[&id(0)], &held), "the one a batch holds is kept");
    }
}
