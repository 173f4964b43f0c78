//! Resyncs of the in-progress budget: what is in progress that no reservation accounts for (people's invalidations,
//! other tools', a dead worker's past its lease), found by ListInvalidations, then GetInvalidation for the ones
//! not recognised (other people's once). Where a tenant's invalidations count against its distribution's budget,
//! the tenants this worker submitted for lately are listed too; a tenant's own budget lists the tenant's alone.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime};

use metrics::counter;
use tokio::time::Instant;
use tracing::{info, warn};

use super::Budget;
use super::budget::{BudgetKey, Local};
use super::room::Tally;
use crate::model::{CallerReference, Target, TenantId};
use crate::ports::budget::{Allowance, JointWrites, Reservation};
use crate::ports::cdn::{Cdn, CdnError, RetryAfter};
use crate::telemetry::{log_allowed, outages};

/// What a resync found: invalidations in progress that no reservation accounts for.
#[derive(Debug, Default)]
pub(super) struct Unreserved {
    pub(super) usage: Allowance,
    /// Other people's invalidations already looked at, by id: asked about once, not at every resync.
    known: HashMap<String, Allowance>,
    pub(super) refreshed_at: Option<Instant>,
    /// Reservations this worker has seen expired (and resynced for), by id and end: a resumed batch reserves
    /// again under its old id, and its new reservation's expiry must be noticed too.
    pub(super) expired_seen: HashSet<(CallerReference, SystemTime)>,
}

/// Tenants of a distribution a resync lists besides the distribution: each is one more
/// ListInvalidationsForDistributionTenant call per resync, so only the most recently served.
pub(super) const TENANTS_LISTED: usize = 10;

/// The tenants of a distribution this worker's batches asked room for, and when each was last listed.
#[derive(Debug, Default)]
pub(super) struct TenantsSeen {
    /// Newest first, at most `TENANTS_LISTED`: the tenants every resync lists.
    recent: VecDeque<TenantId>,
    /// When each tenant was last listed, within the last resync interval: the tenants a resync listed, at most
    /// `TENANTS_LISTED` for each resync in that interval.
    listed_at: HashMap<TenantId, Instant>,
}

impl TenantsSeen {
    /// Counts `tenant` as served now, and answers whether its invalidations must be listed before its batch's room
    /// is known: not listed within `fresh_for`. With more tenants than a resync lists, one served again soon after
    /// it was listed forces no resync of its own: otherwise nearly every batch would.
    fn saw(&mut self, tenant: &TenantId, fresh_for: Duration) -> bool {
        self.recent.retain(|seen| seen != tenant);
        self.recent.push_front(tenant.clone());
        self.recent.truncate(TENANTS_LISTED);
        self.listed_at.get(tenant).is_none_or(|at| at.elapsed() >= fresh_for)
    }

    fn to_list(&self) -> Vec<TenantId> {
        self.recent.iter().cloned().collect()
    }

    /// A resync listed `tenants` at `at`; what was listed longer than `fresh_for` ago is forgotten.
    fn listed(&mut self, tenants: &[TenantId], at: Instant, fresh_for: Duration) {
        self.listed_at.retain(|_, listed| at.duration_since(*listed) < fresh_for);
        self.listed_at.extend(tenants.iter().map(|tenant| (tenant.clone(), at)));
    }
}

/// Resyncs next time if a reservation expired that this worker has not seen expire yet.
pub(super) fn notice_expired<'a>(local: &Local, expired: impl Iterator<Item = &'a Reservation>) {
    let mut view = local.unreserved.lock().unwrap();
    let expired: HashSet<(CallerReference, SystemTime)> = expired.map(|r| (r.id.clone(), r.until)).collect();
    if !expired.is_subset(&view.expired_seen) {
        view.refreshed_at = None;
    }
    view.expired_seen = expired;
}

impl<C: Cdn, S: JointWrites> Budget<C, S> {
    /// The picture of what is in progress may be wrong (CloudFront said TooManyInvalidationsInProgress, or an
    /// invalidation is no longer tracked): the next reservation resyncs first.
    pub fn resync_next(&self, key: &BudgetKey) {
        self.local(key).unreserved.lock().unwrap().refreshed_at = None;
    }

    /// A batch of `target` asks for room. Where a tenant's invalidations in progress count against its
    /// distribution's budget (`TenantLimits::Shared`), resyncs of that budget list this tenant's from now on (the
    /// next one at once, when the tenant is new), so people's and other tools' invalidations of it are counted. A
    /// tenant's own budget lists only the tenant's.
    pub fn serves(&self, target: &Target) {
        let key = self.key(target);
        let (Some(tenant), None) = (&target.tenant, &key.target().tenant) else { return };
        let local = self.local(&key);
        if local.tenants.lock().unwrap().saw(tenant, self.settings.resync_every) {
            local.unreserved.lock().unwrap().refreshed_at = None;
        }
    }

    /// What is in progress without a reservation, resyncing when the last picture is stale; `None` when a resync
    /// failed for a reason that may pass.
    pub(super) async fn unreserved_usage(
        &self,
        key: &BudgetKey,
        local: &Local,
        reservations: &[Reservation],
    ) -> Option<Allowance> {
        let known = {
            let view = local.unreserved.lock().unwrap();
            if view.refreshed_at.is_some_and(|at| at.elapsed() < self.settings.resync_every) {
                return Some(view.usage);
            }
            view.known.clone()
        };
        let tenants = local.tenants.lock().unwrap().to_list();
        let view = match self.resync(key, &tenants, reservations, known).await {
            Ok(view) => {
                outages().answered("cloudfront");
                view
            }
            Err(e) if e.retry_after() == RetryAfter::Never => {
                // Not allowed to look: the headroom left to people is then all that protects the quota.
                if let Some(suppressed) = log_allowed("budget_resync_refused") {
                    warn!(budget = %key, error = %e, suppressed, "cannot list the invalidations (the role needs cloudfront:ListInvalidations and GetInvalidation); counting only reservations");
                }
                Unreserved { refreshed_at: Some(Instant::now()), ..Unreserved::default() }
            }
            Err(e) => {
                outages().failed("cloudfront");
                if let Some(suppressed) = log_allowed("budget_resync_failed") {
                    warn!(budget = %key, error = %e, suppressed, "could not list the invalidations in progress; waiting before submitting more");
                }
                return None;
            }
        };
        // Listed, or refused for good: either way, not asked again for these tenants within the interval.
        local.tenants.lock().unwrap().listed(&tenants, Instant::now(), self.settings.resync_every);
        let usage = view.usage;
        let mut current = local.unreserved.lock().unwrap();
        *current = Unreserved { expired_seen: std::mem::take(&mut current.expired_seen), ..view };
        Some(usage)
    }

    /// Lists what is in progress on the distribution and on `tenants` of it, and counts what no reservation
    /// accounts for.
    async fn resync(
        &self,
        key: &BudgetKey,
        tenants: &[TenantId],
        reservations: &[Reservation],
        known: HashMap<String, Allowance>,
    ) -> Result<Unreserved, CdnError> {
        counter!("cfi_budget_resyncs_total").increment(1);
        let now = self.clock.now();
        let live: Vec<&Reservation> = reservations.iter().filter(|r| r.until > now).collect();
        // Reservations count this worker's and the others' invalidations whatever the list shows: what it must find
        // is other people's, and those on the newest pages are what it can afford to read once a minute.
        let distribution = key.distribution();
        let own = std::iter::once(key.target().clone());
        let targets = own.chain(tenants.iter().map(|tenant| Target::tenant(distribution.clone(), tenant.clone())));
        let mut target_of = HashMap::new();
        for target in targets {
            for invalidation in self.cdn.list_in_progress(&target, now).await? {
                target_of.insert(invalidation.id, target.clone());
            }
        }
        let mut tally = Tally::of(target_of.keys().cloned().collect(), &live, known);
        for id in std::mem::take(&mut tally.to_look_up) {
            let detail = self.cdn.get_invalidation(&target_of[&id], &id).await?;
            tally.looked_up(id, &detail.caller_reference, &detail.paths, &live);
        }
        let Tally { usage, counted, .. } = tally;
        if !usage.is_empty() {
            info!(budget = %key, paths = usage.paths, wildcards = usage.wildcards, "invalidations in progress that no worker reserved count against the budget");
        }
        Ok(Unreserved { usage, known: counted, refreshed_at: Some(Instant::now()), ..Unreserved::default() })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const EVERY: Duration = Duration::from_secs(60);

    fn tenant(n: usize) -> TenantId {
        TenantId::parse(&format!("dt_{n}")).unwrap()
    }

    /// Serves `tenant`, and lists the recent tenants when it must be listed: answers whether it was.
    fn serve(seen: &mut TenantsSeen, tenant: &TenantId) -> bool {
        let must = seen.saw(tenant, EVERY);
        if must {
            let listed = seen.to_list();
            seen.listed(&listed, Instant::now(), EVERY);
        }
        must
    }

    #[tokio::test(start_paused = true)]
    async fn the_tenants_listed_are_the_most_recently_served_and_bounded() {
        let mut seen = TenantsSeen::default();
        assert!(serve(&mut seen, &tenant(0)) && !serve(&mut seen, &tenant(0)), "listed once when new");
        for n in 1..=TENANTS_LISTED {
            serve(&mut seen, &tenant(n));
        }
        assert_eq!(seen.to_list().len(), TENANTS_LISTED);
        assert!(!seen.to_list().contains(&tenant(0)), "the least recently served went");
        assert!(!serve(&mut seen, &tenant(3)) && seen.to_list()[0] == tenant(3), "a tenant served again moves first");
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_not_allowed_to_list_asks_once_an_interval_not_at_every_batch_of_a_tenant() {
        use crate::fake::{FakeCdn, MemoryLedger};
        use crate::limit::budget::tests::settings;
        let cdn = Arc::new(FakeCdn::with_distributions(["EDFDVBD6EXAMPLE"]));
        let denied = CdnError::AccessDenied("not authorized to perform cloudfront:ListInvalidations".into());
        cdn.faults.down_until("list_invalidations", denied, Instant::now() + EVERY * 10);
        let clock = crate::clock::WallClock::following_tokio();
        let budget = Budget::new(Arc::clone(&cdn), Arc::new(MemoryLedger::default()), settings(), "w1".into(), clock);
        let target = Target::parse("EDFDVBD6EXAMPLE/dt_shop1").unwrap();
        let key = budget.key(&target);
        for _ in 0..5 {
            budget.serves(&target);
            let usage = budget.unreserved_usage(&key, &budget.local(&key), &[]).await;
            assert_eq!(usage, Some(Allowance::default()), "counting only reservations");
        }
        assert_eq!(cdn.list_calls().len(), 1, "five batches of the tenant within a minute, one refused listing");
        tokio::time::advance(EVERY).await;
        budget.serves(&target);
        budget.unreserved_usage(&key, &budget.local(&key), &[]).await;
        assert_eq!(cdn.list_calls().len(), 2, "a minute on, it asks again");
    }

    #[tokio::test(start_paused = true)]
    async fn more_tenants_than_a_resync_lists_force_a_listing_once_an_interval_not_at_every_batch() {
        let mut seen = TenantsSeen::default();
        let tenants: Vec<TenantId> = (0..5 * TENANTS_LISTED).map(tenant).collect();
        let rounds = |seen: &mut TenantsSeen| tenants.iter().filter(|t| serve(seen, t)).count();
        assert_eq!(rounds(&mut seen), tenants.len(), "each listed when first served");
        tokio::time::advance(EVERY / 2).await;
        assert_eq!(rounds(&mut seen), 0, "served again within the interval: listed already");
        tokio::time::advance(EVERY / 2).await;
        // The first one's listing covers the nine served last round too, as the most recently served.
        let again = tenants.len() - (TENANTS_LISTED - 1);
        assert_eq!(rounds(&mut seen), again, "an interval on, each is listed again");
        assert!(seen.listed_at.len() <= 2 * tenants.len(), "only the last interval's listings are kept");
    }
}
