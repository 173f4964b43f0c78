//! Resyncs of the in-progress budget: what is in progress that no reservation accounts for (people's invalidations,
//! other tools', a dead worker's past its lease), found by ListInvalidations, then GetInvalidation for the ones
//! not recognised (other people's once).

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use metrics::counter;
use tokio::time::Instant;
use tracing::{info, warn};

use super::Budget;
use super::budget::Local;
use super::room::Tally;
use crate::model::{CallerReference, DistributionId};
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
    pub fn resync_next(&self, distribution: &DistributionId) {
        self.local(distribution).unreserved.lock().unwrap().refreshed_at = None;
    }

    /// What is in progress without a reservation, resyncing when the last picture is stale; `None` when a resync
    /// failed for a reason that may pass.
    pub(super) async fn unreserved_usage(
        &self,
        distribution: &DistributionId,
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
        let view = match self.resync(distribution, reservations, known).await {
            Ok(view) => {
                outages().answered("cloudfront");
                view
            }
            Err(e) if e.retry_after() == RetryAfter::Never => {
                // Not allowed to look: the headroom left to people is then all that protects the quota.
                if let Some(suppressed) = log_allowed("budget_resync_refused") {
                    warn!(%distribution, error = %e, suppressed, "cannot list the distribution's invalidations (the role needs cloudfront:ListInvalidations and GetInvalidation); counting only reservations");
                }
                Unreserved { refreshed_at: Some(Instant::now()), ..Unreserved::default() }
            }
            Err(e) => {
                outages().failed("cloudfront");
                if let Some(suppressed) = log_allowed("budget_resync_failed") {
                    warn!(%distribution, error = %e, suppressed, "could not list the distribution's invalidations; waiting before submitting more");
                }
                return None;
            }
        };
        let usage = view.usage;
        let mut current = local.unreserved.lock().unwrap();
        *current = Unreserved { expired_seen: std::mem::take(&mut current.expired_seen), ..view };
        Some(usage)
    }

    /// Lists what is in progress and counts what no reservation accounts for.
    async fn resync(
        &self,
        distribution: &DistributionId,
        reservations: &[Reservation],
        known: HashMap<String, Allowance>,
    ) -> Result<Unreserved, CdnError> {
        counter!("cfi_budget_resyncs_total").increment(1);
        let now = self.clock.now();
        let live: Vec<&Reservation> = reservations.iter().filter(|r| r.until > now).collect();
        // Reservations count this worker's and the others' invalidations whatever the list shows: what it must find
        // is other people's, and those on the newest pages are what it can afford to read once a minute.
        let in_progress = self.cdn.list_in_progress(distribution, now).await?;
        let mut tally = Tally::of(in_progress.into_iter().map(|i| i.id).collect(), &live, known);
        for id in std::mem::take(&mut tally.to_look_up) {
            let detail = self.cdn.get_invalidation(distribution, &id).await?;
            tally.looked_up(id, &detail.caller_reference, &detail.paths, &live);
        }
        let Tally { usage, counted, .. } = tally;
        if !usage.is_empty() {
            info!(%distribution, paths = usage.paths, wildcards = usage.wildcards, "invalidations in progress that no worker reserved count against the budget");
        }
        Ok(Unreserved { usage, known: counted, refreshed_at: Some(Instant::now()), ..Unreserved::default() })
    }
}
