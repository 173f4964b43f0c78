//! Completion tracking: ask CloudFront now and then whether accepted invalidations have completed, and record when
//! they did (status `completed`, `completed_at`, `time_to_complete_ms`), exactly once.
//!
//! One ListInvalidations per distribution answers for all of its tracked invalidations, however many; a
//! GetInvalidation is asked only for one the list no longer shows. A distribution is looked at `first_look` after
//! an acceptance (CloudFront reports most completions within 25 s), then at doubling gaps up to `poll`; while
//! batches wait for room in it, every `HURRIED_GAP` and ahead of regular looks, so that room returns within seconds
//! of a completion however many batches are in progress. A batch a producer waits on (`send --wait` marks its
//! messages `awaited`) is looked at every `HURRIED_GAP` from its acceptance, so the wait ends within about a second
//! of the completion. The completions one look finds are recorded, and their
//! room returned, in one ledger write. Calls go out one at a time, at least `call_gap` apart (CloudFront throttles
//! its API per account).
//!
//! Tracking holds no messages (they are deleted on acceptance). The worker tracks what it submitted; every
//! `adopt_every` it also reads the ledger's accepted batches and adopts those accepted more than `adopt_after`
//! ago that it does not track: a stopped worker's, which would otherwise stay `accepted`. Two workers may track
//! one invalidation; the ledger records its completion once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use metrics::{counter, histogram};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::WallClock;
use crate::edge::stage::{CompletedBatch, EdgeHandoff};
use crate::limit::{Budget, BudgetKey};
use crate::model::{DistributionId, Target};
use crate::ports::budget::{BudgetState, JointWrites, Recorded};
use crate::ports::cdn::{Cdn, CdnError, Invalidation, RetryAfter};
use crate::ports::events::{Event, EventKind, Events};
use crate::ports::ledger::{BatchStatus, Completion, DeadLetters, InProgressCursor, Outbox, Owed};
use crate::retry::Transient;
use crate::telemetry::log_allowed;

pub use crate::ports::ledger::Submitted;

/// Status calls per second per worker by default: CloudFront throttles its API per account.
pub const DEFAULT_STATUS_RATE: f64 = 4.0;

/// How long an event may go unpublished before it is given up (`Ledger::give_up_tracking`).
const EVENTS_GIVE_UP: Duration = Duration::from_secs(24 * 3_600);

/// Most items read from the ledger's in-progress list per adoption round (every `adopt_every`): the next round
/// goes on after them.
const ADOPT_PAGE: usize = 100;

#[derive(Debug, Clone, Copy)]
pub struct TrackSettings {
    /// The first look at a distribution after one of its invalidations is accepted.
    pub first_look: Duration,
    /// The longest gap between two looks at a distribution.
    pub poll: Duration,
    /// How often the ledger is read for accepted batches nobody tracks.
    pub adopt_every: Duration,
    /// An accepted batch this old that this worker does not track is adopted.
    pub adopt_after: Duration,
    /// At least this long between two CloudFront calls.
    pub call_gap: Duration,
    pub clock: WallClock,
}

#[derive(Debug)]
struct Tracked {
    submitted: Submitted,
    /// Submitted by this worker, which holds its budget reservation and renews it while it is in progress.
    own: bool,
    next_look: Instant,
    /// The gap before the next look after this one.
    gap: Duration,
    /// When its distribution was last looked at (or when tracking began).
    last_look: Instant,
    /// An own invalidation still in progress then has its reservation renewed at the next look: only one that
    /// takes long needs it, as acceptance moved the reservation's end a lease ahead.
    renew_after: Instant,
    /// Batches wait for room in its distribution: its look goes before regular ones due at the same time.
    hurried: bool,
}

/// The shortest gap between two looks at a distribution whose batches wait for room: looks come that often
/// instead of at the regular gaps, so that room returns within about this long of a completion.
const HURRIED_GAP: Duration = Duration::from_secs(1);

pub struct Tracker<C, L> {
    pub cdn: Arc<C>,
    pub ledger: Arc<L>,
    /// Each look renews an own invalidation's reservation; its completion releases it.
    pub budget: Arc<Budget<C, L>>,
    pub settings: TrackSettings,
    /// Where accepted and completed events go. The ledger is the outbox: a batch stays among the tracked until its
    /// events are recorded as published, so a worker that stops before publishing leaves them to another.
    pub events: Option<Events>,
    /// Where completed batches go to be checked at the edge (`--verify-edge`, `--warm`): handed over without
    /// waiting, by the worker that recorded the completion.
    pub edge: Option<EdgeHandoff>,
}

impl<C: Cdn, L: Outbox + DeadLetters + JointWrites> Tracker<C, L> {
    /// Tracks what arrives on `accepted`, and adopts what nobody tracks, until `stop` is cancelled, or until the
    /// senders are gone and nothing is left to track.
    pub async fn run(self, mut accepted: mpsc::Receiver<Owed>, stop: CancellationToken) {
        // In arrival order, so that runs with the same inputs look at distributions in the same order.
        let mut tracked: Vec<Tracked> = Vec::new();
        let mut open = true;
        let mut next_call = Instant::now();
        let mut next_adoption = Instant::now() + self.settings.adopt_every;
        let mut adoption_cursor = None;
        while open || !tracked.is_empty() {
            let due = tracked.iter().map(|t| t.next_look).min().map(|at| at.max(next_call));
            tokio::select! {
                biased;
                () = stop.cancelled() => return self.last_look(tracked).await,
                owed = accepted.recv(), if open => match owed {
                    Some(Owed::Batch(submitted)) => {
                        let mut entry = self.entry(submitted, true, self.settings.first_look);
                        self.publish_owed(&mut entry.submitted).await;
                        // Tracked once: a batch adopted here may come back as this worker's own when a
                        // redelivery resumes it, and one look must not complete it twice.
                        let reference = &entry.submitted.caller_reference;
                        tracked.retain(|t| &t.submitted.caller_reference != reference);
                        tracked.push(entry);
                    }
                    // A failure or dead letter to announce: at once, else by adoption from the ledger later.
                    Some(announcement) => self.announce(&announcement).await,
                    None => open = false,
                },
                wanted = self.budget.wanted() => {
                    hurry(&mut tracked, |submitted| wanted.contains(&self.budget.key(&submitted.target())));
                }
                () = tokio::time::sleep_until(next_adoption), if open => {
                    next_adoption = Instant::now() + self.settings.adopt_every;
                    self.adopt(&mut tracked, &mut adoption_cursor).await;
                }
                () = sleep_until(due) => {
                    let target = next_look(&tracked).expect("something is due").target();
                    let (mine, others) =
                        std::mem::take(&mut tracked).into_iter().partition(|t| t.submitted.target() == target);
                    tracked = others;
                    tracked.extend(self.look(&target, mine).await);
                    next_call = Instant::now() + self.settings.call_gap;
                }
            }
        }
    }

    /// On shutdown: one look at each distribution this worker submitted to, so that what CloudFront completed at
    /// once is recorded now, not a minute later by whichever worker adopts it (and `send --wait` callers with it).
    async fn last_look(&self, tracked: Vec<Tracked>) {
        let (mut mine, _): (Vec<Tracked>, _) =
            tracked.into_iter().partition(|t| t.own && t.submitted.status != BatchStatus::Completed);
        while let Some(target) = mine.first().map(|t| t.submitted.target()) {
            let (mut these, rest) = mine.into_iter().partition(|t| t.submitted.target() == target);
            mine = rest;
            let now = Instant::now();
            these.iter_mut().for_each(|t| t.next_look = now);
            self.look(&target, these).await;
            tokio::time::sleep(self.settings.call_gap).await;
        }
    }

    fn entry(&self, submitted: Submitted, own: bool, first_look: Duration) -> Tracked {
        let (gap, first_look) = if submitted.awaited {
            (HURRIED_GAP, first_look.min(HURRIED_GAP))
        } else {
            ((self.settings.first_look * 2).min(self.settings.poll), first_look)
        };
        let now = Instant::now();
        let renew_after = now + self.renewal_gap();
        let hurried = submitted.awaited;
        Tracked { submitted, own, next_look: now + first_look, gap, last_look: now, renew_after, hurried }
    }

    /// How long a renewed reservation goes without another renewal: a quarter of its lease leaves room for looks
    /// that come late.
    fn renewal_gap(&self) -> Duration {
        self.budget.settings().lease / 4
    }

    /// One ListInvalidations answers for every tracked invalidation of `target`; returns those to track on. Its
    /// invalidations hold room in the budget `Budget::key` names for it.
    async fn look(&self, target: &Target, mine: Vec<Tracked>) -> Vec<Tracked> {
        let (now, distribution, key) = (Instant::now(), &target.distribution, self.budget.key(target));
        let since = listed_since(&mine, self.settings.clock.now());
        let listed = match self.cdn.list_recent(target, since).await {
            Ok(listed) => listed,
            Err(e) => return self.look_failed(distribution, &e, mine, now).await,
        };
        let mut kept = Vec::with_capacity(mine.len());
        let mut finished = Vec::new();
        let mut asked = false;
        for mut entry in mine {
            let due = entry.next_look <= now;
            if entry.submitted.status == BatchStatus::Completed {
                // Recorded completed; only its events are left to publish.
                if due && !self.publish_owed(&mut entry.submitted).await {
                    entry.next_look = now + entry.gap;
                    kept.push(entry);
                } else if !due {
                    kept.push(entry);
                }
                continue;
            }
            let seen = match listed.iter().find(|i| i.id == entry.submitted.invalidation_id) {
                Some(invalidation) => Seen::Status(invalidation.clone()),
                // Older than the pages read, so most likely completed: ask for it alone, when it is due, at the
                // pace of the other calls.
                None if due => {
                    if std::mem::replace(&mut asked, true) {
                        tokio::time::sleep(self.settings.call_gap).await;
                    }
                    self.get(&entry.submitted).await
                }
                None => Seen::Unknown,
            };
            match seen {
                Seen::Status(invalidation) if invalidation.is_completed() => finished.push((entry, invalidation)),
                Seen::NeverAnswered(reason) => self.give_up(&Owed::Batch(entry.submitted), &reason).await,
                _ if due => {
                    if entry.own && now >= entry.renew_after {
                        let (id, invalidation_id) =
                            (&entry.submitted.caller_reference, &entry.submitted.invalidation_id);
                        self.budget.renew(&key, id, invalidation_id).await;
                        entry.renew_after = now + self.renewal_gap();
                    }
                    entry.next_look = now + entry.gap;
                    if !entry.submitted.awaited {
                        entry.gap = (entry.gap * 2).min(self.settings.poll);
                    }
                    kept.push(entry);
                }
                Seen::Status(_) => {
                    // The list just answered for it too: no other look at the distribution for a gap.
                    entry.next_look = entry.next_look.max(now + entry.gap.min(self.settings.first_look));
                    kept.push(entry);
                }
                _ => kept.push(entry),
            }
        }
        kept.extend(self.finish(&key, finished, now).await);
        // Batches still wait for room: the next look comes a `HURRIED_GAP` after this one, not at the regular gap.
        let waiting = !self.budget.backlog(&key).is_empty();
        for entry in &mut kept {
            (entry.last_look, entry.hurried) = (now, entry.submitted.awaited || waiting);
            entry.next_look = if waiting { entry.next_look.min(now + HURRIED_GAP) } else { entry.next_look };
        }
        kept
    }

    /// Records the completions one look found, and returns their room, in one ledger write: the room comes back
    /// one round trip after the look, however many completed. Returns those to track on: a completion to record
    /// again at the next look, or events still to publish.
    async fn finish(&self, key: &BudgetKey, finished: Vec<(Tracked, Invalidation)>, now: Instant) -> Vec<Tracked> {
        if finished.is_empty() {
            return Vec::new();
        }
        let distribution = key.distribution();
        let completed_at = self.settings.clock.now();
        let completions: Vec<Completion> = finished
            .iter()
            .map(|(entry, invalidation)| Completion {
                caller_reference: entry.submitted.caller_reference.clone(),
                cloudfront_status: invalidation.status.clone(),
                completed_at,
                time_to_complete: completed_at.duration_since(entry.submitted.submitted_at).unwrap_or_default(),
                keep_tracking: self.events.is_some(),
            })
            .collect();
        let answers = self.budget.completed(key, &completions).await;
        let mut kept = Vec::new();
        for (((mut entry, _), completion), answer) in finished.into_iter().zip(&completions).zip(answers) {
            if let Err(e) = &answer
                && !e.is_transient()
            {
                let reason = format!("the ledger refuses to record its completion: {e}");
                self.give_up(&Owed::Batch(entry.submitted), &reason).await;
                continue;
            }
            let first = matches!(answer, Ok(true));
            if recorded(&entry.submitted, completion, answer) {
                if first && let Some(edge) = &self.edge {
                    edge.hand(CompletedBatch {
                        caller_reference: completion.caller_reference.clone(),
                        distribution_id: distribution.clone(),
                        completed_at: completion.completed_at,
                    });
                }
                entry.submitted.status = BatchStatus::Completed;
                if self.publish_owed(&mut entry.submitted).await {
                    continue;
                }
            }
            kept.push(Tracked { next_look: now + entry.gap, ..entry });
        }
        kept
    }

    /// GetInvalidation for one the list does not show.
    async fn get(&self, submitted: &Submitted) -> Seen {
        match self.cdn.get_invalidation(submitted.target(), &submitted.invalidation_id).await {
            Ok(detail) => Seen::Status(detail.invalidation),
            Err(e) if e.retry_after() == RetryAfter::Never => Seen::NeverAnswered(format!(
                "CloudFront will not tell invalidation {}'s status ({e}): the role needs cloudfront:GetInvalidation",
                submitted.invalidation_id
            )),
            Err(e) => {
                if let Some(suppressed) = log_allowed("completion_check_failed") {
                    warn!(invalidation_id = %submitted.invalidation_id, error = %e, suppressed, "could not check the invalidation's status; will try again");
                }
                Seen::Unknown
            }
        }
    }

    /// A distribution CloudFront will not list (deleted, or the role lacks cloudfront:ListInvalidations) is no
    /// longer tracked; after any other failure the due invalidations are looked at again later.
    async fn look_failed(
        &self,
        distribution: &DistributionId,
        error: &CdnError,
        mut mine: Vec<Tracked>,
        now: Instant,
    ) -> Vec<Tracked> {
        if error.retry_after() == RetryAfter::Never {
            let reason = format!(
                "CloudFront will not list distribution {distribution}'s invalidations ({error}): the role needs cloudfront:ListInvalidations and GetInvalidation"
            );
            for entry in mine {
                self.give_up(&Owed::Batch(entry.submitted), &reason).await;
            }
            return Vec::new();
        }
        if let Some(suppressed) = log_allowed("completion_check_failed") {
            warn!(%distribution, %error, suppressed, "could not list the distribution's invalidations; will try again");
        }
        for entry in mine.iter_mut().filter(|t| t.next_look <= now) {
            entry.next_look = now + entry.gap;
        }
        mine
    }
}

/// Logs a completion's answer from the ledger; false if it should be recorded again at the next look (a failure
/// that cannot heal is given up before).
fn recorded(submitted: &Submitted, completion: &Completion, answer: Recorded) -> bool {
    match answer {
        Ok(true) => {
            info!(invalidation_id = %submitted.invalidation_id, caller_reference = %submitted.caller_reference, time_to_complete = ?completion.time_to_complete, "invalidation completed");
            histogram!("cfi_time_to_complete_seconds").record(completion.time_to_complete.as_secs_f64());
            true
        }
        // Another worker tracking it too recorded it first.
        Ok(false) => true,
        Err(e) => {
            if let Some(suppressed) = log_allowed("completion_record_failed") {
                warn!(caller_reference = %submitted.caller_reference, error = %e, suppressed, "could not record the completion; will try again");
            }
            false
        }
    }
}

/// What a look found out about one tracked invalidation.
enum Seen {
    Status(Invalidation),
    /// CloudFront cannot say now.
    Unknown,
    /// CloudFront will never say, for this reason: access denied, or no such invalidation.
    NeverAnswered(String),
}

mod adopt;
mod announce;
mod due;
use due::{hurry, listed_since, next_look, sleep_until};
#[cfg(test)]
mod tests;
