//! CloudFront for runs of simulated months: `FakeCdn`'s invalidations kept for a few simulated hours, not forever.
//!
//! `FakeCdn` keeps every call and every invalidation it made, for tests to assert on: over a simulated year of
//! millions of invalidations that is gigabytes, and the process's memory would measure the fake. It also reads the
//! worker's wall times against the system time it was made at. `RollingCdn` makes a new `FakeCdn` every
//! `generation` of simulated time and keeps the one before, so an invalidation is visible for at least one generation
//! after it was made, and a CallerReference presented again within that time gets its invalidation back. Lookups of
//! older invalidations answer `NoSuchInvalidation` and are counted (`retired_lookups`): a worker of a run whose
//! invalidations complete in seconds should make none. Ids carry their generation (`G3-I000000000012`). A new
//! generation starts with nothing in progress, so for the completion time after each change CloudFront's quotas
//! forget the previous generation's invalidations.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cf_invalidator::clock::WallClock;
use cf_invalidator::fake::{FakeCdn, SimConfig};
use cf_invalidator::model::{CallerReference, DistributionId, Target};
use cf_invalidator::ports::{Cdn, CdnError, Invalidation, InvalidationDetail};
use tokio::time::Instant;

pub struct RollingCdn {
    config: SimConfig,
    distributions: Vec<DistributionId>,
    generation: Duration,
    /// The worker's clock: `list_recent`'s `since` is read on it.
    clock: WallClock,
    generations: Mutex<(Generation, Option<Generation>)>,
    /// Every call fails with `ServiceUnavailable` until then.
    down_until: Mutex<Option<Instant>>,
    pub retired_lookups: AtomicU64,
}

#[derive(Clone)]
struct Generation {
    number: u64,
    started: Instant,
    cdn: Arc<FakeCdn>,
    references: Arc<Mutex<HashSet<CallerReference>>>,
}

impl Generation {
    fn new(number: u64, config: &SimConfig, distributions: &[DistributionId]) -> Self {
        let cdn = FakeCdn::simulator(config.clone());
        for id in distributions {
            cdn.add_distribution(id.clone());
        }
        Self { number, started: Instant::now(), cdn: Arc::new(cdn), references: Arc::default() }
    }

    fn tag(&self, invalidation: Invalidation) -> Invalidation {
        Invalidation { id: format!("G{}-{}", self.number, invalidation.id), ..invalidation }
    }
}

impl RollingCdn {
    pub fn new(config: SimConfig, distributions: Vec<DistributionId>, generation: Duration, clock: WallClock) -> Self {
        let first = Generation::new(0, &config, &distributions);
        Self {
            config,
            distributions,
            generation,
            clock,
            generations: Mutex::new((first, None)),
            down_until: Mutex::new(None),
            retired_lookups: AtomicU64::new(0),
        }
    }

    /// Every call fails with `ServiceUnavailable` for `length`, as in a CloudFront outage.
    pub fn down_for(&self, length: Duration) {
        *self.down_until.lock().unwrap() = Some(Instant::now() + length);
    }

    fn available(&self) -> Result<(), CdnError> {
        match *self.down_until.lock().unwrap() {
            Some(until) if Instant::now() < until => {
                Err(CdnError::Unavailable("CloudFront is down (a simulated outage)".into()))
            }
            _ => Ok(()),
        }
    }

    /// The current generation and the one before, a new one started if the current one's time is up.
    fn generations(&self) -> (Generation, Option<Generation>) {
        let mut generations = self.generations.lock().unwrap();
        if generations.0.started + self.generation <= Instant::now() {
            let next = Generation::new(generations.0.number + 1, &self.config, &self.distributions);
            let current = std::mem::replace(&mut generations.0, next);
            generations.1 = Some(current);
        }
        generations.clone()
    }

    /// An instant on tokio's clock of a wall time on the worker's clock.
    fn instant_of(&self, at: SystemTime) -> Instant {
        let WallClock::FollowsTokio { anchor, since } = self.clock else { panic!("a simulated run follows tokio") };
        since + at.duration_since(anchor).unwrap_or_default()
    }
}

impl Cdn for RollingCdn {
    async fn create_invalidation(
        &self,
        target: impl Into<Target> + Send,
        caller_reference: &CallerReference,
        paths: &[String],
    ) -> Result<Invalidation, CdnError> {
        self.available()?;
        let (current, previous) = self.generations();
        let known = |generation: &Generation| generation.references.lock().unwrap().contains(caller_reference);
        let generation = match previous {
            Some(previous) if known(&previous) => previous,
            _ => {
                current.references.lock().unwrap().insert(caller_reference.clone());
                current
            }
        };
        let created = generation.cdn.create_invalidation(target, caller_reference, paths).await?;
        Ok(generation.tag(created))
    }

    async fn get_invalidation(
        &self,
        target: impl Into<Target> + Send,
        id: &str,
    ) -> Result<InvalidationDetail, CdnError> {
        self.available()?;
        let (current, previous) = self.generations();
        let (number, inner) = id
            .strip_prefix('G')
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(number, inner)| Some((number.parse::<u64>().ok()?, inner)))
            .ok_or_else(|| CdnError::NoSuchInvalidation(id.to_owned()))?;
        let Some(generation) = std::iter::once(current).chain(previous).find(|g| g.number == number) else {
            self.retired_lookups.fetch_add(1, Relaxed);
            return Err(CdnError::NoSuchInvalidation(format!("{id} is older than this simulator keeps")));
        };
        let detail = generation.cdn.get_invalidation(target, inner).await?;
        Ok(InvalidationDetail { invalidation: generation.tag(detail.invalidation), ..detail })
    }

    async fn list_recent(
        &self,
        target: impl Into<Target> + Send,
        since: SystemTime,
    ) -> Result<Vec<Invalidation>, CdnError> {
        let target = target.into();
        self.available()?;
        let (current, previous) = self.generations();
        let since = self.instant_of(since);
        // The previous generation matters while the caller reaches back into it, or while its last invalidations
        // may still be in progress: completions take tens of seconds.
        let previous = previous.filter(|_| since < current.started || Instant::now() < current.started + LATEST_DONE);
        let mut recent = Vec::new();
        for generation in std::iter::once(current).chain(previous) {
            let listed = generation.cdn.list_recent(&target, generation.cdn.wall_time(since)).await?;
            recent.extend(listed.into_iter().map(|invalidation| generation.tag(invalidation)));
        }
        Ok(recent)
    }
}

/// Longer than any completion the runs configure.
const LATEST_DONE: Duration = Duration::from_secs(600);

/// The quota simulator with `distributions` distributions (`distribution_id(n)`), each invalidation completing
/// after the delay drawn for its first path: drawn in message order, so that a batch's completion time does not
/// depend on the order the worker happens to submit in.
pub struct DelayedCdn {
    pub inner: FakeCdn,
    delays: HashMap<String, Duration>,
}

impl DelayedCdn {
    pub fn new(distributions: usize, delays: HashMap<String, Duration>) -> Self {
        let inner = FakeCdn::simulator(SimConfig::cloudfront());
        for n in 0..distributions {
            inner.add_distribution(DistributionId::parse(&super::distribution_id(n)).unwrap());
        }
        Self { inner, delays }
    }

    /// Creates the invalidation; and when it completes, if created.
    pub async fn create(
        &self,
        target: impl Into<Target>,
        caller_reference: &CallerReference,
        paths: &[String],
    ) -> (Result<Invalidation, CdnError>, Instant) {
        let delay = self.delays[&paths[0]];
        // Applies to the invalidation created next, which is this one: the simulator has no latency, so nothing
        // is awaited between here and its creation on the benches' single-threaded runtime.
        self.inner.complete_after(delay);
        let completes_at = Instant::now() + delay;
        (self.inner.create_invalidation(target.into(), caller_reference, paths).await, completes_at)
    }
}
