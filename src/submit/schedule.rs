//! Which batches may be in submission at once: a bounded number in all, and only a few per distribution, so a
//! distribution that waits for budget cannot take the places other distributions need. No I/O.
//!
//! A batch that arrives while an earlier one of its distribution still waits for a place joins it when the two fit
//! in one invalidation: when submission is the bottleneck (the rate, the quotas), the window grows by itself, and
//! a backlog goes out in fewer, fuller invalidations instead of one call per window.

use std::collections::{HashMap, VecDeque};

use metrics::counter;

use crate::batch::Batch;
use crate::batch::window::{BatchLimits, SealReason, SealedBatch};
use crate::model::DistributionId;
use crate::ports::budget::Allowance;

/// Batches received but not yet started, in arrival order, and the count started per distribution.
#[derive(Debug)]
pub struct Schedule {
    total_cap: usize,
    per_distribution_cap: usize,
    /// What one invalidation may carry: the most a merged batch may hold.
    limits: BatchLimits,
    started: HashMap<DistributionId, usize>,
    total_started: usize,
    queued: VecDeque<Batch>,
}

impl Schedule {
    pub fn new(total_cap: usize, per_distribution_cap: usize, limits: BatchLimits) -> Self {
        Self {
            total_cap: total_cap.max(1),
            per_distribution_cap: per_distribution_cap.max(1),
            limits,
            started: HashMap::new(),
            total_started: 0,
            queued: VecDeque::new(),
        }
    }

    /// Queues the batch, or merges it into the newest queued batch of its distribution if the two fit in one
    /// invalidation and in `room`, what the distribution had left at its last reservation: a merged batch that
    /// did not fit would only be split again.
    pub fn push(&mut self, batch: Batch, room: Allowance) {
        let Some(queued) = self.queued.iter_mut().rev().find(|q| joinable(q, &batch)) else {
            self.queued.push_back(batch);
            return;
        };
        if queued.content.paths.len() >= self.limits.max_paths {
            self.queued.push_back(batch);
            return;
        }
        let members = queued.content.members.iter().chain(&batch.content.members).cloned().collect();
        let merged = SealedBatch::from_members(batch.content.target(), members, queued.content.reason);
        let within_limits =
            merged.paths.len() <= self.limits.max_paths && merged.wildcard_count <= self.limits.max_wildcards;
        if !within_limits || !Allowance::of(&merged.paths).fits_in(room) {
            self.queued.push_back(batch);
            return;
        }
        counter!("cfi_batches_merged_while_queued_total").increment(1);
        // The earlier batch's identity (nothing was recorded under either reference yet), sealed when the later
        // one was: a redelivered message looks for its batch among those sealed since it was sent.
        queued.content = merged;
        queued.sealed_at = queued.sealed_at.max(batch.sealed_at);
    }

    /// Puts back the rest of a batch that went in part, first in line, and packs its target's queued batches again
    /// in order, each filled up to the limits with the first messages of the next: what waits goes out in full
    /// invalidations, instead of each rest (or what a rest took from) taking a call of its own for a sliver.
    pub fn put_back(&mut self, mut rest: Batch) {
        rest.may_be_covered = true;
        self.queued.push_front(rest);
        let mut into = 0;
        while let Some(from) = (into + 1..self.queued.len()).find(|&at| joinable(&self.queued[into], &self.queued[at]))
        {
            let queued = self.queued.make_contiguous();
            let [filling, donor] = queued.get_disjoint_mut([into, from]).expect("two places in the queue");
            if self.limits.fill(&mut filling.content, &mut donor.content) > 0 {
                counter!("cfi_batches_merged_while_queued_total").increment(1);
                // A redelivered message looks for its batch among those sealed since it was sent.
                filling.sealed_at = filling.sealed_at.max(donor.sealed_at);
                filling.may_be_covered |= donor.may_be_covered;
            }
            if donor.content.members.is_empty() {
                self.queued.remove(from);
            } else {
                into = from;
            }
        }
    }

    /// `next_where` among every distribution's batches.
    #[cfg(test)]
    pub fn next(&mut self) -> Option<Batch> {
        self.next_where(|_| true)
    }

    /// The oldest queued urgent batch, among those of distributions `pick` answers true for (one account's), whose
    /// distribution is under its cap, else the oldest such batch, if the total allows one more; it counts as
    /// started from now on.
    pub fn next_where(&mut self, pick: impl Fn(&DistributionId) -> bool) -> Option<Batch> {
        let at = self.next_position(pick)?;
        let batch = self.queued.remove(at)?;
        *self.started.entry(batch.content.distribution_id.clone()).or_default() += 1;
        self.total_started += 1;
        Some(batch)
    }

    /// The batch `next_where(pick)` would start, if any.
    pub fn peek_where(&self, pick: impl Fn(&DistributionId) -> bool) -> Option<&Batch> {
        self.queued.get(self.next_position(pick)?)
    }

    fn next_position(&self, pick: impl Fn(&DistributionId) -> bool) -> Option<usize> {
        if self.total_started >= self.total_cap {
            return None;
        }
        let cap = self.per_distribution_cap;
        let startable = |b: &Batch| {
            pick(&b.content.distribution_id) && self.started.get(&b.content.distribution_id).copied().unwrap_or(0) < cap
        };
        let urgent = self.queued.iter().position(|b| b.content.reason == SealReason::Urgent && startable(b));
        urgent.or_else(|| self.queued.iter().position(startable))
    }

    /// A batch of `distribution` is done with.
    pub fn finished(&mut self, distribution: &DistributionId) {
        if let Some(count) = self.started.get_mut(distribution) {
            *count -= 1;
            if *count == 0 {
                self.started.remove(distribution);
            }
            self.total_started -= 1;
        }
    }

    pub fn is_idle(&self) -> bool {
        self.total_started == 0 && self.queued.is_empty()
    }

    /// Batches started and not finished, and queued.
    pub fn len(&self) -> usize {
        self.total_started + self.queued.len()
    }
}

/// Whether `batch` may join `queued` in one invalidation: both of one target, both still free to change, and both
/// urgent or neither.
fn joinable(queued: &Batch, batch: &Batch) -> bool {
    queued.content.target() == batch.content.target()
        && merges(queued.content.reason)
        && merges(batch.content.reason)
        && (queued.content.reason == SealReason::Urgent) == (batch.content.reason == SealReason::Urgent)
}

/// Whether batches sealed for this reason may still change: not a resumed one (recorded under its reference) nor the
/// halves of a batch refused as invalid, which must stay apart to isolate the offending message.
fn merges(reason: SealReason) -> bool {
    !matches!(reason, SealReason::Resumed | SealReason::Split)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::clock::WallClock;
    use crate::model::MessageId;
    use crate::model::message::{BatchMember, Delivery};
    use crate::model::path::InvalidationPath;

    /// A distribution's room when nothing is in progress.
    const ROOM: Allowance = crate::ports::budget::QUOTA;

    fn limits(max_paths: usize) -> BatchLimits {
        BatchLimits { window: Duration::from_secs(1), max_paths, max_wildcards: 2 }
    }

    /// A batch of one message asking for `paths`.
    fn batch_of(distribution: &str, message: &str, paths: &[&str]) -> Batch {
        let member = BatchMember::whole_of(
            Delivery { message_id: MessageId(message.to_owned()), number: 1 },
            paths.iter().map(|p| InvalidationPath::parse(p).unwrap()).collect(),
        );
        let content = SealedBatch::from_members(
            DistributionId::parse(distribution).unwrap().into(),
            vec![member],
            SealReason::WindowElapsed,
        );
        Batch::seal(content, WallClock::default())
    }

    /// Batches that never merge: each fills an invalidation of one path.
    fn full_schedule(total_cap: usize, per_distribution_cap: usize) -> Schedule {
        Schedule::new(total_cap, per_distribution_cap, limits(1))
    }

    fn batch(distribution: &str) -> Batch {
        batch_of(distribution, "m", &["/index.html"])
    }

    fn distribution(batch: &Batch) -> &str {
        batch.content.distribution_id.as_str()
    }

    #[test]
    fn a_distribution_at_its_cap_lets_later_distributions_pass() {
        let mut schedule = full_schedule(4, 2);
        for d in ["ESAT", "ESAT", "ESAT", "ESAT", "EONE", "ETWO"] {
            schedule.push(batch(d), ROOM);
        }
        let started: Vec<String> =
            std::iter::from_fn(|| schedule.next()).map(|b| distribution(&b).to_owned()).collect();
        assert_eq!(started, ["ESAT", "ESAT", "EONE", "ETWO"]);
        schedule.finished(&DistributionId::parse("EONE").unwrap());
        assert_eq!(schedule.next().map(|b| distribution(&b).to_owned()), None, "ESAT is still at its cap");
        schedule.finished(&DistributionId::parse("ESAT").unwrap());
        assert_eq!(schedule.next().map(|b| distribution(&b).to_owned()).as_deref(), Some("ESAT"));
    }

    #[test]
    fn an_urgent_batch_starts_before_older_normal_ones() {
        let mut schedule = full_schedule(1, 1);
        schedule.push(batch("EAAA"), ROOM);
        schedule.push(batch("EBBB"), ROOM);
        let mut urgent = batch("ECCC");
        urgent.content.reason = SealReason::Urgent;
        schedule.push(urgent, ROOM);
        let order: Vec<String> = std::iter::from_fn(|| {
            let next = schedule.next()?;
            schedule.finished(&next.content.distribution_id);
            Some(distribution(&next).to_owned())
        })
        .collect();
        assert_eq!(order, ["ECCC", "EAAA", "EBBB"]);
    }

    #[test]
    fn the_total_cap_holds_across_distributions() {
        let mut schedule = full_schedule(2, 2);
        for d in ["EAAA", "EBBB", "ECCC"] {
            schedule.push(batch(d), ROOM);
        }
        assert_eq!(std::iter::from_fn(|| schedule.next()).count(), 2);
        assert!(!schedule.is_idle());
        schedule.finished(&DistributionId::parse("EAAA").unwrap());
        assert_eq!(schedule.next().map(|b| distribution(&b).to_owned()).as_deref(), Some("ECCC"));
        for d in ["EBBB", "ECCC"] {
            schedule.finished(&DistributionId::parse(d).unwrap());
        }
        assert!(schedule.is_idle());
    }

    #[test]
    fn batches_waiting_for_a_place_merge_into_one_invalidation_up_to_the_limits() {
        let mut schedule = Schedule::new(1, 1, limits(3));
        schedule.push(batch_of("EAAA", "started", &["/a"]), ROOM);
        let started = schedule.next().unwrap();
        let first = batch_of("EAAA", "m1", &["/b", "/c"]);
        let reference = first.caller_reference.clone();
        schedule.push(first, ROOM);
        schedule.push(batch_of("EBBB", "other", &["/b"]), ROOM);
        // `/c` again: deduplicated, so three paths fit.
        let second = batch_of("EAAA", "m2", &["/c", "/d"]);
        let last_sealed_at = second.sealed_at;
        schedule.push(second, ROOM);
        schedule.push(batch_of("EAAA", "m3", &["/e"]), ROOM);
        assert_eq!(schedule.len(), 4, "one started, the merged batch, EBBB's, and the one that did not fit");
        schedule.finished(&started.content.distribution_id);
        let merged = schedule.next().unwrap();
        assert_eq!(merged.caller_reference, reference, "the earlier batch's identity");
        assert!(merged.sealed_at >= last_sealed_at, "sealed no earlier than its newest message");
        assert_eq!(merged.content.paths, ["/b", "/c", "/d"]);
        let messages: Vec<String> = merged.content.members.iter().map(|m| m.delivery.to_string()).collect();
        assert_eq!(messages, ["m1", "m2"]);
        assert_eq!(merged.content.requested_paths, 4);
    }

    #[test]
    fn resumed_urgent_and_split_batches_stay_apart() {
        let mut schedule = Schedule::new(1, 1, limits(100));
        schedule.push(batch_of("EAAA", "started", &["/a"]), ROOM);
        schedule.next().unwrap();
        for reason in [SealReason::WindowElapsed, SealReason::Resumed, SealReason::Urgent, SealReason::Split] {
            let mut batch = batch_of("EAAA", reason.as_str(), &["/x"]);
            batch.content.reason = reason;
            schedule.push(batch, ROOM);
        }
        let mut urgent = batch_of("EAAA", "urgent-2", &["/y"]);
        urgent.content.reason = SealReason::Urgent;
        schedule.push(urgent, ROOM);
        assert_eq!(schedule.len(), 5, "the two urgent batches merged, nothing else");
    }

    #[test]
    fn batches_merge_only_as_far_as_the_room_last_seen() {
        let mut schedule = Schedule::new(1, 1, limits(100));
        schedule.push(batch_of("EAAA", "started", &["/a"]), ROOM);
        schedule.next().unwrap();
        let room = Allowance { paths: 3, wildcards: 2 };
        schedule.push(batch_of("EAAA", "m1", &["/b", "/c"]), room);
        schedule.push(batch_of("EAAA", "m2", &["/d", "/e"]), room);
        assert_eq!(schedule.len(), 3, "four paths would not fit a room of three");
    }

    #[test]
    fn wildcards_count_against_their_own_limit() {
        let mut schedule = Schedule::new(1, 1, limits(100));
        schedule.push(batch_of("EAAA", "started", &["/a"]), ROOM);
        schedule.next().unwrap();
        schedule.push(batch_of("EAAA", "m1", &["/x/*", "/y/*"]), ROOM);
        schedule.push(batch_of("EAAA", "m2", &["/z/*"]), ROOM);
        assert_eq!(schedule.len(), 3, "three wildcards do not fit a limit of two");
    }

    #[test]
    fn a_rest_put_back_goes_first_and_the_batches_behind_fill_it() {
        let mut schedule = Schedule::new(1, 1, limits(3));
        schedule.push(batch_of("EAAA", "started", &["/s"]), ROOM);
        let started = schedule.next().unwrap();
        schedule.push(batch_of("EAAA", "m1", &["/a", "/b"]), ROOM);
        schedule.push(batch_of("EAAA", "m2", &["/c", "/d"]), ROOM);
        schedule.push(batch_of("EBBB", "other", &["/a"]), ROOM);
        schedule.push(batch_of("EAAA", "m3", &["/e"]), ROOM);
        let mut rest = batch_of("EAAA", "rest", &["/r"]);
        rest.content.reason = SealReason::FitBudget;
        schedule.put_back(rest);
        schedule.finished(&started.content.distribution_id);
        let order: Vec<(String, Vec<String>)> = std::iter::from_fn(|| {
            let next = schedule.next()?;
            schedule.finished(&next.content.distribution_id);
            let messages = next.content.members.iter().map(|m| m.delivery.to_string()).collect();
            Some((distribution(&next).to_owned(), messages))
        })
        .collect();
        let expected = [("EAAA", vec!["rest", "m1"]), ("EAAA", vec!["m2", "m3"]), ("EBBB", vec!["other"])];
        let expected: Vec<(String, Vec<String>)> = expected
            .into_iter()
            .map(|(d, messages)| (d.to_owned(), messages.into_iter().map(str::to_owned).collect()))
            .collect();
        assert_eq!(order, expected, "three paths a batch: the rest takes m1, m2 takes m3, and m3's batch is gone");
    }

    /// What the schedule does with a batch once it is started, as the submitter may.
    #[derive(Debug, Clone, Copy)]
    enum Then {
        Wait,
        Submit,
        /// Submit its first message, put the others back.
        GoInPart,
    }

    fn then() -> impl Strategy<Value = Then> {
        prop_oneof![Just(Then::Wait), Just(Then::Submit), Just(Then::GoInPart)]
    }

    /// Starts what the schedule allows, as `then` says, and returns the messages submitted.
    fn start_all(schedule: &mut Schedule, then: Then) -> Result<Vec<String>, TestCaseError> {
        let mut left = Vec::new();
        while let Some(mut batch) = schedule.next() {
            prop_assert!(batch.content.paths.len() <= 5);
            if matches!(then, Then::GoInPart) && batch.content.members.len() > 1 {
                let rest = batch.content.members.split_off(1);
                let target = batch.content.target();
                let rest = SealedBatch::from_members(target, rest, SealReason::FitBudget);
                schedule.put_back(Batch::seal(rest, WallClock::default()));
            }
            left.extend(batch.content.members.iter().map(|m| m.delivery.to_string()));
            schedule.finished(&batch.content.distribution_id);
        }
        Ok(left)
    }

    proptest! {
        /// Whatever arrives, and whatever goes in part, every message leaves in exactly one batch (as often as it
        /// arrived), and no batch passes the limits.
        #[test]
        fn merging_loses_no_message_and_respects_the_limits(
            pushes in proptest::collection::vec((0usize..3, proptest::collection::vec(0usize..8, 1..4)), 1..40),
            thens in proptest::collection::vec(then(), 1..40),
        ) {
            let mut schedule = Schedule::new(2, 1, limits(5));
            let mut arrived = Vec::new();
            let mut left = Vec::new();
            let mut then = thens.iter().cycle();
            for (n, (distribution, paths)) in pushes.iter().enumerate() {
                let paths: Vec<String> = paths.iter().map(|p| format!("/{p}")).collect();
                let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
                let message = format!("m{n}");
                arrived.push(message.clone());
                schedule.push(batch_of(["EAAA", "EBBB", "ECCC"][*distribution], &message, &paths), ROOM);
                match *then.next().unwrap() {
                    Then::Wait => {}
                    started => left.extend(start_all(&mut schedule, started)?),
                }
            }
            left.extend(start_all(&mut schedule, Then::Submit)?);
            left.sort();
            arrived.sort();
            prop_assert_eq!(left, arrived);
        }
    }
}
