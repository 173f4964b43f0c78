//! The simulator's bookkeeping: invalidations by id and by CallerReference, and per distribution what is in
//! progress, ordered by completion time so that finished invalidations leave the totals without a scan of history.

use std::collections::{BTreeMap, HashMap};

use tokio::time::Instant;

use super::paths::check_paths;
use super::{
    AccountRates, Allowance, CreateCall, Created, DistributionReport, Page, Rejection, Report, SimConfig, Snapshot,
    StatusCheck, Summary, unit_draw,
};
use crate::limit::bucket::TokenBucket;
use crate::model::path::is_covered_by;
use crate::model::{CallerReference, DistributionId, Target, TenantId};
use crate::ports::cdn::{CdnError, Invalidation};

/// The worker mints `cfi-<UUIDv7>` (`CallerReference::mint`); any other reference is someone else's.
const WORKER_REFERENCE_PREFIX: &str = "cfi-";
/// Keeps the 5xx draws apart from the completion-time draws, which hash small sequence numbers too.
const FAILURE_DRAW_SALT: u64 = 0x5EED_F417;

use super::LIST_PAGE_SIZE;

const IN_PROGRESS: &str = "InProgress";
const COMPLETED: &str = "Completed";

#[derive(Debug)]
struct Stored {
    created: Created,
    completes_at: Instant,
}

impl Stored {
    fn status(&self, now: Instant) -> &'static str {
        if now >= self.completes_at { COMPLETED } else { IN_PROGRESS }
    }
}

/// In flight overall, and of the worker's invalidations alone.
#[derive(Debug, Clone, Copy, Default)]
struct Load {
    all: Allowance,
    worker: Allowance,
}

impl Load {
    fn of(reference: &CallerReference, paths: &[String]) -> Self {
        let all = Allowance::of(paths);
        let worker = if reference.as_str().starts_with(WORKER_REFERENCE_PREFIX) { all } else { Allowance::default() };
        Self { all, worker }
    }
}

#[derive(Debug, Default)]
struct Distribution {
    by_reference: HashMap<CallerReference, usize>,
    /// Indexes into `State::invalidations`, oldest first.
    created: Vec<usize>,
    /// Unfinished invalidations by completion time, so that finished ones leave `load` without a scan of history.
    in_progress: BTreeMap<(Instant, usize), Load>,
    load: Load,
    peak: Load,
}

impl Distribution {
    /// Takes what has completed by `now` out of the load.
    fn settle(&mut self, now: Instant) {
        while let Some(first) = self.in_progress.first_entry() {
            if first.key().0 > now {
                break;
            }
            let finished = first.remove();
            self.load = Load { all: self.load.all - finished.all, worker: self.load.worker - finished.worker };
        }
    }

    fn admit(&mut self, index: usize, reference: &CallerReference, completes_at: Instant, load: Load) {
        self.by_reference.insert(reference.clone(), index);
        self.created.push(index);
        self.in_progress.insert((completes_at, index), load);
        self.load = Load { all: self.load.all + load.all, worker: self.load.worker + load.worker };
        self.peak = Load { all: self.peak.all.max(self.load.all), worker: self.peak.worker.max(self.load.worker) };
    }
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) config: SimConfig,
    /// A map: a linear search of a thousand ids per call cost 5 % of the pipeline benchmark (benches/pipeline.rs).
    /// Whole distributions and their tenants, each with its own invalidations and in-progress quotas.
    distributions: HashMap<Target, Distribution>,
    pub(super) refused_fragments: Vec<String>,
    /// Every invalidation in creation order; the index + 1 is its sequence number.
    invalidations: Vec<Stored>,
    by_id: HashMap<String, usize>,
    pub(super) calls: Vec<CreateCall>,
    pub(super) status_checks: Vec<StatusCheck>,
    pub(super) list_calls: Vec<StatusCheck>,
    pub(super) rejections: Vec<Rejection>,
    /// Calls that reached the failure draw, numbering the draws.
    draws: u64,
    /// Each account's rate buckets, paths then wildcards, full at its first invalidation.
    rates: HashMap<String, [Option<TokenBucket>; 2]>,
}

impl State {
    pub(super) fn new(config: SimConfig) -> Self {
        Self {
            config,
            distributions: HashMap::new(),
            refused_fragments: Vec::new(),
            invalidations: Vec::new(),
            by_id: HashMap::new(),
            calls: Vec::new(),
            status_checks: Vec::new(),
            list_calls: Vec::new(),
            rejections: Vec::new(),
            draws: 0,
            rates: HashMap::new(),
        }
    }

    /// False if it was already there.
    pub(super) fn add_distribution(&mut self, id: DistributionId) -> bool {
        let id = Target::from(id);
        let added = !self.distributions.contains_key(&id);
        self.distributions.entry(id).or_default();
        added
    }

    /// False if it was already there; an error if the distribution is not.
    pub(super) fn add_tenant(&mut self, distribution: DistributionId, tenant: TenantId) -> Result<bool, CdnError> {
        self.distribution(&Target::from(&distribution))?;
        let id = Target::tenant(distribution, tenant);
        let added = !self.distributions.contains_key(&id);
        self.distributions.entry(id).or_default();
        Ok(added)
    }

    pub(super) fn tenant(&self, tenant: &TenantId) -> Option<Target> {
        self.distributions.keys().find(|target| target.tenant.as_ref() == Some(tenant)).cloned()
    }

    /// A reference no one has used, for an invalidation made in the console.
    pub(super) fn console_reference(&self) -> CallerReference {
        CallerReference::from_recorded(format!("console-{}", self.invalidations.len() + 1))
    }

    /// Every invalidation, in creation order.
    pub(super) fn created(&self) -> Vec<Created> {
        self.invalidations.iter().map(|stored| stored.created.clone()).collect()
    }

    pub(super) fn draw_failure(&mut self) -> Result<(), CdnError> {
        self.draws += 1;
        if unit_draw(self.draws ^ FAILURE_DRAW_SALT) < self.config.fail_rate {
            return Err(CdnError::Unavailable("CloudFront encountered an internal error. Please try again.".into()));
        }
        Ok(())
    }

    fn distribution(&mut self, id: &Target) -> Result<&mut Distribution, CdnError> {
        self.distributions.get_mut(id).ok_or_else(|| no_such_distribution(id))
    }

    pub(super) fn create(
        &mut self,
        account: &str,
        distribution: &Target,
        reference: &CallerReference,
        paths: &[String],
        now: Instant,
    ) -> Result<Invalidation, CdnError> {
        self.distribution(distribution)?;
        check_paths(&self.config, &self.refused_fragments, paths)?;
        let (quotas, completion, sequence) = (self.config.quotas, self.config.completion, self.invalidations.len());
        let Self { distributions, invalidations, by_id, rates, config, .. } = self;
        let target = distributions.get_mut(distribution).expect("checked above");
        target.settle(now);
        // The reference is looked at before the quota: a retry of an accepted batch must get its invalidation back
        // even when the distribution is full. It is answered as at creation: whether CloudFront reports the current
        // status here is undocumented, and callers read the id.
        if let Some(&index) = target.by_reference.get(reference) {
            let first = &invalidations[index];
            if first.created.paths != paths {
                return Err(CdnError::BatchAlreadyExists(reference.to_string()));
            }
            return Ok(Invalidation { id: first.created.id.clone(), status: IN_PROGRESS.into() });
        }
        let load = Load::of(reference, paths);
        let over_quota = quotas.is_some_and(|quotas| !(target.load.all + load.all).fits_in(quotas));
        if over_quota || !take_rates(rates, account, config.account_rates, load.all, now) {
            return Err(CdnError::TooManyInProgress(
                "Processing your request will cause you to exceed the maximum number of in-progress invalidations."
                    .into(),
            ));
        }
        let completes_at = now + completion.delay(sequence as u64 + 1);
        let id = format!("I{:012}", sequence + 1);
        target.admit(sequence, reference, completes_at, load);
        by_id.insert(id.clone(), sequence);
        invalidations.push(Stored {
            created: Created {
                id: id.clone(),
                account: account.to_owned(),
                distribution_id: distribution.distribution.clone(),
                tenant_id: distribution.tenant.clone(),
                caller_reference: reference.clone(),
                paths: paths.to_vec(),
                at: now,
            },
            completes_at,
        });
        Ok(Invalidation { id, status: IN_PROGRESS.into() })
    }

    pub(super) fn reject(
        &mut self,
        account: &str,
        distribution: &Target,
        reference: &CallerReference,
        error: &CdnError,
        now: Instant,
    ) {
        self.rejections.push(Rejection {
            account: account.to_owned(),
            at: now,
            distribution_id: distribution.distribution.clone(),
            caller_reference: reference.clone(),
            code: error.code(),
        });
    }

    /// The index of invalidation `id` of `distribution`.
    fn index(&self, distribution: &Target, id: &str) -> Result<usize, CdnError> {
        if !self.distributions.contains_key(distribution) {
            return Err(no_such_distribution(distribution));
        }
        self.by_id
            .get(id)
            .copied()
            .filter(|&index| &self.invalidations[index].created.target() == distribution)
            .ok_or_else(|| CdnError::NoSuchInvalidation(format!("The specified invalidation does not exist: {id}")))
    }

    pub(super) fn find(&self, distribution: &Target, id: &str, now: Instant) -> Result<Snapshot, CdnError> {
        let stored = &self.invalidations[self.index(distribution, id)?];
        Ok(Snapshot { created: stored.created.clone(), status: stored.status(now) })
    }

    /// When the last invalidation of `distribution` covering `path` (the path itself or a wildcard over it) that
    /// had completed by `by` completed.
    pub(super) fn last_completion_covering(&self, distribution: &Target, path: &str, by: Instant) -> Option<Instant> {
        let created = &self.distributions.get(distribution)?.created;
        created
            .iter()
            .map(|&index| &self.invalidations[index])
            .filter(|stored| stored.completes_at <= by && is_covered_by(path, &stored.created.paths))
            .map(|stored| stored.completes_at)
            .max()
    }

    pub(super) fn page(
        &self,
        distribution: &Target,
        marker: Option<&str>,
        max_items: usize,
        now: Instant,
    ) -> Result<Page, CdnError> {
        let end = match marker {
            None => None,
            Some(marker) => Some(self.index(distribution, marker).map_err(|_| {
                CdnError::InvalidArgument(format!("The marker is not an invalidation of this distribution: {marker}"))
            })?),
        };
        let created = &self.distributions.get(distribution).ok_or_else(|| no_such_distribution(distribution))?.created;
        let older = &created[..end.map_or(created.len(), |end| created.partition_point(|&index| index < end))];
        let items: Vec<Summary> = older
            .iter()
            .rev()
            .take(max_items)
            .map(|&index| {
                let stored = &self.invalidations[index];
                Summary { id: stored.created.id.clone(), status: stored.status(now), at: stored.created.at }
            })
            .collect();
        let next_marker = (older.len() > items.len()).then(|| items.last().map(|last| last.id.clone())).flatten();
        Ok(Page { items, next_marker })
    }

    /// What ListInvalidations pages say, most recent first, read until a page holds none in progress and reaches
    /// back before `since`.
    pub(super) fn recent(
        &mut self,
        distribution: &Target,
        now: Instant,
        since: Instant,
    ) -> Result<Vec<Invalidation>, CdnError> {
        let target = self.distribution(distribution)?;
        target.settle(now);
        let created = &self.distributions[distribution].created;
        let mut recent = Vec::new();
        for page in created.rchunks(LIST_PAGE_SIZE) {
            let before = recent.len();
            recent.extend(page.iter().rev().map(|&index| {
                let stored = &self.invalidations[index];
                Invalidation { id: stored.created.id.clone(), status: stored.status(now).into() }
            }));
            let reaches_back = self.invalidations[page[0]].created.at < since;
            if reaches_back && recent[before..].iter().all(Invalidation::is_completed) {
                break;
            }
        }
        Ok(recent)
    }

    pub(super) fn report(&mut self, now: Instant) -> Report {
        let mut report = Report::default();
        let is_worker = |reference: &CallerReference| reference.as_str().starts_with(WORKER_REFERENCE_PREFIX);
        for stored in &self.invalidations {
            report.all.bill(&stored.created.paths);
            report.accounts.entry(stored.created.account.clone()).or_default().bill(&stored.created.paths);
            if is_worker(&stored.created.caller_reference) {
                report.worker.bill(&stored.created.paths);
            }
        }
        for rejection in &self.rejections {
            report.all.refused(rejection.code);
            report.accounts.entry(rejection.account.clone()).or_default().refused(rejection.code);
            if is_worker(&rejection.caller_reference) {
                report.worker.refused(rejection.code);
            }
        }
        for (id, distribution) in &mut self.distributions {
            distribution.settle(now);
            report.distributions.insert(
                id.to_string(),
                DistributionReport {
                    in_progress: distribution.load.all,
                    peak: distribution.peak.all,
                    worker_peak: distribution.peak.worker,
                    worker_paths_billed: 0,
                },
            );
        }
        for created in self.invalidations.iter().map(|stored| &stored.created) {
            if let (true, Some(distribution)) =
                (is_worker(&created.caller_reference), report.distributions.get_mut(&created.target().to_string()))
            {
                distribution.worker_paths_billed += created.paths.len();
            }
        }
        report
    }
}

/// Takes an invalidation's paths and wildcards from the account's rate buckets, both or neither.
fn take_rates(
    buckets: &mut HashMap<String, [Option<TokenBucket>; 2]>,
    account: &str,
    rates: AccountRates,
    need: Allowance,
    now: Instant,
) -> bool {
    let full = |quota: Option<super::RateQuota>| {
        quota.map(|quota| TokenBucket::full(quota.per_second, f64::from(quota.burst), now))
    };
    let [paths, wildcards] =
        buckets.entry(account.to_owned()).or_insert_with(|| [full(rates.paths), full(rates.wildcards)]);
    if !paths.as_mut().is_none_or(|bucket| need.paths == 0 || bucket.try_take(need.paths, now)) {
        return false;
    }
    if wildcards.as_mut().is_none_or(|bucket| need.wildcards == 0 || bucket.try_take(need.wildcards, now)) {
        return true;
    }
    if let Some(bucket) = paths.as_mut().filter(|_| need.paths > 0) {
        bucket.give_back(need.paths);
    }
    false
}

fn no_such_distribution(id: &Target) -> CdnError {
    match &id.tenant {
        None => CdnError::NoSuchDistribution(format!("The specified distribution does not exist: {id}")),
        Some(tenant) => {
            CdnError::NoSuchDistribution(format!("The specified distribution tenant does not exist: {tenant}"))
        }
    }
}
