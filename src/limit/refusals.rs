//! What the budget learns from CloudFront's refusals and acceptances: the belief in each distribution's
//! in-progress quotas (`belief`), the most CloudFront accepted in progress lately, and whether a fresh look
//! explains a refusal.

use std::time::Duration;

use tokio::time::Instant;

use super::Budget;
use super::belief::{ACCEPTED, InProgressBelief, REFUSED, SHARED};
use super::budget::{BudgetKey, Local};
use super::room;
use crate::model::CallerReference;
use crate::ports::budget::{Allowance, JointWrites};
use crate::ports::cdn::Cdn;

/// How long what CloudFront accepted in progress counts as proof of its quotas: a minute, longer than invalidations
/// take (AWS: P95 under 25 s), short enough to follow a quota that moves.
const PEAK_LASTS: Duration = Duration::from_secs(60);

impl<C: Cdn, S: JointWrites> Budget<C, S> {
    /// What every worker may use of the distribution now: the configured capacity, or less where refusals taught
    /// the worker that CloudFront allows less.
    pub fn capacity(&self, key: &BudgetKey) -> Allowance {
        let belief = *self.local(key).belief.lock().unwrap();
        belief.map_or(self.settings.capacity, |belief| belief.capacity(self.settings.capacity))
    }

    /// CloudFront refused a batch of `distribution` needing `need` that the books had room for, with `in_progress`
    /// before it: believe less of the quotas it used (less than the two together), though never less than
    /// CloudFront accepted in progress lately.
    pub fn learn_refused(&self, key: &BudgetKey, need: Allowance, in_progress: Allowance) -> bool {
        let peak = self.accepted_peak(key);
        self.change_belief(key, |belief| belief.refused(need, in_progress + need, peak), REFUSED)
    }

    /// CloudFront accepted batch `id` of `distribution`, needing `need`: probe up the quotas it used.
    pub fn learn_accepted(&self, key: &BudgetKey, id: &CallerReference, need: Allowance) -> bool {
        self.note_peak(&self.local(key), id);
        self.change_belief(key, |belief| belief.accepted(need), ACCEPTED)
    }

    /// Believes what another worker learned of one of the distribution's quotas (`limit`, as `belief` names it).
    pub fn adopt(&self, key: &BudgetKey, limit: &str, believed: f64) -> bool {
        self.change_belief(key, |belief| belief.adopt(limit, believed), SHARED)
    }

    fn change_belief(
        &self,
        key: &BudgetKey,
        change: impl FnOnce(&mut InProgressBelief) -> bool,
        why: &'static str,
    ) -> bool {
        let local = self.local(key);
        let mut belief = local.belief.lock().unwrap();
        let belief = belief.get_or_insert_with(|| InProgressBelief::new(self.settings.capacity));
        let changed = change(belief);
        if changed {
            belief.show(&self.limits, &key.to_string(), self.settings.capacity, why);
        }
        changed
    }

    /// CloudFront refused batch `id` (needing `need`) as too much in progress: does a fresh look at the
    /// distribution explain it (people's invalidations the books did not count)? `None` when it does, or the look
    /// failed (the worker learns only from what it knows); otherwise what CloudFront holds in progress on the
    /// distribution by the books, the batch aside.
    pub async fn unexplained_refusal(
        &self,
        key: &BudgetKey,
        id: &CallerReference,
        need: Allowance,
    ) -> Option<Allowance> {
        self.resync_next(key);
        let local = self.local(key);
        let state = self.store.read_budget(key).await.ok()?;
        let unreserved = self.unreserved_usage(key, &local, &state.reservations).await?;
        let now = self.clock.now();
        let capacity = self.capacity(key);
        let in_progress = room::in_progress(id, unreserved, &state.reservations, now);
        let submitted = room::submitted(id, unreserved, &state.reservations, now);
        *local.known.lock().unwrap() = Some(state);
        need.min(capacity).fits_in(capacity - in_progress).then_some(submitted)
    }

    /// The most CloudFront accepted in progress on the distribution within the last `PEAK_LASTS`: proof that its
    /// in-progress quotas allow at least that much.
    pub fn accepted_peak(&self, key: &BudgetKey) -> Allowance {
        let peak = *self.local(key).peak.lock().unwrap();
        peak.filter(|(_, at)| at.elapsed() < PEAK_LASTS).map(|(peak, _)| peak).unwrap_or_default()
    }

    /// CloudFront accepted batch `id` of the distribution: what is in progress with it, by the books, counts
    /// towards the peak.
    fn note_peak(&self, local: &Local, id: &CallerReference) {
        let Some(state) = local.known.lock().unwrap().clone() else { return };
        let unreserved = local.unreserved.lock().unwrap().usage;
        let with_it = room::submitted(id, unreserved, &state.reservations, self.clock.now())
            + state.reservations.iter().filter(|r| &r.id == id).map(|r| r.need).sum();
        let mut peak = local.peak.lock().unwrap();
        let recent = peak.filter(|(_, at)| at.elapsed() < PEAK_LASTS).map(|(peak, _)| peak).unwrap_or_default();
        *peak = Some((recent.max(with_it), Instant::now()));
    }
}
