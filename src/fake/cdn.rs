//! CloudFront's invalidation API in memory, faithful where the worker's correctness depends on it.
//!
//! Always modelled: CallerReference idempotency, unknown distributions, completion after a delay. Opt-in through
//! [`SimConfig`] (off for `FakeCdn::default()`, which most tests use): the per-distribution in-progress quotas, the
//! per-account rate quotas (paths and wildcards per second), each on or off, a spread of completion times, the CreateInvalidation request rate, CloudFront's path rules, latency and 5xx
//! answers. It records what a test needs to see: every call, every refusal, the peak in flight. It runs on tokio's
//! clock, so paused-time tests control it; `cloudfront_http` serves it over CloudFront's REST-XML API.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use self::config::unit_draw;
pub use self::config::{AccountRates, Completion, CreateRate, RateQuota, SimConfig};
pub use self::records::{
    CreateCall, Created, DistributionReport, Page, Rejection, Report, Snapshot, StatusCheck, Summary, Tally,
};
use self::state::State;
use super::faults::Faults;
use crate::clock::TokioClock;
use crate::model::{CallerReference, DistributionId, Target, TenantId};
use crate::ports::budget::Allowance;
use crate::ports::cdn::{Cdn, CdnError, Invalidation, InvalidationDetail};

mod config;
mod paths;
mod records;
mod state;

/// The account of calls that come through the `Cdn` port in process, unsigned; over HTTP a call's account is its
/// access key id.
pub const IN_PROCESS_ACCOUNT: &str = "in-process";

/// ListInvalidations' page size when MaxItems is not given, as CloudFront's.
pub const LIST_PAGE_SIZE: usize = 100;

type Bucket = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<std::time::Instant>>;

/// CloudFront with its CallerReference semantics: a repeated reference with the same paths returns the first
/// invalidation, with other paths `InvalidationBatchAlreadyExists`. Unknown distributions are refused. An
/// invalidation is `InProgress` until its completion time has passed on tokio's clock, then `Completed`.
/// Everything in [`SimConfig`] is off unless built with [`FakeCdn::simulator`].
#[derive(Debug)]
pub struct FakeCdn {
    pub faults: Faults<CdnError>,
    state: Mutex<State>,
    create_rate: Option<Bucket>,
    /// Tokio's clock and the wall clock at the same moment, to show creation times as dates.
    started: (Instant, SystemTime),
}

impl Default for FakeCdn {
    fn default() -> Self {
        Self::simulator(SimConfig::default())
    }
}

impl FakeCdn {
    /// No distributions yet: add them with [`FakeCdn::add_distribution`].
    pub fn simulator(config: SimConfig) -> Self {
        let create_rate = config.create_rate.map(|rate| {
            let period = Duration::from_secs_f64(1.0 / rate.per_second);
            let quota = Quota::with_period(period).expect("a positive rate").allow_burst(rate.burst);
            RateLimiter::direct_with_clock(quota, TokioClock)
        });
        Self {
            faults: Faults::default(),
            state: Mutex::new(State::new(config)),
            create_rate,
            started: (Instant::now(), SystemTime::now()),
        }
    }

    pub fn with_distributions<'a>(ids: impl IntoIterator<Item = &'a str>) -> Self {
        let cdn = Self::default();
        for id in ids {
            cdn.add_distribution(DistributionId::parse(id).expect("valid distribution id"));
        }
        cdn
    }

    /// False if it was already there.
    pub fn add_distribution(&self, id: DistributionId) -> bool {
        self.state.lock().unwrap().add_distribution(id)
    }

    /// A tenant of `distribution` (which must be there), with its own invalidations and in-progress quotas;
    /// false if it was already there.
    pub fn add_tenant(&self, distribution: DistributionId, tenant: TenantId) -> Result<bool, CdnError> {
        self.state.lock().unwrap().add_tenant(distribution, tenant)
    }

    /// The tenant with its distribution, if it is there.
    pub fn tenant(&self, tenant: &TenantId) -> Option<Target> {
        self.state.lock().unwrap().tenant(tenant)
    }

    /// Answers `InvalidArgument`, like CloudFront for a path it cannot take, to batches with a path containing
    /// `fragment`.
    pub fn refuse_paths_containing(&self, fragment: &str) {
        self.state.lock().unwrap().refused_fragments.push(fragment.to_owned());
    }

    /// Invalidations created from now on take this long to complete, as CloudFront's take seconds to minutes.
    pub fn complete_after(&self, delay: Duration) {
        self.state.lock().unwrap().config.completion = Completion::After(delay);
    }

    /// An invalidation made by a person in the console or another tool: it takes quota like any other, but is
    /// not the worker's (its CallerReference is `console-<n>`), and it bypasses the request rate, latency and
    /// injected failures, which test the worker, not the person.
    pub fn create_as_someone_else(
        &self,
        target: impl Into<Target>,
        paths: &[String],
    ) -> Result<Invalidation, CdnError> {
        let distribution = &target.into();
        let mut state = self.state.lock().unwrap();
        let reference = state.console_reference();
        let now = Instant::now();
        let outcome = state.create(IN_PROCESS_ACCOUNT, distribution, &reference, paths, now);
        if let Err(error) = &outcome {
            state.reject(IN_PROCESS_ACCOUNT, distribution, &reference, error, now);
        }
        outcome
    }

    /// Every GetInvalidation call received, in order.
    pub fn status_checks(&self) -> Vec<StatusCheck> {
        self.state.lock().unwrap().status_checks.clone()
    }

    /// Every ListInvalidations call received (by `list` or `list_recent`), in order.
    pub fn list_calls(&self) -> Vec<StatusCheck> {
        self.state.lock().unwrap().list_calls.clone()
    }

    /// Every CreateInvalidation call received through the `Cdn` port, in order, failed ones included.
    pub fn calls(&self) -> Vec<CreateCall> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Every refused CreateInvalidation, the worker's and anyone else's, in order.
    pub fn rejections(&self) -> Vec<Rejection> {
        self.state.lock().unwrap().rejections.clone()
    }

    /// Distinct invalidations created (what CloudFront would bill), anyone's, in creation order.
    pub fn created(&self) -> Vec<Created> {
        self.state.lock().unwrap().created()
    }

    /// Distinct invalidations created, as (distribution, paths), in creation order.
    pub fn invalidations(&self) -> Vec<(DistributionId, Vec<String>)> {
        self.created().into_iter().map(|c| (c.distribution_id, c.paths)).collect()
    }

    pub fn report(&self) -> Report {
        let mut state = self.state.lock().unwrap();
        state.report(Instant::now())
    }

    /// `at` (on tokio's clock) on the wall clock, as CloudFront shows creation times.
    pub fn wall_time(&self, at: Instant) -> SystemTime {
        self.started.1 + at.saturating_duration_since(self.started.0)
    }

    /// The simulated instant of a wall time: its start, for any time before it.
    fn instant_of(&self, at: SystemTime) -> Instant {
        self.started.0 + at.duration_since(self.started.1).unwrap_or_default()
    }

    /// GetInvalidation with everything CloudFront shows.
    pub async fn snapshot(&self, target: impl Into<Target>, id: &str) -> Result<Snapshot, CdnError> {
        let distribution = &target.into();
        self.state.lock().unwrap().status_checks.push(StatusCheck { id: id.to_owned(), at: Instant::now() });
        self.enter("get_invalidation").await?;
        self.find(distribution, id)
    }

    /// ListInvalidations: up to `max_items` of the distribution's invalidations older than the one named by
    /// `marker`, most recent first.
    pub async fn list(
        &self,
        target: impl Into<Target>,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page, CdnError> {
        let distribution = &target.into();
        self.state.lock().unwrap().list_calls.push(StatusCheck { id: distribution.to_string(), at: Instant::now() });
        self.enter("list_invalidations").await?;
        self.state.lock().unwrap().page(distribution, marker, max_items, Instant::now())
    }

    /// An invalidation as GetInvalidation would show it, without counting as a call.
    pub(super) fn find(&self, target: impl Into<Target>, id: &str) -> Result<Snapshot, CdnError> {
        self.state.lock().unwrap().find(&target.into(), id, Instant::now())
    }

    /// When the last invalidation of `distribution` covering `path` that had completed by `by` (on tokio's clock)
    /// completed: the simulator's edge (`fake::edge`) drops copies cached before then.
    pub fn last_completion_covering(&self, target: impl Into<Target>, path: &str, by: Instant) -> Option<Instant> {
        self.state.lock().unwrap().last_completion_covering(&target.into(), path, by)
    }

    /// Every call fails with `ServiceUnavailable` for `length`, as in a CloudFront outage.
    pub fn down_for(&self, length: Duration) {
        let until = Instant::now() + length;
        for operation in ["create_invalidation", "get_invalidation", "list_invalidations"] {
            let error = CdnError::Unavailable("CloudFront is down (a simulated outage)".into());
            self.faults.down_until(operation, error, until);
        }
    }

    /// What every call meets first: the latency, a queued fault, then a drawn 5xx.
    async fn enter(&self, operation: &'static str) -> Result<(), CdnError> {
        let latency = self.state.lock().unwrap().config.latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        self.faults.take(operation)?;
        self.state.lock().unwrap().draw_failure()
    }

    async fn answer(
        &self,
        account: &str,
        distribution: &Target,
        reference: &CallerReference,
        paths: &[String],
    ) -> Result<Invalidation, CdnError> {
        self.enter("create_invalidation").await?;
        if self.create_rate.as_ref().is_some_and(|bucket| bucket.check().is_err()) {
            return Err(CdnError::Throttled("Rate exceeded".into()));
        }
        self.state.lock().unwrap().create(account, distribution, reference, paths, Instant::now())
    }
}

impl FakeCdn {
    /// CreateInvalidation as `account` (an access key id) calls it: the account's rate quotas apply, and the
    /// report bills it.
    pub async fn create_as(
        &self,
        account: &str,
        target: impl Into<Target>,
        caller_reference: &CallerReference,
        paths: &[String],
    ) -> Result<Invalidation, CdnError> {
        let distribution = &target.into();
        let outcome = self.answer(account, distribution, caller_reference, paths).await;
        let mut state = self.state.lock().unwrap();
        if let Err(error) = &outcome {
            state.reject(account, distribution, caller_reference, error, Instant::now());
        }
        state.calls.push(CreateCall {
            account: account.to_owned(),
            distribution_id: distribution.distribution.clone(),
            tenant_id: distribution.tenant.clone(),
            caller_reference: caller_reference.clone(),
            paths: paths.to_vec(),
            outcome: outcome.clone(),
        });
        outcome
    }
}

impl Cdn for FakeCdn {
    async fn create_invalidation(
        &self,
        target: impl Into<Target> + Send,
        caller_reference: &CallerReference,
        paths: &[String],
    ) -> Result<Invalidation, CdnError> {
        self.create_as(IN_PROCESS_ACCOUNT, target, caller_reference, paths).await
    }

    async fn get_invalidation(
        &self,
        target: impl Into<Target> + Send,
        id: &str,
    ) -> Result<InvalidationDetail, CdnError> {
        let Snapshot { created, status } = self.snapshot(target, id).await?;
        Ok(InvalidationDetail {
            invalidation: Invalidation { id: created.id, status: status.to_owned() },
            caller_reference: created.caller_reference.to_string(),
            paths: created.paths,
        })
    }

    async fn list_recent(
        &self,
        target: impl Into<Target> + Send,
        since: SystemTime,
    ) -> Result<Vec<Invalidation>, CdnError> {
        let distribution = &target.into();
        self.state.lock().unwrap().list_calls.push(StatusCheck { id: distribution.to_string(), at: Instant::now() });
        self.enter("list_invalidations").await?;
        let since = self.instant_of(since);
        self.state.lock().unwrap().recent(distribution, Instant::now(), since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_tags_are_counted_apart() {
        let paths = ["/a", "/img/*", "#product:1", "/b*"].map(String::from);
        assert_eq!(Allowance::of(&paths), Allowance { paths: 2, wildcards: 2 });
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_completion_covering_a_path_counts_wildcards_and_only_what_completed() {
        let cdn = FakeCdn::with_distributions(["EAAA", "EBBB"]);
        let (aaa, bbb) = (DistributionId::parse("EAAA").unwrap(), DistributionId::parse("EBBB").unwrap());
        let start = Instant::now();
        cdn.complete_after(Duration::from_secs(10));
        cdn.create_invalidation(&aaa, &CallerReference::mint(), &["/img/*".into()]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        cdn.create_invalidation(&aaa, &CallerReference::mint(), &["/img/a.png".into()]).await.unwrap();
        cdn.create_invalidation(&bbb, &CallerReference::mint(), &["/img/b.png".into()]).await.unwrap();
        let last = |path: &str, by: u64| cdn.last_completion_covering(&aaa, path, start + Duration::from_secs(by));

        assert_eq!(last("/img/a.png", 9), None, "nothing completed yet");
        assert_eq!(last("/img/a.png", 12), Some(start + Duration::from_secs(10)), "the wildcard covers it");
        assert_eq!(last("/img/a.png", 20), Some(start + Duration::from_secs(15)), "the later, exact one");
        assert_eq!(last("/img/b.png", 20), Some(start + Duration::from_secs(10)), "EBBB's is not EAAA's");
        assert_eq!(last("/css/a.css", 20), None);
    }

    #[test]
    fn spread_completion_is_reproducible_and_within_bounds() {
        let (min, max) = (Duration::from_secs(10), Duration::from_secs(60));
        let delays: Vec<Duration> = (1..=1_000).map(|n| Completion::Between(min, max).delay(n)).collect();
        assert!(delays.iter().all(|d| (min..=max).contains(d)));
        let again: Vec<Duration> = (1..=1_000).map(|n| Completion::Between(min, max).delay(n)).collect();
        assert_eq!(delays, again);
        let early = delays.iter().filter(|d| **d < Duration::from_secs(35)).count();
        assert!((400..600).contains(&early), "spread evenly, not bunched: {early} of 1,000 in the first half");
    }
}
