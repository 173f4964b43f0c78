//! What accepted invalidations billed: the month's counters, in total, per day, per distribution and per
//! requester, and the monthly path budget they are checked against.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::SystemTime;

use super::LedgerError;
use super::batches::BatchRecord;
use crate::model::path::count_wildcards;
use crate::model::{DistributionId, Target};

/// Who asked for a batch's paths, as the month's per-requester counters keep it apart.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Requester {
    /// A producer's `requester`, as the parser normalised it (trimmed, at most 256 characters).
    Named(String),
    /// Messages that name no requester.
    Unnamed,
    /// The requesters past [`MAX_SHARES`] in one batch, added up. No producer can name this row.
    Others,
}

impl Requester {
    fn of(requester: Option<&str>) -> Self {
        requester.map_or(Self::Unnamed, |name| Self::Named(name.to_owned()))
    }

    /// The producer's name, if it is one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Named(name) => Some(name),
            Self::Unnamed | Self::Others => None,
        }
    }
}

impl std::fmt::Display for Requester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Named(name) => f.write_str(name),
            Self::Unnamed => f.write_str("(no requester)"),
            Self::Others => f.write_str("(other requesters)"),
        }
    }
}

/// One requester's part in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequesterShare {
    pub requester: Requester,
    pub messages: u64,
    pub paths_requested: u64,
}

/// Requesters counted apart per batch: each is one more item in the acceptance's transaction (at most 100).
pub const MAX_SHARES: usize = 20;

impl RequesterShare {
    /// The shares of messages given as (requester, paths requested), most paths first, at most [`MAX_SHARES`]: the
    /// smallest ones beyond that are added up as [`Requester::Others`]. Distinct requesters are distinct shares,
    /// so no two of them ever update one item.
    pub fn of<'a>(messages: impl IntoIterator<Item = (Option<&'a str>, usize)>) -> Vec<Self> {
        let mut by_requester: std::collections::BTreeMap<Requester, (u64, u64)> = std::collections::BTreeMap::new();
        for (requester, paths) in messages {
            let share = by_requester.entry(Requester::of(requester)).or_default();
            *share = (share.0 + 1, share.1 + paths as u64);
        }
        let mut shares: Vec<Self> = by_requester
            .into_iter()
            .map(|(requester, (messages, paths_requested))| Self { requester, messages, paths_requested })
            .collect();
        shares.sort_by(|a, b| b.paths_requested.cmp(&a.paths_requested).then_with(|| a.requester.cmp(&b.requester)));
        if shares.len() > MAX_SHARES {
            let rest = shares.split_off(MAX_SHARES - 1);
            shares.push(Self {
                requester: Requester::Others,
                messages: rest.iter().map(|s| s.messages).sum(),
                paths_requested: rest.iter().map(|s| s.paths_requested).sum(),
            });
        }
        shares
    }
}

/// What accepted invalidations billed in a month: CloudFront bills every path and tag of an invalidation, a
/// wildcard as one, past the account's first 1,000 a month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Billing {
    pub batches: u64,
    /// Messages the batches covered.
    pub messages: u64,
    /// Paths and tags submitted in accepted invalidations: what CloudFront bills.
    pub paths_billed: u64,
    /// Paths the messages asked for before deduplication and merging: what one call per message would bill.
    pub paths_requested: u64,
    /// The distinct paths of each batch: what exact deduplication alone would bill. Not kept per requester.
    pub paths_distinct: u64,
    pub wildcards: u64,
}

impl Billing {
    pub fn of(record: &BatchRecord) -> Self {
        Self {
            batches: 1,
            messages: record.message_ids.len() as u64,
            paths_billed: record.paths.len() as u64,
            paths_requested: record.requested_paths as u64,
            paths_distinct: record.distinct_paths as u64,
            wildcards: count_wildcards(&record.paths) as u64,
        }
    }

    /// Each requester's part of the batch's billing: its messages and requested paths, and of the paths billed a
    /// share in proportion to the paths it requested (largest remainders first, so the shares add up to the bill).
    pub fn shares_of(record: &BatchRecord) -> Vec<(Requester, Billing)> {
        let billed = record.paths.len() as u64;
        let requested: u64 = record.shares.iter().map(|s| s.paths_requested).sum();
        // (whole paths, remainder) of its exact share.
        let exact = |share: &RequesterShare| {
            let scaled = share.paths_requested * billed;
            scaled.checked_div(requested).zip(scaled.checked_rem(requested)).unwrap_or_default()
        };
        let mut parts: Vec<(Requester, Billing, u64)> = record
            .shares
            .iter()
            .map(|share| {
                let (whole, remainder) = exact(share);
                let billing = Billing {
                    batches: 1,
                    messages: share.messages,
                    paths_billed: whole,
                    paths_requested: share.paths_requested,
                    paths_distinct: 0,
                    wildcards: 0,
                };
                (share.requester.clone(), billing, remainder)
            })
            .collect();
        // Fewer paths are left than there are shares: each floor lost less than one.
        let left = billed.saturating_sub(parts.iter().map(|p| p.1.paths_billed).sum());
        let mut order: Vec<usize> = (0..parts.len()).collect();
        order.sort_by(|&a, &b| parts[b].2.cmp(&parts[a].2).then(a.cmp(&b)));
        for &i in order.iter().take(left as usize) {
            parts[i].1.paths_billed += 1;
        }
        parts.into_iter().map(|(requester, billing, _)| (requester, billing)).collect()
    }

    pub fn add(&mut self, other: Billing) {
        self.batches += other.batches;
        self.messages += other.messages;
        self.paths_billed += other.paths_billed;
        self.paths_requested += other.paths_requested;
        self.paths_distinct += other.paths_distinct;
        self.wildcards += other.wildcards;
    }

    /// What is left of these counters once `part` of them is taken out, each at least zero.
    pub fn without(self, part: Billing) -> Billing {
        Billing {
            batches: self.batches.saturating_sub(part.batches),
            messages: self.messages.saturating_sub(part.messages),
            paths_billed: self.paths_billed.saturating_sub(part.paths_billed),
            paths_requested: self.paths_requested.saturating_sub(part.paths_requested),
            paths_distinct: self.paths_distinct.saturating_sub(part.paths_distinct),
            wildcards: self.wildcards.saturating_sub(part.wildcards),
        }
    }
}

/// Most distributions a month's billing lists: a month's report reads a bounded amount however many there were.
pub const LISTED_DISTRIBUTIONS: usize = 100;
/// Most requesters a month's billing lists (every CI run may be its own requester).
pub const LISTED_REQUESTERS: usize = 25;
/// Most tenants a month's billing lists: a platform may have thousands, each counted in an item of its own (a
/// few hundred bytes), of which the report reads the biggest.
pub const LISTED_TENANTS: usize = 100;

/// A calendar month's billing (UTC), in total and per distribution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonthBilling {
    /// `YYYY-MM`.
    pub month: String,
    pub total: Billing,
    /// Paths that workers with a monthly path budget committed to before calling CloudFront (`record_intent`
    /// with a cap): at least what those batches billed, since a batch refused afterwards keeps its count.
    pub committed: u64,
    /// The distributions that billed the most paths, biggest first, at most [`LISTED_DISTRIBUTIONS`].
    pub distributions: Vec<(DistributionId, Billing)>,
    /// The requesters whose shares of their batches' bills are biggest, biggest first, at most
    /// [`LISTED_REQUESTERS`].
    pub requesters: Vec<(Requester, Billing)>,
    /// The tenants that billed the most paths, biggest first, at most [`LISTED_TENANTS`]: a part of their
    /// distributions' counters (CloudFront bills the account, not the tenant).
    pub tenants: Vec<(Target, Billing)>,
    /// Days (`YYYY-MM-DD`, UTC) with accepted invalidations, in order.
    pub days: Vec<(String, Billing)>,
}

impl MonthBilling {
    /// The distributions listed biggest first: who drives the bill.
    pub fn new(
        month: &str,
        total: Billing,
        mut distributions: Vec<(DistributionId, Billing)>,
        days: Vec<(String, Billing)>,
    ) -> Self {
        distributions.sort_by(|a, b| b.1.paths_billed.cmp(&a.1.paths_billed).then_with(|| a.0.cmp(&b.0)));
        distributions.truncate(LISTED_DISTRIBUTIONS);
        Self {
            month: month.to_owned(),
            total,
            committed: 0,
            distributions,
            requesters: Vec::new(),
            tenants: Vec::new(),
            days,
        }
    }

    /// With each requester's part, biggest first, the biggest [`LISTED_REQUESTERS`].
    pub fn with_requesters(mut self, mut requesters: Vec<(Requester, Billing)>) -> Self {
        requesters.sort_by(|a, b| b.1.paths_billed.cmp(&a.1.paths_billed).then_with(|| a.0.cmp(&b.0)));
        requesters.truncate(LISTED_REQUESTERS);
        self.requesters = requesters;
        self
    }

    /// With each tenant's counters, biggest first, the biggest [`LISTED_TENANTS`].
    pub fn with_tenants(mut self, mut tenants: Vec<(Target, Billing)>) -> Self {
        tenants.sort_by(|a, b| b.1.paths_billed.cmp(&a.1.paths_billed).then_with(|| a.0.cmp(&b.0)));
        tenants.truncate(LISTED_TENANTS);
        self.tenants = tenants;
        self
    }

    /// What counts against a monthly path budget (`spent`).
    pub fn spent(&self) -> u64 {
        spent(self.committed, self.total.paths_billed)
    }
}

/// What each account billed in a month, `None` for the worker's own: CloudFront's free paths, and a monthly path
/// budget, are per account.
pub type AccountBills = BTreeMap<Option<String>, Billing>;

/// Each account's part of a month, from the month's `total` and the parts counted apart for the `others` (accounts
/// reached through roles: `BatchRecord::account`, written by every worker serving more than one account). Those
/// parts are exact however many distributions there were. The own account's part is what they leave of the total:
/// a worker serving only its own account counts no part, and the batches of an account no longer given a role
/// count there too.
pub fn by_account(total: Billing, others: impl IntoIterator<Item = (String, Billing)>) -> AccountBills {
    let mut accounts: AccountBills = others.into_iter().map(|(account, part)| (Some(account), part)).collect();
    let own = accounts.values().fold(total, |left, part| left.without(*part));
    accounts.insert(None, own);
    accounts
}

/// What counts against a monthly path budget: the paths committed to, or billed if more (batches of workers
/// without a budget, or from before it was set).
pub fn spent(committed: u64, billed: u64) -> u64 {
    committed.max(billed)
}

/// A monthly path budget, shared by every worker through the month's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthCap {
    /// `YYYY-MM`, the month of the intent.
    pub month: String,
    /// Paths (a wildcard or a tag counting as one) the month's batches may commit to in all.
    pub limit: u64,
    /// The account whose month it is (`BatchRecord::account`): each account's free paths and bill are its own.
    /// `None`: the month's total.
    pub account: Option<String>,
}

/// What recording an intent under a [`MonthCap`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// The intent is recorded (now, or by an earlier attempt) and its paths are counted once.
    Recorded,
    /// Its paths would take the month past the cap: nothing was written. `spent` is what counts against the cap.
    OverCap { spent: u64 },
}

/// The calendar month (UTC) `at` falls in, as `YYYY-MM`: what billing counters are kept by.
pub fn billing_month(at: SystemTime) -> String {
    billing_day(at)[..7].to_owned()
}

/// The day (UTC) `at` falls in, as `YYYY-MM-DD`: the daily series.
pub fn billing_day(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()[..10].to_owned()
}

/// Contract: `month_billing` returns a month's billing counters (`YYYY-MM`): in total, per day, and for the
/// distributions, tenants and requesters with the most paths billed (`MonthBilling`'s bounds), biggest first;
/// `month_totals` returns its total and `committed` alone, with no distributions, requesters or days;
/// `account_totals` the same of one account's part of the month (`BatchRecord::account`).
pub trait Bills: Send + Sync + 'static {
    fn month_billing(&self, month: &str) -> impl Future<Output = Result<MonthBilling, LedgerError>> + Send;

    fn month_totals(&self, month: &str) -> impl Future<Output = Result<MonthBilling, LedgerError>> + Send;

    fn account_totals(
        &self,
        month: &str,
        account: &str,
    ) -> impl Future<Output = Result<MonthBilling, LedgerError>> + Send;
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::fake::pending_record;

    #[test]
    fn many_requesters_keep_the_biggest_apart_and_add_up_the_rest() {
        let names: Vec<String> = (0..30).map(|n| format!("team-{n:02}")).collect();
        let shares = RequesterShare::of(names.iter().enumerate().map(|(n, name)| (Some(name.as_str()), n + 1)));
        assert_eq!(shares.len(), MAX_SHARES);
        assert_eq!(shares[0].requester, Requester::Named("team-29".into()));
        let others = shares.last().unwrap();
        assert_eq!((&others.requester, others.messages, others.paths_requested), (&Requester::Others, 11, 66));
    }

    #[test]
    fn no_producer_can_name_the_rows_that_stand_for_no_requester_or_many() {
        // Before, these were the literal texts "(no requester)" and "(other requesters)": a producer naming itself
        // so shared an item with them, and two updates of one item in one transaction were refused.
        let shares = RequesterShare::of([(Some("(no requester)"), 1), (None, 1), (Some("(other requesters)"), 1)]);
        let requesters: Vec<&Requester> = shares.iter().map(|s| &s.requester).collect();
        assert_eq!(requesters.len(), 3);
        assert!(requesters.contains(&&Requester::Unnamed));
        assert!(requesters.contains(&&Requester::Named("(no requester)".into())));
    }

    proptest! {
        #[test]
        fn shares_of_the_bill_add_up_to_it(
            requested in proptest::collection::vec((0usize..6, 1usize..50), 1..40),
            billed in 0usize..100,
        ) {
            let names = ["a", "b", "c", "d", "e"];
            let mut record = pending_record("EAAA", &[], &[], std::time::SystemTime::UNIX_EPOCH);
            record.paths = (0..billed).map(|n| format!("/{n}")).collect();
            record.shares = RequesterShare::of(requested.iter().map(|&(who, paths)| (names.get(who).copied(), paths)));
            let shares = Billing::shares_of(&record);
            prop_assert_eq!(shares.iter().map(|(_, b)| b.paths_billed).sum::<u64>(), billed as u64);
            prop_assert_eq!(shares.iter().map(|(_, b)| b.messages).sum::<u64>(), requested.len() as u64);
            let total: u64 = requested.iter().map(|&(_, paths)| paths as u64).sum();
            for (_, share) in &shares {
                // Each within one path of its exact proportion.
                let exact = share.paths_requested as f64 * billed as f64 / total as f64;
                prop_assert!((share.paths_billed as f64 - exact).abs() < 1.0);
            }
        }
    }
}
