//! Retrying: the backoff policies, one per kind of failure and all jittered, and the one helper every stage
//! retries a call with.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tracing::debug;

/// An error that says whether the same call may succeed if tried again (a 5xx, a throttle, a timeout).
pub trait Transient {
    fn is_transient(&self) -> bool;
}

/// Runs `call`, retrying transient failures with `policy`'s delays (on tokio's clock, so simulations pause it).
/// Whatever is not transient, and the last transient failure once the policy gives up, is returned.
pub async fn retry_transient<T, E, F, Fut>(policy: ExponentialBuilder, call: F) -> Result<T, E>
where
    E: Transient + Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    call.retry(policy)
        .sleep(tokio::time::sleep)
        .when(E::is_transient)
        .notify(|error: &E, delay| debug!(%error, ?delay, "retrying a transient failure"))
        .await
}

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
    /// A dependency that stays down once the short policies are spent: retried forever, at most a minute apart,
    /// while the messages wait held.
    pub outage: ExponentialBuilder,
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
            // Jitter adds up to the delay again: at the cap, tries are 30 to 60 s apart.
            outage: ExponentialBuilder::default()
                .with_min_delay(Duration::from_secs(1))
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
            outage: policy.outage.with_jitter_seed(seed ^ 4),
        }
    }
}
