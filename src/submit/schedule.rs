//! Which batches may be in submission at once: a bounded number in all, and only a few per distribution, so a
//! distribution that waits for budget cannot take the places other distributions need. No I/O.

use std::collections::{HashMap, VecDeque};

use crate::batch::Batch;
use crate::batch::window::SealReason;
use crate::model::DistributionId;

/// Batches received but not yet started, in arrival order, and the count started per distribution.
#[derive(Debug)]
pub struct Schedule {
    total_cap: usize,
    per_distribution_cap: usize,
    started: HashMap<DistributionId, usize>,
    total_started: usize,
    queued: VecDeque<Batch>,
}

impl Schedule {
    pub fn new(total_cap: usize, per_distribution_cap: usize) -> Self {
        Self {
            total_cap: total_cap.max(1),
            per_distribution_cap: per_distribution_cap.max(1),
            started: HashMap::new(),
            total_started: 0,
            queued: VecDeque::new(),
        }
    }

    pub fn push(&mut self, batch: Batch) {
        self.queued.push_back(batch);
    }

    /// The oldest queued urgent batch whose distribution is under its cap, else the oldest such batch, if the
    /// total allows one more; it counts as started from now on.
    pub fn next(&mut self) -> Option<Batch> {
        if self.total_started >= self.total_cap {
            return None;
        }
        let cap = self.per_distribution_cap;
        let startable = |b: &Batch| self.started.get(&b.content.distribution_id).copied().unwrap_or(0) < cap;
        let urgent = self.queued.iter().position(|b| b.content.reason == SealReason::Urgent && startable(b));
        let at = urgent.or_else(|| self.queued.iter().position(startable))?;
        let batch = self.queued.remove(at)?;
        *self.started.entry(batch.content.distribution_id.clone()).or_default() += 1;
        self.total_started += 1;
        Some(batch)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::window::SealedBatch;
    use crate::clock::WallClock;

    fn batch(distribution: &str) -> Batch {
        let content = SealedBatch {
            distribution_id: DistributionId::parse(distribution).unwrap(),
            paths: Vec::new(),
            wildcard_count: 0,
            members: Vec::new(),
            requested_paths: 0,
            reason: SealReason::WindowElapsed,
        };
        Batch::seal(content, WallClock::default())
    }

    fn distribution(batch: &Batch) -> &str {
        batch.content.distribution_id.as_str()
    }

    #[test]
    fn a_distribution_at_its_cap_lets_later_distributions_pass() {
        let mut schedule = Schedule::new(4, 2);
        for d in ["ESAT", "ESAT", "ESAT", "ESAT", "EONE", "ETWO"] {
            schedule.push(batch(d));
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
        let mut schedule = Schedule::new(1, 1);
        schedule.push(batch("EAAA"));
        schedule.push(batch("EBBB"));
        let mut urgent = batch("ECCC");
        urgent.content.reason = SealReason::Urgent;
        schedule.push(urgent);
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
        let mut schedule = Schedule::new(2, 2);
        for d in ["EAAA", "EBBB", "ECCC"] {
            schedule.push(batch(d));
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
}
