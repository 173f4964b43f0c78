//! The CreateInvalidation rate limiter.
//!
//! CloudFront publishes no request rate for CreateInvalidation, but throttles bursts per account (aws-facts.md
//! A1: users report `Throttling` after 6–7 rapid calls; an AWS SDK maintainer quoted 0.5 requests/s), so every
//! call of this process passes through one governor token bucket.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use metrics::counter;
use tokio::time::Instant;
use tracing::warn;

use super::watched::Watched;
use crate::clock::TokioClock;

type Bucket = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<std::time::Instant>>;

/// After a `Throttling` answer the rate drops to this fraction of the configured one ...
const THROTTLED_RATE_DIVISOR: f64 = 4.0;
/// ... for this long after the last `Throttling` answer: CloudFront publishes no rate, so back off a while.
const THROTTLED_COOL_DOWN: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct CreateRateLimiter {
    /// Replaced whole when this worker's share of the account's rate changes.
    buckets: Mutex<Arc<Buckets>>,
    /// False until a worker sharing the account's rate has its first share, and while it is off the roster for
    /// want of work.
    ready: Watched<bool>,
    cautious_until: Mutex<Option<Instant>>,
    /// Urgent callers waiting for a permit: normal callers let them go first.
    urgent_waiting: Watched<usize>,
}

#[derive(Debug)]
struct Buckets {
    /// The normal bucket, and the one also passed while cautious (a quarter of the rate, no burst); none when the
    /// rate is off (0).
    buckets: Option<(Bucket, Bucket)>,
    per_second: f64,
    burst: NonZeroU32,
}

impl Buckets {
    fn new(per_second: f64, burst: NonZeroU32) -> Self {
        let buckets = (per_second > 0.0)
            .then(|| (bucket(per_second, burst), bucket(per_second / THROTTLED_RATE_DIVISOR, NonZeroU32::MIN)));
        Self { buckets, per_second, burst }
    }
}

/// Counts an urgent caller as waiting until it has its permit, or gave up waiting (its future was dropped).
struct UrgentWaiting<'a>(&'a Watched<usize>);

impl Drop for UrgentWaiting<'_> {
    fn drop(&mut self) {
        self.0.modify(|waiting| *waiting -= 1);
    }
}

fn bucket(per_second: f64, burst: NonZeroU32) -> Bucket {
    let period = Duration::from_secs_f64(1.0 / per_second);
    RateLimiter::direct_with_clock(Quota::with_period(period).expect("rate is positive").allow_burst(burst), TokioClock)
}

impl CreateRateLimiter {
    /// `per_second` requests on average (0: no limit), with up to `burst` at once after a quiet period.
    pub fn new(per_second: f64, burst: NonZeroU32) -> Self {
        Self {
            buckets: Mutex::new(Arc::new(Buckets::new(per_second, burst))),
            ready: Watched::new(true),
            cautious_until: Mutex::new(None),
            urgent_waiting: Watched::new(0),
        }
    }

    /// A limiter that grants nothing until `set_share` gives it this worker's share of the account's rate.
    pub fn awaiting_share() -> Self {
        let limiter = Self::new(1.0, NonZeroU32::MIN);
        limiter.leave();
        limiter
    }

    /// From now on `per_second` with bursts of `burst`: this worker's share of the account's rate.
    pub fn set_share(&self, per_second: f64, burst: NonZeroU32) {
        let mut buckets = self.buckets.lock().unwrap();
        if buckets.per_second != per_second || buckets.burst != burst {
            *buckets = Arc::new(Buckets::new(per_second, burst));
        }
        drop(buckets);
        self.ready.set(true);
    }

    /// This worker left the roster: it makes no call until `set_share` gives it a share again, as the others took
    /// up its share.
    pub fn leave(&self) {
        self.ready.set(false);
    }

    /// Calls per second now, or `None` while waiting for a share of the account's rate.
    pub fn rate(&self) -> Option<f64> {
        self.ready.get().then(|| self.buckets.lock().unwrap().per_second)
    }

    /// Waits for a permit; waiting callers do not hold anything else up.
    pub async fn until_ready(&self) {
        self.urgent_waiting.until(|waiting| waiting == 0).await;
        self.permit().await;
    }

    /// As `until_ready`, ahead of every normal caller.
    pub async fn until_ready_urgently(&self) {
        self.urgent_waiting.modify(|waiting| *waiting += 1);
        let _waiting = UrgentWaiting(&self.urgent_waiting);
        self.permit().await;
    }

    async fn permit(&self) {
        self.ready.until(|ready| ready).await;
        let buckets = Arc::clone(&self.buckets.lock().unwrap());
        let Some((normal, cautious)) = &buckets.buckets else { return };
        wait_for(normal).await;
        if self.cautious_until.lock().unwrap().is_some_and(|until| Instant::now() < until) {
            wait_for(cautious).await;
        }
    }

    /// CloudFront answered `Throttling`: slow down for a while.
    pub fn throttled(&self) {
        let mut until = self.cautious_until.lock().unwrap();
        if until.is_none_or(|until| Instant::now() >= until) {
            warn!(divisor = THROTTLED_RATE_DIVISOR, cool_down = ?THROTTLED_COOL_DOWN, "CloudFront throttled CreateInvalidation; slowing down");
        }
        *until = Some(Instant::now() + THROTTLED_COOL_DOWN);
        counter!("cfi_create_rate_throttled_total").increment(1);
    }
}

async fn wait_for(bucket: &Bucket) {
    while let Err(not_until) = bucket.check() {
        tokio::time::sleep(not_until.wait_time_from(TokioClock.now())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn allows_the_burst_then_spaces_calls_by_the_rate() {
        let limiter = CreateRateLimiter::new(2.0, NonZeroU32::new(3).unwrap());
        let start = Instant::now();
        let mut granted = Vec::new();
        for _ in 0..7 {
            limiter.until_ready().await;
            granted.push(start.elapsed().as_millis());
        }
        assert_eq!(granted, [0, 0, 0, 500, 1_000, 1_500, 2_000]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_urgent_caller_goes_before_normal_callers_that_come_after_it() {
        let limiter = std::sync::Arc::new(CreateRateLimiter::new(1.0, NonZeroU32::MIN));
        let start = Instant::now();
        limiter.until_ready().await;
        let urgent = tokio::spawn({
            let limiter = std::sync::Arc::clone(&limiter);
            async move {
                limiter.until_ready_urgently().await;
                start.elapsed().as_millis()
            }
        });
        tokio::task::yield_now().await;
        let normal = tokio::spawn({
            let limiter = std::sync::Arc::clone(&limiter);
            async move {
                limiter.until_ready().await;
                start.elapsed().as_millis()
            }
        });
        assert_eq!((urgent.await.unwrap(), normal.await.unwrap()), (1_000, 2_000));
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_slows_calls_to_a_quarter_until_the_cool_down_ends() {
        let limiter = CreateRateLimiter::new(2.0, NonZeroU32::new(3).unwrap());
        let start = Instant::now();
        limiter.throttled();
        let mut granted = Vec::new();
        for _ in 0..3 {
            limiter.until_ready().await;
            granted.push(start.elapsed().as_millis());
        }
        assert_eq!(granted, [0, 2_000, 4_000], "0.5 calls/s while cautious");
        tokio::time::sleep(THROTTLED_COOL_DOWN).await;
        let resumed = Instant::now();
        for _ in 0..3 {
            limiter.until_ready().await;
        }
        assert!(resumed.elapsed() < Duration::from_secs(1), "the configured rate and burst are back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_of_zero_is_no_limit() {
        let limiter = CreateRateLimiter::new(0.0, NonZeroU32::MIN);
        let start = Instant::now();
        for _ in 0..100 {
            limiter.until_ready().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
