//! The account's per-second quotas on what invalidations hold (`--account-path-rate`, `--account-wildcard-rate`):
//! one token bucket of paths (cache tags included) and one of wildcard paths, this worker's share of each
//! (`share`), at the rate it believes now (`learn`). A batch takes from both before its call, or waits.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use std::sync::Arc;

use super::belief::{ACCEPTED, LimitBoard, REFUSED, SHARED};
use super::bucket::{Take, TokenBucket};
use super::learn::Learned;
use super::watched::Watched;
use crate::ports::budget::{Allowance, UNLIMITED};

/// Limits learned for the account, as the metric names them.
pub const ACCOUNT_PATHS: &str = "account_paths_per_second";
pub const ACCOUNT_WILDCARDS: &str = "account_wildcards_per_second";
/// A take that waited this long for the buckets found the rate binding.
const BINDING_WAIT: Duration = Duration::from_millis(250);
/// A take of this share of a bucket's level or more all but empties it.
const DRAINED: f64 = 0.9;
/// How much the latest take moves the share of takes that found the rate binding.
const BINDING_SMOOTHING: f64 = 0.2;

/// One configured account quota: `per_second` on average, `burst` at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccountQuota {
    pub per_second: f64,
    pub burst: f64,
}

impl AccountQuota {
    /// `per_second` (0: off), with `burst` (0: one second's worth, at least one).
    pub fn configured(per_second: f64, burst: u32) -> Option<Self> {
        let burst = if burst == 0 { per_second.ceil().max(1.0) } else { f64::from(burst) };
        (per_second > 0.0).then_some(Self { per_second, burst })
    }
}

/// The account's quotas as configured; `None` is off.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AccountQuotas {
    pub paths: Option<AccountQuota>,
    pub wildcards: Option<AccountQuota>,
}

impl AccountQuotas {
    pub fn is_off(&self) -> bool {
        self.paths.is_none() && self.wildcards.is_none()
    }
}

/// One of an account's quotas as the status page shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketHeadroom {
    /// The account's rate as believed, shared by every worker.
    pub per_second: f64,
    /// What this worker's bucket holds now: the most a batch takes without waiting.
    pub available: f64,
    /// This worker's bucket when full.
    pub burst: f64,
}

/// One quota as this worker holds it: what it believes of the account's rate, and its bucket of its share.
#[derive(Debug)]
struct Held {
    name: &'static str,
    /// As configured; `None` for a rate the worker was not told of and found from a refusal, whose burst is one
    /// second's worth.
    quota: Option<AccountQuota>,
    learned: Learned,
    bucket: TokenBucket,
}

impl Held {
    fn new(name: &'static str, quota: AccountQuota, now: Instant) -> Self {
        let learned = Learned::new(quota.per_second, 1.0);
        let bucket = TokenBucket::full(quota.per_second, quota.burst, now);
        Self { name, quota: Some(quota), learned, bucket }
    }

    /// A rate nobody configured, believed `believed` since a refusal found it.
    fn found(name: &'static str, believed: f64, now: Instant) -> Self {
        let learned = Learned::unconfigured(believed, 1.0);
        let bucket = TokenBucket::full(believed, believed.max(1.0), now);
        Self { name, quota: None, learned, bucket }
    }

    /// The bucket at `workers`' equal share of the believed rate, its burst cut in proportion.
    fn resize(&mut self, workers: usize, now: Instant) {
        let workers = workers.max(1) as f64;
        let believed = self.learned.believed();
        let burst = self.quota.map_or(believed, |quota| quota.burst * believed / quota.per_second);
        self.bucket.set(believed / workers, (burst / workers).max(1.0), now);
    }

    fn show(&self, board: &LimitBoard, scope: &str, why: &'static str) {
        board.show(self.name, scope, self.learned.believed(), self.learned.configured(), why);
    }
}

/// This worker's part of one account's quotas.
#[derive(Debug)]
pub struct AccountBuckets {
    state: Mutex<State>,
    board: Arc<LimitBoard>,
    /// The account's scope on the board and the ledger (`accounts::AccountKey::scope`).
    scope: String,
    /// False until the worker has its first share, and while it is off the roster for want of work: it takes none
    /// of a rate before the others could see it.
    ready: Watched<bool>,
    /// The share of recent takes that waited for the buckets, smoothed.
    binding: Mutex<f64>,
    /// Told when a refusal, or another worker, finds a rate nobody configured.
    found: Notify,
}

#[derive(Debug)]
struct State {
    workers: usize,
    paths: Option<Held>,
    wildcards: Option<Held>,
    /// The beliefs' generation: one more at each cut, this worker's or another's.
    generation: Generation,
}

/// Which beliefs of the account's rates a call went under (`AccountBuckets::take`): a refusal of a call sent
/// before the latest cut teaches nothing more, as it was sized for the rate that cut already lowered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Generation(u64);

/// What a batch took from the account's buckets before its call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// The rate was binding: the batch waited for the buckets, or all but emptied one.
    pub full: bool,
    pub under: Generation,
}

impl State {
    fn each(&mut self, need: Allowance) -> impl Iterator<Item = (&mut Held, u32)> {
        let paths = self.paths.as_mut().map(|held| (held, need.paths));
        let wildcards = self.wildcards.as_mut().map(|held| (held, need.wildcards));
        paths.into_iter().chain(wildcards).filter(|(_, need)| *need > 0)
    }
}

impl AccountBuckets {
    /// This worker's buckets of `quotas`, granting nothing until `set_workers` says how many share them (at once
    /// when every quota is off).
    pub fn new(quotas: AccountQuotas, board: Arc<LimitBoard>, scope: String) -> Self {
        let now = Instant::now();
        let mut state = State {
            workers: 1,
            paths: quotas.paths.map(|quota| Held::new(ACCOUNT_PATHS, quota, now)),
            wildcards: quotas.wildcards.map(|quota| Held::new(ACCOUNT_WILDCARDS, quota, now)),
            generation: Generation::default(),
        };
        for held in state.paths.iter_mut().chain(&mut state.wildcards) {
            held.resize(1, now);
            held.show(&board, &scope, SHARED);
        }
        Self {
            state: Mutex::new(state),
            board,
            scope,
            ready: Watched::new(quotas.is_off()),
            binding: Mutex::new(0.0),
            found: Notify::new(),
        }
    }

    /// `workers` share the account's quotas now (`share::keep_share`).
    pub fn set_workers(&self, workers: usize) {
        let mut guard = self.state.lock().unwrap();
        let state = &mut *guard;
        state.workers = workers;
        let now = Instant::now();
        for held in state.paths.iter_mut().chain(&mut state.wildcards) {
            held.resize(workers, now);
        }
        self.ready.set(true);
    }

    /// This worker left the roster: it takes nothing of a rate, believed now or found or adopted meanwhile, until
    /// `set_workers` gives it a share again, as the others took up its share. Batches of an account without a rate
    /// go on.
    pub fn leave(&self) {
        self.ready.set(false);
    }

    /// Whether the account has a path or wildcard rate to share, configured or found.
    pub fn has_rate(&self) -> bool {
        let state = self.state.lock().unwrap();
        state.paths.is_some() || state.wildcards.is_some()
    }

    /// The largest batch this worker's buckets hold: what a new batch is shaped to. A larger one (recorded, so
    /// not reshaped) goes once the buckets are full.
    pub fn largest(&self) -> Allowance {
        let state = self.state.lock().unwrap();
        let burst = |held: &Option<Held>| held.as_ref().map_or(UNLIMITED, |held| held.bucket.burst() as u32);
        Allowance { paths: burst(&state.paths), wildcards: burst(&state.wildcards) }
    }

    /// Waits until both buckets hold what `need` takes, and takes it from both at once.
    pub async fn take(&self, need: Allowance) -> Taken {
        let taken = self.wait_and_take(need).await;
        if !need.is_empty() {
            let mut binding = self.binding.lock().unwrap();
            *binding = *binding * (1.0 - BINDING_SMOOTHING) + if taken.full { BINDING_SMOOTHING } else { 0.0 };
        }
        taken
    }

    /// Whether most recent batches waited for the buckets or all but emptied one: the account's rate, not the
    /// distributions' room, is what holds submission back, so a refusal now is likely the rate's.
    pub fn is_binding(&self) -> bool {
        *self.binding.lock().unwrap() >= 0.5
    }

    async fn wait_and_take(&self, need: Allowance) -> Taken {
        if self.has_rate() {
            self.ready.until(|ready| ready).await;
        }
        let mut waited = false;
        loop {
            let wait = {
                let mut state = self.state.lock().unwrap();
                let now = Instant::now();
                let wait = state.each(need).map(|(held, need)| held.bucket.wait_for(need, now)).max();
                match wait {
                    None | Some(Duration::ZERO) => {
                        let mut drained = false;
                        for (held, need) in state.each(need) {
                            drained |= f64::from(need) >= DRAINED * held.bucket.level(now);
                            let taken = held.bucket.take_or_wait(need, now);
                            debug_assert_eq!(taken, Take::Taken);
                        }
                        return Taken { full: waited || drained, under: state.generation };
                    }
                    Some(wait) => wait,
                }
            };
            waited |= wait >= BINDING_WAIT;
            tokio::time::sleep(wait).await;
        }
    }

    /// CloudFront refused a batch needing `need`, sent under `under`, and the account's rate is to blame: a rate
    /// nobody configured is believed from then on, at a cut of what the refused batch held at once; one believed
    /// already, less, unless the batch was larger than its bucket or went before the latest cut.
    pub fn refused(&self, need: Allowance, under: Generation) {
        let mut guard = self.state.lock().unwrap();
        let state = &mut *guard;
        let now = Instant::now();
        let mut found = false;
        for (held, name, need) in
            [(&mut state.paths, ACCOUNT_PATHS, need.paths), (&mut state.wildcards, ACCOUNT_WILDCARDS, need.wildcards)]
        {
            if need > 0 && held.is_none() {
                *held = Some(Held::found(name, f64::from(need), now));
                found = true;
            }
        }
        // Calls sent together are refused together: only those sent under the latest beliefs cut, once, as the
        // calls after a cut go at the rate it set. A batch larger than a bucket (recorded before the belief fell)
        // is refused for its size, whatever the rate: it says nothing of the belief, and is split to fit it.
        if found {
            self.found.notify_one();
        } else if under != state.generation {
            return;
        }
        let cuts = |held: &Option<Held>, need: u32| match held {
            Some(h) if f64::from(need) <= h.bucket.burst() => need,
            _ => 0,
        };
        let within =
            Allowance { paths: cuts(&state.paths, need.paths), wildcards: cuts(&state.wildcards, need.wildcards) };
        if !within.is_empty() {
            state.generation.0 += 1;
        }
        drop(guard);
        self.learn(within, Learned::refused, REFUSED);
    }

    /// Returns once a rate nobody configured is found: a refusal's, or another worker's.
    pub async fn until_found(&self) {
        self.found.notified().await;
    }

    /// CloudFront accepted a batch needing `need`: probe up the rates it used.
    pub fn accepted(&self, need: Allowance) {
        self.learn(need, Learned::accepted, ACCEPTED);
    }

    fn learn(&self, need: Allowance, change: fn(&mut Learned) -> bool, why: &'static str) {
        let mut state = self.state.lock().unwrap();
        let (workers, now) = (state.workers, Instant::now());
        for (held, _) in state.each(need) {
            if change(&mut held.learned) {
                held.resize(workers, now);
                held.show(&self.board, &self.scope, why);
            }
        }
    }

    /// What this worker may take now of each quota, paths then wildcards (`None` for a quota turned off).
    pub fn headroom(&self) -> (Option<BucketHeadroom>, Option<BucketHeadroom>) {
        let mut state = self.state.lock().unwrap();
        let now = Instant::now();
        let headroom = |held: &mut Option<Held>| {
            held.as_mut().map(|held| BucketHeadroom {
                per_second: held.learned.believed(),
                available: held.bucket.level(now).max(0.0),
                burst: held.bucket.burst(),
            })
        };
        (headroom(&mut state.paths), headroom(&mut state.wildcards))
    }

    /// The account's rates as believed now, paths then wildcards (`None` for a quota turned off).
    pub fn believed(&self) -> (Option<f64>, Option<f64>) {
        let state = self.state.lock().unwrap();
        let believed = |held: &Option<Held>| held.as_ref().map(|held| held.learned.believed());
        (believed(&state.paths), believed(&state.wildcards))
    }

    /// Believes what another worker learned of one of the account's rates (`limit`, as this module names it),
    /// within what this one was told; a rate this worker was not told of is believed from now on.
    pub fn adopt(&self, limit: &str, believed: f64) -> bool {
        let mut state = self.state.lock().unwrap();
        let (workers, now) = (state.workers, Instant::now());
        let (held, name) = match limit {
            ACCOUNT_PATHS => (&mut state.paths, ACCOUNT_PATHS),
            ACCOUNT_WILDCARDS => (&mut state.wildcards, ACCOUNT_WILDCARDS),
            _ => return false,
        };
        let held = held.get_or_insert_with(|| {
            self.found.notify_one();
            Held::found(name, believed, now)
        });
        let learned = held.learned.starting_at(believed);
        held.learned = learned;
        held.resize(workers, now);
        held.show(&self.board, &self.scope, SHARED);
        state.generation.0 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(paths: f64, burst: u32, wildcards: f64) -> AccountBuckets {
        let quotas = AccountQuotas {
            paths: AccountQuota::configured(paths, burst),
            wildcards: AccountQuota::configured(wildcards, 0),
        };
        AccountBuckets::new(quotas, Arc::default(), crate::limit::accounts::OWN_SCOPE.to_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_both_buckets_and_takes_from_both() {
        let account = buckets(150.0, 300, 1.0);
        account.set_workers(1);
        assert_eq!(account.largest(), Allowance { paths: 300, wildcards: 1 });
        let start = Instant::now();
        account.take(Allowance { paths: 300, wildcards: 1 }).await;
        account.take(Allowance { paths: 150, wildcards: 1 }).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1), "a second for 150 paths and one wildcard");
        account.take(Allowance { paths: 0, wildcards: 1 }).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2), "plain paths take nothing from the wildcards");
    }

    #[tokio::test(start_paused = true)]
    async fn workers_share_the_rate_and_a_refusal_cuts_what_the_batch_used() {
        let account = buckets(150.0, 0, 1.0);
        account.set_workers(3);
        assert_eq!(account.largest(), Allowance { paths: 50, wildcards: 1 });
        let before = account.take(Allowance::default()).await.under;
        account.refused(Allowance { paths: 10, wildcards: 0 }, before);
        assert_eq!(account.believed(), (Some(127.5), Some(1.0)), "only the rates the batch used");
        assert_eq!(account.largest().paths, 42);
        let after = account.take(Allowance::default()).await.under;
        account.refused(Allowance { paths: 100, wildcards: 0 }, after);
        assert_eq!(account.believed(), (Some(127.5), Some(1.0)), "a batch larger than the bucket says nothing of it");
        account.refused(Allowance { paths: 10, wildcards: 0 }, before);
        assert_eq!(account.believed(), (Some(127.5), Some(1.0)), "a call sent before the cut teaches nothing more");
        account.refused(Allowance { paths: 10, wildcards: 0 }, after);
        account.refused(Allowance { paths: 10, wildcards: 0 }, after);
        assert_eq!(account.believed().0, Some(127.5 * 0.85), "calls refused together cut once");
        assert!(account.adopt(ACCOUNT_PATHS, 1_000.0) && account.adopt(ACCOUNT_WILDCARDS, 0.0));
        assert_eq!(account.believed(), (Some(150.0), Some(1.0)), "within the configuration and the floor");
        assert!(AccountQuotas::default().is_off() && buckets(0.0, 0, 0.0).largest().paths == UNLIMITED);
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_off_the_roster_holds_back_only_a_rate() {
        let account = buckets(0.0, 0, 0.0);
        account.leave();
        let one = Allowance { paths: 1, wildcards: 0 };
        let take = || tokio::time::timeout(Duration::from_secs(10), account.take(one));
        assert!(take().await.is_ok(), "an account without a rate has no share to wait for");
        assert!(account.adopt(ACCOUNT_PATHS, 100.0));
        assert!(take().await.is_err(), "a rate another worker found meanwhile waits for this worker's share of it");
        account.set_workers(2);
        assert!(take().await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_nothing_explains_finds_a_rate_nobody_configured() {
        let account = buckets(0.0, 0, 0.0);
        let taken = account.take(Allowance { paths: 5_000, wildcards: 3 }).await;
        assert!(!taken.full, "no rate, no wait");
        account.refused(Allowance { paths: 1_000, wildcards: 0 }, taken.under);
        assert_eq!(account.believed(), (Some(500.0), None), "half the refused batch, per second, until a success");
        assert_eq!(account.largest(), Allowance { paths: 500, wildcards: UNLIMITED }, "a second's worth at once");
        let start = Instant::now();
        account.take(Allowance { paths: 500, wildcards: 0 }).await;
        assert!(account.take(Allowance { paths: 250, wildcards: 0 }).await.full, "the rate binds");
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        assert!(!account.is_binding(), "one wait in a while is not a binding rate");
        for _ in 0..4 {
            account.take(Allowance { paths: 500, wildcards: 0 }).await;
        }
        assert!(account.is_binding());
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(!account.take(Allowance { paths: 100, wildcards: 0 }).await.full, "a small batch on a full bucket");
        }
        assert!(!account.is_binding());
    }
}
