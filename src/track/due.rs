//! When the tracker looks next, and how far back: which distribution is due, brought forward while batches wait
//! for its room. No I/O.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{HURRIED_GAP, Submitted, Tracked};
use crate::ports::ledger::BatchStatus;

/// How far back a look lists: to the oldest invalidation it must answer for, so that it finds them all without a
/// GetInvalidation each, however many there are and in whatever order CloudFront completes them. A minute more
/// for clocks that disagree with CloudFront's.
pub(super) fn listed_since(mine: &[Tracked], now: SystemTime) -> SystemTime {
    let oldest = mine.iter().filter(|t| t.submitted.status != BatchStatus::Completed).map(|t| t.submitted.submitted_at);
    let oldest = oldest.min().unwrap_or(now);
    oldest.checked_sub(CLOCK_MARGIN).unwrap_or(oldest)
}

const CLOCK_MARGIN: Duration = Duration::from_secs(60);

/// Brings forward the looks at invalidations holding room in budgets batches wait for (`waited_for`), to
/// `HURRIED_GAP` after the last.
pub(super) fn hurry(tracked: &mut [Tracked], waited_for: impl Fn(&Submitted) -> bool) {
    for entry in tracked.iter_mut().filter(|t| waited_for(&t.submitted)) {
        entry.next_look = entry.next_look.min(entry.last_look + HURRIED_GAP);
        entry.hurried = true;
    }
}

/// The submitted invalidation to look at next: of those due, a hurried one first, as batches wait for its room
/// while the other looks only record completions; else the one due first. When more looks are due than the
/// status rate allows, the regular ones wait.
pub(super) fn next_look(tracked: &[Tracked]) -> Option<&Submitted> {
    let now = Instant::now();
    let due = tracked.iter().filter(|t| t.next_look <= now).min_by_key(|t| (!t.hurried, t.next_look));
    due.or_else(|| tracked.iter().min_by_key(|t| t.next_look)).map(|t| &t.submitted)
}

pub(super) async fn sleep_until(due: Option<Instant>) {
    match due {
        // Through the timer, a look already due would wait for its next tick (a millisecond): a backlog of looks
        // would be paced by the timer instead of `call_gap`, and room in the budget would return that much later.
        Some(at) if at <= Instant::now() => tokio::task::coop::consume_budget().await,
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
