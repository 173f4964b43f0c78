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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use metrics::{counter, histogram};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::WallClock;
use crate::limit::Budget;
use crate::model::DistributionId;
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
                        tracked.push(entry);
                    }
                    // A failure or dead letter to announce: at once, else by adoption from the ledger later.
                    Some(announcement) => self.announce(&announcement).await,
                    None => open = false,
                },
                wanted = self.budget.wanted() => hurry(&mut tracked, &wanted),
                () = tokio::time::sleep_until(next_adoption), if open => {
                    next_adoption = Instant::now() + self.settings.adopt_every;
                    self.adopt(&mut tracked, &mut adoption_cursor).await;
                }
                () = sleep_until(due) => {
                    let distribution = next_look(&tracked).expect("something is due").distribution_id.clone();
                    let (mine, others) = std::mem::take(&mut tracked)
                        .into_iter()
                        .partition(|t| t.submitted.distribution_id == distribution);
                    tracked = others;
                    tracked.extend(self.look(&distribution, mine).await);
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
        while let Some(distribution) = mine.first().map(|t| t.submitted.distribution_id.clone()) {
            let (mut these, rest) = mine.into_iter().partition(|t| t.submitted.distribution_id == distribution);
            mine = rest;
            let now = Instant::now();
            these.iter_mut().for_each(|t| t.next_look = now);
            self.look(&distribution, these).await;
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

    /// Adopts accepted batches whose own worker stopped tracking them, and announces what else the outbox owes,
    /// reading one page of the ledger's in-progress list per round: the next round goes on where this one stopped,
    /// so every item is reached however many there are. A batch whose reservation is still live is left alone:
    /// its worker is alive and renews it while it tracks the invalidation.
    async fn adopt(&self, tracked: &mut Vec<Tracked>, cursor: &mut Option<InProgressCursor>) {
        let Some(before) = self.settings.clock.now().checked_sub(self.settings.adopt_after) else { return };
        let page = match self.ledger.in_progress(before, cursor.as_ref(), ADOPT_PAGE).await {
            Ok(page) => page,
            Err(e) => {
                if let Some(suppressed) = log_allowed("adopt_failed") {
                    warn!(error = %e, suppressed, "could not read the accepted batches to adopt; will try again");
                }
                return;
            }
        };
        *cursor = page.next;
        let mut budgets: HashMap<DistributionId, Option<BudgetState>> = HashMap::new();
        for owed in page.owed {
            let submitted = match owed {
                Owed::Batch(submitted) => submitted,
                Owed::Failure { .. } | Owed::DeadLetter { .. } => {
                    self.announce(&owed).await;
                    continue;
                }
            };
            let known = tracked.iter().any(|t| t.submitted.caller_reference == submitted.caller_reference);
            if known || submitted.submitted_at > before {
                continue;
            }
            let distribution = &submitted.distribution_id;
            if !budgets.contains_key(distribution) {
                budgets.insert(distribution.clone(), self.ledger.read_budget(distribution).await.ok());
            }
            let now = self.settings.clock.now();
            let owner_tracks = |budget: &BudgetState| {
                budget.reservations.iter().any(|r| r.id == submitted.caller_reference && r.until > now)
            };
            // Unreadable budget: look again next round rather than take a live worker's invalidation.
            if budgets[distribution].as_ref().is_none_or(owner_tracks) {
                continue;
            }
            info!(invalidation_id = %submitted.invalidation_id, caller_reference = %submitted.caller_reference, status = submitted.status.as_str(), "adopted a batch nobody tracks");
            counter!("cfi_completion_tracking_adopted_total").increment(1);
            let mut entry = self.entry(submitted, false, Duration::ZERO);
            if !self.publish_owed(&mut entry.submitted).await {
                tracked.push(entry);
            }
        }
    }

    /// Takes an invalidation out of tracking for good, recording why, so that no worker reads it again.
    async fn give_up(&self, owed: &Owed, reason: &str) {
        counter!("cfi_completion_tracking_abandoned_total").increment(1);
        warn!(about = %owed.subject(), reason, "gave up tracking; the ledger records why (audit --failures)");
        if let Err(e) = self.ledger.give_up_tracking(owed, reason).await {
            warn!(about = %owed.subject(), error = %e, "could not record that tracking was given up; another worker will try");
        }
    }

    /// One ListInvalidations answers for every tracked invalidation of `distribution`; returns those to track on.
    async fn look(&self, distribution: &DistributionId, mine: Vec<Tracked>) -> Vec<Tracked> {
        let now = Instant::now();
        let since = listed_since(&mine, self.settings.clock.now());
        let listed = match self.cdn.list_recent(distribution, since).await {
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
                Seen::Gone(reason) => self.give_up(&Owed::Batch(entry.submitted), &reason).await,
                _ if due => {
                    if entry.own && now >= entry.renew_after {
                        let (id, invalidation_id) =
                            (&entry.submitted.caller_reference, &entry.submitted.invalidation_id);
                        self.budget.renew(distribution, id, invalidation_id).await;
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
        kept.extend(self.finish(distribution, finished, now).await);
        for entry in &mut kept {
            entry.last_look = now;
            entry.hurried = entry.submitted.awaited;
        }
        kept
    }

    /// Records the completions one look found, and returns their room, in one ledger write: the room comes back
    /// one round trip after the look, however many completed. Returns those to track on: a completion to record
    /// again at the next look, or events still to publish.
    async fn finish(
        &self,
        distribution: &DistributionId,
        finished: Vec<(Tracked, Invalidation)>,
        now: Instant,
    ) -> Vec<Tracked> {
        if finished.is_empty() {
            return Vec::new();
        }
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
        let answers = self.budget.completed(distribution, &completions).await;
        let mut kept = Vec::new();
        for (((mut entry, _), completion), answer) in finished.into_iter().zip(&completions).zip(answers) {
            if let Err(e) = &answer
                && !e.is_transient()
            {
                let reason = format!("the ledger refuses to record its completion: {e}");
                self.give_up(&Owed::Batch(entry.submitted), &reason).await;
                continue;
            }
            if recorded(&entry.submitted, completion, answer) {
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
        match self.cdn.get_invalidation(&submitted.distribution_id, &submitted.invalidation_id).await {
            Ok(detail) => Seen::Status(detail.invalidation),
            Err(e) if e.retry_after() == RetryAfter::Never => Seen::Gone(format!(
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

impl<C: Cdn, L: Outbox + DeadLetters + JointWrites> Tracker<C, L> {
    /// Publishes the events the batch is owed and not yet recorded as published, recording each once published
    /// (the completed event settles the record); says whether nothing is left to do for a completed batch.
    /// A failed publish is tried again at the next look, so an event may repeat, never go missing.
    async fn publish_owed(&self, submitted: &mut Submitted) -> bool {
        let Some(events) = &self.events else { return submitted.status == BatchStatus::Completed };
        let owed: Vec<EventKind> =
            EventKind::owed_by(submitted.status).iter().copied().filter(|k| !submitted.published.contains(k)).collect();
        if owed.is_empty() {
            return submitted.status == BatchStatus::Completed;
        }
        let record = match self.ledger.batch(&submitted.caller_reference).await {
            Ok(Some(record)) => record,
            // Expired meanwhile: nothing to tell anyone any more.
            Ok(None) => return true,
            Err(e) => return self.not_published(&Owed::Batch(submitted.clone()), submitted.submitted_at, &e).await,
        };
        for kind in owed {
            if let Err(e) = events.0.publish(&Event::of(kind, &record)).await {
                return self.not_published(&Owed::Batch(submitted.clone()), submitted.submitted_at, &e).await;
            }
            counter!("cfi_events_published_total", "kind" => kind.as_str()).increment(1);
            let settled = kind == EventKind::Completed;
            if let Err(e) = self.ledger.mark_published(&submitted.caller_reference, kind, settled).await {
                return self.not_published(&Owed::Batch(submitted.clone()), submitted.submitted_at, &e).await;
            }
            submitted.published.push(kind);
        }
        submitted.status == BatchStatus::Completed
    }

    /// An event not published is tried again later, and given up once it has been owed for `EVENTS_GIVE_UP`, so
    /// that the outbox never keeps an event no bus will take: says whether it was given up.
    async fn not_published(&self, owed: &Owed, owed_since: SystemTime, error: &(dyn std::fmt::Display + Sync)) -> bool {
        counter!("cfi_events_failed_total").increment(1);
        let owed_for = self.settings.clock.now().duration_since(owed_since).unwrap_or_default();
        if owed_for < EVENTS_GIVE_UP {
            if let Some(suppressed) = log_allowed("event_not_published") {
                warn!(about = %owed.subject(), %error, suppressed, "could not publish an event; will try again");
            }
            return false;
        }
        let reason = format!("its events could not be published for {}: {error}", humantime::format_duration(owed_for));
        self.give_up(owed, &reason).await;
        true
    }

    /// Publishes a failed batch's or a dead letter's event and records it published; what fails stays in the
    /// ledger's outbox for the next adoption round.
    async fn announce(&self, owed: &Owed) {
        let Some(events) = &self.events else { return };
        let (event, created_at) = match owed {
            Owed::Batch(_) => return,
            Owed::Failure { caller_reference, created_at } => (
                self.ledger.batch(caller_reference).await.map(|r| r.map(|r| Event::of(EventKind::Failed, &r))),
                created_at,
            ),
            Owed::DeadLetter { message_id, created_at } => {
                (self.ledger.dead_letter(message_id).await.map(|r| r.map(|r| Event::of_dead_letter(&r))), created_at)
            }
        };
        let event = match event {
            Ok(Some(event)) => event,
            // Expired meanwhile: nothing to tell anyone any more.
            Ok(None) => return,
            Err(e) => {
                self.not_published(owed, *created_at, &e).await;
                return;
            }
        };
        if let Err(e) = events.0.publish(&event).await {
            self.not_published(owed, *created_at, &e).await;
            return;
        }
        let (kind, recorded) = match owed {
            Owed::Failure { caller_reference, .. } => {
                (EventKind::Failed, self.ledger.mark_published(caller_reference, EventKind::Failed, true).await)
            }
            Owed::DeadLetter { message_id, .. } => {
                (EventKind::DeadLettered, self.ledger.mark_dead_letter_published(message_id).await)
            }
            Owed::Batch(_) => return,
        };
        counter!("cfi_events_published_total", "kind" => kind.as_str()).increment(1);
        if let Err(e) = recorded {
            warn!(error = %e, "published an event but could not record it; it will be published again");
        }
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
    /// CloudFront will never say: the invalidation or access to it is gone, for this reason.
    Gone(String),
}

/// How far back a look lists: to the oldest invalidation it must answer for, so that it finds them all without a
/// GetInvalidation each, however many there are and in whatever order CloudFront completes them. A minute more
/// for clocks that disagree with CloudFront's.
fn listed_since(mine: &[Tracked], now: SystemTime) -> SystemTime {
    let oldest = mine.iter().filter(|t| t.submitted.status != BatchStatus::Completed).map(|t| t.submitted.submitted_at);
    let oldest = oldest.min().unwrap_or(now);
    oldest.checked_sub(CLOCK_MARGIN).unwrap_or(oldest)
}

const CLOCK_MARGIN: Duration = Duration::from_secs(60);

/// Brings forward the looks at distributions whose batches wait for room, to `HURRIED_GAP` after the last.
fn hurry(tracked: &mut [Tracked], wanted: &HashSet<DistributionId>) {
    for entry in tracked.iter_mut().filter(|t| wanted.contains(&t.submitted.distribution_id)) {
        entry.next_look = entry.next_look.min(entry.last_look + HURRIED_GAP);
        entry.hurried = true;
    }
}

/// The submitted invalidation to look at next: of those due, a hurried one first, as batches wait for its room
/// while the other looks only record completions; else the one due first. When more looks are due than the
/// status rate allows, the regular ones wait.
fn next_look(tracked: &[Tracked]) -> Option<&Submitted> {
    let now = Instant::now();
    let due = tracked.iter().filter(|t| t.next_look <= now).min_by_key(|t| (!t.hurried, t.next_look));
    due.or_else(|| tracked.iter().min_by_key(|t| t.next_look)).map(|t| &t.submitted)
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        // Through the timer, a look already due would wait for its next tick (a millisecond): a backlog of looks
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
    use crate::model::CallerReference;
    use crate::ports::budget::Budgets;
    use crate::ports::ledger::{BatchRecord, Batches};

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
            Tracker { cdn: Arc::clone(&self.cdn), ledger: Arc::clone(&self.ledger), budget, settings, events: None }
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
        let invalidation =
            setup.cdn.create_invalidation(&distribution, &reference, &["/newer".to_owned()]).await.unwrap();
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
        hurry(&mut tracked, &wanted);

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
}
