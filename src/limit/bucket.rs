//! A token bucket of paths, without I/O: the account's paths-per-second and wildcards-per-second quotas as the
//! worker spends them, and as the simulator enforces them.
//!
//! Hand-written rather than governor's: it takes from two buckets at once or from neither, changes its rate while
//! keeping its level (when what the worker believes changes), and says how long a take must wait, all on a clock
//! the caller passes in.

use std::time::Duration;

use tokio::time::Instant;

/// `per_second` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    /// Below zero after an oversized take (`take_or_wait`): the debt is paid before the next take.
    level: f64,
    at: Instant,
}

/// What a take found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    Taken,
    /// Not enough saved up: try again after this long.
    Wait(Duration),
}

impl TokenBucket {
    /// A full bucket. `per_second` and `burst` are positive.
    pub fn full(per_second: f64, burst: f64, now: Instant) -> Self {
        Self { per_second, burst, level: burst, at: now }
    }

    pub fn burst(&self) -> f64 {
        self.burst
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * self.per_second).min(self.burst);
        self.at = self.at.max(now);
    }

    /// How long until `tokens` are saved up, counting at most a full bucket (the worker's take: a batch larger
    /// than the burst goes when the bucket is full, and its excess is a debt the next takes wait out). Zero: now.
    pub fn wait_for(&mut self, tokens: u32, now: Instant) -> Duration {
        self.refill(now);
        let needed = f64::from(tokens).min(self.burst) - self.level;
        if needed <= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(needed / self.per_second) }
    }

    /// What is saved up at `now` (below zero while a debt is paid).
    pub fn level(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.level
    }

    /// Takes `tokens` when `wait_for` says they are there.
    pub fn take_or_wait(&mut self, tokens: u32, now: Instant) -> Take {
        match self.wait_for(tokens, now) {
            Duration::ZERO => {
                self.level -= f64::from(tokens);
                Take::Taken
            }
            wait => Take::Wait(wait),
        }
    }

    /// Takes `tokens` only if they are all there (CloudFront's take: beyond the level, refused).
    pub fn try_take(&mut self, tokens: u32, now: Instant) -> bool {
        self.refill(now);
        let taken = f64::from(tokens) <= self.level + f64::EPSILON;
        if taken {
            self.level -= f64::from(tokens);
        }
        taken
    }

    /// Gives back what a take took, when the take it was part of did not happen.
    pub fn give_back(&mut self, tokens: u32) {
        self.level = (self.level + f64::from(tokens)).min(self.burst);
    }

    /// From now on `per_second` and `burst`, keeping what is saved up (at most the new burst).
    pub fn set(&mut self, per_second: f64, burst: f64, now: Instant) {
        self.refill(now);
        (self.per_second, self.burst) = (per_second, burst);
        self.level = self.level.min(burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn a_full_bucket_gives_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(150.0, 150.0, start);
        assert!(bucket.try_take(150, start));
        assert!(!bucket.try_take(1, start), "the burst is spent");
        assert!(bucket.try_take(75, at(start, 500)), "half a second brings half the rate");
        assert!(!bucket.try_take(1, at(start, 500)));
        assert!(!bucket.try_take(151, at(start, 10_000)), "never more than the burst at once");
    }

    #[test]
    fn an_oversized_take_waits_for_a_full_bucket_and_its_debt_holds_the_next_one_back() {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(100.0, 100.0, start);
        assert_eq!(bucket.take_or_wait(300, start), Take::Taken, "a full bucket lets any batch go");
        assert_eq!(bucket.take_or_wait(1, start), Take::Wait(Duration::from_millis(2_010)));
        assert_eq!(bucket.take_or_wait(1, at(start, 2_010)), Take::Taken, "the debt is paid at the rate");
    }

    #[test]
    fn a_new_rate_keeps_what_is_saved_up_within_the_new_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(100.0, 100.0, start);
        bucket.set(10.0, 20.0, start);
        assert!(bucket.try_take(20, start) && !bucket.try_take(1, start));
        bucket.give_back(5);
        assert!(bucket.try_take(5, start));
    }

    proptest! {
        /// However takes are spread, what a bucket lets through in `t` seconds is at most its burst plus its rate
        /// times `t` (strict takes), and a take that waited as told then goes.
        #[test]
        fn never_more_than_the_burst_plus_the_rate(
            per_second in 1.0_f64..500.0,
            burst in 1.0_f64..1_000.0,
            takes in proptest::collection::vec((0_u64..2_000, 1_u32..200), 1..60),
        ) {
            let start = Instant::now();
            let mut bucket = TokenBucket::full(per_second, burst, start);
            let (mut now, mut taken) = (start, 0.0);
            for (gap, tokens) in takes {
                now += Duration::from_millis(gap);
                if bucket.try_take(tokens, now) {
                    taken += f64::from(tokens);
                }
                let elapsed = now.duration_since(start).as_secs_f64();
                prop_assert!(taken <= burst + per_second * elapsed + 1e-6);
                let wait = bucket.wait_for(tokens, now);
                if f64::from(tokens) <= burst {
                    prop_assert!(bucket.try_take(tokens, now + wait + Duration::from_micros(1)));
                    now += wait + Duration::from_micros(1);
                    taken += f64::from(tokens);
                }
            }
        }
    }
}
