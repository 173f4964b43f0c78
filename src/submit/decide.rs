//! What submission does after each failed attempt, without I/O: the state machine `Submitter` executes.
//!
//! A failure that can heal (throttling, 5xx, timeouts, an unreachable ledger, a full distribution) is retried
//! under the same CallerReference for as long as it lasts: first on its own short policy, then at the outage
//! pace (at most about a minute apart). The messages stay held meanwhile; handing them back to SQS would spend
//! one of their receives each time and, past maxReceiveCount, redrive valid messages to the dead-letter queue
//! without a reason. A failure that cannot heal ends the batch: its messages are dead-lettered with the reason,
//! split to isolate an invalid path, or batched afresh. A denial is confirmed for a while first, since IAM
//! changes take time to propagate.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff};
use tokio::time::Instant;

use crate::ports::budget::Allowance;
use crate::ports::cdn::CdnError;
use crate::ports::ledger::LedgerError;
use crate::retry::{RetryPolicy, Transient};

/// How long an AccessDenied, missing credentials or an unknown error is retried before the batch's messages are
/// dead-lettered.
pub const CONFIRM_DENIED: Duration = Duration::from_secs(120);

/// What went wrong with one attempt.
#[derive(Debug)]
pub enum Failure {
    Cdn(CdnError),
    Ledger(LedgerError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cdn(e) => e.fmt(f),
            Self::Ledger(e) => e.fmt(f),
        }
    }
}

/// The next step after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Try again after `delay`, under the same CallerReference. `reserve_again`: CloudFront said the distribution
    /// is full, so the budget is resynced and the batch waits for room before the next call.
    Retry { delay: Duration, reserve_again: bool },
    /// The batch cannot succeed as it is.
    Refused(Refusal),
}

/// What becomes of a refused batch's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// To the dead-letter queue with the reason.
    DeadLetter { reason: String, code: &'static str },
    /// Narrow the batch down to isolate the message whose path CloudFront refuses (`shape::split`).
    Narrow,
    /// CloudFront allows less than the worker believed: split the batch so that a first part fits this.
    Refit(Allowance),
    /// The CallerReference was recorded with other paths (a resumed batch whose recorded paths were cut short):
    /// the record is failed, and the messages are batched afresh.
    Rebatch,
}

/// The retry state of one batch.
#[derive(Debug)]
pub struct Attempts {
    transient: ExponentialBackoff,
    quota: ExponentialBackoff,
    outage: ExponentialBackoff,
    denied_since: Option<Instant>,
    confirm_denied: Duration,
    /// When the batch was sealed, on tokio's clock: a batch resumed after a crash keeps its age, so denials seen
    /// by workers that died before confirming still count.
    sealed: Instant,
    /// Whether the batch can be narrowed down to isolate a refused path (`shape::splittable`).
    splittable: bool,
}

impl Attempts {
    /// The retry state of a batch sealed `age` ago, that can be narrowed down or not.
    pub fn new(policy: &RetryPolicy, splittable: bool, age: Duration) -> Self {
        Self {
            sealed: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
            transient: policy.transient.build(),
            quota: policy.quota.build(),
            outage: policy.outage.build(),
            denied_since: None,
            confirm_denied: CONFIRM_DENIED,
            splittable,
        }
    }

    /// The step after `failure`, which happened at `now`.
    pub fn after(&mut self, failure: &Failure, now: Instant) -> Step {
        match failure {
            Failure::Cdn(CdnError::TooManyInProgress(_)) => {
                let delay = self.quota.next().unwrap_or_else(|| self.outage_delay());
                Step::Retry { delay, reserve_again: true }
            }
            Failure::Cdn(CdnError::Throttled(_) | CdnError::Unavailable(_)) => self.heal(),
            // An answer this worker does not know may pass too: confirmed like a denial.
            Failure::Cdn(e @ (CdnError::AccessDenied(_) | CdnError::Credentials(_) | CdnError::Other(_))) => {
                self.confirm(e, now)
            }
            Failure::Cdn(CdnError::InvalidArgument(_)) if self.splittable => Step::Refused(Refusal::Narrow),
            Failure::Cdn(CdnError::BatchAlreadyExists(_)) => Step::Refused(Refusal::Rebatch),
            Failure::Cdn(e) => dead_letter(e.to_string(), e.code()),
            Failure::Ledger(LedgerError::Invalid(reason)) => {
                dead_letter(format!("the ledger refused the batch's record: {reason}"), "LedgerValidation")
            }
            // Every other ledger failure (unreachable, throttled, a table or role being fixed) heals or is fixed.
            Failure::Ledger(_) => self.heal(),
        }
    }

    /// A failure that heals: the short policy first, then the outage pace for as long as it lasts.
    fn heal(&mut self) -> Step {
        let delay = self.transient.next().unwrap_or_else(|| self.outage_delay());
        Step::Retry { delay, reserve_again: false }
    }

    fn outage_delay(&mut self) -> Duration {
        self.outage.next().expect("the outage policy never gives up")
    }

    /// A denial may be IAM still propagating: retried at the outage pace until it has lasted `confirm_denied` here,
    /// or the batch is twice that old (workers that saw it denied before may have died before confirming).
    fn confirm(&mut self, error: &CdnError, now: Instant) -> Step {
        let since = *self.denied_since.get_or_insert(now);
        let lasted = now.saturating_duration_since(since);
        if lasted >= self.confirm_denied || now.saturating_duration_since(self.sealed) >= 2 * self.confirm_denied {
            let reason = format!("{error} (still denied after {})", humantime::format_duration(self.confirm_denied));
            return dead_letter(reason, error.code());
        }
        Step::Retry { delay: self.outage_delay(), reserve_again: false }
    }
}

fn dead_letter(reason: String, code: &'static str) -> Step {
    Step::Refused(Refusal::DeadLetter { reason, code })
}

impl Failure {
    /// Whether the attempt certainly created no invalidation: CloudFront refused it. A 5xx, a timeout or a lost
    /// answer may hide one it made, and a ledger failure comes after CloudFront accepted.
    pub fn created_nothing(&self) -> bool {
        matches!(self, Self::Cdn(e) if !matches!(e, CdnError::Unavailable(_) | CdnError::Other(_)))
    }
}

impl Transient for Failure {
    fn is_transient(&self) -> bool {
        match self {
            Self::Cdn(e) => matches!(e, CdnError::Throttled(_) | CdnError::Unavailable(_)),
            Self::Ledger(e) => e.is_transient(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempts(splittable: bool) -> Attempts {
        Attempts::new(&RetryPolicy::seeded(7), splittable, Duration::ZERO)
    }

    fn cdn(error: CdnError) -> Failure {
        Failure::Cdn(error)
    }

    fn delays(attempts: &mut Attempts, failure: &Failure, count: usize) -> Vec<Duration> {
        let now = Instant::now();
        (0..count)
            .map(|_| match attempts.after(failure, now) {
                Step::Retry { delay, .. } => delay,
                step => panic!("{failure} must be retried, not {step:?}"),
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_that_heals_is_retried_for_as_long_as_it_lasts_at_most_about_a_minute_apart() {
        for failure in [
            cdn(CdnError::Unavailable("503".into())),
            cdn(CdnError::Throttled("slow down".into())),
            Failure::Ledger(LedgerError::Unavailable("503".into())),
            Failure::Ledger(LedgerError::NotFound("t".into())),
        ] {
            let waits = delays(&mut attempts(false), &failure, 500);
            assert!(waits.iter().all(|d| *d <= Duration::from_secs(60)), "{failure}: {waits:?}");
            let hour: Duration = waits.iter().sum();
            assert!(hour > Duration::from_secs(3_600), "500 tries span an outage of hours, not seconds: {hour:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_distribution_waits_for_room_then_keeps_waiting() {
        let mut attempts = attempts(false);
        let full = cdn(CdnError::TooManyInProgress("3000".into()));
        for _ in 0..100 {
            let Step::Retry { reserve_again, .. } = attempts.after(&full, Instant::now()) else { panic!() };
            assert!(reserve_again);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_denial_is_confirmed_for_two_minutes_then_dead_lettered_with_its_reason() {
        let mut attempts = attempts(true);
        let denied = cdn(CdnError::AccessDenied("not authorized".into()));
        let start = Instant::now();
        assert!(matches!(attempts.after(&denied, start), Step::Retry { .. }));
        assert!(matches!(attempts.after(&denied, start + Duration::from_secs(119)), Step::Retry { .. }));
        let Step::Refused(Refusal::DeadLetter { reason, code }) = attempts.after(&denied, start + CONFIRM_DENIED)
        else {
            panic!("a denial that lasts is final");
        };
        assert_eq!(code, "AccessDenied");
        assert!(reason.contains("not authorized") && reason.contains("still denied after 2m"), "{reason}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_denied_before_by_workers_that_died_is_dead_lettered_without_waiting_again() {
        let denied = cdn(CdnError::AccessDenied("not authorized".into()));
        let mut resumed = Attempts::new(&RetryPolicy::seeded(7), false, 2 * CONFIRM_DENIED);
        assert!(matches!(resumed.after(&denied, Instant::now()), Step::Refused(Refusal::DeadLetter { .. })));
        let mut young = Attempts::new(&RetryPolicy::seeded(7), false, CONFIRM_DENIED);
        assert!(matches!(young.after(&denied, Instant::now()), Step::Retry { .. }), "a first denial is confirmed");
    }

    #[test]
    fn only_a_refusal_is_known_to_have_created_nothing() {
        assert!(cdn(CdnError::TooManyInProgress("full".into())).created_nothing());
        assert!(cdn(CdnError::Throttled("slow down".into())).created_nothing());
        assert!(!cdn(CdnError::Unavailable("answer lost".into())).created_nothing());
        assert!(!Failure::Ledger(LedgerError::Unavailable("503".into())).created_nothing());
    }

    #[tokio::test(start_paused = true)]
    async fn what_cannot_succeed_is_refused_at_once() {
        let now = Instant::now();
        let refused = |splittable, error| attempts(splittable).after(&cdn(error), now);
        assert_eq!(refused(true, CdnError::InvalidArgument("bad".into())), Step::Refused(Refusal::Narrow));
        assert!(matches!(
            refused(false, CdnError::InvalidArgument("bad".into())),
            Step::Refused(Refusal::DeadLetter { code: "InvalidArgument", .. })
        ));
        assert!(matches!(
            refused(true, CdnError::NoSuchDistribution("E1".into())),
            Step::Refused(Refusal::DeadLetter { code: "NoSuchDistribution", .. })
        ));
        assert!(matches!(
            refused(true, CdnError::BatchTooLarge("big".into())),
            Step::Refused(Refusal::DeadLetter { code: "BatchTooLarge", .. })
        ));
        assert_eq!(refused(true, CdnError::BatchAlreadyExists("ref".into())), Step::Refused(Refusal::Rebatch));
        let too_large = Failure::Ledger(LedgerError::Invalid("Item size has exceeded the maximum".into()));
        assert!(matches!(
            attempts(false).after(&too_large, now),
            Step::Refused(Refusal::DeadLetter { code: "LedgerValidation", .. })
        ));
    }
}
