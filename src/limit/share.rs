//! The account's rates, shared by every worker on the ledger: CreateInvalidation calls, and paths and wildcards
//! per second.
//!
//! CloudFront throttles CreateInvalidation per account, so N workers each at `--create-rate` ask N times the rate
//! and learn of it from `Throttling`; the per-account path quotas are the same. Each worker with work checks in to
//! the ledger's roster every few seconds and takes an equal share of the account's rates among the workers checked
//! in, from the start: a rate that a refusal finds is divided at once, as every worker that finds it at the same
//! moment would otherwise take the whole of it and cut it for the others' calls. A new worker takes its share only
//! at its second check-in, once the others have had an interval to see it and shrink theirs; one that stops, or has
//! had nothing to submit for two check-ins, checks out; one that dies drops off the roster when its check-in runs
//! out; and the others grow their shares at their next check-in (a dead worker costs some rate for `LIVE_FOR`, never
//! an excess). An idle worker makes no request of the ledger here.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use metrics::gauge;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::account::AccountBuckets;
use super::accounts::Accounts;
use super::belief::LimitBoard;
use super::{Budget, CreateRateLimiter};
use crate::clock::WallClock;
use crate::model::Target;
use crate::ports::budget::{Beliefs, JointWrites, Roster};
use crate::ports::cdn::Cdn;
use crate::telemetry::log_allowed;

/// How often a worker checks in.
pub const CHECK_IN_EVERY: Duration = Duration::from_secs(5);
/// How often a worker that left the roster for want of work looks whether it has some again.
const IDLE_LOOK_EVERY: Duration = Duration::from_secs(1);
/// A worker with nothing to submit at this many check-ins running is idle.
const IDLE_AFTER_CHECK_INS: u32 = 2;
/// How long a check-in counts: three missed ones and the worker is off the roster.
const LIVE_FOR: Duration = Duration::from_secs(15);

/// The account's CreateInvalidation rate, shared by all workers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccountRate {
    pub per_second: f64,
    pub burst: NonZeroU32,
}

impl AccountRate {
    /// One of `workers` equal shares: the rate divided, and the burst too (at least one call).
    pub fn share(self, workers: usize) -> (f64, NonZeroU32) {
        let workers = workers.max(1);
        let burst = u32::try_from(workers).map_or(1, |n| self.burst.get() / n);
        (self.per_second / workers as f64, NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
    }
}

/// What takes a share of the account's rates: every account's, as each account's rates are configured alike and
/// every worker on the roster serves them all.
#[derive(Debug, Default)]
pub struct Sharers {
    /// Each account's CreateInvalidation limiter, and the call rate of each account.
    pub calls: Vec<(Arc<CreateRateLimiter>, AccountRate)>,
    /// Each account's path and wildcard buckets, configured or found by a refusal.
    pub paths: Vec<Arc<AccountBuckets>>,
}

impl Sharers {
    /// The limiters (when `rate` is the account's call rate) and buckets of every account in `accounts`.
    pub fn of(accounts: &Accounts, rate: Option<AccountRate>) -> Self {
        let limits = || accounts.iter().map(|(_, limits)| limits);
        Self {
            calls: rate.map_or_else(Vec::new, |rate| limits().map(|l| (Arc::clone(&l.limiter), rate)).collect()),
            paths: limits().map(|limits| Arc::clone(&limits.buckets)).collect(),
        }
    }

    fn share(&self, workers: usize) {
        for (limiter, rate) in &self.calls {
            let (per_second, burst) = rate.share(workers);
            limiter.set_share(per_second, burst);
            gauge!("cfi_create_rate_share").set(per_second);
        }
        if let Some((_, rate)) = self.calls.first() {
            let (per_second, burst) = rate.share(workers);
            info!(
                workers,
                per_second,
                burst = burst.get(),
                accounts = self.calls.len(),
                "sharing each account's CreateInvalidation rate"
            );
        }
        for buckets in &self.paths {
            buckets.set_workers(workers);
        }
        info!(workers, "workers checked in to the roster, sharing each account's rates");
        gauge!("cfi_workers_sharing_rate").set(workers as f64);
    }

    fn leave(&self) {
        self.calls.iter().for_each(|(limiter, _)| limiter.leave());
        self.paths.iter().for_each(|buckets| buckets.leave());
        gauge!("cfi_workers_sharing_rate").set(0.0);
    }

    /// Returns once some account finds a rate nobody configured.
    async fn until_found(&self) {
        if self.paths.is_empty() {
            return std::future::pending().await;
        }
        futures_util::future::select_all(self.paths.iter().map(|buckets| Box::pin(buckets.until_found()))).await;
    }
}

/// Checks `worker` in every `CHECK_IN_EVERY` and gives each of `sharers` its share of the account's rates, until
/// `stop`; then checks out, so the others take up its share at once.
///
/// A worker with nothing to submit (`busy` false at two check-ins running) checks out, so that the busy ones take
/// up its share (with equal shares, the last worker still holding messages of a backlog would go at its fraction
/// of the rate alone), and asks the ledger nothing while idle. It takes no share of a rate from when it leaves until
/// its second check-in after work returns, once the others could see it back; with the default `--window` that
/// wait is the first window's.
pub async fn keep_share<S: Roster>(
    store: Arc<S>,
    sharers: Sharers,
    worker: String,
    clock: WallClock,
    busy: impl Fn() -> bool,
    stop: CancellationToken,
) {
    let mut seen_by_others = false;
    let mut workers = 0;
    let mut idleness = Idleness::new(busy);
    loop {
        if idleness.is_idle() {
            check_out(&*store, &worker).await;
            sharers.leave();
            (seen_by_others, workers) = (false, 0);
            if !idleness.until_busy(&stop).await {
                return;
            }
            debug!("work again: checking in to the roster to share the account's rates");
        }
        let now = clock.now();
        match store.check_in(&worker, now, now + LIVE_FOR).await {
            Ok(live) if seen_by_others => {
                if live.len() != workers {
                    workers = live.len();
                    sharers.share(workers);
                }
            }
            Ok(_) => seen_by_others = true,
            Err(e) => {
                if let Some(suppressed) = log_allowed("check_in_failed") {
                    warn!(error = %e, suppressed, "could not check in to the roster; keeping the current share of the account's rate");
                }
            }
        }
        // A rate found at once by workers that started together is divided as soon as it is found: they checked in
        // at the same moment, before any of them could see the others.
        // Biased, here and below: a stop due with a check-in ends the loop in every run alike (simulations replay).
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = tokio::time::sleep(CHECK_IN_EVERY) => {}
            () = sharers.until_found() => {}
        }
    }
    check_out(&*store, &worker).await;
}

async fn check_out<S: Roster>(store: &S, worker: &str) {
    if let Err(e) = store.check_out(worker).await {
        warn!(error = %e, "could not check out of the roster; the others take up this worker's share when its check-in runs out");
    }
}

/// Whether the worker had nothing to submit at the last `IDLE_AFTER_CHECK_INS` check-ins (or looks at the beliefs).
struct Idleness<B> {
    busy: B,
    idle_check_ins: u32,
}

impl<B: Fn() -> bool> Idleness<B> {
    fn new(busy: B) -> Self {
        Self { busy, idle_check_ins: 0 }
    }

    /// Counts this check-in, and answers whether the worker is idle.
    fn is_idle(&mut self) -> bool {
        self.idle_check_ins = if (self.busy)() { 0 } else { self.idle_check_ins + 1 };
        self.idle_check_ins >= IDLE_AFTER_CHECK_INS
    }

    /// Returns true once the worker has work, looking every `IDLE_LOOK_EVERY` (no request); false on `stop`.
    async fn until_busy(&mut self, stop: &CancellationToken) -> bool {
        self.idle_check_ins = 0;
        while !(self.busy)() {
            tokio::select! {
                biased;
                () = stop.cancelled() => return false,
                () = tokio::time::sleep(IDLE_LOOK_EVERY) => {}
            }
        }
        true
    }
}

/// Shares this worker's cuts of the limits it learned (on `board`) and adopts the others' later cuts, every
/// `CHECK_IN_EVERY` from the start (so a new worker starts from what the others learned) until `stop`, and once
/// more then, so that a last cut is not lost. While idle (`busy` false at two looks running) it asks nothing, and
/// looks again as soon as work returns, before that work's first call could need the others' cuts.
pub async fn keep_beliefs<S: Beliefs, C: Cdn, L: JointWrites>(
    store: Arc<S>,
    board: Arc<LimitBoard>,
    budget: Arc<Budget<C, L>>,
    accounts: Arc<Accounts>,
    clock: WallClock,
    busy: impl Fn() -> bool,
    stop: CancellationToken,
) {
    let mut idleness = Idleness::new(busy);
    loop {
        for belief in board.to_share() {
            if let Err(e) = store.share_belief(&belief).await
                && let Some(suppressed) = log_allowed("share_belief_failed")
            {
                warn!(error = %e, suppressed, limit = belief.limit, "could not share a learned limit; the other workers learn it from their own refusals");
            }
        }
        match store.shared_beliefs(clock.now()).await {
            Ok(shared) => {
                for belief in board.to_adopt(shared) {
                    if let Some(account) = accounts.by_scope(&belief.scope) {
                        account.buckets.adopt(&belief.limit, belief.believed);
                    } else if let Some(target) = Target::parse(&belief.scope) {
                        // A tenant's own budget (`--tenant-limits separate`) learns from the other workers too; a
                        // worker that counts tenants in their distribution's budget has no such budget to teach.
                        let key = budget.key(&target);
                        if key.target() == &target {
                            budget.adopt(&key, &belief.limit, belief.believed);
                        }
                    }
                }
            }
            Err(e) => {
                if let Some(suppressed) = log_allowed("read_beliefs_failed") {
                    warn!(error = %e, suppressed, "could not read the limits other workers learned; trying again");
                }
            }
        }
        if stop.is_cancelled() {
            return;
        }
        tokio::select! {
            biased;
            () = stop.cancelled() => {}
            () = tokio::time::sleep(CHECK_IN_EVERY) => {}
        }
        if idleness.is_idle() && !idleness.until_busy(&stop).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeCdn, MemoryLedger};
    use crate::limit::BudgetSettings;

    /// A worker's budget over a plain fake CloudFront, and the own account alone.
    fn budget_and_accounts(
        store: &Arc<MemoryLedger>,
        settings: BudgetSettings,
        worker: &str,
        clock: WallClock,
    ) -> (Arc<Budget<FakeCdn, MemoryLedger>>, Arc<Accounts>) {
        let cdn = Arc::new(FakeCdn::default());
        let budget = Arc::new(Budget::new(cdn, Arc::clone(store), settings, worker.into(), clock));
        let limiter = CreateRateLimiter::awaiting_share;
        let accounts = Arc::new(Accounts::new(&Default::default(), None, Default::default(), &Arc::default(), limiter));
        (budget, accounts)
    }

    #[tokio::test(start_paused = true)]
    async fn a_tenants_own_budget_starts_from_what_another_worker_learned_of_it() {
        use crate::limit::budget::TenantLimits;
        use crate::ports::budget::SharedBelief;
        let store = Arc::new(MemoryLedger::default());
        let clock = WallClock::following_tokio();
        let target = Target::parse("EDFDVBD6EXAMPLE/dt_shop1").unwrap();
        let learned = SharedBelief {
            limit: "in_progress_paths".to_owned(),
            scope: target.to_string(),
            believed: 500.0,
            cut: clock.now(),
        };
        store.share_belief(&learned).await.unwrap();
        let defaults = crate::limit::budget::tests::settings();
        // A worker counting tenants in their distribution's budget has no tenant budget to teach, nor lets the
        // tenant's limit cut its distribution's.
        for (tenant_limits, believed) in
            [(TenantLimits::Separate, 500), (TenantLimits::Shared, defaults.capacity.paths)]
        {
            let settings = BudgetSettings { tenant_limits, ..defaults };
            let (budget, accounts) = budget_and_accounts(&store, settings, "w2", clock);
            let stop = CancellationToken::new();
            stop.cancel();
            keep_beliefs(Arc::clone(&store), Arc::default(), Arc::clone(&budget), accounts, clock, || true, stop).await;
            assert_eq!(budget.capacity(&budget.key(&target)).paths, believed, "{tenant_limits:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_found_by_workers_that_started_together_is_divided_at_once() {
        use crate::limit::account::{AccountBuckets, AccountQuotas};
        use crate::ports::budget::Allowance;
        let store = Arc::new(MemoryLedger::default());
        let clock = WallClock::following_tokio();
        let stop = CancellationToken::new();
        let new_buckets = || Arc::new(AccountBuckets::new(AccountQuotas::default(), Arc::default(), "account".into()));
        let workers = [new_buckets(), new_buckets()];
        for (n, buckets) in workers.iter().enumerate() {
            let sharers = Sharers { calls: vec![], paths: vec![Arc::clone(buckets)] };
            tokio::spawn(keep_share(Arc::clone(&store), sharers, format!("w{n}"), clock, || true, stop.clone()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let refused = Allowance { paths: 1_000, wildcards: 0 };
        let taken = workers[0].take(refused).await;
        workers[0].refused(refused, taken.under);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(workers[0].believed().0, Some(500.0), "half the refused batch, for the account");
        assert_eq!(workers[0].largest().paths, 250, "and half of that for each of the two, long before a check-in");
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_worker_leaves_its_share_to_the_busy_one_and_takes_it_back_once_it_could_be_seen() {
        use crate::limit::account::{AccountBuckets, AccountQuota, AccountQuotas};
        use crate::ports::budget::Allowance;
        use std::sync::atomic::{AtomicBool, Ordering};
        let store = Arc::new(MemoryLedger::default());
        let clock = WallClock::following_tokio();
        let stop = CancellationToken::new();
        let quotas = AccountQuotas { paths: AccountQuota::configured(150.0, 0), wildcards: None };
        let new_buckets = || Arc::new(AccountBuckets::new(quotas, Arc::default(), "account".into()));
        let (busy, idle) = (new_buckets(), new_buckets());
        let has_work = Arc::new(AtomicBool::new(false));
        let run = |name: &str, buckets: &Arc<AccountBuckets>, busy: Box<dyn Fn() -> bool + Send + Sync>| {
            let sharers = Sharers { calls: vec![], paths: vec![Arc::clone(buckets)] };
            tokio::spawn(keep_share(Arc::clone(&store), sharers, name.to_owned(), clock, busy, stop.clone()))
        };
        run("w1", &busy, Box::new(|| true));
        let work = Arc::clone(&has_work);
        run("w2", &idle, Box::new(move || work.load(Ordering::Relaxed)));
        tokio::time::sleep(CHECK_IN_EVERY * 2 + Duration::from_millis(500)).await;
        assert_eq!(busy.largest().paths, 150, "the idle worker left the roster: the busy one takes the whole rate");
        has_work.store(true, Ordering::Relaxed);
        tokio::time::sleep(CHECK_IN_EVERY / 2).await;
        let one = Allowance { paths: 1, wildcards: 0 };
        assert!(
            tokio::time::timeout(Duration::from_secs(1), idle.take(one)).await.is_err(),
            "back at work, it takes nothing before the other could see it"
        );
        tokio::time::sleep(CHECK_IN_EVERY).await;
        assert_eq!((busy.largest().paths, idle.largest().paths), (75, 75));
        assert!(tokio::time::timeout(Duration::from_secs(1), idle.take(one)).await.is_ok());
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_worker_asks_the_ledger_nothing_and_shares_again_once_it_has_work() {
        use crate::limit::account::AccountBuckets;
        use std::sync::atomic::{AtomicBool, Ordering};
        let clock = WallClock::following_tokio();
        let store = Arc::new(MemoryLedger::with_clock(clock));
        let stop = CancellationToken::new();
        let has_work = Arc::new(AtomicBool::new(true));
        let busy = || {
            let has_work = Arc::clone(&has_work);
            move || has_work.load(Ordering::Relaxed)
        };
        let rate = AccountRate { per_second: 2.0, burst: NonZeroU32::new(2).unwrap() };
        let limiter = Arc::new(CreateRateLimiter::awaiting_share());
        let buckets = Arc::new(AccountBuckets::new(Default::default(), Arc::default(), "account".into()));
        let sharers = Sharers { calls: vec![(Arc::clone(&limiter), rate)], paths: vec![buckets] };
        tokio::spawn(keep_share(Arc::clone(&store), sharers, "w1".into(), clock, busy(), stop.clone()));
        let (budget, accounts) = budget_and_accounts(&store, crate::limit::budget::tests::settings(), "w1", clock);
        let beliefs = keep_beliefs(Arc::clone(&store), Arc::default(), budget, accounts, clock, busy(), stop.clone());
        tokio::spawn(beliefs);
        tokio::time::sleep(CHECK_IN_EVERY * 2).await;
        assert_eq!(limiter.rate(), Some(2.0), "busy and alone, the whole rate");
        has_work.store(false, Ordering::Relaxed);
        tokio::time::sleep(CHECK_IN_EVERY * 3).await;
        assert_eq!(limiter.rate(), None, "idle, it left its share to the others");
        store.engine().take_observed();
        tokio::time::sleep(Duration::from_secs(600)).await;
        let requests = store.engine().take_observed().requests;
        assert!(requests.is_empty(), "ten idle minutes, no roster or beliefs request: {requests:?}");
        has_work.store(true, Ordering::Relaxed);
        tokio::time::sleep(IDLE_LOOK_EVERY + Duration::from_millis(10)).await;
        let requests = store.engine().take_observed().requests;
        assert!(requests.values().sum::<u64>() >= 3, "a check-in and a look at the beliefs at once: {requests:?}");
        assert_eq!(limiter.rate(), None, "no call before the others could see it back");
        tokio::time::sleep(CHECK_IN_EVERY).await;
        assert_eq!(limiter.rate(), Some(2.0));
        stop.cancel();
    }

    #[test]
    fn shares_divide_the_rate_and_the_burst_and_never_reach_zero() {
        let rate = AccountRate { per_second: 3.0, burst: NonZeroU32::new(6).unwrap() };
        assert_eq!(rate.share(1), (3.0, NonZeroU32::new(6).unwrap()));
        assert_eq!(rate.share(3), (1.0, NonZeroU32::new(2).unwrap()));
        assert_eq!(rate.share(12).1, NonZeroU32::MIN);
        assert_eq!(rate.share(0), rate.share(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_takes_its_share_after_the_others_could_see_it_and_gives_it_back_on_stopping() {
        let store = Arc::new(MemoryLedger::default());
        let clock = WallClock::following_tokio();
        let rate = AccountRate { per_second: 2.0, burst: NonZeroU32::new(2).unwrap() };
        let run = |name: &str, limiter: &Arc<CreateRateLimiter>, stop: &CancellationToken| {
            let (store, stop) = (Arc::clone(&store), stop.clone());
            let sharers = Sharers { calls: vec![(Arc::clone(limiter), rate)], paths: vec![] };
            tokio::spawn(keep_share(store, sharers, name.to_owned(), clock, || true, stop))
        };
        let (first, second) =
            (Arc::new(CreateRateLimiter::awaiting_share()), Arc::new(CreateRateLimiter::awaiting_share()));
        let (stop_first, stop_second) = (CancellationToken::new(), CancellationToken::new());
        let first_task = run("w1", &first, &stop_first);
        tokio::time::sleep(CHECK_IN_EVERY * 2).await;
        assert_eq!(first.rate(), Some(2.0), "alone, the whole rate");
        let second_task = run("w2", &second, &stop_second);
        tokio::time::sleep(CHECK_IN_EVERY / 2).await;
        assert_eq!(second.rate(), None, "a newcomer waits an interval before taking a share");
        tokio::time::sleep(CHECK_IN_EVERY).await;
        assert_eq!((first.rate(), second.rate()), (Some(1.0), Some(1.0)));
        stop_second.cancel();
        second_task.await.unwrap();
        tokio::time::sleep(CHECK_IN_EVERY).await;
        assert_eq!(first.rate(), Some(2.0), "a worker that stops gives its share back");
        stop_first.cancel();
        first_task.await.unwrap();
    }
}
