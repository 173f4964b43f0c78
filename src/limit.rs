//! The CreateInvalidation rate limiter.
//!
//! CloudFront publishes no request rate for CreateInvalidation, but throttles bursts per account (aws-facts.md
//! A1: users report `Throttling` after 6–7 rapid calls; an AWS SDK maintainer quoted 0.5 requests/s), so every
//! call of this process passes through one governor token bucket.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// governor's clock, read from tokio's, so a paused test runtime controls the limiter too.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> Self::Instant {
        tokio::time::Instant::now().into_std()
    }
}

#[derive(Debug)]
pub struct CreateRateLimiter {
    limiter: RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<std::time::Instant>>,
}

impl CreateRateLimiter {
    /// `per_second` requests on average, with up to `burst` at once after a quiet period.
    pub fn new(per_second: f64, burst: NonZeroU32) -> Self {
        let period = Duration::from_secs_f64(1.0 / per_second);
        let quota = Quota::with_period(period).expect("rate is positive").allow_burst(burst);
        Self { limiter: RateLimiter::direct_with_clock(quota, TokioClock) }
    }

    /// Waits for a permit; waiting callers do not hold anything else up.
    pub async fn until_ready(&self) {
        while let Err(not_until) = self.limiter.check() {
            tokio::time::sleep(not_until.wait_time_from(TokioClock.now())).await;
        }
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
}
