//! What the simulator enforces: quotas, rates, completion times, latency and failures.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::ports::budget::{Allowance, QUOTA};

/// How long an invalidation stays `InProgress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    After(Duration),
    /// Anywhere in `[min, max]`, chosen by a hash of the invalidation's sequence number: varied like CloudFront's,
    /// yet the same in every run.
    Between(Duration, Duration),
}

impl Completion {
    /// How long after its creation the invalidation numbered `sequence` (from 1, in creation order) completes.
    pub fn delay(self, sequence: u64) -> Duration {
        match self {
            Self::After(delay) => delay,
            Self::Between(min, max) => min + max.saturating_sub(min).mul_f64(unit_draw(sequence)),
        }
    }
}

/// CreateInvalidation calls allowed per second on average (positive), and at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CreateRate {
    pub per_second: f64,
    pub burst: NonZeroU32,
}

/// A per-account rate quota: `per_second` on average (positive), and `burst` at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateQuota {
    pub per_second: f64,
    pub burst: u32,
}

impl RateQuota {
    /// `per_second`, with a burst of one second's worth (at least one).
    pub fn per_second(per_second: f64) -> Self {
        Self { per_second, burst: (per_second.ceil() as u32).max(1) }
    }
}

/// CloudFront's invalidation quotas as per-account rates (a third-party listing of the quotas page, 2026-09:
/// 150 paths or tags per second, one wildcard invalidation per second, not adjustable): an invalidation beyond
/// either bucket is refused with `TooManyInvalidationsInProgress`, and takes nothing from the other.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AccountRates {
    /// Paths and cache tags, wildcards apart.
    pub paths: Option<RateQuota>,
    /// Wildcard paths.
    pub wildcards: Option<RateQuota>,
}

impl AccountRates {
    /// As the listing has them.
    pub fn listed() -> Self {
        Self { paths: Some(RateQuota::per_second(150.0)), wildcards: Some(RateQuota::per_second(1.0)) }
    }
}

/// What the simulator enforces beyond the fake's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Refuse a batch that would take a distribution past these (`TooManyInvalidationsInProgress`); either may be
    /// `ports::budget::UNLIMITED`.
    pub quotas: Option<Allowance>,
    /// The rate model, beside the in-progress one or instead of it.
    pub account_rates: AccountRates,
    pub completion: Completion,
    /// Answer `Throttling` to CreateInvalidation calls beyond this rate.
    pub create_rate: Option<CreateRate>,
    /// Every call takes this long (on tokio's clock) before it is answered.
    pub latency: Duration,
    /// This fraction of calls, drawn by a hash of the call's number, is answered `ServiceUnavailable`.
    pub fail_rate: f64,
    /// Refuse paths CloudFront refuses: no leading `/` (or `#` for a cache tag), `*` before the end, too long.
    pub validate_paths: bool,
}

impl Default for SimConfig {
    /// Nothing enforced and instant completion: what the pipeline tests were written against.
    fn default() -> Self {
        Self {
            quotas: None,
            account_rates: AccountRates::default(),
            completion: Completion::After(Duration::ZERO),
            create_rate: None,
            latency: Duration::ZERO,
            fail_rate: 0.0,
            validate_paths: false,
        }
    }
}

impl SimConfig {
    /// CloudFront's quotas and path rules, completion after 30 s (AWS quotes ≈ 25 s at P95); no rate limit, latency
    /// or failures, since CloudFront publishes none.
    pub fn cloudfront() -> Self {
        Self {
            quotas: Some(QUOTA),
            completion: Completion::After(Duration::from_secs(30)),
            validate_paths: true,
            ..Self::default()
        }
    }
}

/// A number in `[0, 1)` fixed by `seed` (SplitMix64's finaliser): varied but reproducible, without a random
/// generator in the library.
pub(super) fn unit_draw(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1_u64 << 53) as f64
}
