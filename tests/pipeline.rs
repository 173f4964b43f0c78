//! The whole pipeline over the in-memory fakes, on tokio's paused clock: fast, deterministic, and able to
//! inject the faults the emulator cannot (CloudFront idempotency, throttling, ledger failures).

mod common;

use std::sync::Arc;
use std::time::Duration;

use cf_invalidator::ack::REASON_ATTRIBUTE;
use cf_invalidator::clock::WallClock;
use cf_invalidator::fake::{FakeCdn, MemoryLedger, MemoryQueue, pending_record};
use cf_invalidator::model::path::is_covered_by;
use cf_invalidator::model::{CallerReference, DistributionId};
use cf_invalidator::ports::budget::QUOTA;
use cf_invalidator::ports::{
    Allowance, AuditLog, BatchRecord, BatchStatus, Batches, Budgets, CdnError, FailureRecord, LedgerError, Outbox,
    Queue, Reservation,
};
use cf_invalidator::worker::{self, Exit, Services, Settings};
use common::memory::settings;
use serde_json::json;

struct Harness {
    queue: Arc<MemoryQueue>,
    dead_letter: Arc<MemoryQueue>,
    cdn: Arc<FakeCdn>,
    ledger: Arc<MemoryLedger>,
}

impl Harness {
    /// Whether no batch owes an event, whenever it was made.
    async fn outbox_is_empty(&self) -> bool {
        let tomorrow = std::time::SystemTime::now() + Duration::from_secs(86_400);
        self.ledger.in_progress(tomorrow, None, 100).await.unwrap().owed.is_empty()
    }

    fn new(distributions: &[&str]) -> Self {
        Self {
            queue: Arc::new(MemoryQueue::with_clock(WallClock::following_tokio())),
            dead_letter: Arc::default(),
            cdn: Arc::new(FakeCdn::with_distributions(distributions.iter().copied())),
            ledger: Arc::default(),
        }
    }

    async fn send(&self, distribution: &str, paths: &[&str]) {
        let body = json!({"distribution_id": distribution, "paths": paths, "requester": "tests"});
        self.queue.send(&body.to_string(), &[]).await.unwrap();
    }

    fn services(&self, with_dead_letter: bool) -> Services<MemoryQueue, FakeCdn, MemoryLedger> {
        Services {
            queue: Arc::clone(&self.queue),
            dead_letter: with_dead_letter.then(|| Arc::clone(&self.dead_letter)),
            cdn: Arc::clone(&self.cdn),
            ledger: Arc::clone(&self.ledger),
        }
    }

    /// Runs the worker for `duration` of simulated time, then shuts it down.
    async fn run_for(&self, duration: Duration, settings: Settings) -> Exit {
        worker::run(self.services(true), settings, tokio::time::sleep(duration)).await
    }

    fn dead_letter_reasons(&self) -> Vec<String> {
        self.dead_letter
            .messages()
            .into_iter()
            .map(|m| m.attributes.into_iter().find(|(k, _)| k == REASON_ATTRIBUTE).map(|(_, v)| v).unwrap_or_default())
            .collect()
    }
}

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn merges_a_window_into_one_invalidation_per_distribution_and_deletes_the_messages() {
    let h = Harness::new(&["EAAA", "EBBB"]);
    h.send("EAAA", &["/index.html", "/img/a.png"]).await;
    h.send("EAAA", &["/index.html", "/img/*"]).await;
    h.send("EBBB", &["/x"]).await;
    h.send("EAAA", &["/img/b.png", "/about"]).await;

    assert_eq!(h.run_for(MINUTE, settings()).await, Exit::Drained);

    let mut created = h.cdn.invalidations();
    created.sort();
    let created: Vec<(&str, Vec<String>)> = created.iter().map(|(d, p)| (d.as_str(), p.clone())).collect();
    assert_eq!(
        created,
        [("EAAA", vec!["/about".to_owned(), "/img/*".into(), "/index.html".into()]), ("EBBB", vec!["/x".to_owned()])]
    );
    assert!(h.queue.is_empty(), "left on the queue: {:?}", h.queue.messages());
    let records = h.ledger.records();
    assert_eq!(records.len(), 2);
    for record in &records {
        assert!(record.status.is_accepted(), "{record:?}");
        assert!(record.invalidation_id.is_some());
        assert_eq!(record.requesters, ["tests"]);
    }
    let eaaa = records.iter().find(|r| r.distribution_id.as_str() == "EAAA").unwrap();
    assert_eq!(eaaa.message_ids.len(), 3);
    assert_eq!(eaaa.requested_paths, 6);
}

#[tokio::test(start_paused = true)]
async fn reuses_the_caller_reference_when_the_ledger_update_fails_after_cloudfront_accepted() {
    let h = Harness::new(&["EAAA"]);
    h.ledger.faults.inject("record_outcome", LedgerError::Unavailable("simulated DynamoDB outage".into()));
    h.send("EAAA", &["/a", "/b"]).await;
    h.run_for(MINUTE, settings()).await;

    let calls = h.cdn.calls();
    assert_eq!(calls.len(), 2, "the batch is retried once");
    assert_eq!(calls[0].caller_reference, calls[1].caller_reference);
    assert_eq!(calls[0].outcome, calls[1].outcome, "CloudFront answers the retry with the same invalidation");
    assert_eq!(h.cdn.invalidations().len(), 1, "paid once");
    let records = h.ledger.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].caller_reference, calls[0].caller_reference);
    assert_eq!(records[0].invalidation_id.as_deref(), Some(calls[0].outcome.as_ref().unwrap().id.as_str()));
    assert!(h.queue.is_empty());

    // The same paths in a later window are a new batch and need a new reference, or CloudFront would silently
    // return the old invalidation.
    h.send("EAAA", &["/a", "/b"]).await;
    h.run_for(MINUTE, settings()).await;
    let calls = h.cdn.calls();
    assert_eq!(calls.len(), 3);
    assert_ne!(calls[2].caller_reference, calls[0].caller_reference);
    assert_eq!(h.cdn.invalidations().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn invalid_messages_go_to_the_dead_letter_queue_with_the_reason() {
    let h = Harness::new(&["EAAA"]);
    h.queue.send("{not json", &[]).await.unwrap();
    h.send("EAAA", &["no-leading-slash"]).await;
    h.send("EAAA", &["/fine"]).await;
    h.run_for(MINUTE, settings()).await;

    assert!(h.queue.is_empty());
    let reasons = h.dead_letter_reasons();
    assert_eq!(reasons.len(), 2);
    assert!(reasons[0].contains("not a valid v1 invalidation request"), "{reasons:?}");
    assert!(reasons[1].contains("must start with '/'"), "{reasons:?}");
    assert_eq!(h.dead_letter.messages()[0].body, "{not json", "the original body is kept");
    assert_eq!(h.cdn.invalidations().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn without_a_dead_letter_queue_invalid_messages_stay_on_the_queue() {
    let h = Harness::new(&["EAAA"]);
    h.queue.send("[]", &[]).await.unwrap();
    worker::run(h.services(false), settings(), tokio::time::sleep(Duration::from_secs(10))).await;
    assert_eq!(h.queue.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_distribution_dead_letters_only_its_own_messages() {
    let h = Harness::new(&["EAAA"]);
    h.send("EGONE", &["/a"]).await;
    h.send("EAAA", &["/a"]).await;
    h.run_for(MINUTE, settings()).await;

    assert!(h.queue.is_empty());
    let reasons = h.dead_letter_reasons();
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("distribution does not exist"), "{reasons:?}");
    assert_eq!(h.cdn.invalidations().len(), 1);
    let failed: Vec<_> = h.ledger.records().into_iter().filter(|r| r.status == BatchStatus::Failed).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].distribution_id.as_str(), "EGONE");
}

#[tokio::test(start_paused = true)]
async fn a_refused_batch_is_recorded_failed_however_long_the_ledger_takes_to_answer() {
    let h = Harness::new(&["EAAA"]);
    h.send("EGONE", &["/a"]).await;
    // DynamoDB out for two minutes just as CloudFront refuses: longer than the short retries last.
    let outage = tokio::time::Instant::now() + Duration::from_secs(120);
    h.ledger.faults.down_until("record_outcome", LedgerError::Unavailable("503".into()), outage);
    h.run_for(Duration::from_secs(300), settings()).await;

    // Before, the failure was logged and the record left pending, for a redelivery to resume.
    let records = h.ledger.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, BatchStatus::Failed, "{:?}", records[0]);
    assert_eq!(h.dead_letter_reasons().len(), 1);
    assert!(h.queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_intent_a_lost_answer_recorded_is_submitted_as_recorded_not_reshaped() {
    let h = Harness::new(&["EAAA"]);
    h.send("EAAA", &["/a"]).await;
    h.send("EAAA", &["/b", "/c"]).await;
    // The reservation and intent are written, but the answer is lost; meanwhile another worker takes half the room.
    h.ledger.faults.lose_answer("reserve_recording", LedgerError::Unavailable("connection reset".into()));
    let mut settings = settings();
    settings.budget.reserve = Allowance { paths: QUOTA.paths - 4, wildcards: 0 };
    let (ledger, clock) = (Arc::clone(&h.ledger), settings.clock);
    let competitor = tokio::spawn(async move {
        while ledger.records().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let distribution = DistributionId::parse("EAAA").unwrap();
        let version = ledger.read_budget(&distribution).await.unwrap().version;
        let theirs = Reservation {
            id: CallerReference::mint(),
            owner: "another-worker".into(),
            need: Allowance { paths: 2, wildcards: 0 },
            until: clock.now() + Duration::from_secs(30),
            invalidation_id: None,
        };
        assert!(ledger.write_reservation(&distribution, version, &theirs, &[]).await.unwrap());
    });
    h.run_for(2 * MINUTE, settings).await;
    competitor.await.unwrap();

    // Before, the batch was split to fit what was left, and its recorded intent stayed pending: a redelivery would
    // resume it and pay for its paths again.
    let records = h.ledger.records();
    assert!(records.iter().all(|r| r.status.is_accepted()), "{records:#?}");
    assert_eq!(h.cdn.invalidations().len(), 1, "submitted once, as recorded");
    assert!(h.queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn access_denied_while_iam_propagates_is_retried_without_handing_the_message_back() {
    let h = Harness::new(&["EAAA"]);
    for _ in 0..3 {
        h.cdn.faults.inject("create_invalidation", CdnError::AccessDenied("not allowed yet".into()));
    }
    h.send("EAAA", &["/a"]).await;
    h.run_for(Duration::from_secs(120), settings()).await;

    assert!(h.queue.is_empty() && h.dead_letter.is_empty(), "accepted once allowed");
    assert_eq!(h.queue.deliveries(), 1, "held through the denials, never handed back");
    assert!(h.ledger.records()[0].status.is_accepted());
}

#[tokio::test(start_paused = true)]
async fn access_denied_that_lasts_is_dead_lettered_with_its_reason_instead_of_looping() {
    let h = Harness::new(&["EAAA"]);
    let forever = tokio::time::Instant::now() + Duration::from_secs(24 * 3_600);
    h.cdn.faults.down_until("create_invalidation", CdnError::AccessDenied("not authorized".into()), forever);
    h.send("EAAA", &["/a"]).await;
    h.run_for(Duration::from_secs(600), settings()).await;

    assert!(h.queue.is_empty());
    assert_eq!(h.queue.deliveries(), 1, "never handed back to SQS");
    let reasons = h.dead_letter_reasons();
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("not authorized") && reasons[0].contains("still denied"), "{reasons:?}");
    assert_eq!(h.ledger.dead_letters()[0].code, "AccessDenied");
    assert_eq!(h.ledger.records()[0].status, BatchStatus::Failed);
}

#[tokio::test(start_paused = true)]
async fn a_ledger_outage_of_minutes_holds_the_messages_and_hands_none_back() {
    let h = Harness::new(&["EAAA"]);
    let outage = tokio::time::Instant::now() + Duration::from_secs(300);
    let down = || LedgerError::Unavailable("503 Service Unavailable".into());
    for operation in ["read_budget", "write_reservation", "record_intent", "record_outcome", "list"] {
        h.ledger.faults.down_until(operation, down(), outage);
    }
    for n in 0..20 {
        h.send("EAAA", &[&format!("/p/{n}")]).await;
    }
    let mut settings = settings();
    settings.intake.visibility_timeout = Duration::from_secs(30);
    h.run_for(Duration::from_secs(900), settings).await;

    assert!(h.queue.is_empty() && h.dead_letter.is_empty());
    assert_eq!(h.queue.deliveries(), 20, "each message received once: held through the outage");
    let invalidated: Vec<String> = h.cdn.invalidations().into_iter().flat_map(|(_, paths)| paths).collect();
    assert!((0..20).all(|n| invalidated.contains(&format!("/p/{n}"))), "{invalidated:?}");
}

/// SQS keeps a message invisible for at most 12 hours from its receive. A CloudFront outage of 13 hours: the
/// extension past the ceiling is refused, the message reappears once, the worker that holds it takes the new
/// delivery's handle, and with maxReceiveCount 3 it is never redriven; once CloudFront is back it is accepted.
#[tokio::test(start_paused = true)]
async fn an_outage_past_sqs_twelve_hour_ceiling_costs_one_receive_and_no_redrive() {
    let mut h = Harness::new(&["EAAA"]);
    let queue = MemoryQueue::with_clock(WallClock::following_tokio()).with_redrive(Arc::clone(&h.dead_letter), 3);
    h.queue = Arc::new(queue);
    let until = tokio::time::Instant::now() + Duration::from_secs(13 * 3_600);
    h.cdn.faults.down_until("create_invalidation", CdnError::Unavailable("503".into()), until);
    h.send("EAAA", &["/a"]).await;
    h.run_for(Duration::from_secs(14 * 3_600), settings()).await;

    assert!(h.queue.is_empty() && h.dead_letter.is_empty(), "accepted after the outage, never redriven");
    assert_eq!(h.queue.deliveries(), 2, "one receive, and one more when the 12 hours ran out");
    assert_eq!(h.ledger.records().len(), 1, "the same batch all along");
    assert!(h.ledger.records()[0].status.is_accepted());
}

#[tokio::test(start_paused = true)]
async fn throttling_and_quota_errors_are_retried_with_the_same_reference() {
    let h = Harness::new(&["EAAA"]);
    h.cdn.faults.inject("create_invalidation", CdnError::Throttled("Rate exceeded".into()));
    h.cdn.faults.inject("create_invalidation", CdnError::TooManyInProgress("quota".into()));
    h.cdn.faults.inject("create_invalidation", CdnError::Unavailable("503".into()));
    h.send("EAAA", &["/a"]).await;
    h.run_for(Duration::from_secs(600), settings()).await;

    let calls = h.cdn.calls();
    assert_eq!(calls.len(), 4);
    assert!(calls.iter().all(|c| c.caller_reference == calls[0].caller_reference));
    assert!(calls[3].outcome.is_ok());
    assert!(h.queue.is_empty());
    assert!(h.ledger.records()[0].status.is_accepted());
}

#[tokio::test(start_paused = true)]
async fn heartbeat_keeps_messages_invisible_through_a_window_longer_than_the_visibility_timeout() {
    let h = Harness::new(&["EAAA"]);
    h.send("EAAA", &["/a"]).await;
    let mut settings = settings();
    settings.batching.window = Duration::from_secs(120);
    settings.intake.visibility_timeout = Duration::from_secs(20);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker::run(h.services(true), settings, async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_secs(100)).await;
    let held = h.queue.messages();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].receive_count, 1, "the message became visible and was delivered again");
    tokio::time::sleep(Duration::from_secs(60)).await;
    stop.send(()).unwrap();
    worker.await.unwrap();

    assert_eq!(h.cdn.calls().len(), 1);
    assert!(h.queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn receiving_pauses_while_visibility_extensions_fall_behind_instead_of_letting_messages_lapse() {
    // Messages held for a minute (a long wait for budget, here a long window) while each extension call takes
    // 2 s: the heartbeat can keep a few dozen invisible, not the 600 that two pollers bring in at 40 a second.
    // Each lapse counts towards the queue's maxReceiveCount (5 by default), so a worker that kept receiving would
    // push valid messages into the dead-letter queue.
    let h = Harness::new(&["EAAA"]);
    for n in 0..600 {
        h.send("EAAA", &[&format!("/p/{n}")]).await;
    }
    // As slow as the emulator's SQS under load.
    h.queue.faults.slow_down("receive", Duration::from_millis(500));
    h.queue.faults.slow_down("extend_visibility", Duration::from_secs(2));
    let most_receives = hold_for_a_minute_each(&h, 600).await;
    assert_eq!(most_receives, 1, "a message lapsed and was received again");
}

#[tokio::test(start_paused = true)]
async fn a_slow_sqs_gets_longer_extensions_and_no_message_lapses() {
    // The emulator under load: every SQS call takes 1.1 s, so a pass over 50 held messages takes 5.5 s, longer than
    // half of a 10 s timeout. Extending for the timeout alone, the last chunks of each pass lapse and count
    // towards maxReceiveCount; the crash test sent valid messages to the dead-letter queue that way.
    let h = Harness::new(&["EAAA"]);
    for n in 0..300 {
        h.send("EAAA", &[&format!("/p/{n}")]).await;
    }
    for call in ["receive", "extend_visibility", "delete"] {
        h.queue.faults.slow_down(call, Duration::from_millis(1_100));
    }
    let most_receives = hold_for_a_minute_each(&h, 300).await;
    assert_eq!(most_receives, 1, "a message lapsed and was received again");
}

#[tokio::test(start_paused = true)]
async fn a_receive_of_redeliveries_is_held_whole_while_a_slow_ledger_checks_them_one_by_one() {
    // A restarted worker receives redeliveries, and each is checked against the ledger before it is batched. With
    // reads taking 2 s, ten checks outlast a 10 s timeout: the last messages of the receive must already be held
    // (and extended) while the first are checked, or they lapse and use up their receives.
    let distributions: Vec<String> = (b'A'..b'K').map(|c| format!("E{}", c as char)).collect();
    let h = Harness::new(&distributions.iter().map(String::as_str).collect::<Vec<_>>());
    for (n, distribution) in distributions.iter().enumerate() {
        h.send(distribution, &[&format!("/p/{n}")]).await;
    }
    for message in h.queue.receive(10, Duration::ZERO, Duration::from_secs(10)).await.unwrap() {
        h.queue.expire_visibility(&message.message_id);
    }
    h.ledger.faults.slow_down("list", Duration::from_secs(2));
    let most_receives = hold_for_a_minute_each(&h, distributions.len()).await;
    assert_eq!(most_receives, 2, "a redelivered message lapsed while the ones before it were checked");
}

#[tokio::test(start_paused = true)]
async fn a_redelivery_in_a_dead_workers_leased_batch_waits_in_the_worker_not_in_the_queue() {
    // After a crash the next worker receives the dead worker's messages while their batch's lease still runs.
    // Handing such a message back to SQS until the lease ends costs it a receive each time, and a few crashes in a
    // row then send a valid message to the dead-letter queue: the worker holds it and looks again instead.
    let h = Harness::new(&["EAAA"]);
    h.send("EAAA", &["/p/0"]).await;
    let message = h.queue.receive(1, Duration::ZERO, Duration::from_secs(10)).await.unwrap().remove(0);
    h.queue.expire_visibility(&message.message_id);
    let now = WallClock::following_tokio().now();
    let dead_workers = BatchRecord {
        owner: "worker-that-died".into(),
        lease_until: now + Duration::from_secs(45),
        expires_at: now + Duration::from_secs(86_400),
        ..pending_record("EAAA", &["/p/0"], &[message.message_id.0.as_str()], now)
    };
    h.ledger.record_intent(&dead_workers).await.unwrap();

    hold_for_a_minute_each(&h, 1).await;
    assert_eq!(h.queue.deliveries(), 2, "the message went back to the queue while the lease ran");
    let created = h.cdn.invalidations();
    assert_eq!(created.len(), 1, "the dead worker's batch is resumed, not batched again: {created:?}");
    let resumed = h.ledger.batch(&dead_workers.caller_reference).await.unwrap().expect("the batch is recorded");
    // Accepted, and completed by the worker's last look at CloudFront on its way out.
    assert_eq!(resumed.status, BatchStatus::Completed);
}

#[tokio::test(start_paused = true)]
async fn a_resumed_batch_refused_for_another_messages_path_does_not_dead_letter_the_message_resuming_it() {
    // A stopped worker's pending batch holds two messages' paths; CloudFront refuses one of them. The message
    // redelivered first resumes the batch with every recorded path: before, that one-message batch could not be
    // bisected, and the innocent message was dead-lettered for the other's path.
    let h = Harness::new(&["EAAA"]);
    h.cdn.refuse_paths_containing("bad");
    h.send("EAAA", &["/good"]).await;
    let message = h.queue.receive(1, Duration::ZERO, Duration::from_secs(10)).await.unwrap().remove(0);
    h.queue.expire_visibility(&message.message_id);
    let now = WallClock::following_tokio().now();
    let dead_workers = BatchRecord {
        owner: "worker-that-died".into(),
        expires_at: now + Duration::from_secs(86_400),
        ..pending_record("EAAA", &["/good", "/bad"], &[message.message_id.0.as_str(), "another-message"], now)
    };
    h.ledger.record_intent(&dead_workers).await.unwrap();

    h.run_for(2 * MINUTE, settings()).await;
    assert!(h.dead_letter_reasons().is_empty(), "dead-lettered: {:?}", h.dead_letter_reasons());
    assert!(h.queue.is_empty());
    let created = h.cdn.invalidations();
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0].1, ["/good"], "its own path alone");
    let record = h.ledger.batch(&dead_workers.caller_reference).await.unwrap().unwrap();
    assert_eq!(record.status, BatchStatus::Failed, "the resumed record is refused, for the other message to find");
}

/// Runs a worker with a one-minute window and a 10 s visibility timeout over the `/p/0`..`/p/{count}` messages
/// until the queue is empty, checks they were all invalidated, and returns how often the most received message
/// was received.
async fn hold_for_a_minute_each(h: &Harness, count: usize) -> u32 {
    let mut settings = settings();
    settings.batching.window = MINUTE;
    settings.batching.max_paths = 3_000;
    settings.intake.visibility_timeout = Duration::from_secs(10);
    let mut most_receives = 0;
    let exit = worker::run(h.services(false), settings, async {
        while !h.queue.is_empty() {
            let now = h.queue.messages().iter().map(|m| m.receive_count).max().unwrap_or_default();
            most_receives = most_receives.max(now);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    assert_eq!(exit, Exit::Drained);
    let submitted: Vec<String> = h.cdn.invalidations().into_iter().flat_map(|(_, p)| p).collect();
    assert!((0..count).all(|n| is_covered_by(&format!("/p/{n}"), &submitted)));
    most_receives
}

#[tokio::test(start_paused = true)]
async fn never_holds_more_than_the_limit_and_leaves_the_rest_in_the_queue() {
    let h = Harness::new(&["EAAA"]);
    for n in 0..100 {
        h.send("EAAA", &[&format!("/p/{n}")]).await;
    }
    let mut settings = settings();
    settings.batching.window = MINUTE;
    settings.batching.max_paths = 3_000;
    settings.intake.max_held_messages = 20;
    let worker = tokio::spawn(worker::run(h.services(true), settings, tokio::time::sleep(10 * MINUTE)));
    tokio::time::sleep(Duration::from_secs(30)).await;
    let received = h.queue.messages().iter().filter(|m| m.receive_count > 0).count();
    assert_eq!(received, 20, "mid-window, exactly the limit is held");
    worker.await.unwrap();

    assert!(h.queue.is_empty());
    assert_eq!(h.cdn.invalidations().len(), 5, "one batch per window of 20 held messages");
}

#[tokio::test(start_paused = true)]
async fn shutdown_mid_window_submits_the_open_batch_and_deletes_its_messages() {
    let h = Harness::new(&["EAAA"]);
    h.send("EAAA", &["/a"]).await;
    h.send("EAAA", &["/b"]).await;
    let mut settings = settings();
    settings.batching.window = Duration::from_secs(3_600);
    let exit = h.run_for(Duration::from_secs(10), settings).await;

    assert_eq!(exit, Exit::Drained);
    assert_eq!(h.cdn.invalidations()[0].1, ["/a", "/b"]);
    assert_eq!(h.ledger.records()[0].seal_reason, "shutdown");
    assert!(h.queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_message_split_over_several_batches_is_deleted_once_every_part_is_accepted() {
    let h = Harness::new(&["EAAA"]);
    let paths: Vec<String> = (0..25).map(|i| format!("/p{i:02}")).collect();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    h.send("EAAA", &refs).await;
    let mut settings = settings();
    settings.batching.max_paths = 10;
    h.run_for(MINUTE, settings.clone()).await;

    let created = h.cdn.invalidations();
    assert_eq!(created.len(), 3);
    let submitted: Vec<String> = created.into_iter().flat_map(|(_, p)| p).collect();
    assert!(paths.iter().all(|p| is_covered_by(p, &submitted)));
    assert!(h.queue.is_empty());

    // When the last part is refused, the parts accepted before it must not have got the message deleted: it
    // goes to the dead-letter queue with the reason.
    let h = Harness::new(&["EAAA"]);
    h.send("EAAA", &refs).await;
    h.cdn.refuse_paths_containing("/p24");
    h.run_for(MINUTE, settings).await;
    assert_eq!(h.cdn.invalidations().len(), 2);
    assert!(h.queue.is_empty());
    let reasons = h.dead_letter_reasons();
    assert_eq!(reasons.len(), 1, "the message was deleted before all its parts were accepted");
    assert!(reasons[0].contains("CloudFront refused the paths"), "{reasons:?}");
}

#[tokio::test(start_paused = true)]
async fn many_messages_become_few_invalidations_covering_every_path() {
    let distributions = ["EAAA", "EBBB", "ECCC"];
    let h = Harness::new(&distributions);
    let mut requested = Vec::new();
    for n in 0..300 {
        let distribution = distributions[n % 3];
        let paths = [format!("/page/{}.html", n % 40), format!("/assets/{}/app.js", n % 7), "/index.html".into()];
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        h.send(distribution, &paths).await;
        requested.extend(paths.iter().map(|p| (distribution, p.to_string())));
    }
    h.send("ECCC", &["/assets/*"]).await;
    h.run_for(MINUTE, settings()).await;

    let created = h.cdn.invalidations();
    assert_eq!(created.len(), 3, "one window per distribution");
    for (distribution, path) in &requested {
        let covered = created.iter().any(|(d, p)| d.as_str() == *distribution && is_covered_by(path, p));
        assert!(covered, "{distribution} {path} not invalidated");
    }
    let eccc = created.iter().find(|(d, _)| d.as_str() == "ECCC").unwrap();
    assert!(!eccc.1.iter().any(|p| p.starts_with("/assets/") && p != "/assets/*"), "covered paths dropped");
    assert!(h.queue.is_empty());
    let messages: usize = h.ledger.records().iter().map(|r| r.message_ids.len()).sum();
    assert_eq!(messages, 301);
}

#[tokio::test(start_paused = true)]
async fn a_crash_between_cloudfront_and_the_ledger_is_finished_by_another_worker_without_paying_twice() {
    let h = Harness::new(&["EAAA"]);
    h.send("EAAA", &["/a", "/b"]).await;
    h.send("EAAA", &["/c"]).await;
    for _ in 0..3 {
        h.ledger.faults.inject("record_outcome", LedgerError::Unavailable("simulated outage".into()));
    }
    let mut worker_a = settings();
    worker_a.ledger.worker_id = "worker-a".into();
    let crashed = tokio::spawn(worker::run(h.services(true), worker_a, std::future::pending()));
    // Let worker A seal its window and call CloudFront, then kill it while it retries the ledger update.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(h.cdn.invalidations().len(), 1, "worker A's invalidation was accepted");
    crashed.abort();
    let _ = crashed.await;

    let mut worker_b = settings();
    worker_b.ledger.worker_id = "worker-b".into();
    h.run_for(Duration::from_secs(600), worker_b).await;

    let calls = h.cdn.calls();
    assert!(calls.iter().all(|c| c.caller_reference == calls[0].caller_reference), "{calls:?}");
    assert_eq!(h.cdn.invalidations().len(), 1, "paid once");
    assert!(h.queue.is_empty());
    let records = h.ledger.records();
    assert_eq!(records.len(), 1);
    assert!(records[0].status.is_accepted());
    assert_eq!(records[0].owner, "worker-b", "taken over after worker A's lease");
}

/// Worker A dies with a batch recorded but not accepted (CloudFront down); worker B, started at once, finishes it
/// within one visibility timeout (the messages come back) plus one lease (30 s by default, renewed only by a
/// live owner), not minutes later.
#[tokio::test(start_paused = true)]
async fn a_dead_workers_pending_batch_is_taken_over_within_a_lease_of_its_messages_coming_back() {
    let h = Harness::new(&["EAAA"]);
    h.send("EAAA", &["/a"]).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    h.cdn.faults.down_until("create_invalidation", CdnError::Unavailable("503".into()), until);
    let mut worker_a = settings();
    worker_a.ledger.worker_id = "worker-a".into();
    worker_a.intake.visibility_timeout = Duration::from_secs(30);
    let crashed = tokio::spawn(worker::run(h.services(true), worker_a, std::future::pending()));
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(h.ledger.records()[0].status, BatchStatus::Pending, "worker A recorded its batch");
    crashed.abort();
    let _ = crashed.await;
    let died = tokio::time::Instant::now();

    let mut worker_b = settings();
    worker_b.ledger.worker_id = "worker-b".into();
    worker_b.intake.visibility_timeout = Duration::from_secs(30);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let queue = Arc::clone(&h.queue);
    let run = tokio::spawn(worker::run(h.services(true), worker_b, async move {
        let _ = stopped.await;
    }));
    while !queue.is_empty() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let recovered = died.elapsed();
    let _ = stop.send(());
    run.await.unwrap();

    assert!(recovered <= Duration::from_secs(30 + 30 + 15), "the message was deleted {recovered:?} after the crash");
    let records = h.ledger.records();
    assert_eq!((records.len(), records[0].owner.as_str()), (1, "worker-b"), "one batch, taken over");
    assert!(records[0].status.is_accepted());
}

/// A live worker whose batch waits longer than a lease (a CloudFront outage) keeps renewing it: a redelivery of
/// its message to another worker waits instead of taking the batch over.
#[tokio::test(start_paused = true)]
async fn a_live_worker_keeps_its_batch_however_long_it_waits() {
    let h = Harness::new(&["EAAA"]);
    h.send("EAAA", &["/a"]).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(300);
    h.cdn.faults.down_until("create_invalidation", CdnError::Unavailable("503".into()), until);
    let mut worker_a = settings();
    worker_a.ledger.worker_id = "worker-a".into();
    let a = tokio::spawn(worker::run(h.services(true), worker_a, tokio::time::sleep(Duration::from_secs(600))));
    tokio::time::sleep(Duration::from_secs(120)).await;
    // SQS hands the message to worker B as well (a duplicate delivery of a standard queue).
    let message_id = h.queue.messages()[0].message_id.clone();
    h.queue.expire_visibility(&message_id);
    let mut worker_b = settings();
    worker_b.ledger.worker_id = "worker-b".into();
    h.run_for(Duration::from_secs(120), worker_b).await;
    assert_eq!(h.ledger.records()[0].owner, "worker-a", "not taken over while worker A lives");
    a.await.unwrap();

    assert!(h.queue.is_empty());
    assert!(h.ledger.records()[0].status.is_accepted());
    assert_eq!(h.ledger.records().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_redelivered_message_already_covered_is_deleted_without_a_new_invalidation() {
    let h = Harness::new(&["EAAA"]);
    h.send("EAAA", &["/a", "/b"]).await;
    for _ in 0..5 {
        h.queue.faults.inject("delete", cf_invalidator::ports::QueueError::Transient("simulated".into()));
    }
    let mut short_visibility = settings();
    short_visibility.intake.visibility_timeout = Duration::from_secs(10);
    h.run_for(Duration::from_secs(120), short_visibility).await;

    assert_eq!(h.cdn.invalidations().len(), 1);
    assert!(h.queue.is_empty(), "the redelivery was deleted");
}

#[tokio::test(start_paused = true)]
async fn a_repeated_idempotency_key_is_deleted_without_a_new_invalidation() {
    let h = Harness::new(&["EAAA"]);
    let send = |paths: &[&str]| json!({"distribution_id": "EAAA", "paths": paths, "idempotency_key": "deploy-42"});
    h.queue.send(&send(&["/a", "/b"]).to_string(), &[]).await.unwrap();
    h.run_for(MINUTE, settings()).await;
    // The same request again, its paths in another order: a producer's retry.
    h.queue.send(&send(&["/b", "/a"]).to_string(), &[]).await.unwrap();
    h.run_for(MINUTE, settings()).await;

    assert_eq!(h.cdn.invalidations().len(), 1);
    assert!(h.queue.is_empty());
    assert!(h.dead_letter_reasons().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_idempotency_key_is_scoped_to_its_distribution_and_names_one_request() {
    let h = Harness::new(&["EAAA", "EBBB"]);
    let send = |distribution: &str, paths: &[&str]| {
        json!({"distribution_id": distribution, "paths": paths, "idempotency_key": "deploy-42"}).to_string()
    };
    h.queue.send(&send("EAAA", &["/a"]), &[]).await.unwrap();
    let first = h.queue.messages()[0].message_id.clone();
    h.run_for(MINUTE, settings()).await;
    // Another team's deploy-42 on its own distribution, then this team's deploy-42 reused for other paths.
    h.queue.send(&send("EBBB", &["/a"]), &[]).await.unwrap();
    h.queue.send(&send("EAAA", &["/other"]), &[]).await.unwrap();
    h.run_for(MINUTE, settings()).await;

    let mut invalidated: Vec<(String, Vec<String>)> =
        h.cdn.invalidations().into_iter().map(|(d, paths)| (d.to_string(), paths)).collect();
    invalidated.sort();
    assert_eq!(invalidated, [("EAAA".into(), vec!["/a".into()]), ("EBBB".into(), vec!["/a".into()])]);
    assert!(h.queue.is_empty());
    let reasons = h.dead_letter_reasons();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("idempotency_key \"deploy-42\" was first used"), "{reasons:?}");
    assert!(reasons[0].contains(&first.0), "names the first message: {reasons:?}");
}

#[tokio::test(start_paused = true)]
async fn an_invalid_path_is_isolated_by_splitting_and_only_its_message_is_dead_lettered() {
    let h = Harness::new(&["EAAA"]);
    for n in 0..7 {
        h.send("EAAA", &[&format!("/ok/{n}")]).await;
    }
    h.send("EAAA", &["/bad~path", "/ok/x"]).await;
    h.cdn.refuse_paths_containing("%7E");
    h.run_for(MINUTE, settings()).await;

    let submitted: Vec<String> = h.cdn.invalidations().into_iter().flat_map(|(_, p)| p).collect();
    for n in 0..7 {
        assert!(submitted.contains(&format!("/ok/{n}")), "{submitted:?}");
    }
    assert!(!submitted.iter().any(|p| p.contains('~')));
    assert!(h.queue.is_empty());
    let reasons = h.dead_letter_reasons();
    assert_eq!(reasons.len(), 1, "only the offending message");
    assert!(reasons[0].contains("refused the paths"), "{reasons:?}");
    let bodies: Vec<String> = h.dead_letter.messages().into_iter().map(|m| m.body).collect();
    assert!(bodies[0].contains("/bad~path"));
}

#[tokio::test(start_paused = true)]
async fn an_s3_object_served_by_two_distributions_is_deleted_once_both_are_invalidated() {
    use cf_invalidator::intake::parse::IntakeRules;
    use cf_invalidator::intake::routes::Routing;
    let routing = Routing::parse("[[rule]]\nbucket = \"site\"\ndistributions = [\"EAAA\", \"EBBB\"]").unwrap();
    let intake = Arc::new(IntakeRules { routing, ..IntakeRules::default() });
    let event = json!({"Records": [{"eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "site"}, "object": {"key": "a.html"}}}]})
    .to_string();

    let h = Harness::new(&["EAAA", "EBBB"]);
    h.queue.send(&event, &[]).await.unwrap();
    let mut both = settings();
    both.intake.rules = Arc::clone(&intake);
    h.run_for(MINUTE, both).await;
    let created: Vec<_> = h.cdn.invalidations().into_iter().map(|(d, p)| (d.to_string(), p)).collect();
    assert_eq!(created, [("EAAA".into(), vec!["/a.html".to_owned()]), ("EBBB".into(), vec!["/a.html".to_owned()])]);
    assert!(h.queue.is_empty());

    // One distribution refuses for good: the other's acceptance must not get the message deleted as covered.
    let h = Harness::new(&["EAAA"]);
    h.queue.send(&event, &[]).await.unwrap();
    let mut one = settings();
    one.intake.rules = intake;
    h.run_for(MINUTE, one).await;
    assert_eq!(h.cdn.invalidations().len(), 1);
    assert!(h.queue.is_empty());
    assert_eq!(h.dead_letter_reasons().len(), 1, "dead-lettered with EBBB's reason, not deleted as covered");
}

#[tokio::test(start_paused = true)]
async fn completion_is_recorded_with_its_time_to_complete_after_the_messages_are_deleted() {
    let h = Harness::new(&["EAAA"]);
    h.cdn.complete_after(Duration::from_secs(90));
    h.send("EAAA", &["/a"]).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut settings = settings();
    settings.tracking.poll = Duration::from_secs(20);
    let worker = tokio::spawn(worker::run(h.services(true), settings, async {
        let _ = stopped.await;
    }));

    // The window closes after 5 s; the message is deleted on acceptance, long before CloudFront completes.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(h.queue.is_empty(), "tracking holds no messages");
    assert_eq!(h.ledger.records()[0].status, BatchStatus::Accepted);
    tokio::time::sleep(Duration::from_secs(270)).await;
    stop.send(()).unwrap();
    worker.await.unwrap();

    let record = &h.ledger.records()[0];
    assert_eq!(record.status, BatchStatus::Completed);
    assert_eq!(record.cloudfront_status.as_deref(), Some("Completed"));
    // Looked at 5 s after acceptance, then 10 s later, then every 20 s: 5, 15, 35, 55, 75, 95; the look at 95 s
    // is the first after the 90 s CloudFront took.
    assert_eq!(record.time_to_complete, Some(Duration::from_secs(95)));
    assert_eq!(record.completed_at, record.submitted_at.map(|at| at + Duration::from_secs(95)));
    assert!(h.cdn.status_checks().is_empty(), "the list answered: no GetInvalidation");
    let accepted_at = h.cdn.created()[0].at;
    let tracker_looks = h.cdn.list_calls().into_iter().filter(|c| c.at > accepted_at).count();
    assert!(tracker_looks <= 6 + 2, "no looks once completed (budget resyncs list too): {tracker_looks}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_does_not_wait_for_completion_and_the_record_stays_accepted() {
    let h = Harness::new(&["EAAA"]);
    h.cdn.complete_after(Duration::from_secs(3_600));
    h.send("EAAA", &["/a"]).await;
    let started = tokio::time::Instant::now();
    assert_eq!(h.run_for(MINUTE, settings()).await, Exit::Drained);

    assert!(started.elapsed() < MINUTE + Duration::from_secs(1), "shutdown waited {:?}", started.elapsed());
    assert!(h.queue.is_empty());
    assert!(!h.cdn.list_calls().is_empty(), "it was being tracked");
    let record = &h.ledger.records()[0];
    assert_eq!((record.status, record.completed_at), (BatchStatus::Accepted, None));
}

#[tokio::test(start_paused = true)]
async fn completion_tracking_can_be_turned_off() {
    let h = Harness::new(&["EAAA"]);
    h.send("EAAA", &["/a"]).await;
    let mut settings = settings();
    settings.tracking.poll = Duration::ZERO;
    h.run_for(Duration::from_secs(300), settings).await;

    assert!(h.cdn.status_checks().is_empty());
    assert_eq!(h.ledger.records()[0].status, BatchStatus::Accepted);
}

#[tokio::test(start_paused = true)]
async fn dead_lettered_messages_are_recorded_in_the_ledger_with_what_their_bodies_say() {
    let h = Harness::new(&["EAAA"]);
    h.queue.send(r#"{"distribution_id":"EAAA","paths":["bad"],"requester":"alice"}"#, &[]).await.unwrap();
    h.queue.send("{not json", &[]).await.unwrap();
    h.send("EGONE", &["/a"]).await;
    h.run_for(MINUTE, settings()).await;

    let dead = h.ledger.dead_letters();
    assert_eq!(dead.len(), 3, "{dead:?}");
    let queued: Vec<_> = h.dead_letter.messages();
    for record in &dead {
        let attribute = queued
            .iter()
            .flat_map(|m| &m.attributes)
            .any(|(k, v)| k == cf_invalidator::ack::SOURCE_MESSAGE_ATTRIBUTE && v == &record.message_id.0);
        assert!(attribute, "{} is recorded but not on the dead-letter queue", record.message_id);
    }
    let by_code = |code: &str| dead.iter().find(|d| d.code == code).unwrap_or_else(|| panic!("{code}: {dead:?}"));
    let invalid = by_code("invalid_path");
    assert_eq!(invalid.distribution_id.as_ref().map(|d| d.as_str()), Some("EAAA"));
    assert_eq!(invalid.requester.as_deref(), Some("alice"));
    assert!(invalid.reason.contains("must start with '/'"));
    let malformed = by_code("malformed");
    assert_eq!((&malformed.distribution_id, &malformed.requester), (&None, &None));
    let refused = by_code("NoSuchDistribution");
    assert_eq!(refused.distribution_id.as_ref().map(|d| d.as_str()), Some("EGONE"));
    assert_eq!(refused.requester.as_deref(), Some("tests"));

    // The audit's failure question sees them, and the failed batch behind the refused message.
    let failures = h.ledger.failures(std::time::UNIX_EPOCH, 10).await.unwrap();
    assert_eq!(failures.len(), 4, "{failures:?}");
    let failed_batches: Vec<_> =
        failures.iter().filter_map(|f| if let FailureRecord::Batch(b) = f { Some(b) } else { None }).collect();
    assert_eq!(failed_batches.len(), 1);
    assert_eq!(failed_batches[0].message_ids, std::slice::from_ref(&refused.message_id));
}

#[tokio::test(start_paused = true)]
async fn a_failed_dead_letter_record_never_keeps_a_message_off_the_dead_letter_queue() {
    let h = Harness::new(&["EAAA"]);
    h.ledger.faults.inject("record_dead_letter", LedgerError::Unavailable("simulated outage".into()));
    h.queue.send("{not json", &[]).await.unwrap();
    h.run_for(MINUTE, settings()).await;

    assert!(h.queue.is_empty());
    assert_eq!(h.dead_letter.len(), 1);
    assert!(h.ledger.dead_letters().is_empty(), "best effort: the write failed and was not retried");
}

/// How long each of 300 distributions' single message waited for its invalidation, sent 30 s into a run in
/// which, if `saturated`, distribution ESAT has no budget left and 80 batches waiting for it.
async fn latencies_of_300_others(saturated: bool) -> Vec<Duration> {
    let others: Vec<String> = (0..300).map(|i| format!("EOTHER{i:03}")).collect();
    let h = Harness::new(&std::iter::once("ESAT").chain(others.iter().map(String::as_str)).collect::<Vec<_>>());
    h.cdn.complete_after(Duration::from_secs(3_600));
    if saturated {
        let full: Vec<String> = (0..3_000).map(|i| format!("/console/{i}")).collect();
        let esat = cf_invalidator::model::DistributionId::parse("ESAT").unwrap();
        h.cdn.create_as_someone_else(&esat, &full).unwrap();
        for i in 0..400 {
            h.send("ESAT", &[&format!("/waits/{i}")]).await;
        }
    }
    let mut settings = settings();
    settings.submission.max_concurrent = 2;
    settings.submission.overload.coalesce = false;
    settings.batching.max_paths = 5;
    let queue = Arc::clone(&h.queue);
    let sent = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        for distribution in &others {
            let body = json!({"distribution_id": distribution, "paths": ["/page.html"]});
            queue.send(&body.to_string(), &[]).await.unwrap();
        }
        tokio::time::Instant::now()
    });
    h.run_for(Duration::from_secs(150), settings).await;
    let sent_at = sent.await.unwrap();
    let (esat, others): (Vec<_>, Vec<_>) =
        h.cdn.created().into_iter().partition(|c| c.distribution_id.as_str() == "ESAT");
    assert_eq!(esat.len(), usize::from(saturated), "only the console's invalidation: ESAT never had room");
    others.iter().map(|c| c.at - sent_at).collect()
}

#[tokio::test(start_paused = true)]
async fn a_distribution_waiting_for_budget_does_not_delay_300_others() {
    let baseline = latencies_of_300_others(false).await;
    let beside_saturated = latencies_of_300_others(true).await;
    assert_eq!((baseline.len(), beside_saturated.len()), (300, 300), "every other distribution was invalidated");
    let slowest = |latencies: &[Duration]| latencies.iter().max().copied().unwrap();
    assert!(
        slowest(&beside_saturated) <= slowest(&baseline) + Duration::from_secs(1),
        "slowest of the others: {:?} beside a saturated distribution, {:?} alone",
        slowest(&beside_saturated),
        slowest(&baseline)
    );
}

#[tokio::test(start_paused = true)]
async fn a_stopped_worker_s_invalidation_is_recorded_completed_by_another_worker() {
    let h = Harness::new(&["EAAA"]);
    h.cdn.complete_after(Duration::from_secs(120));
    h.send("EAAA", &["/a"]).await;
    let mut worker_a = settings();
    worker_a.ledger.worker_id = "worker-a".into();
    let clock = worker_a.clock;
    h.run_for(Duration::from_secs(30), worker_a).await;
    assert_eq!(h.ledger.records()[0].status, BatchStatus::Accepted, "worker A stopped before CloudFront completed");

    let mut worker_b = Settings { clock, ..settings() };
    worker_b.ledger.worker_id = "worker-b".into();
    h.run_for(Duration::from_secs(300), worker_b).await;

    let record = &h.ledger.records()[0];
    assert_eq!(record.status, BatchStatus::Completed, "worker B adopted it from the ledger");
    assert_eq!(record.owner, "worker-a");
    let took = record.time_to_complete.unwrap();
    assert!(took >= Duration::from_secs(120) && took <= Duration::from_secs(150), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn an_urgent_message_is_accepted_within_a_second_and_normal_messages_keep_their_window() {
    let h = Harness::new(&["EAAA", "EBBB"]);
    let started = tokio::time::Instant::now();
    h.send("EAAA", &["/pending.html"]).await;
    h.send("EBBB", &["/normal.html"]).await;
    let queue = Arc::clone(&h.queue);
    let urgent_sent = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let body = json!({"distribution_id": "EAAA", "paths": ["/breaking.html"], "priority": "urgent"});
        queue.send(&body.to_string(), &[]).await.unwrap();
        tokio::time::Instant::now()
    });
    let mut settings = settings();
    settings.batching.window = Duration::from_secs(30);
    h.run_for(MINUTE, settings).await;
    let urgent_sent = urgent_sent.await.unwrap();

    let created = h.cdn.created();
    let urgent = created.iter().find(|c| c.paths.contains(&"/breaking.html".to_owned())).unwrap();
    assert_eq!(urgent.paths, ["/breaking.html", "/pending.html"], "with what was pending for EAAA");
    // Received within the 1 s long poll, then sealed and submitted at once.
    assert!(
        urgent.at - urgent_sent <= Duration::from_secs(1),
        "accepted {:?} after it was sent",
        urgent.at - urgent_sent
    );
    let normal = created.iter().find(|c| c.distribution_id.as_str() == "EBBB").unwrap();
    assert!(normal.at - started >= Duration::from_secs(30), "EBBB kept its 30 s window: {:?}", normal.at - started);
    assert!(h.queue.is_empty());
}

mod events {
    use super::*;
    use cf_invalidator::fake::MemoryEvents;
    use cf_invalidator::ports::events::{EventError, EventKind, Events};

    fn with_events(sink: &Arc<MemoryEvents>) -> Settings {
        Settings { events: Some(Events(Arc::clone(sink) as Arc<_>)), ..settings() }
    }

    fn kinds(sink: &MemoryEvents) -> Vec<(String, EventKind)> {
        sink.published().into_iter().map(|e| (e.caller_reference.unwrap_or_default(), e.kind)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn every_batch_announces_its_acceptance_and_its_completion_with_its_messages() {
        let h = Harness::new(&["EAAA", "EBBB"]);
        h.cdn.complete_after(Duration::from_secs(20));
        let keyed =
            json!({"distribution_id": "EAAA", "paths": ["/a"], "idempotency_key": "deploy-7", "requester": "ci"});
        h.queue.send(&keyed.to_string(), &[]).await.unwrap();
        h.send("EBBB", &["/b"]).await;
        let sink = Arc::new(MemoryEvents::default());
        h.run_for(Duration::from_secs(120), with_events(&sink)).await;

        let records = h.ledger.records();
        assert_eq!(records.len(), 2);
        let published = sink.published();
        for record in &records {
            let reference = record.caller_reference.to_string();
            let of_batch: Vec<_> =
                published.iter().filter(|e| e.caller_reference.as_deref() == Some(reference.as_str())).collect();
            assert_eq!(
                of_batch.iter().map(|e| e.kind).collect::<Vec<_>>(),
                [EventKind::Accepted, EventKind::Completed]
            );
            let ids: Vec<String> = record.message_ids.iter().map(|m| m.0.clone()).collect();
            assert!(of_batch.iter().all(|e| e.message_ids == ids && e.invalidation_id == record.invalidation_id));
            assert_eq!(of_batch[1].time_to_complete_ms, record.time_to_complete.map(|t| t.as_millis() as u64));
        }
        let keyed = published.iter().find(|e| e.distribution_id.as_deref() == Some("EAAA")).unwrap();
        assert_eq!(
            (keyed.idempotency_keys.as_slice(), keyed.requesters.as_slice()),
            (["deploy-7".to_owned()].as_slice(), ["ci".to_owned()].as_slice())
        );
        assert!(h.outbox_is_empty().await, "settled once published");
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_refused_for_good_and_every_dead_letter_are_announced_too() {
        let h = Harness::new(&["EAAA"]);
        h.send("ENOSUCH", &["/x"]).await;
        h.queue.send("not json", &[]).await.unwrap();
        let sink = Arc::new(MemoryEvents::default());
        h.run_for(MINUTE, with_events(&sink)).await;

        let published = sink.published();
        let failed: Vec<_> = published.iter().filter(|e| e.kind == EventKind::Failed).collect();
        assert_eq!(failed.len(), 1, "{published:#?}");
        assert_eq!(failed[0].distribution_id.as_deref(), Some("ENOSUCH"));
        assert!(failed[0].reason.as_deref().unwrap_or_default().contains("does not exist"), "{:?}", failed[0]);
        let dead: Vec<_> = published.iter().filter(|e| e.kind == EventKind::DeadLettered).collect();
        assert_eq!(dead.len(), 2, "the refused batch's message and the unreadable one: {published:#?}");
        assert!(dead.iter().all(|e| e.message_ids.len() == 1 && e.reason.is_some()));
        assert_eq!(dead.iter().filter(|e| e.distribution_id.as_deref() == Some("ENOSUCH")).count(), 1);
        assert!(h.outbox_is_empty().await, "nothing left in the outbox");
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_stops_before_publishing_leaves_its_events_to_another() {
        let h = Harness::new(&["EAAA"]);
        h.cdn.complete_after(Duration::from_secs(20));
        h.send("EAAA", &["/a"]).await;
        // Worker A cannot reach the destination for as long as it runs.
        let unreachable = Arc::new(MemoryEvents::default());
        let outage = EventError::Unavailable("SNS is down".into());
        unreachable.faults.down_until("publish", outage, tokio::time::Instant::now() + Duration::from_secs(3_600));
        let mut worker_a = with_events(&unreachable);
        let clock = worker_a.clock;
        worker_a.ledger.worker_id = "worker-a".into();
        h.run_for(Duration::from_secs(60), worker_a).await;
        assert!(unreachable.published().is_empty());
        assert_eq!(h.ledger.records()[0].status, BatchStatus::Completed, "completion recorded, its events owed");

        let sink = Arc::new(MemoryEvents::default());
        let mut worker_b = Settings { clock, ..with_events(&sink) };
        worker_b.ledger.worker_id = "worker-b".into();
        h.run_for(Duration::from_secs(180), worker_b).await;
        let reference = h.ledger.records()[0].caller_reference.to_string();
        assert_eq!(kinds(&sink), [(reference.clone(), EventKind::Accepted), (reference, EventKind::Completed)]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_published_but_not_recorded_is_published_again_not_lost() {
        let h = Harness::new(&["EAAA"]);
        h.cdn.complete_after(Duration::from_secs(3_600));
        h.send("EAAA", &["/a"]).await;
        let sink = Arc::new(MemoryEvents::default());
        // Worker A publishes the accepted event, then stops before the ledger records it (it stays unreachable).
        let gone = LedgerError::Unavailable("worker A stopped".into());
        h.ledger.faults.down_until("mark_published", gone, tokio::time::Instant::now() + Duration::from_secs(60));
        let mut worker_a = with_events(&sink);
        let clock = worker_a.clock;
        h.run_for(Duration::from_secs(30), worker_a.clone()).await;
        worker_a.ledger.worker_id = "worker-b".into();
        h.run_for(Duration::from_secs(150), Settings { clock, ..worker_a }).await;

        let reference = h.ledger.records()[0].caller_reference.to_string();
        let accepted = kinds(&sink).into_iter().filter(|k| *k == (reference.clone(), EventKind::Accepted)).count();
        assert!(accepted >= 2, "repeated, at least once: {:?}", kinds(&sink));
        assert_eq!(h.ledger.records()[0].published, [EventKind::Accepted], "recorded once it could be");
    }
}
