//! This month's billed paths as the ledger counts them, kept at hand for the cost of each batch and the gauges.

use std::sync::Mutex;
use std::time::Duration;

use metrics::gauge;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::clock::WallClock;
use crate::plan::FREE_PATHS_PER_MONTH;
use crate::ports::ledger::{Bills, MonthBilling, billing_month, spent};
use crate::telemetry::log_allowed;

/// How often the month's total is read again: other workers' batches move it too.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// The month and what its batches billed and committed to so far, by all workers sharing the ledger.
#[derive(Debug, Default)]
pub struct MonthToDate {
    state: Mutex<Month>,
}

#[derive(Debug, Default)]
struct Month {
    /// `YYYY-MM`.
    name: String,
    billed: u64,
    /// Committed to under a monthly path budget (`MonthBilling::committed`).
    committed: u64,
}

impl MonthToDate {
    /// Paths billed this month before a batch accepted at `month`; a new month starts from zero.
    pub fn billed_before(&self, month: &str) -> u64 {
        self.read(month, |m| m.billed)
    }

    /// What counts against a monthly path budget in `month` (`MonthBilling::spent`).
    pub fn spent(&self, month: &str) -> u64 {
        self.read(month, |m| spent(m.committed, m.billed))
    }

    fn read(&self, month: &str, field: impl Fn(&Month) -> u64) -> u64 {
        let state = self.state.lock().unwrap();
        if state.name == month { field(&state) } else { 0 }
    }

    /// Updates the month's figures, starting from zero in a new month.
    fn update(&self, month: &str, change: impl FnOnce(&mut Month)) {
        let mut state = self.state.lock().unwrap();
        if state.name != month {
            *state = Month { name: month.to_owned(), ..Month::default() };
        }
        change(&mut state);
        publish(state.billed);
    }

    /// This worker's batch was accepted: counted now, without waiting for the next read.
    pub fn add(&self, month: &str, paths: u64) {
        self.update(month, |m| m.billed += paths);
    }

    /// This worker committed `paths` under the monthly budget.
    pub fn commit(&self, month: &str, paths: u64) {
        self.update(month, |m| m.committed += paths);
    }

    /// The ledger said this much counts against the monthly budget (another worker's batches moved it).
    pub fn saw_spent(&self, month: &str, spent: u64) {
        self.update(month, |m| m.committed = m.committed.max(spent));
    }

    fn set(&self, billing: &MonthBilling) {
        self.update(&billing.month, |m| (m.billed, m.committed) = (billing.total.paths_billed, billing.committed));
    }
}

fn publish(paths_billed: u64) {
    gauge!("cfi_month_paths_billed").set(paths_billed as f64);
    gauge!("cfi_month_free_paths_left").set(FREE_PATHS_PER_MONTH.saturating_sub(paths_billed) as f64);
}

/// Reads the month's total from the ledger now and every `REFRESH_EVERY` until `stop`.
pub async fn keep_current<L: Bills>(
    ledger: std::sync::Arc<L>,
    month_to_date: std::sync::Arc<MonthToDate>,
    clock: WallClock,
    stop: CancellationToken,
) {
    loop {
        let month = billing_month(clock.now());
        match ledger.month_totals(&month).await {
            Ok(billing) => month_to_date.set(&billing),
            Err(e) => {
                if let Some(suppressed) = log_allowed("month_billing_failed") {
                    warn!(error = %e, suppressed, "could not read this month's billed paths; costs are estimated from what this worker counted");
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
        month_to_date.set(&MonthBilling {
            month: "2026-11".into(),
            total: crate::ports::ledger::Billing { paths_billed: 4_000, ..Default::default() },
            committed: 3_000,
            ..MonthBilling::default()
        });
        assert_eq!(month_to_date.spent("2026-11"), 4_000);
        assert_eq!(month_to_date.billed_before("2026-11"), 4_000);
        assert_eq!(month_to_date.billed_before("2026-12"), 0);
        month_to_date.add("2026-12", 10);
        assert_eq!(month_to_date.billed_before("2026-12"), 10);
    }
}
