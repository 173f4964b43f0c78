//! CloudFront's limits, against the CloudFront simulator on tokio's paused clock: the in-progress quotas (3,000
//! paths and 15 wildcard paths per distribution, invalidations completing after 30 s), the request rate, people
//! creating invalidations in the console meanwhile, dead workers' reservations, and coalescing under overload.
//! Every test asserts on what the simulator saw (what it refused, the most it had in progress), what the queue
//! still holds and whether every requested path was covered.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cf_invalidator::clock::WallClock;
use cf_invalidator::fake::{
    AccountRates, Completion, CreateRate, FakeCdn, MemoryLedger, MemoryQueue, RateQuota, Report, SimConfig,
};
use cf_invalidator::model::path::is_covered_by;
use cf_invalidator::model::{CallerReference, DistributionId};
use cf_invalidator::ports::budget::QUOTA;
use cf_invalidator::ports::{Allowance, Budgets, Queue, Reservation};
use cf_invalidator::submit::Overload;
use cf_invalidator::worker::{self, Exit, Services, Settings};
use tokio::time::Instant;

const DISTRIBUTIONS: [&str; 3] = ["EAAA", "EBBB", "ECCC"];
const COMPLETION: Duration = Duration::from_secs(30);

struct Setup {
    queue: Arc<MemoryQueue>,
    dead_letter: Arc<MemoryQueue>,
    cdn: Arc<FakeCdn>,
    ledger: Arc<MemoryLedger>,
    /// Every path asked for, with its distribution.
    requested: Mutex<Vec<(DistributionId, String)>>,
}

impl Setup {
    /// CloudFront's quotas and path rules, completion after 30 s, and a request rate above the worker's.
    fn new() -> Self {
        Self::with(Self::config())
    }

    fn config() -> SimConfig {
        SimConfig {
            completion: Completion::After(COMPLETION),
            create_rate: Some(CreateRate { per_second: 2.0, burst: 10.try_into().unwrap() }),
            ..SimConfig::cloudfront()
        }
    }

    fn with(config: SimConfig) -> Self {
        let cdn = FakeCdn::simulator(config);
        for id in DISTRIBUTIONS {
            cdn.add_distribution(DistributionId::parse(id).unwrap());
        }
        Self {
            queue: Arc::new(MemoryQueue::with_clock(WallClock::following_tokio())),
            dead_letter: Arc::default(),
            cdn: Arc::new(cdn),
            ledger: Arc::default(),
            requested: Mutex::default(),
        }
    }

    fn services(&self) -> Services<MemoryQueue, FakeCdn, MemoryLedger> {
        Services {
            queue: Arc::clone(&self.queue),
            dead_letter: Some(Arc::clone(&self.dead_letter)),
            cdn: Arc::clone(&self.cdn),
            ledger: Arc::clone(&self.ledger),
        }
    }

    async fn send(&self, distribution: &str, paths: Vec<String>) {
        let body = serde_json::json!({"distribution_id": distribution, "paths": paths});
        self.queue.send(&body.to_string(), &[]).await.unwrap();
        let distribution = DistributionId::parse(distribution).unwrap();
        self.requested.lock().unwrap().extend(paths.into_iter().map(|p| (distribution.clone(), p)));
    }

    /// Sends `messages` messages of five distinct pages each, spread over the distributions and over `over`.
    async fn publish(&self, messages: usize, over: Duration) {
        let gap = over / messages as u32;
        for n in 0..messages {
            let distribution = DISTRIBUTIONS[n % DISTRIBUTIONS.len()];
            let paths = (0..5).map(|k| format!("/articles/{}/page-{k}.html", n / DISTRIBUTIONS.len())).collect();
            self.send(distribution, paths).await;
            tokio::time::sleep(gap).await;
        }
    }

    /// One message per catalogue directory, each with its 200 item pages, all on EAAA.
    async fn send_catalog(&self, directories: usize) {
        for directory in 0..directories {
            let paths = (0..200).map(|k| format!("/catalog/{directory}/item-{k}.html")).collect();
            self.send("EAAA", paths).await;
        }
    }

    /// Runs a worker until every message has been deleted and none arrived for 10 s, at most `limit`.
    async fn run_until_drained(&self, settings: Settings, limit: Duration) -> Exit {
        let queue = Arc::clone(&self.queue);
        let drained = async move {
            let give_up = Instant::now() + limit;
            let mut empty_since = None;
            while Instant::now() < give_up {
                match (queue.is_empty(), empty_since) {
                    (false, _) => empty_since = None,
                    (true, None) => empty_since = Some(Instant::now()),
                    (true, Some(since)) if since.elapsed() >= Duration::from_secs(10) => return,
                    (true, Some(_)) => {}
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        worker::run(self.services(), settings, drained).await
    }

    fn assert_everything_covered_and_deleted(&self) {
        assert!(self.queue.is_empty(), "{} messages left on the queue", self.queue.len());
        assert!(self.dead_letter.is_empty(), "dead-lettered: {:?}", self.dead_letter.messages());
        let created = self.cdn.created();
        for (distribution, path) in self.requested.lock().unwrap().iter() {
            let covered = created.iter().any(|c| &c.distribution_id == distribution && is_covered_by(path, &c.paths));
            assert!(covered, "{distribution} {path} was never invalidated");
        }
    }
}

fn settings() -> Settings {
    let mut settings = Settings { clock: WallClock::following_tokio(), ..Settings::default() };
    settings.batching.window = Duration::from_secs(5);
    settings.intake.receive_wait = Duration::from_secs(1);
    settings.tracking.poll = Duration::from_secs(5);
    settings
}

fn rejected_by_code(report: &Report, code: &str) -> usize {
    report.all.rejections.get(code).copied().unwrap_or(0)
}

/// The most the worker had in progress on any distribution.
fn worker_peak(report: &Report) -> Allowance {
    report.distributions.values().map(|d| d.worker_peak).fold(Allowance::default(), Allowance::max)
}

#[tokio::test(start_paused = true)]
async fn twenty_thousand_paths_at_several_times_the_quota_are_never_refused() {
    let setup = Setup::new();
    let worker = setup.run_until_drained(settings(), Duration::from_secs(3_600));
    // 4,000 messages of 5 paths in 40 s: 6,667 paths per distribution, where the quota lets 3,000 through per 30 s.
    let ((), exit) = tokio::join!(setup.publish(4_000, Duration::from_secs(40)), worker);
    assert_eq!(exit, Exit::Drained);

    let report = setup.cdn.report();
    assert_eq!(setup.requested.lock().unwrap().len(), 20_000);
    assert_eq!(rejected_by_code(&report, "TooManyInvalidationsInProgress"), 0, "{report:#?}");
    assert_eq!(rejected_by_code(&report, "Throttling"), 0, "{report:#?}");
    let peak = worker_peak(&report);
    assert!(peak.fits_in(QUOTA - Settings::default().budget.reserve), "peak in progress {peak:?}");
    assert!(peak.paths > 2_000, "the budget was used, not idled: peak {peak:?}");
    setup.assert_everything_covered_and_deleted();
}

#[tokio::test(start_paused = true)]
async fn people_creating_invalidations_meanwhile_get_no_quota_error_either() {
    let setup = Setup::new();
    let cdn = Arc::clone(&setup.cdn);
    // Every 15 s someone invalidates 40 pages and a directory on each distribution: within the default reserve of
    // 100 paths and 2 wildcards, since each completes after 30 s.
    let person = async move {
        for round in 0..12 {
            for id in DISTRIBUTIONS {
                let mut paths: Vec<String> = (0..40).map(|k| format!("/manual/{round}/{k}.html")).collect();
                paths.push(format!("/manual/{round}/*"));
                cdn.create_as_someone_else(DistributionId::parse(id).unwrap(), &paths).unwrap();
            }
            tokio::time::sleep(Duration::from_secs(15)).await;
        }
    };
    let worker = setup.run_until_drained(settings(), Duration::from_secs(3_600));
    let ((), (), exit) = tokio::join!(person, setup.publish(4_000, Duration::from_secs(40)), worker);
    assert_eq!(exit, Exit::Drained);

    let report = setup.cdn.report();
    assert!(report.all.rejections.is_empty(), "nobody, worker or person, was refused: {report:#?}");
    assert_eq!(report.all.created - report.worker.created, 12 * DISTRIBUTIONS.len(), "the person's invalidations");
    for distribution in report.distributions.values() {
        assert!(distribution.peak.fits_in(QUOTA));
    }
    setup.assert_everything_covered_and_deleted();
}

#[tokio::test(start_paused = true)]
async fn a_dead_workers_reservation_returns_after_its_lease() {
    let setup = Setup::new();
    let distribution = DistributionId::parse("EAAA").unwrap();
    let lease = Duration::from_secs(90);
    let dead = Reservation {
        id: CallerReference::mint(),
        owner: "worker-that-died".into(),
        need: QUOTA - Settings::default().budget.reserve,
        until: WallClock::following_tokio().now() + lease,
        invalidation_id: None,
    };
    assert!(setup.ledger.write_reservation(&distribution, 0, &dead, &[]).await.unwrap());
    setup.send("EAAA", vec!["/after-the-lease.html".into()]).await;
    let started = Instant::now();
    assert_eq!(setup.run_until_drained(settings(), Duration::from_secs(600)).await, Exit::Drained);

    let created = setup.cdn.created();
    assert_eq!(created.len(), 1);
    let waited = created[0].at - started;
    assert!(waited >= lease, "submitted after {waited:?}, inside the dead worker's lease");
    assert!(waited < lease + Duration::from_secs(10), "the room came back within a budget poll: {waited:?}");
    setup.assert_everything_covered_and_deleted();
}

#[tokio::test(start_paused = true)]
async fn a_quota_error_anyway_leads_to_a_resync_and_a_wait_never_to_a_lost_message() {
    let setup = Setup::new();
    let distribution = DistributionId::parse("EAAA").unwrap();
    setup.send("EAAA", vec!["/first.html".into()]).await;
    let cdn = Arc::clone(&setup.cdn);
    // Once the worker has looked (and found the distribution idle), someone fills the quota behind its back.
    let person = async move {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let paths: Vec<String> = (0..3_000).map(|k| format!("/bulk/{k}")).collect();
        cdn.create_as_someone_else(&distribution, &paths).unwrap();
    };
    let worker = setup.run_until_drained(settings(), Duration::from_secs(600));
    let ((), exit) = tokio::join!(person, worker);
    assert_eq!(exit, Exit::Drained);

    let rejections = setup.cdn.rejections();
    assert!(rejections.len() <= 1, "after one refusal the worker resyncs and waits: {rejections:?}");
    let created = setup.cdn.created();
    let mine = created.iter().find(|c| c.paths == ["/first.html"]).expect("submitted in the end");
    assert!(mine.at - created[0].at >= COMPLETION, "waited for the person's invalidation to complete");
    setup.assert_everything_covered_and_deleted();
}

#[tokio::test(start_paused = true)]
async fn an_overloaded_distribution_is_coalesced_into_directory_wildcards() {
    let setup = Setup::new();
    // 12,000 paths on one distribution: four budgets' worth.
    setup.send_catalog(60).await;
    let mut settings = settings();
    settings.submission.overload = Overload { coalesce: true, max_delay: Duration::from_secs(60) };
    settings.batching.max_paths = 3_000;
    assert_eq!(setup.run_until_drained(settings, Duration::from_secs(3_600)).await, Exit::Drained);

    let report = setup.cdn.report();
    assert!(report.all.rejections.is_empty(), "{report:#?}");
    let records = setup.ledger.records();
    let coalesced: Vec<_> = records.iter().filter(|r| r.coalescing.is_some()).collect();
    assert!(!coalesced.is_empty(), "some batch was coalesced");
    for record in &coalesced {
        let note = record.coalescing.as_deref().unwrap();
        assert!(note.contains("max") && note.contains("backlog"), "the reason is recorded: {note}");
        for wildcard in record.paths.iter().filter(|p| p.ends_with('*')) {
            assert!(wildcard.ends_with("/*"), "only whole directories: {wildcard}");
        }
    }
    assert!(report.worker.paths_billed < 12_000, "coalescing billed fewer paths: {}", report.worker.paths_billed);
    setup.assert_everything_covered_and_deleted();
}

#[tokio::test(start_paused = true)]
async fn with_coalescing_off_an_overloaded_distribution_only_waits() {
    let setup = Setup::new();
    setup.send_catalog(20).await;
    let mut settings = settings();
    settings.submission.overload = Overload { coalesce: false, max_delay: Duration::from_secs(1) };
    assert_eq!(setup.run_until_drained(settings, Duration::from_secs(3_600)).await, Exit::Drained);

    assert!(setup.ledger.records().iter().all(|r| r.coalescing.is_none()));
    assert_eq!(setup.cdn.report().worker.paths_billed, 4_000, "every path billed as asked");
    assert!(setup.cdn.rejections().is_empty());
    setup.assert_everything_covered_and_deleted();
}

/// What is free goes now (#26): while people's wildcards fill a distribution's 15 wildcard places, a window of
/// plain paths and wildcards sends its plain paths at once; its wildcards go when the people's complete.
#[tokio::test(start_paused = true)]
async fn plain_paths_go_while_the_wildcards_of_their_batch_wait_for_wildcard_room() {
    let setup = Setup::new();
    let eaaa = DistributionId::parse("EAAA").unwrap();
    let theirs: Vec<String> = (0..QUOTA.wildcards).map(|k| format!("/people/{k}/*")).collect();
    setup.cdn.create_as_someone_else(&eaaa, &theirs).unwrap();
    let people_done = Instant::now() + COMPLETION;
    for n in 0..8 {
        setup.send("EAAA", (0..5).map(|k| format!("/articles/{n}/page-{k}.html")).collect()).await;
    }
    setup.send("EAAA", vec!["/sections/a/*".to_owned(), "/sections/b/*".to_owned()]).await;
    assert_eq!(setup.run_until_drained(settings(), Duration::from_secs(600)).await, Exit::Drained);

    let ours: Vec<_> = setup.cdn.created().into_iter().filter(|c| c.paths != theirs).collect();
    let accepted = |path: &str| ours.iter().find(|c| is_covered_by(path, &c.paths)).map(|c| c.at);
    for n in 0..8 {
        let page = format!("/articles/{n}/page-0.html");
        assert!(accepted(&page).is_some_and(|at| at < people_done), "{page} waited for the wildcards: {ours:?}");
    }
    for wildcard in ["/sections/a/*", "/sections/b/*"] {
        assert!(accepted(wildcard).is_some_and(|at| at >= people_done), "{wildcard} went beyond the 15: {ours:?}");
    }
    setup.assert_everything_covered_and_deleted();
}

/// A batch the account's rate refused, and which still fits what the worker then believes, goes again at the rate
/// (#26), not after the quota backoff: that would hold its distribution's turn for 5–10 s at every such refusal.
#[tokio::test(start_paused = true)]
async fn a_batch_the_accounts_rate_refused_goes_again_at_the_rate_not_after_the_quota_backoff() {
    let rates = AccountRates { paths: Some(RateQuota { per_second: 1.0, burst: 1 }), wildcards: None };
    let setup = Setup::with(SimConfig { account_rates: rates, ..Setup::config() });
    setup.send("EAAA", vec!["/a.html".to_owned()]).await;
    setup.send("EBBB", vec!["/b.html".to_owned()]).await;
    assert_eq!(setup.run_until_drained(settings(), Duration::from_secs(600)).await, Exit::Drained);

    let refusals = setup.cdn.rejections();
    let codes: Vec<_> = refusals.iter().map(|r| (r.distribution_id.as_str(), r.code)).collect();
    assert!(!codes.is_empty(), "the account's rate refused the second call");
    assert!(codes.iter().all(|&code| code == ("EBBB", "TooManyInvalidationsInProgress")), "{codes:?}");
    let created = setup.cdn.created();
    let at = |id: &str| created.iter().find(|c| c.distribution_id.as_str() == id).map(|c| c.at).unwrap();
    let after = at("EBBB") - at("EAAA");
    assert!(after <= Duration::from_secs(2), "EBBB went {after:?} after EAAA, not at the rate of 1 path a second");
    setup.assert_everything_covered_and_deleted();
}

/// Batches of a distribution waiting together for room too small for each take it one at a time (#26): one goes
/// in part and takes the room, the others stay whole, so that the room a later completion frees goes to whole
/// batches. When each weighed the same room and went in part, the parts that did not get it waited, and each of
/// them later filled a batch's room only in part.
#[tokio::test(start_paused = true)]
async fn of_the_batches_waiting_for_too_little_room_only_one_goes_in_part() {
    let setup = Setup::new();
    let start = Instant::now();
    let send = |paths: std::ops::Range<usize>| {
        let setup = &setup;
        async move {
            for n in paths {
                setup.send("EAAA", vec![format!("/articles/{n}.html")]).await;
            }
        }
    };
    let traffic = async {
        // 900 paths, completed 30 s after their call; then 2,000 that fill the rest of the room, 2,900 with the
        // default reserve; then 3,000 that wait for it.
        send(0..900).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        send(900..2_900).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        send(2_900..5_900).await;
    };
    let worker = setup.run_until_drained(settings(), Duration::from_secs(600));
    let ((), exit) = tokio::join!(traffic, worker);
    assert_eq!(exit, Exit::Drained);

    // (seconds from the start, paths) of each call. The 900 complete at 35 s: one waiting batch takes their room
    // in part. The 2,000 complete at 40 s: their room goes to the two batches still whole.
    let calls: Vec<_> = setup.cdn.created().iter().map(|c| ((c.at - start).as_secs(), c.paths.len())).collect();
    let when_2_000_completed: Vec<_> = calls.iter().filter(|(at, _)| (40..65).contains(at)).map(|c| c.1).collect();
    assert_eq!(when_2_000_completed, [1_000, 1_000], "calls: {calls:?}");
    assert_eq!(calls.len(), 7, "one rest of 100 paths, sent once room returns: {calls:?}");
    setup.assert_everything_covered_and_deleted();
}
