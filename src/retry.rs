//! Backoff policies, one per kind of failure, all jittered.

use std::time::Duration;

use backon::ExponentialBuilder;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// CloudFront throttling and 5xx, timeouts, DynamoDB hiccups: short waits, a bounded number of tries.
    pub transient: ExponentialBuilder,
    /// TooManyInvalidationsInProgress: capacity comes back only as invalidations complete.
    pub quota: ExponentialBuilder,
    /// Delete and visibility calls: a few quick tries; giving up means a redelivery.
    pub queue: ExponentialBuilder,
    /// The receive loop: retried forever, backing off to 30 s.
    pub receive: ExponentialBuilder,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            transient: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(20))
                .with_max_times(8)
                .with_jitter(),
            quota: ExponentialBuilder::default()
                .with_min_delay(Duration::from_secs(5))
                .with_max_delay(Duration::from_secs(120))
                .with_max_times(30)
                .with_jitter(),
            queue: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_times(4)
                .with_jitter(),
            receive: ExponentialBuilder::default()
                .with_max_delay(Duration::from_secs(30))
                .without_max_times()
                .with_jitter(),
        }
    }
}

impl RetryPolicy {
    /// The same policy with reproducible jitter, for deterministic simulations.
    pub fn seeded(seed: u64) -> Self {
        let policy = Self::default();
        Self {
            transient: policy.transient.with_jitter_seed(seed),
            quota: policy.quota.with_jitter_seed(seed ^ 1),
            queue: policy.queue.with_jitter_seed(seed ^ 2),
            receive: policy.receive.with_jitter_seed(seed ^ 3),
        }
    }
}
