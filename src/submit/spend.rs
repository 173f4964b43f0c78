//! Spending less: `--coalesce cost` collapses directories whose wildcard saves enough billed paths, and
//! `--monthly-path-budget` keeps every worker's batches of a month under one cap kept in the ledger.
//!
//! The cap is enforced where it cannot be raced: the intent record and the month's count move in one conditional
//! write, the same as the batch's budget reservation (`JointWrites::reserve_recording`). What the worker knows of
//! the month beforehand only shapes the batch so that the write is likely to pass; when another worker got there
//! first, the batch is shaped again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use metrics::counter;
use tracing::{info, warn};

use super::Submitter;
use super::choose::{Coalescing, Known};
use crate::batch::Batch;
use crate::coverage::{CLOCK_SKEW, Since, covers};
use crate::model::DistributionId;
use crate::model::message::BatchMember;
use crate::model::path::{count_wildcards, invalidates};
use crate::plan::{self, Plan};
use crate::ports::budget::JointWrites;
use crate::ports::cdn::Cdn;
use crate::ports::ledger::BatchRecord;
use crate::ports::ledger::{MonthCap, billing_month};
use crate::telemetry::{BudgetHold, log_allowed};

/// `--coalesce cost`: a directory's paths become its wildcard when that saves at least `min_saving` billed paths.
#[derive(Debug, Clone)]
pub struct CostPolicy {
    pub min_saving: usize,
    /// Per distribution, from the routes file's rules.
    pub overrides: Arc<HashMap<DistributionId, usize>>,
}

impl CostPolicy {
    pub fn min_saving(&self, distribution: &DistributionId) -> usize {
        self.overrides.get(distribution).copied().unwrap_or(self.min_saving)
    }
}

/// What the worker does to keep the bill down, besides merging.
#[derive(Debug, Clone, Default)]
pub struct Spending {
    pub cost: Option<CostPolicy>,
    /// Paths (a wildcard or a tag counting as one) all workers' batches may bill in a calendar month (UTC).
    pub monthly_path_budget: Option<u64>,
}

/// How often a batch held by a spent budget looks again: the month's figures are read this often anyway.
const HELD_LOOKS_EVERY: Duration = crate::billing::REFRESH_EVERY;

/// The paths of `batch` replaced as `plan` says, noted in the ledger record as `note`.
pub(super) fn replaced(batch: &Batch, plan: Plan, reason: &'static str, note: String) -> Batch {
    let replaced: usize = plan.replacements.iter().map(|r| r.replaced).sum();
    counter!("cfi_batches_coalesced_total", "reason" => reason).increment(1);
    counter!("cfi_paths_coalesced_total", "reason" => reason).increment(replaced as u64);
    let mut coalesced = batch.clone();
    coalesced.content.wildcard_count = count_wildcards(&plan.paths);
    coalesced.content.paths = plan.paths;
    coalesced.coalescing = Some(note);
    coalesced
}

/// `/a/*` (12 paths), `/b/*` (40 paths)
pub(super) fn described(plan: &Plan) -> String {
    let each = plan.replacements.iter().map(|r| format!("{} ({} paths)", r.wildcard, r.replaced));
    each.collect::<Vec<_>>().join(", ")
}

impl<C: Cdn, L: JointWrites> Submitter<C, L> {
    /// The monthly cap a new batch of `distribution` is recorded under, if there is one: its account's.
    pub(super) fn month_cap(&self, distribution: &DistributionId) -> Option<MonthCap> {
        let limit = self.spending.monthly_path_budget?;
        let account = self.accounts.month_account(distribution);
        Some(MonthCap { month: billing_month(self.ownership.clock.now()), limit, account })
    }

    /// Under `--coalesce cost`, the batch with each directory collapsed whose wildcard saves enough billed paths,
    /// within the wildcard room the distribution had at the last look.
    pub(super) fn collapse_for_cost(&self, batch: Batch) -> Batch {
        let Some(policy) = &self.spending.cost else {
            return batch;
        };
        let distribution = &batch.content.distribution_id;
        let min_saving = policy.min_saving(distribution);
        let wildcard_room = self.budget.last_room(&self.budget.key(&batch.content.target())).wildcards as usize;
        let Some(plan) = plan::collapse_for_cost(&batch.content.paths, min_saving, wildcard_room) else {
            return batch;
        };
        let note = format!(
            "{} replaced by directory wildcards: each saves at least {min_saving} billed paths (--coalesce cost)",
            described(&plan)
        );
        info!(%distribution, caller_reference = %batch.caller_reference, paths_before = batch.content.paths.len(), paths_after = plan.paths.len(), "collapsing directories to save billed paths");
        replaced(&batch, plan, "cost", note)
    }

    /// A batch the month's path budget holds: first without the paths that invalidations created since it was
    /// sealed cover already (a ledger query, worth it only now), then, if that does not make it fit, waiting (its
    /// messages held) and saying so in the log, the metrics and `/readyz`, until the month ends or a later
    /// invalidation covers it.
    pub(super) async fn wait_for_month(&self, batch: Batch, wait: &mut MonthWait, left: Option<u64>) -> Spend {
        if !wait.looked_for_cover {
            wait.looked_for_cover = true;
            return self.without_covered(batch).await;
        }
        wait.looked_for_cover = false;
        wait.hold.get_or_insert_with(BudgetHold::start);
        if let Some(suppressed) = log_allowed("month_budget_spent") {
            let MonthFigures { spent, limit, month } = self.month_figures(left);
            warn!(alarm = "monthly_path_budget", distribution = %batch.content.distribution_id, caller_reference = %batch.caller_reference, paths = batch.content.paths.len(), spent, limit, %month, suppressed, "the monthly path budget is spent: the batch waits, its messages held, until the month ends or --monthly-path-budget is raised");
        }
        tokio::time::sleep(HELD_LOOKS_EVERY).await;
        Spend::Submit(batch)
    }

    /// What the log and a coalescing note say of the month, from the paths `left` of its budget.
    fn month_figures(&self, left: Option<u64>) -> MonthFigures {
        let limit = self.spending.monthly_path_budget.unwrap_or_default();
        let spent = limit.saturating_sub(left.unwrap_or_default());
        MonthFigures { spent, limit, month: billing_month(self.ownership.clock.now()) }
    }

    /// The batch with its paths replaced as `plan` says, noted in its record with why.
    pub(super) fn coalesced(&self, batch: &Batch, plan: Plan, why: Coalescing, known: &Known) -> Batch {
        let distribution = &batch.content.distribution_id;
        let (paths_before, paths_after) = (batch.content.paths.len(), plan.paths.len());
        match why {
            Coalescing::Month => {
                let MonthFigures { spent, limit, month } = self.month_figures(known.month_left);
                let note = format!(
                    "{} replaced by directory wildcards to stay within the monthly path budget: {spent} of {limit} paths spent in {month}",
                    described(&plan)
                );
                info!(%distribution, caller_reference = %batch.caller_reference, paths_before, paths_after, spent, limit, "coalescing a batch to stay within the monthly path budget");
                replaced(batch, plan, "month_budget", note)
            }
            Coalescing::Overload(clears_in) => {
                let note = self.overload_note(batch, &plan, clears_in);
                warn!(%distribution, caller_reference = %batch.caller_reference, paths_before, paths_after, reason = %note, "coalescing an overloaded distribution's batch into wildcards");
                replaced(batch, plan, "overload", note)
            }
        }
    }

    /// A batch that may be covered (`Batch::may_be_covered`) without what invalidations accepted since cover: one
    /// query of the distribution's recent records.
    pub(super) async fn uncovered_since_sealed(&self, batch: Batch) -> Spend {
        if batch.may_be_covered { self.without_covered(batch).await } else { Spend::Submit(batch) }
    }

    /// The batch without the paths that accepted invalidations CloudFront created after the batch was sealed cover
    /// (`coverage`: every change its messages announce happened before that): one query of the distribution's
    /// recent records.
    async fn without_covered(&self, mut batch: Batch) -> Spend {
        let distribution = &batch.content.distribution_id;
        let records = match self.ledger.list(distribution, covering_since(&batch), RECENT_RECORDS).await {
            Ok(records) => records,
            Err(e) => {
                if let Some(suppressed) = log_allowed("recent_records_failed") {
                    warn!(%distribution, error = %e, suppressed, "could not read the distribution's recent invalidations; the batch is judged on all its paths");
                }
                return Spend::Submit(batch);
            }
        };
        let before = batch.content.paths.len();
        let worker = &self.ownership.worker_id;
        let gone: Vec<bool> = batch.content.paths.iter().map(|path| covered(&records, &batch, worker, path)).collect();
        let mut gone = gone.into_iter();
        batch.content.paths.retain(|_| !gone.next().unwrap_or(false));
        if batch.content.paths.len() < before {
            counter!("cfi_paths_covered_by_later_invalidations_total")
                .increment((before - batch.content.paths.len()) as u64);
            batch.content.wildcard_count = count_wildcards(&batch.content.paths);
        }
        // A batch that came with no paths was covered by nothing: it goes on, to be refused with a reason.
        if before > 0 && batch.content.paths.is_empty() {
            info!(%distribution, caller_reference = %batch.caller_reference, "invalidations created since the batch was sealed cover all its paths: its messages are covered without another");
            return Spend::Covered(batch);
        }
        Spend::Submit(batch)
    }
}

/// How far back a batch's covering invalidations may have been recorded: since it was sealed, or, for a message
/// in it that an earlier batch held as well (a redelivery, or a batch that went in part and merged with later
/// ones, taking their seal time), since the message was sent (on SQS's clock, hence the skew).
fn covering_since(batch: &Batch) -> SystemTime {
    let sent = batch.content.members.iter().filter_map(|m| m.sent_at).min();
    sent.map_or(batch.sealed_at, |sent| batch.sealed_at.min(sent - CLOCK_SKEW))
}

/// Whether an invalidation created after the batch was sealed covers `path` (every message in the batch was
/// sent before), or, for every message of the batch that asked for `path` or a path it covers, one created after
/// SQS says the message was sent.
fn covered(records: &[BatchRecord], batch: &Batch, worker: &str, path: &str) -> bool {
    let sealed = Since::Sealed { at: batch.sealed_at, by: worker };
    if records.iter().any(|r| covers(r, sealed, path)) {
        return true;
    }
    let askers: Vec<&BatchMember> =
        batch.content.members.iter().filter(|m| m.paths.iter().any(|own| invalidates(path, own.as_str()))).collect();
    !askers.is_empty()
        && askers.iter().all(|member| {
            member.sent_at.is_some_and(|sent_at| {
                let since = Since::Message { id: &member.delivery.message_id, sent_at };
                records.iter().any(|r| covers(r, since, path))
            })
        })
}

struct MonthFigures {
    spent: u64,
    limit: u64,
    month: String,
}

/// A batch's wait for the month's path budget.
#[derive(Default)]
pub(super) struct MonthWait {
    /// Counted among the batches held for the budget while it lives.
    pub hold: Option<BudgetHold>,
    /// Since the last look: the paths invalidations accepted since the batch was sealed cover are gone from it.
    looked_for_cover: bool,
}

/// What the spending rules make of a batch.
pub(super) enum Spend {
    Submit(Batch),
    /// Invalidations accepted since it was sealed cover every path: nothing is left to submit.
    Covered(Batch),
}

/// How many of a distribution's newest records are looked through for invalidations that cover a batch.
const RECENT_RECORDS: usize = 100;
