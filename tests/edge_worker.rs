//! The worker with `--verify-edge` and `--warm` (issue #28) over the in-memory fakes and the simulator's edge, on
//! tokio's paused clock: completed batches are verified and the outcome recorded on the batch, stale paths are
//! invalidated once more through the queue and verified again, a stale edge is reported and not looped, and
//! warming stays within its rate.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cf_invalidator::clock::WallClock;
use cf_invalidator::edge::settings::{VerifySettings, WarmSettings};
use cf_invalidator::edge::stage::HEAL_REQUESTER;
use cf_invalidator::edge::url::EdgeBase;
use cf_invalidator::fake::{EdgeCall, EdgeConfig, FakeCdn, FakeEdge, MemoryLedger, MemoryQueue};
use cf_invalidator::model::DistributionId;
use cf_invalidator::ports::edge::{DomainLookup, EdgeMethod, SharedEdge};
use cf_invalidator::ports::ledger::{BatchRecord, EdgeOutcome};
use cf_invalidator::ports::{BatchStatus, Queue};
use cf_invalidator::worker::{Exit, Settings};
use serde_json::json;

const SECOND: Duration = Duration::from_secs(1);
const DOMAIN: &str = "d111111abcdef8.cloudfront.net";
const ID: &str = "EDGE1";
const FRA: &str = "FRA56-P2";
const OBJECTS: [&str; 5] = ["/index.html", "/css/site.css", "/js/app.js", "/img/logo.png", "/about.html"];

struct Harness {
    queue: Arc<MemoryQueue>,
    cdn: Arc<FakeCdn>,
    ledger: Arc<MemoryLedger>,
    edge: Arc<FakeEdge>,
    /// Requests the set-up made, before the worker's.
    setup_calls: usize,
}

impl Harness {
    /// Version 1 of every object, cached at both POPs; CloudFront completes invalidations after 30 s.
    fn new() -> Self {
        let cdn = Arc::new(FakeCdn::with_distributions([ID]));
        cdn.complete_after(30 * SECOND);
        let edge = Arc::new(FakeEdge::new(Arc::clone(&cdn), EdgeConfig::default()));
        let queue = Arc::new(MemoryQueue::with_clock(WallClock::following_tokio()));
        let mut h = Self { queue, cdn, ledger: Arc::default(), edge, setup_calls: 0 };
        for path in OBJECTS {
            h.edge.put_object(&distribution(), path, format!("{path} v1"));
            h.edge.cache_everywhere(&distribution(), path, DOMAIN);
        }
        h.setup_calls = h.edge.calls().len();
        h
    }

    /// The requests the worker made.
    fn calls(&self) -> Vec<EdgeCall> {
        self.edge.calls().split_off(self.setup_calls)
    }

    /// A deploy: version 2 at the origin, and its paths sent to the worker.
    async fn deploy(&self) {
        for path in OBJECTS {
            self.edge.put_object(&distribution(), path, format!("{path} v2"));
        }
        let body =
            json!({"distribution_id": ID, "paths": OBJECTS.iter().chain(["/fonts/*"].iter()).collect::<Vec<_>>()});
        self.queue.send(&body.to_string(), &[]).await.unwrap();
    }

    async fn run_for(&self, duration: Duration, settings: Settings) -> Exit {
        common::memory::run_for(&self.queue, &self.cdn, &self.ledger, duration, settings).await
    }

    /// The batches, the first (the deploy's) first.
    fn batches(&self) -> Vec<BatchRecord> {
        let mut records = self.ledger.records();
        records.sort_by_key(|r| r.created_at);
        records
    }

    fn settings(&self, verify: bool, warm: bool) -> Settings {
        let mut settings = Settings { clock: WallClock::following_tokio(), ..Settings::default() };
        settings.intake.receive_wait = SECOND;
        settings.submission.create_rate = 100.0;
        settings.edge.verify = verify.then(VerifySettings::default);
        settings.edge.warm = warm.then(WarmSettings::default);
        settings.edge.edge_urls.insert(distribution(), EdgeBase::parse(&format!("https://{DOMAIN}/{ID}")).unwrap());
        settings.edge_client = Some(SharedEdge::new(Arc::clone(&self.edge)));
        settings
    }
}

fn distribution() -> DistributionId {
    DistributionId::parse(ID).unwrap()
}

const RUN: Duration = Duration::from_secs(600);

#[tokio::test(start_paused = true)]
async fn a_normal_invalidation_is_recorded_verified_fresh() {
    let h = Harness::new();
    h.deploy().await;
    assert_eq!(h.run_for(RUN, h.settings(true, false)).await, Exit::Drained);

    let batches = h.batches();
    assert_eq!(batches.len(), 1, "no second invalidation: {batches:?}");
    assert_eq!(batches[0].status, BatchStatus::Completed);
    let verified = batches[0].verification.clone().expect("the batch's record holds its verification");
    assert_eq!((verified.outcome, verified.checked, verified.fresh, verified.stale), (EdgeOutcome::Fresh, 5, 5, 0));
    assert!(verified.at >= batches[0].completed_at.unwrap(), "checked after the completion was recorded");
    assert_eq!(verified.pops.len(), 2, "{verified:?}");
    let calls = h.calls();
    assert!(calls.iter().all(|call| call.host == DOMAIN && call.method == EdgeMethod::Head), "{calls:?}");
    assert_eq!(calls.len(), 5, "one HEAD a sampled path, the wildcard never requested");
}

#[tokio::test(start_paused = true)]
async fn paths_stale_after_the_grace_are_invalidated_once_more_and_the_first_batch_is_healed() {
    let h = Harness::new();
    // Past the 30 s grace, short of the second invalidation's completion.
    h.edge.set_lag(FRA, 45 * SECOND);
    h.deploy().await;
    assert_eq!(h.run_for(RUN, h.settings(true, false)).await, Exit::Drained);

    let batches = h.batches();
    assert_eq!(batches.len(), 2, "{batches:?}");
    let (first, heal) = (&batches[0], &batches[1]);
    let healed = first.verification.clone().unwrap();
    assert_eq!(healed.outcome, EdgeOutcome::Healed, "{healed:?}");
    assert!(healed.stale > 0 && healed.stale_paths.iter().all(|path| OBJECTS.contains(&path.as_str())));
    assert_eq!(heal.requesters, [format!("{HEAL_REQUESTER}{}", first.caller_reference)], "linked to the first");
    let mut healed_paths = healed.stale_paths.clone();
    healed_paths.sort();
    assert_eq!(heal.paths, healed_paths, "the second invalidation holds the stale paths only");
    assert_eq!(healed.healed_by.as_deref(), Some(format!("heal-{}", first.caller_reference).as_str()));
    assert_eq!(heal.verification.clone().unwrap().outcome, EdgeOutcome::Fresh);
    assert_eq!(h.cdn.invalidations().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_edge_that_stays_stale_is_reported_stale_once_and_not_invalidated_a_third_time() {
    let h = Harness::new();
    h.edge.keep_stale_pop(FRA);
    h.deploy().await;
    assert_eq!(h.run_for(RUN, h.settings(true, false)).await, Exit::Drained);

    let batches = h.batches();
    assert_eq!(batches.len(), 2, "the first and its one heal, nothing more: {batches:?}");
    assert_eq!(h.cdn.invalidations().len(), 2);
    let outcomes: Vec<EdgeOutcome> = batches.iter().map(|b| b.verification.clone().unwrap().outcome).collect();
    assert_eq!(outcomes, [EdgeOutcome::Stale, EdgeOutcome::Stale]);
    assert!(h.queue.is_empty(), "no heal message left over: {:?}", h.queue.messages());
}

#[tokio::test(start_paused = true)]
async fn warming_gets_each_plain_path_once_per_encoding_within_the_rate_and_records_the_counts() {
    let h = Harness::new();
    h.deploy().await;
    let mut settings = h.settings(false, true);
    settings.edge.warm.as_mut().unwrap().rate = 2.0;
    assert_eq!(h.run_for(RUN, settings).await, Exit::Drained);

    let record = h.batches().remove(0);
    let warmed = record.verification.unwrap();
    assert_eq!(warmed.outcome, EdgeOutcome::NotVerified);
    assert_eq!((warmed.warmed, warmed.warm_failed), (Some(10), Some(0)), "5 paths × br, gzip");
    let gets: Vec<_> = h.calls().into_iter().filter(|call| call.method == EdgeMethod::Get).collect();
    assert_eq!(gets.len(), 10);
    for pair in gets.windows(3) {
        // No burst: any three requests span at least a second at 2 a second.
        assert!(pair[2].at - pair[0].at >= SECOND, "{:?}", pair.iter().map(|c| c.at).collect::<Vec<_>>());
    }
}

#[tokio::test(start_paused = true)]
async fn a_producers_hostile_paths_reach_no_other_host() {
    let h = Harness::new();
    let hostile = ["//evil.com/x", "/%2F%2Fevil.com/x", "/..%2F..%2Fetc", "/@evil.com/x", "/a/../../b"];
    let body = json!({"distribution_id": ID, "paths": hostile});
    h.queue.send(&body.to_string(), &[]).await.unwrap();
    assert_eq!(h.run_for(RUN, h.settings(true, true)).await, Exit::Drained);

    let calls = h.calls();
    assert!(calls.iter().all(|call| call.host == DOMAIN && call.distribution == ID), "{calls:?}");
    let requested: std::collections::BTreeSet<&str> = calls.iter().map(|call| call.path.as_str()).collect();
    assert!(requested.contains("/@evil.com/x"), "a path on the configured host is checked: {requested:?}");
    assert!(requested.iter().all(|path| !path.contains("evil.com") || path.starts_with("/@")), "{requested:?}");
    assert!(h.batches().iter().all(|b| b.verification.is_some()), "every batch's check is recorded");
}

#[tokio::test(start_paused = true)]
async fn without_edge_url_a_distribution_is_checked_at_its_own_domain_read_once() {
    let h = Harness::new();
    h.edge.serve_domain(&distribution(), DOMAIN);
    let lookups = Arc::new(AtomicUsize::new(0));
    let mut settings = h.settings(true, false);
    settings.edge.edge_urls.clear();
    settings.edge_domains = Some(counted(h.edge.domain_lookup(), &lookups));
    h.deploy().await;
    let queue = Arc::clone(&h.queue);
    tokio::spawn(async move {
        tokio::time::sleep(120 * SECOND).await;
        queue.send(&json!({"distribution_id": ID, "paths": ["/index.html"]}).to_string(), &[]).await.unwrap();
    });
    assert_eq!(h.run_for(RUN, settings).await, Exit::Drained);

    let verified: Vec<_> = h.batches().into_iter().map(|b| b.verification.unwrap()).collect();
    assert_eq!(verified.len(), 2, "{verified:?}");
    assert!(verified.iter().all(|v| v.outcome == EdgeOutcome::Fresh), "{verified:?}");
    let calls = h.calls();
    assert!(calls.iter().all(|call| call.host == DOMAIN && OBJECTS.contains(&call.path.as_str())), "{calls:?}");
    assert_eq!(lookups.load(Ordering::SeqCst), 1, "GetDistribution once for the distribution's batches");
}

#[tokio::test(start_paused = true)]
async fn a_domain_that_cannot_be_read_leaves_the_batch_unverified_and_requests_nothing() {
    let h = Harness::new();
    let mut settings = h.settings(true, false);
    settings.edge.edge_urls.clear();
    settings.edge_domains = Some(h.edge.domain_lookup());
    h.deploy().await;
    assert_eq!(h.run_for(RUN, settings).await, Exit::Drained);

    let record = h.batches().remove(0);
    assert_eq!(record.status, BatchStatus::Completed);
    assert_eq!(record.verification.unwrap().outcome, EdgeOutcome::Unverified);
    assert!(h.calls().is_empty(), "{:?}", h.calls());
}

/// `lookup`, counting its calls in `count`.
fn counted(lookup: DomainLookup, count: &Arc<AtomicUsize>) -> DomainLookup {
    let count = Arc::clone(count);
    DomainLookup::new(move |distribution| {
        count.fetch_add(1, Ordering::SeqCst);
        let lookup = lookup.clone();
        Box::pin(async move { lookup.domain(&distribution).await })
    })
}

#[tokio::test(start_paused = true)]
async fn a_check_the_worker_stops_during_is_recorded_unverified_not_left_checking() {
    let h = Harness::new();
    h.edge.keep_stale_pop(FRA);
    h.deploy().await;
    let mut settings = h.settings(true, false);
    settings.edge.verify.as_mut().unwrap().grace = 300 * SECOND;
    // Stopped well after the completion (30 s) and its first check, well before the grace ends.
    h.run_for(150 * SECOND, settings).await;

    let record = h.batches().remove(0);
    assert_eq!(record.status, BatchStatus::Completed);
    let verified = record.verification.expect("the first check was recorded");
    assert_eq!(verified.outcome, EdgeOutcome::Unverified, "{verified:?}");
    assert!(verified.stale > 0, "what the first check found is kept: {verified:?}");
    assert_eq!(h.cdn.invalidations().len(), 1, "not healed: the grace had not passed");
}
