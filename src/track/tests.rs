use super::*;
use crate::fake::{FakeCdn, MemoryLedger};
use crate::model::CallerReference;
use crate::ports::budget::Budgets;
use crate::ports::ledger::{BatchRecord, Batches};
use std::collections::HashSet;

const FIRST_LOOK: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_secs(20);
const CALL_GAP: Duration = Duration::from_millis(250);

struct Setup {
    cdn: Arc<FakeCdn>,
    ledger: Arc<MemoryLedger>,
    clock: WallClock,
}

impl Setup {
    fn new(completion_delay: Duration) -> Self {
        let cdn = Arc::new(FakeCdn::with_distributions(["EAAA"]));
        cdn.complete_after(completion_delay);
        Self { cdn, ledger: Arc::default(), clock: WallClock::following_tokio() }
    }

    /// Creates an invalidation and its accepted record, as the submitter would.
    async fn accepted(&self, path: &str) -> Submitted {
        let distribution = DistributionId::parse("EAAA").unwrap();
        let reference = CallerReference::mint();
        let paths = vec![path.to_owned()];
        let invalidation = self.cdn.create_invalidation(&distribution, &reference, &paths).await.unwrap();
        let now = self.clock.now();
        let mut record = BatchRecord {
            caller_reference: reference.clone(),
            expires_at: now + Duration::from_secs(3_600),
            ..crate::fake::pending_record("EAAA", &[path], &[], now)
        };
        self.ledger.record_intent(&record).await.unwrap();
        record.accept(&invalidation, now);
        self.ledger.record_outcome(&record).await.unwrap();
        record.submitted().unwrap()
    }

    fn tracker(&self) -> Tracker<FakeCdn, MemoryLedger> {
        let settings = TrackSettings {
            first_look: FIRST_LOOK,
            poll: POLL,
            adopt_every: Duration::from_secs(30),
            adopt_after: Duration::from_secs(60),
            call_gap: CALL_GAP,
            clock: self.clock,
        };
        let budget = Arc::new(Budget::new(
            Arc::clone(&self.cdn),
            Arc::clone(&self.ledger),
            crate::limit::budget::tests::settings(),
            "w1".into(),
            self.clock,
        ));
        Tracker {
            cdn: Arc::clone(&self.cdn),
            ledger: Arc::clone(&self.ledger),
            budget,
            settings,
            events: None,
            edge: None,
        }
    }

    /// Runs a tracker over `submitted` until it has nothing left to track.
    async fn track(&self, submitted: Vec<Submitted>) {
        let (sender, receiver) = mpsc::channel(submitted.len().max(1));
        for s in submitted {
            sender.send(Owed::Batch(s)).await.unwrap();
        }
        drop(sender);
        self.tracker().run(receiver, CancellationToken::new()).await;
    }

    /// Runs a tracker that tracks nothing of its own, adopting, for `duration`.
    async fn adopt_for(&self, duration: Duration) {
        let (_sender, receiver) = mpsc::channel(1);
        let stop = CancellationToken::new();
        let tracking = tokio::spawn(self.tracker().run(receiver, stop.clone()));
        tokio::time::sleep(duration).await;
        stop.cancel();
        tracking.await.unwrap();
    }

    fn status(&self, submitted: &Submitted) -> BatchStatus {
        let records = self.ledger.records();
        records.iter().find(|r| r.caller_reference == submitted.caller_reference).unwrap().status
    }

    fn looks(&self, started: Instant) -> Vec<Duration> {
        self.cdn.list_calls().iter().map(|c| c.at - started).collect()
    }
}

const S: fn(u64) -> Duration = Duration::from_secs;

#[tokio::test(start_paused = true)]
async fn records_completion_at_the_first_look_after_cloudfront_completes() {
    let setup = Setup::new(S(50));
    let started = Instant::now();
    let submitted = setup.accepted("/a").await;
    setup.track(vec![submitted]).await;

    // 5 s after acceptance, then gaps of 10 s and 20 s (the poll): 5, 15, 35, 55.
    assert_eq!(setup.looks(started), [S(5), S(15), S(35), S(55)], "looked until completed, then no more");
    assert!(setup.cdn.status_checks().is_empty(), "the list answered; no GetInvalidation");
    let record = &setup.ledger.records()[0];
    assert_eq!(record.status, BatchStatus::Completed);
    assert_eq!(record.cloudfront_status.as_deref(), Some("Completed"));
    assert_eq!(record.time_to_complete, Some(S(55)));
    assert_eq!(record.completed_at, Some(record.submitted_at.unwrap() + S(55)));
}

#[tokio::test(start_paused = true)]
async fn an_awaited_invalidation_is_looked_at_every_second_and_recorded_within_one_of_its_completion() {
    let setup = Setup::new(S(8));
    let started = Instant::now();
    let submitted = Submitted { awaited: true, ..setup.accepted("/a").await };
    setup.track(vec![submitted]).await;

    let looks = setup.looks(started);
    assert_eq!(looks, (1..=8).map(S).collect::<Vec<_>>(), "every second, until the completion at 8 s");
    let record = &setup.ledger.records()[0];
    assert_eq!(record.status, BatchStatus::Completed);
    assert_eq!(record.time_to_complete, Some(S(8)));
}

#[tokio::test(start_paused = true)]
async fn one_list_answers_for_every_invalidation_of_a_distribution() {
    let setup = Setup::new(S(20));
    let mut submitted = Vec::new();
    for n in 0..50 {
        submitted.push(setup.accepted(&format!("/p{n}")).await);
    }
    setup.track(submitted).await;

    assert!(setup.ledger.records().iter().all(|r| r.status == BatchStatus::Completed));
    let looks = setup.cdn.list_calls().len();
    assert!(looks <= 3, "{looks} ListInvalidations for 50 invalidations");
    assert!(setup.cdn.status_checks().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_completions_one_look_finds_are_recorded_and_released_in_one_write() {
    let setup = Setup::new(S(0));
    setup.ledger.faults.slow_down("record_completion", S(1));
    let mut submitted = Vec::new();
    for n in 0..50 {
        submitted.push(setup.accepted(&format!("/p{n}")).await);
    }
    let started = Instant::now();
    setup.track(submitted).await;

    assert!(setup.ledger.records().iter().all(|r| r.status == BatchStatus::Completed));
    assert_eq!(started.elapsed(), FIRST_LOOK + S(1), "one look, then one write taking a second");
}

#[tokio::test(start_paused = true)]
async fn acceptances_a_second_apart_share_looks_at_their_distribution() {
    let setup = Setup::new(S(30));
    let (sender, receiver) = mpsc::channel(32);
    let tracking = tokio::spawn(setup.tracker().run(receiver, CancellationToken::new()));
    for n in 0..20 {
        sender.send(Owed::Batch(setup.accepted(&format!("/p{n}")).await)).await.unwrap();
        tokio::time::sleep(S(1)).await;
    }
    drop(sender);
    tracking.await.unwrap();

    assert!(setup.ledger.records().iter().all(|r| r.status == BatchStatus::Completed));
    let looks = setup.cdn.list_calls();
    for pair in looks.windows(2) {
        assert!(pair[1].at - pair[0].at >= FIRST_LOOK, "a list answers for the next 5 s: {looks:?}");
    }
    assert!(looks.len() <= 12, "{} looks for 20 invalidations over 50 s", looks.len());
}

#[tokio::test(start_paused = true)]
async fn calls_go_out_one_at_a_time_spaced_by_the_minimum_gap() {
    let setup = Setup::new(S(0));
    let mut submitted = Vec::new();
    for distribution in ["EAAA", "EBBB", "ECCC"] {
        setup.cdn.add_distribution(DistributionId::parse(distribution).unwrap());
        let mut accepted = setup.accepted("/p").await;
        accepted.distribution_id = DistributionId::parse(distribution).unwrap();
        submitted.push(accepted);
    }
    setup.track(submitted).await;

    let calls = setup.cdn.list_calls();
    assert!(calls.len() >= 3, "{calls:?}");
    for pair in calls.windows(2) {
        assert!(pair[1].at - pair[0].at >= CALL_GAP, "{calls:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn adoption_leaves_alone_an_invalidation_whose_worker_still_renews_its_reservation() {
    let setup = Setup::new(S(0));
    let submitted = setup.accepted("/a").await;
    let theirs = crate::ports::budget::Reservation {
        id: submitted.caller_reference.clone(),
        owner: "a-live-worker".into(),
        need: crate::ports::budget::Allowance { paths: 1, wildcards: 0 },
        until: setup.clock.now() + S(300),
        invalidation_id: Some(submitted.invalidation_id.clone()),
    };
    let distribution = submitted.distribution_id.clone();
    assert!(setup.ledger.write_reservation(&distribution, 0, &theirs, &[]).await.unwrap());

    // Before, every worker adopted every invalidation a minute after its acceptance, live owner or not.
    setup.adopt_for(S(240)).await;
    assert_eq!(setup.status(&submitted), BatchStatus::Accepted, "its worker tracks it");
    assert!(setup.cdn.list_calls().is_empty(), "not looked at by another worker");
    setup.adopt_for(S(120)).await;
    assert_eq!(setup.status(&submitted), BatchStatus::Completed, "adopted once the reservation ran out");
}

#[tokio::test(start_paused = true)]
async fn adoption_reaches_every_invalidation_however_many_older_ones_stay_in_progress() {
    let setup = Setup::new(S(24 * 3_600));
    for n in 0..1_000 {
        setup.accepted(&format!("/stuck-{n}")).await;
    }
    setup.cdn.add_distribution(DistributionId::parse("EBBB").unwrap());
    let distribution = DistributionId::parse("EBBB").unwrap();
    let reference = CallerReference::mint();
    let invalidation = setup.cdn.create_invalidation(&distribution, &reference, &["/newer".to_owned()]).await.unwrap();
    let now = setup.clock.now();
    let mut newer = BatchRecord {
        caller_reference: reference,
        expires_at: now + S(3_600),
        ..crate::fake::pending_record("EBBB", &["/newer"], &[], now)
    };
    setup.ledger.record_intent(&newer).await.unwrap();
    newer.accept(&invalidation, now);
    setup.ledger.record_outcome(&newer).await.unwrap();

    // Before, each round read the same oldest thousand, which stay in progress for a day.
    setup.adopt_for(S(600)).await;
    assert!(setup.cdn.list_calls().iter().any(|call| call.id == "EBBB"), "the newer invalidation was adopted");
}

#[tokio::test(start_paused = true)]
async fn an_invalidation_cloudfront_will_never_report_on_is_given_up_with_its_reason() {
    let setup = Setup::new(S(0));
    let submitted = setup.accepted("/a").await;
    let forever = Instant::now() + S(24 * 3_600);
    let denied = CdnError::AccessDenied("not authorized to perform cloudfront:ListInvalidations".into());
    setup.cdn.faults.down_until("list_invalidations", denied, forever);

    setup.adopt_for(S(120)).await;
    let record = setup.ledger.records().remove(0);
    let reason = record.tracking_abandoned.expect("given up, with its reason");
    assert!(reason.contains("cloudfront:ListInvalidations"), "{reason}");
    let left = setup.ledger.in_progress(setup.clock.now(), None, 10).await.unwrap();
    assert!(left.owed.is_empty(), "before, it stayed for every worker to read again every round");
    assert_eq!(submitted.status, BatchStatus::Accepted);
}

#[tokio::test(start_paused = true)]
async fn a_hurried_look_goes_before_regular_ones_already_due() {
    let setup = Setup::new(S(0));
    let tracker = setup.tracker();
    let regular = tracker.entry(setup.accepted("/a").await, true, S(0));
    let mut hurried = tracker.entry(setup.accepted("/b").await, true, FIRST_LOOK);
    hurried.submitted.distribution_id = DistributionId::parse("EBBB").unwrap();
    let wanted = HashSet::from([hurried.submitted.distribution_id.clone()]);
    let mut tracked = vec![regular, hurried];
    hurry(&mut tracked, |submitted| wanted.contains(&submitted.distribution_id));

    let next = |tracked: &[Tracked]| next_look(tracked).unwrap().distribution_id.to_string();
    assert_eq!(next(&tracked), "EAAA", "only the regular look is due");
    tokio::time::advance(HURRIED_GAP).await;
    assert_eq!(next(&tracked), "EBBB", "both are due: the hurried one first");
}

#[tokio::test(start_paused = true)]
async fn an_invalidation_cloudfront_does_not_know_is_dropped_after_one_get() {
    let setup = Setup::new(S(0));
    let mut submitted = setup.accepted("/a").await;
    submitted.invalidation_id = "INOSUCH".into();
    setup.track(vec![submitted]).await;

    assert_eq!(setup.cdn.status_checks().len(), 1, "asked alone once, as the list did not show it");
    assert_eq!(setup.ledger.records()[0].status, BatchStatus::Accepted);
}

#[tokio::test(start_paused = true)]
async fn a_failed_completion_write_is_tried_again_at_the_next_look() {
    let setup = Setup::new(S(0));
    setup.ledger.faults.inject("record_completion", crate::ports::LedgerError::Unavailable("outage".into()));
    let submitted = setup.accepted("/a").await;
    setup.track(vec![submitted]).await;

    assert_eq!(setup.cdn.list_calls().len(), 2);
    assert_eq!(setup.ledger.records()[0].time_to_complete, Some(S(15)));
}

#[tokio::test(start_paused = true)]
async fn a_stopped_worker_s_accepted_batch_is_adopted_and_its_completion_recorded() {
    let setup = Setup::new(S(200));
    // Accepted by a worker that stopped before it saw the completion: nobody sends it to this tracker.
    setup.accepted("/orphan").await;
    let (_sender, receiver) = mpsc::channel(1);
    let stop = CancellationToken::new();
    let running = tokio::spawn(setup.tracker().run(receiver, stop.clone()));
    tokio::time::sleep(S(300)).await;
    stop.cancel();
    running.await.unwrap();

    let record = &setup.ledger.records()[0];
    assert_eq!(record.status, BatchStatus::Completed, "adopted at the first round past 60 s, then tracked");
    let took = record.time_to_complete.unwrap();
    assert!(took >= S(200) && took <= S(200) + POLL, "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_batch_another_worker_still_tracks_is_adopted_only_once_it_is_old() {
    let setup = Setup::new(S(3_600));
    setup.accepted("/young").await;
    let (_sender, receiver) = mpsc::channel(1);
    let stop = CancellationToken::new();
    let running = tokio::spawn(setup.tracker().run(receiver, stop.clone()));
    tokio::time::sleep(S(45)).await;
    assert!(setup.cdn.list_calls().is_empty(), "30 s round: too young to adopt");
    tokio::time::sleep(S(30)).await;
    assert!(!setup.cdn.list_calls().is_empty(), "60 s round: adopted");
    stop.cancel();
    running.await.unwrap();
}
