//! Keeping the bill down, over the in-memory fakes on tokio's paused clock: the monthly path budget shared by
//! several workers through the ledger, and the cost-aware coalescing policy.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cf_invalidator::clock::WallClock;
use cf_invalidator::fake::{FakeCdn, MemoryLedger, MemoryQueue};
use cf_invalidator::model::DistributionId;
use cf_invalidator::model::path::is_covered_by;
use cf_invalidator::model::role::{Role, Roles};
use cf_invalidator::ports::ledger::billing_month;
use cf_invalidator::ports::{Bills, Queue};
use cf_invalidator::submit::{CostPolicy, Spending};
use cf_invalidator::worker::{self, Services, Settings};
use serde_json::json;

const DISTRIBUTION: &str = "EAAA";

/// Fakes that several workers share, kept at hand to look at afterwards, and the one clock they all follow.
struct Shared(Services<MemoryQueue, FakeCdn, MemoryLedger>, WallClock);

impl Shared {
    fn new() -> Self {
        Self::with_distributions([DISTRIBUTION])
    }

    fn with_distributions<'a>(ids: impl IntoIterator<Item = &'a str>) -> Self {
        let clock = WallClock::following_tokio();
        let services = Services {
            queue: Arc::new(MemoryQueue::with_clock(clock)),
            dead_letter: Some(Arc::default()),
            cdn: Arc::new(FakeCdn::with_distributions(ids)),
            ledger: Arc::default(),
        };
        Self(services, clock)
    }

    fn settings(&self, spending: Spending) -> Settings {
        let mut settings = Settings { clock: self.1, ..Settings::default() };
        settings.batching.window = Duration::from_secs(5);
        // Many small batches: the budget is tested batch by batch, not on one big one.
        settings.batching.max_paths = 50;
        settings.intake.receive_wait = Duration::from_secs(1);
        settings.submission.create_rate = 100.0;
        settings.submission.spending = spending;
        settings
    }

    fn services(&self) -> Services<MemoryQueue, FakeCdn, MemoryLedger> {
        self.0.clone()
    }

    fn dead_lettered(&self) -> usize {
        self.0.dead_letter.as_ref().map_or(0, |queue| queue.len())
    }

    /// Sends `paths` ten to a message, and returns them.
    async fn send(&self, paths: Vec<String>) -> Vec<String> {
        for chunk in paths.chunks(10) {
            let body = json!({"distribution_id": DISTRIBUTION, "paths": chunk, "requester": "tests"});
            self.0.queue.send(&body.to_string(), &[]).await.unwrap();
        }
        paths
    }

    fn billed(&self) -> usize {
        self.0.cdn.invalidations().iter().map(|(_, paths)| paths.len()).sum()
    }

    fn uncovered(&self, requested: &[String]) -> Vec<String> {
        let created = self.0.cdn.invalidations();
        requested.iter().filter(|p| !created.iter().any(|(_, paths)| is_covered_by(p, paths))).cloned().collect()
    }
}

/// 1,000 distinct paths, 100 in each of 10 directories, interleaved as a deploy touching every section would.
fn thousand_paths_in_ten_directories() -> Vec<String> {
    (0..100).flat_map(|n| (0..10).map(move |d| format!("/section-{d}/page-{n}.html"))).collect()
}

#[tokio::test(start_paused = true)]
async fn two_workers_under_a_budget_of_300_bill_at_most_300_paths_and_cover_every_path() {
    let shared = Shared::new();
    let requested = shared.send(thousand_paths_in_ten_directories()).await;
    let budget = Spending { monthly_path_budget: Some(300), ..Spending::default() };
    // The deploy's messages wait on the queue a little before the workers take them: a wildcard one worker creates
    // covers the other's messages only if it provably came after they were sent, by more than the clocks of SQS
    // and the workers may disagree (`coverage::CLOCK_SKEW`).
    tokio::time::sleep(2 * cf_invalidator::coverage::CLOCK_SKEW).await;
    let run = |name: &str| {
        let mut settings = shared.settings(budget.clone());
        settings.ledger.worker_id = name.to_owned();
        worker::run(shared.services(), settings, tokio::time::sleep(Duration::from_secs(600)))
    };
    tokio::join!(run("w1"), run("w2"));

    assert!(shared.billed() <= 300, "{} paths billed", shared.billed());
    assert_eq!(shared.uncovered(&requested), Vec::<String>::new());
    assert!(
        shared.0.queue.is_empty() && shared.dead_lettered() == 0,
        "every message covered and deleted: {} left, {} dead-lettered, {} billed in {:?}",
        shared.0.queue.len(),
        shared.dead_lettered(),
        shared.billed(),
        shared.0.cdn.invalidations().iter().map(|(_, p)| p.len()).collect::<Vec<_>>()
    );
    let month = shared.0.ledger.month_billing(&billing_month(shared.1.now())).await.unwrap();
    assert_eq!(month.total.paths_billed as usize, shared.billed(), "the ledger counts what CloudFront billed");
    assert!(month.committed <= 300 && month.committed >= month.total.paths_billed, "{month:?}");
    let coalesced = shared.0.ledger.records().iter().filter(|r| r.coalescing.is_some()).count();
    assert!(coalesced > 0, "the budget was met by coalescing, not by luck");
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_holds_the_messages_and_neither_drops_nor_dead_letters_them() {
    let shared = Shared::new();
    let budget = Spending { monthly_path_budget: Some(20), ..Spending::default() };
    let first = shared.send((0..20).map(|n| format!("/a/{n}")).collect()).await;
    worker::run(shared.services(), shared.settings(budget.clone()), tokio::time::sleep(Duration::from_secs(60))).await;
    assert_eq!(shared.uncovered(&first), Vec::<String>::new());
    let billed = shared.billed();
    assert!(billed <= 20);

    // Tags cannot be coalesced: once the budget is down to less than a batch of them needs, it waits.
    let tags: Vec<String> = (0..30).map(|n| format!("#tag-{n}")).collect();
    let body = json!({"distribution_id": DISTRIBUTION, "tags": tags});
    shared.0.queue.send(&body.to_string(), &[]).await.unwrap();
    worker::run(shared.services(), shared.settings(budget), tokio::time::sleep(Duration::from_secs(300))).await;

    assert_eq!(shared.billed(), billed, "nothing submitted past the budget");
    assert!(shared.dead_lettered() == 0, "a spent budget is no reason to dead-letter");
    assert_eq!(shared.0.queue.len(), 1, "the message is back on the queue, not deleted");
}

#[tokio::test(start_paused = true)]
async fn an_account_at_its_monthly_budget_holds_only_its_own_distributions_batches() {
    // EAAA is in account 111122223333, reached through its role; EOWN in the worker's own account.
    let (other, own) = ("EAAA", "EOWN");
    let shared = Shared::with_distributions([other, own]);
    let mut roles = Roles::default();
    let role = Role::parse("arn:aws:iam::111122223333:role/cf-invalidator").unwrap();
    roles.assign(DistributionId::parse(other).unwrap(), role).unwrap();
    let settings = |budget| {
        let mut settings = shared.settings(Spending { monthly_path_budget: Some(budget), ..Spending::default() });
        settings.submission.roles = roles.clone();
        settings
    };
    let send = |distribution: &str, tags: Vec<String>| {
        let body = json!({"distribution_id": distribution, "tags": tags});
        let queue = Arc::clone(&shared.0.queue);
        async move { queue.send(&body.to_string(), &[]).await.unwrap() }
    };
    let tags = |prefix: &str, n: usize| (0..n).map(|i| format!("#{prefix}-{i}")).collect::<Vec<_>>();
    send(other, tags("spent", 10)).await;
    worker::run(shared.services(), settings(20), tokio::time::sleep(Duration::from_secs(60))).await;
    assert_eq!(shared.billed(), 10);

    // With the budget lowered to 10, the other account's is spent; tags cannot be coalesced, so its batch can
    // only wait, while the own account's, whose 10 are untouched, goes.
    send(other, tags("more", 1)).await;
    send(own, tags("own", 5)).await;
    worker::run(shared.services(), settings(10), tokio::time::sleep(Duration::from_secs(300))).await;

    let created = shared.0.cdn.invalidations();
    let billed = |id: &str| created.iter().filter(|(d, _)| d.as_str() == id).map(|(_, paths)| paths.len()).sum();
    assert_eq!((billed(other), billed(own)), (10, 5), "the own account's batch went, the other's waited");
    assert_eq!(shared.0.queue.len(), 1, "the other account's message is held, not dropped");
    let month = billing_month(shared.1.now());
    let other_month = shared.0.ledger.account_totals(&month, "111122223333").await.unwrap();
    let own_month = shared.0.ledger.account_totals(&month, "own").await.unwrap();
    assert_eq!((other_month.committed, other_month.total.paths_billed), (10, 10));
    assert_eq!((own_month.committed, own_month.total.paths_billed), (5, 5));
}

#[tokio::test(start_paused = true)]
async fn the_cost_policy_collapses_big_directories_and_keeps_small_ones_exact() {
    let shared = Shared::new();
    let mut paths: Vec<String> = (0..40).map(|n| format!("/news/{n}.html")).collect();
    paths.extend((0..5).map(|n| format!("/about/{n}.html")));
    let requested = shared.send(paths).await;
    let cost = CostPolicy { min_saving: 10, overrides: Arc::new(HashMap::new()) };
    let mut settings = shared.settings(Spending { cost: Some(cost), ..Spending::default() });
    settings.batching.max_paths = 1_000;
    worker::run(shared.services(), settings, tokio::time::sleep(Duration::from_secs(60))).await;

    assert_eq!(shared.uncovered(&requested), Vec::<String>::new());
    let created = shared.0.cdn.invalidations();
    let submitted: Vec<&String> = created.iter().flat_map(|(_, p)| p).collect();
    assert!(submitted.contains(&&"/news/*".to_owned()), "{submitted:?}");
    assert_eq!(submitted.iter().filter(|p| p.starts_with("/about/")).count(), 5, "5 paths save too little");
    assert_eq!(shared.billed(), 6);
}

#[tokio::test(start_paused = true)]
async fn a_distribution_s_own_threshold_overrides_the_default() {
    let shared = Shared::new();
    let requested = shared.send((0..40).map(|n| format!("/news/{n}.html")).collect()).await;
    let overrides = HashMap::from([(DistributionId::parse(DISTRIBUTION).unwrap(), 100)]);
    let cost = CostPolicy { min_saving: 10, overrides: Arc::new(overrides) };
    let mut settings = shared.settings(Spending { cost: Some(cost), ..Spending::default() });
    settings.batching.max_paths = 1_000;
    worker::run(shared.services(), settings, tokio::time::sleep(Duration::from_secs(60))).await;

    assert_eq!(shared.uncovered(&requested), Vec::<String>::new());
    assert_eq!(shared.billed(), 40, "a saving of 39 is below this distribution's 100");
}
