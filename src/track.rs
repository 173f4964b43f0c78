//! Completion tracking: for the invalidations this worker created, ask CloudFront now and then whether they have
//! completed, and record when they did (status `completed`, `completed_at`, `time_to_complete_ms`).
//!
//! Tracking holds no messages (they are deleted on acceptance) and nothing depends on it: a worker that stops
//! simply stops tracking, and its records stay `accepted`. Each invalidation is checked every `poll` (the SDK
//! waiter's 20 s by default) until it completes or `give_up_after` has passed since it was accepted (the waiter's
//! 10 minutes); GetInvalidation calls go out one at a time, at most `status_rate` a second (default 4).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use metrics::{counter, histogram};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::WallClock;
use crate::limit::Budget;
use crate::model::{CallerReference, DistributionId};
use crate::ports::budget::BudgetStore;
use crate::ports::cdn::{Cdn, Invalidation, RetryAfter};
use crate::ports::ledger::{Completion, Ledger};
use crate::retry::Transient;
use crate::telemetry::log_allowed;

/// GetInvalidation calls per second per worker by default: CloudFront throttles its API per account.
pub const DEFAULT_STATUS_RATE: f64 = 4.0;

/// An invalidation this worker created and recorded as accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub caller_reference: CallerReference,
    pub distribution_id: DistributionId,
    pub invalidation_id: String,
    pub submitted_at: SystemTime,
}

#[derive(Debug, Clone, Copy)]
pub struct TrackSettings {
    /// How often one invalidation is checked.
    pub poll: Duration,
    /// After this long an invalidation is no longer checked; its record stays `accepted`.
    pub give_up_after: Duration,
    /// At least this long between two GetInvalidation calls.
    pub call_gap: Duration,
    pub clock: WallClock,
}

struct Tracked {
    submitted: Submitted,
    next_check: Instant,
    give_up_at: Instant,
}

pub struct Tracker<C, L> {
    pub cdn: Arc<C>,
    pub ledger: Arc<L>,
    /// Each check renews the invalidation's reservation; its completion releases it.
    pub budget: Arc<Budget<C, L>>,
    pub settings: TrackSettings,
}

impl<C: Cdn, L: Ledger + BudgetStore> Tracker<C, L> {
    /// Tracks what arrives on `accepted` until `stop` is cancelled, or until the senders are gone and nothing is
    /// left to track.
    pub async fn run(self, mut accepted: mpsc::Receiver<Submitted>, stop: CancellationToken) {
        let mut tracked: Vec<Tracked> = Vec::new();
        let mut open = true;
        let mut next_call = Instant::now();
        while open || !tracked.is_empty() {
            let due = earliest(&tracked).map(|index| tracked[index].next_check.max(next_call));
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                submitted = accepted.recv(), if open => match submitted {
                    Some(submitted) => tracked.push(self.start(submitted)),
                    None => open = false,
                },
                () = sleep_until(due) => {
                    let entry = tracked.swap_remove(earliest(&tracked).expect("something is due"));
                    next_call = Instant::now() + self.settings.call_gap;
                    tracked.extend(self.check(entry).await);
                }
            }
        }
    }

    fn start(&self, submitted: Submitted) -> Tracked {
        let now = Instant::now();
        // CloudFront never completes at once: the first look is one poll away.
        Tracked { submitted, next_check: now + self.settings.poll, give_up_at: now + self.settings.give_up_after }
    }

    /// Asks CloudFront once; returns the entry if it is to be checked again.
    async fn check(&self, mut entry: Tracked) -> Option<Tracked> {
        let submitted = &entry.submitted;
        match self.cdn.get_invalidation(&submitted.distribution_id, &submitted.invalidation_id).await {
            Ok(detail) if detail.invalidation.is_completed() => {
                if self.record(submitted, detail.invalidation).await {
                    return None;
                }
            }
            Ok(_) => {
                let (distribution, reference) = (&submitted.distribution_id, &submitted.caller_reference);
                self.budget.renew(distribution, reference, &submitted.invalidation_id).await;
            }
            Err(e) if e.retry_after() == RetryAfter::Never => {
                if let Some(suppressed) = log_allowed("completion_check_refused") {
                    warn!(invalidation_id = %submitted.invalidation_id, error = %e, suppressed, "cannot check the invalidation's status (the role needs cloudfront:GetInvalidation); its record stays accepted");
                }
                counter!("cfi_completion_tracking_abandoned_total", "reason" => "refused").increment(1);
                return None;
            }
            Err(e) => {
                if let Some(suppressed) = log_allowed("completion_check_failed") {
                    warn!(invalidation_id = %submitted.invalidation_id, error = %e, suppressed, "could not check the invalidation's status; will try again");
                }
            }
        }
        let now = Instant::now();
        if now >= entry.give_up_at {
            info!(invalidation_id = %submitted.invalidation_id, caller_reference = %submitted.caller_reference, "invalidation not completed in time; no longer tracked, its record stays accepted");
            // From now on resyncs count it, for as long as CloudFront says it is in progress.
            self.budget.release(&submitted.distribution_id, &submitted.caller_reference).await;
            self.budget.resync_next(&submitted.distribution_id);
            counter!("cfi_completion_tracking_abandoned_total", "reason" => "timeout").increment(1);
            return None;
        }
        entry.next_check = now + self.settings.poll;
        Some(entry)
    }

    /// Records the completion; false if it should be tried again.
    async fn record(&self, submitted: &Submitted, invalidation: Invalidation) -> bool {
        let completed_at = self.settings.clock.now();
        let completion = Completion {
            caller_reference: submitted.caller_reference.clone(),
            cloudfront_status: invalidation.status,
            completed_at,
            time_to_complete: completed_at.duration_since(submitted.submitted_at).unwrap_or_default(),
        };
        self.budget
            .completed(&submitted.distribution_id, &submitted.caller_reference, completion.time_to_complete)
            .await;
        match self.ledger.record_completion(&completion).await {
            Ok(()) => {
                info!(invalidation_id = %submitted.invalidation_id, caller_reference = %submitted.caller_reference, time_to_complete = ?completion.time_to_complete, "invalidation completed");
                histogram!("cfi_time_to_complete_seconds").record(completion.time_to_complete.as_secs_f64());
                true
            }
            Err(e) if e.is_transient() => {
                if let Some(suppressed) = log_allowed("completion_record_failed") {
                    warn!(caller_reference = %submitted.caller_reference, error = %e, suppressed, "could not record the completion; will try again");
                }
                false
            }
            Err(e) => {
                warn!(caller_reference = %submitted.caller_reference, error = %e, "could not record the completion; its record stays accepted");
                counter!("cfi_completion_tracking_abandoned_total", "reason" => "ledger").increment(1);
                true
            }
        }
    }
}

/// The index of the entry due first.
fn earliest(tracked: &[Tracked]) -> Option<usize> {
    tracked.iter().enumerate().min_by_key(|(_, entry)| entry.next_check).map(|(index, _)| index)
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        // Through the timer, a check already due would wait for its next tick (a millisecond): a backlog of checks
        // would be paced by the timer instead of `call_gap`, and room in the budget would return that much later.
        Some(at) if at <= Instant::now() => tokio::task::coop::consume_budget().await,
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeCdn, MemoryLedger};
    use crate::ports::ledger::{BatchRecord, BatchStatus};

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
            Submitted {
                caller_reference: reference,
                distribution_id: distribution,
                invalidation_id: invalidation.id,
                submitted_at: now,
            }
        }

        /// Runs a tracker over `submitted` until it has nothing left to track.
        async fn track(&self, submitted: Vec<Submitted>, give_up_after: Duration) {
            let (sender, receiver) = mpsc::channel(16);
            for s in submitted {
                sender.send(s).await.unwrap();
            }
            drop(sender);
            let settings = TrackSettings { poll: POLL, give_up_after, call_gap: CALL_GAP, clock: self.clock };
            let budget = Arc::new(Budget::new(
                Arc::clone(&self.cdn),
                Arc::clone(&self.ledger),
                crate::limit::budget::tests::settings(),
                "w1".into(),
                self.clock,
            ));
            let tracker = Tracker { cdn: Arc::clone(&self.cdn), ledger: Arc::clone(&self.ledger), budget, settings };
            tracker.run(receiver, CancellationToken::new()).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn records_completion_at_the_first_poll_after_cloudfront_completes() {
        let setup = Setup::new(Duration::from_secs(50));
        let started = Instant::now();
        let submitted = setup.accepted("/a").await;
        setup.track(vec![submitted], Duration::from_secs(600)).await;

        let checks: Vec<Duration> = setup.cdn.status_checks().iter().map(|c| c.at - started).collect();
        assert_eq!(checks, [POLL, 2 * POLL, 3 * POLL], "polled until completed, then no more");
        let record = &setup.ledger.records()[0];
        assert_eq!(record.status, BatchStatus::Completed);
        assert_eq!(record.cloudfront_status.as_deref(), Some("Completed"));
        assert_eq!(record.time_to_complete, Some(3 * POLL), "seen at the third poll, 60 s after acceptance");
        assert_eq!(record.completed_at, Some(record.submitted_at.unwrap() + 3 * POLL));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_bound_and_leaves_the_record_accepted() {
        let setup = Setup::new(Duration::from_secs(3_600));
        let submitted = setup.accepted("/a").await;
        setup.track(vec![submitted], Duration::from_secs(600)).await;

        assert_eq!(setup.cdn.status_checks().len(), 30, "the waiter's budget: 30 checks 20 s apart");
        let record = &setup.ledger.records()[0];
        assert_eq!((record.status, record.completed_at), (BatchStatus::Accepted, None));
    }

    #[tokio::test(start_paused = true)]
    async fn checks_go_out_one_at_a_time_spaced_by_the_minimum_gap() {
        let setup = Setup::new(Duration::ZERO);
        let mut submitted = Vec::new();
        for n in 0..5 {
            submitted.push(setup.accepted(&format!("/p{n}")).await);
        }
        setup.track(submitted, Duration::from_secs(600)).await;

        let checks = setup.cdn.status_checks();
        assert_eq!(checks.len(), 5);
        for pair in checks.windows(2) {
            assert!(pair[1].at - pair[0].at >= CALL_GAP, "{checks:?}");
        }
        assert!(setup.ledger.records().iter().all(|r| r.status == BatchStatus::Completed));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_invalidation_is_dropped_after_one_check() {
        let setup = Setup::new(Duration::ZERO);
        let mut submitted = setup.accepted("/a").await;
        submitted.invalidation_id = "INOSUCH".into();
        setup.track(vec![submitted], Duration::from_secs(600)).await;

        assert_eq!(setup.cdn.status_checks().len(), 1);
        assert_eq!(setup.ledger.records()[0].status, BatchStatus::Accepted);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_completion_write_is_tried_again_at_the_next_poll() {
        let setup = Setup::new(Duration::ZERO);
        setup.ledger.faults.inject("record_completion", crate::ports::LedgerError::Unavailable("outage".into()));
        let submitted = setup.accepted("/a").await;
        setup.track(vec![submitted], Duration::from_secs(600)).await;

        assert_eq!(setup.cdn.status_checks().len(), 2);
        assert_eq!(setup.ledger.records()[0].time_to_complete, Some(2 * POLL));
    }
}
