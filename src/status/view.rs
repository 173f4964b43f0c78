//! What the status page shows, built from what was read without I/O: everything here is a pure function of a
//! `Snapshot`, so it is tested on hand-made data and benchmarked apart from DynamoDB.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::limit::Backlog;
use crate::limit::accounts::{AccountHeadroom, AccountKey};
use crate::limit::belief::Believed;
use crate::model::DistributionId;
use crate::model::text::capped;
use crate::plan::{free_paths_left, month_dollars};
use crate::ports::audit::{BatchSummary, FailureRecord};
use crate::ports::budget::{Allowance, BudgetState};
use crate::ports::ledger::{BatchStatus, MonthBilling, by_account};
use crate::ports::queue::QueueDepth;

/// Recent invalidations listed: enough for a working day of a busy site at a glance.
pub const RECENT_LIMIT: usize = 50;
/// Newest dead letters and refused batches listed.
pub const FAILURES_LIMIT: usize = 10;
/// A reason is producer-controlled text up to 8 KiB: the table shows its start.
const REASON_BYTES: usize = 300;
/// A distribution is flagged once this share of what workers may use of either quota is in progress.
const NEAR_QUOTA: f64 = 0.8;

/// What the page is told besides what it reads.
#[derive(Debug, Clone)]
pub struct StatusSettings {
    /// The ledger table, for the audit commands the page prints.
    pub table: String,
    /// Each distribution's in-progress quotas (`--in-progress-paths`, `--in-progress-wildcards`).
    pub quota: Allowance,
    /// What workers leave of each quota to people (`--reserve-paths`, `--reserve-wildcards`).
    pub reserve: Allowance,
    /// Paths the operators mean to bill at most in a month, if they set a budget.
    pub monthly_path_budget: Option<u64>,
}

/// Everything the page is built from, as read at `now`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub now: SystemTime,
    pub budgets: Vec<(DistributionId, BudgetState)>,
    /// Oldest first.
    pub pending: Vec<BatchSummary>,
    /// Newest first.
    pub recent: Vec<BatchSummary>,
    /// Newest first.
    pub failures: Vec<FailureRecord>,
    pub queue: Result<QueueDepth, String>,
    /// `None` when the queue has no dead-letter queue.
    pub dead_letter_queue: Option<Result<QueueDepth, String>>,
    pub billing: MonthBilling,
    /// Each account's part of the month (`own` among them) when the worker serves more than one; none otherwise.
    pub account_months: Vec<(String, MonthBilling)>,
    /// `None` outside a worker: batches waiting for room are in no shared record.
    pub waiting: Option<Vec<(DistributionId, Backlog)>>,
    /// The limits the worker believes below their configuration, by name and scope; none outside a worker.
    pub limits: Vec<(&'static str, String, Believed)>,
    /// Each account's rates, the worker's own first; none outside a worker.
    pub accounts: Vec<AccountHeadroom>,
    /// A worker checking at the edge: its checks' outcomes in one line.
    pub edge: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub generated_at: String,
    pub table: String,
    pub quota: Allowance,
    pub reserve: Allowance,
    pub distributions: Vec<DistributionRow>,
    /// Whether `waiting` in the rows is known (the worker serves the page) or not (`cf-invalidator status`).
    pub waiting_known: bool,
    /// The serving worker's checks at the edge, if it makes them.
    pub edge: Option<String>,
    pub queue: Result<QueueDepth, String>,
    pub dead_letter_queue: Option<Result<QueueDepth, String>>,
    pub failures: Vec<FailureRow>,
    pub recent: Vec<InvalidationRow>,
    pub cost: CostView,
    pub workers: Vec<WorkerRow>,
    /// The limits the worker believes lower than configured: (limit, scope, believed, configured).
    pub limits: Vec<(&'static str, String, f64, f64)>,
    /// One row per account the serving worker calls CloudFront in; none outside a worker.
    pub accounts: Vec<AccountHeadroom>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DistributionRow {
    pub id: String,
    pub in_progress: Allowance,
    /// What workers may still start: the quotas minus the reserve minus what is in progress.
    pub headroom: Allowance,
    pub reservations: usize,
    pub pending_batches: usize,
    pub waiting_batches: Option<usize>,
    /// How long the oldest path not yet accepted by CloudFront has waited: the oldest pending batch, or the
    /// worker's longest wait for room.
    pub oldest_pending: Option<String>,
    pub near_quota: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FailureRow {
    pub created_at: String,
    pub kind: &'static str,
    pub subject: String,
    pub distribution: String,
    pub code: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InvalidationRow {
    pub created_at: String,
    pub distribution: String,
    pub invalidation_id: Option<String>,
    pub caller_reference: String,
    pub paths: usize,
    pub requesters: String,
    pub status: &'static str,
    pub time_to_complete: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CostView {
    pub month: String,
    pub paths_billed: u64,
    pub batches: u64,
    /// The free paths left and the budget of the only account; with several, each account's row has its own.
    pub free_paths_left: u64,
    /// Summed over the accounts, each past its own free paths.
    pub estimated_dollars: f64,
    pub budget: Option<BudgetUse>,
    /// One row per account, the own first, when the worker serves more than one.
    pub accounts: Vec<AccountCost>,
    pub days: Vec<DayBar>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccountCost {
    /// `own` or the 12-digit id.
    pub account: String,
    pub paths_billed: u64,
    pub free_paths_left: u64,
    pub estimated_dollars: f64,
    /// The monthly path budget holds per account.
    pub budget: Option<BudgetUse>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetUse {
    pub paths: u64,
    pub used_percent: f64,
    pub over: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DayBar {
    /// `DD`.
    pub day: String,
    pub paths_billed: u64,
    /// Of the busiest day's, 0 to 100.
    pub height_percent: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRow {
    pub owner: String,
    pub reservations: usize,
    pub leases: usize,
    /// When what it holds runs out unless it renews it: a live worker renews before then.
    pub holds_until: String,
    pub live: bool,
}

/// Rounded to the second: the page refreshes every few seconds, finer is noise.
pub fn age(from: SystemTime, now: SystemTime) -> String {
    let elapsed = now.duration_since(from).unwrap_or_default();
    humantime::format_duration(Duration::from_secs(elapsed.as_secs())).to_string()
}

fn at(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

pub fn view(snapshot: &Snapshot, settings: &StatusSettings) -> View {
    let now = snapshot.now;
    View {
        generated_at: at(now),
        table: settings.table.clone(),
        quota: settings.quota,
        reserve: settings.reserve,
        distributions: distributions(snapshot, settings.quota - settings.reserve),
        waiting_known: snapshot.waiting.is_some(),
        queue: snapshot.queue.clone(),
        dead_letter_queue: snapshot.dead_letter_queue.clone(),
        failures: snapshot.failures.iter().take(FAILURES_LIMIT).map(failure_row).collect(),
        recent: recent(snapshot),
        cost: cost(&snapshot.billing, &snapshot.account_months, settings.monthly_path_budget),
        workers: workers(snapshot),
        limits: snapshot
            .limits
            .iter()
            .map(|(limit, scope, b)| (*limit, scope.clone(), b.believed, b.configured))
            .collect(),
        edge: snapshot.edge.clone(),
        accounts: snapshot.accounts.clone(),
    }
}

#[derive(Default)]
struct Tally {
    in_progress: Allowance,
    reservations: usize,
    pending_batches: usize,
    waiting: Option<usize>,
    oldest_pending: Option<SystemTime>,
}

fn distributions(snapshot: &Snapshot, capacity: Allowance) -> Vec<DistributionRow> {
    let now = snapshot.now;
    let mut tallies: BTreeMap<&DistributionId, Tally> = BTreeMap::new();
    for (distribution, budget) in &snapshot.budgets {
        let live: Vec<_> = budget.reservations.iter().filter(|r| r.until > now).collect();
        if live.is_empty() {
            continue;
        }
        let tally = tallies.entry(distribution).or_default();
        tally.in_progress = live.iter().map(|r| r.need).sum();
        tally.reservations = live.len();
    }
    let oldest = |tally: &mut Tally, since: SystemTime| {
        tally.oldest_pending = Some(tally.oldest_pending.map_or(since, |o| o.min(since)));
    };
    for batch in &snapshot.pending {
        let tally = tallies.entry(&batch.distribution_id).or_default();
        tally.pending_batches += 1;
        oldest(tally, batch.created_at);
    }
    for (distribution, waiting) in snapshot.waiting.iter().flatten() {
        let tally = tallies.entry(distribution).or_default();
        tally.waiting = Some(waiting.batches);
        oldest(tally, waiting.since);
    }
    let mut rows: Vec<(f64, DistributionRow)> = tallies
        .into_iter()
        .map(|(id, tally)| {
            let fullness = share(tally.in_progress.paths, capacity.paths)
                .max(share(tally.in_progress.wildcards, capacity.wildcards));
            let row = DistributionRow {
                id: id.to_string(),
                in_progress: tally.in_progress,
                headroom: capacity - tally.in_progress,
                reservations: tally.reservations,
                pending_batches: tally.pending_batches,
                waiting_batches: snapshot.waiting.as_ref().map(|_| tally.waiting.unwrap_or(0)),
                oldest_pending: tally.oldest_pending.map(|since| age(since, now)),
                near_quota: fullness >= NEAR_QUOTA,
            };
            (fullness, row)
        })
        .collect();
    // The fullest first: the ones to look at.
    rows.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
    rows.into_iter().map(|(_, row)| row).collect()
}

fn share(used: u32, of: u32) -> f64 {
    if of == 0 { 1.0 } else { f64::from(used) / f64::from(of) }
}

fn failure_row(failure: &FailureRecord) -> FailureRow {
    match failure {
        FailureRecord::DeadLetter(letter) => FailureRow {
            created_at: at(letter.created_at),
            kind: "dead letter",
            subject: letter.message_id.to_string(),
            distribution: letter.distribution_id.as_ref().map(ToString::to_string).unwrap_or_default(),
            code: letter.code.clone(),
            reason: capped(&letter.reason, REASON_BYTES),
        },
        FailureRecord::Batch(batch) => FailureRow {
            created_at: at(batch.created_at),
            kind: if batch.tracking_abandoned.is_some() { "tracking given up" } else { "refused batch" },
            subject: batch.caller_reference.to_string(),
            // A tenant's batch names its tenant (`E…/dt_…`).
            distribution: batch.target().to_string(),
            code: String::new(),
            reason: capped(
                batch.tracking_abandoned.as_deref().or(batch.failure.as_deref()).unwrap_or_default(),
                REASON_BYTES,
            ),
        },
    }
}

/// The newest batches, pending ones among them.
fn recent(snapshot: &Snapshot) -> Vec<InvalidationRow> {
    let mut batches: Vec<&BatchSummary> = snapshot.recent.iter().chain(&snapshot.pending).collect();
    batches.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.caller_reference.cmp(&b.caller_reference)));
    batches
        .into_iter()
        .take(RECENT_LIMIT)
        .map(|batch| InvalidationRow {
            created_at: at(batch.created_at),
            distribution: batch.distribution_id.to_string(),
            invalidation_id: batch.invalidation_id.clone(),
            caller_reference: batch.caller_reference.to_string(),
            paths: batch.path_count,
            requesters: batch.requesters.join(", "),
            status: batch.status.as_str(),
            time_to_complete: batch
                .time_to_complete
                .map(|d| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string())
                .or_else(|| {
                    (batch.status == BatchStatus::Accepted)
                        .then(|| batch.submitted_at.map(|s| format!("running for {}", age(s, snapshot.now))))
                        .flatten()
                }),
        })
        .collect()
}

fn cost(billing: &MonthBilling, account_months: &[(String, MonthBilling)], budget: Option<u64>) -> CostView {
    let billed = billing.total.paths_billed;
    let busiest = billing.days.iter().map(|(_, day)| day.paths_billed).max().unwrap_or(0);
    let accounts = account_costs(billing, account_months, budget);
    CostView {
        month: billing.month.clone(),
        paths_billed: billed,
        batches: billing.total.batches,
        free_paths_left: free_paths_left(billed),
        estimated_dollars: if accounts.is_empty() {
            month_dollars(billed)
        } else {
            accounts.iter().map(|a| a.estimated_dollars).sum()
        },
        budget: if accounts.is_empty() { budget_use(budget, billing.spent()) } else { None },
        accounts,
        days: billing
            .days
            .iter()
            .map(|(day, counters)| DayBar {
                day: day.get(8..).unwrap_or(day).to_owned(),
                paths_billed: counters.paths_billed,
                height_percent: if busiest == 0 { 0.0 } else { counters.paths_billed as f64 * 100.0 / busiest as f64 },
            })
            .collect(),
    }
}

/// Each account's bill, the own account's being what the others' parts leave of the month's total; and its budget
/// as the workers hold it, from the account's own counter (which a worker given its first role mid-month starts
/// from zero, so the own account's may show less used than its bill).
fn account_costs(
    billing: &MonthBilling,
    account_months: &[(String, MonthBilling)],
    budget: Option<u64>,
) -> Vec<AccountCost> {
    if account_months.is_empty() {
        return Vec::new();
    }
    let own = AccountKey::Own.to_string();
    let others = account_months.iter().filter(|(account, _)| *account != own).map(|(a, part)| (a.clone(), part.total));
    let spent = |account: &str| account_months.iter().find(|(a, _)| a == account).map_or(0, |(_, m)| m.spent());
    by_account(billing.total, others)
        .into_iter()
        .map(|(account, part)| {
            let account = account.unwrap_or_else(|| own.clone());
            let billed = part.paths_billed;
            AccountCost {
                budget: budget_use(budget, spent(&account)),
                account,
                paths_billed: billed,
                free_paths_left: free_paths_left(billed),
                estimated_dollars: month_dollars(billed),
            }
        })
        .collect()
}

/// Against the budget counts what the workers committed to, which is at least what was billed.
fn budget_use(budget: Option<u64>, spent: u64) -> Option<BudgetUse> {
    budget.map(|paths| BudgetUse {
        paths,
        used_percent: if paths == 0 { 100.0 } else { spent as f64 * 100.0 / paths as f64 },
        over: spent >= paths,
    })
}

fn workers(snapshot: &Snapshot) -> Vec<WorkerRow> {
    #[derive(Default)]
    struct Holds {
        reservations: usize,
        leases: usize,
        until: Option<SystemTime>,
    }
    let mut owners: BTreeMap<&str, Holds> = BTreeMap::new();
    for (_, budget) in &snapshot.budgets {
        for reservation in &budget.reservations {
            let holds = owners.entry(&reservation.owner).or_default();
            holds.reservations += usize::from(reservation.until > snapshot.now);
            holds.until = holds.until.max(Some(reservation.until));
        }
    }
    for batch in &snapshot.pending {
        let holds = owners.entry(&batch.owner).or_default();
        holds.leases += 1;
        holds.until = holds.until.max(Some(batch.lease_until));
    }
    let mut rows: Vec<WorkerRow> = owners
        .into_iter()
        .filter_map(|(owner, holds)| {
            let until = holds.until?;
            Some(WorkerRow {
                owner: owner.to_owned(),
                reservations: holds.reservations,
                leases: holds.leases,
                holds_until: at(until),
                live: until > snapshot.now,
            })
        })
        .collect();
    rows.sort_by(|a, b| b.live.cmp(&a.live).then_with(|| a.owner.cmp(&b.owner)));
    rows
}
