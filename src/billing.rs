//! This month's billed paths as the ledger counts them, kept at hand for the cost of each batch and the gauges.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics::gauge;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::clock::WallClock;
use crate::plan::free_paths_left;
use crate::ports::ledger::{Bills, MonthBilling, billing_month, spent};
use crate::telemetry::log_allowed;

/// How often the month's total is read again: other workers' batches move it too.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// The month and what its batches billed and committed to so far, by all workers sharing the ledger: in total and,
/// when the worker serves more than one account, per account (`BatchRecord::account`), since each account's free
/// paths and monthly path budget are its own. One entry per configured account at most.
#[derive(Debug, Default)]
pub struct MonthToDate {
    state: Mutex<Month>,
    /// Accounts are counted apart (`count_apart`): each account's free paths are its own gauge.
    apart: AtomicBool,
}

#[derive(Debug, Default)]
struct Month {
    /// `YYYY-MM`.
    name: String,
    /// `None`: the month's total.
    figures: HashMap<Option<String>, Figures>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    billed: u64,
    /// Committed to under a monthly path budget (`MonthBilling::committed`).
    committed: u64,
}

/// An account's part of the month (`BatchRecord::account`), or the total.
pub type AccountPart<'a> = Option<&'a str>;

impl MonthToDate {
    /// The worker serves more than one account: `cfi_month_free_paths_left` is shown per account part, each
    /// account having its own free paths, instead of from the total.
    pub fn count_apart(&self) {
        self.apart.store(true, Ordering::Relaxed);
    }

    /// Paths billed this month in `account`'s part before a batch accepted at `month`; a new month starts from zero.
    pub fn billed_before(&self, month: &str, account: AccountPart) -> u64 {
        self.read(month, account).billed
    }

    /// What counts against a monthly path budget in `account`'s part of `month` (`MonthBilling::spent`).
    pub fn spent(&self, month: &str, account: AccountPart) -> u64 {
        let figures = self.read(month, account);
        spent(figures.committed, figures.billed)
    }

    fn read(&self, month: &str, account: AccountPart) -> Figures {
        let state = self.state.lock().unwrap();
        let figures = (state.name == month).then(|| state.figures.get(&account.map(str::to_owned)).copied());
        figures.flatten().unwrap_or_default()
    }

    /// Updates the month's figures of `account`'s part, starting from zero in a new month.
    fn update(&self, month: &str, account: AccountPart, change: impl FnOnce(&mut Figures)) {
        let mut state = self.state.lock().unwrap();
        if state.name != month {
            *state = Month { name: month.to_owned(), ..Month::default() };
        }
        change(state.figures.entry(account.map(str::to_owned)).or_default());
        publish(&state, self.apart.load(Ordering::Relaxed));
    }

    /// This worker's batch was accepted: counted now, in total and in its account's part, without waiting for the
    /// next read.
    pub fn add(&self, month: &str, account: AccountPart, paths: u64) {
        self.update(month, None, |m| m.billed += paths);
        if account.is_some() {
            self.update(month, account, |m| m.billed += paths);
        }
    }

    /// This worker committed `paths` under the monthly budget of `account`'s part.
    pub fn commit(&self, month: &str, account: AccountPart, paths: u64) {
        self.update(month, account, |m| m.committed += paths);
    }

    /// The ledger said this much counts against `account`'s monthly budget (another worker's batches moved it).
    pub fn saw_spent(&self, month: &str, account: AccountPart, spent: u64) {
        self.update(month, account, |m| m.committed = m.committed.max(spent));
    }

    fn set(&self, billing: &MonthBilling, account: AccountPart) {
        self.update(&billing.month, account, |m| {
            (m.billed, m.committed) = (billing.total.paths_billed, billing.committed)
        });
    }
}

/// The month's billed paths in total, and the free paths left to each account: to the worker's own (`own`) from
/// the total, or to each account part when accounts are counted apart.
fn publish(month: &Month, apart: bool) {
    let free_left = |figures: &Figures| free_paths_left(figures.billed) as f64;
    let total = month.figures.get(&None).copied().unwrap_or_default();
    gauge!("cfi_month_paths_billed").set(total.billed as f64);
    if !apart {
        gauge!("cfi_month_free_paths_left", "account" => "own").set(free_left(&total));
        return;
    }
    for (account, figures) in month.figures.iter().filter_map(|(account, figures)| Some((account.clone()?, figures))) {
        gauge!("cfi_month_free_paths_left", "account" => account).set(free_left(figures));
    }
}

/// Reads the month's total, and each of `accounts`' parts (`Accounts::month_accounts`), from the ledger now and
/// every `REFRESH_EVERY` until `stop`.
pub async fn keep_current<L: Bills>(
    ledger: std::sync::Arc<L>,
    month_to_date: std::sync::Arc<MonthToDate>,
    accounts: Vec<String>,
    clock: WallClock,
    stop: CancellationToken,
) {
    loop {
        let month = billing_month(clock.now());
        for account in std::iter::once(None).chain(accounts.iter().cloned().map(Some)) {
            let billing = match &account {
                Some(account) => ledger.account_totals(&month, account).await,
                None => ledger.month_totals(&month).await,
            };
            match billing {
                Ok(billing) => month_to_date.set(&billing, account.as_deref()),
                Err(e) => {
                    if let Some(suppressed) = log_allowed("month_billing_failed") {
                        warn!(error = %e, suppressed, "could not read this month's billed paths; costs are estimated from what this worker counted");
                    }
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(REFRESH_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_month_starts_from_zero() {
        let month_to_date = MonthToDate::default();
        let billing = |paths_billed, committed| MonthBilling {
            month: "2026-11".into(),
            total: crate::ports::ledger::Billing { paths_billed, ..Default::default() },
            committed,
            ..MonthBilling::default()
        };
        month_to_date.set(&billing(4_000, 3_000), None);
        month_to_date.set(&billing(100, 900), Some("111122223333"));
        assert_eq!(month_to_date.spent("2026-11", None), 4_000);
        assert_eq!(month_to_date.spent("2026-11", Some("111122223333")), 900, "an account's part is its own");
        assert_eq!(month_to_date.spent("2026-11", Some("own")), 0);
        assert_eq!(month_to_date.billed_before("2026-11", None), 4_000);
        assert_eq!(month_to_date.billed_before("2026-12", None), 0);
        month_to_date.add("2026-12", Some("own"), 10);
        assert_eq!(month_to_date.billed_before("2026-12", None), 10);
        assert_eq!(month_to_date.billed_before("2026-12", Some("own")), 10);
        assert_eq!(month_to_date.spent("2026-12", Some("111122223333")), 0, "a new month starts every part from zero");
    }

    /// The free paths left under every account's own 1,000 a month: with several accounts, a total over them
    /// would show one account's 1,000 as used by the others'.
    #[test]
    fn each_account_counted_apart_shows_its_own_free_paths() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let alone = MonthToDate::default();
            alone.add("2026-12", None, 4);
            let page = handle.render();
            assert!(page.contains(r#"cfi_month_free_paths_left{account="own"} 996"#), "{page}");

            let apart = MonthToDate::default();
            apart.count_apart();
            apart.add("2026-12", Some("own"), 300);
            apart.add("2026-12", Some("111122223333"), 900);
            let page = handle.render();
            assert!(page.contains(r#"cfi_month_free_paths_left{account="own"} 700"#), "{page}");
            assert!(page.contains(r#"cfi_month_free_paths_left{account="111122223333"} 100"#), "{page}");
            assert!(page.contains("cfi_month_paths_billed 1200"), "the month's total over the accounts: {page}");
        });
    }
}
