//! This month's billed paths as the ledger counts them, kept at hand for the cost of each batch and the gauges.

use std::sync::Mutex;
use std::time::Duration;

use metrics::gauge;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::clock::WallClock;
use crate::plan::FREE_PATHS_PER_MONTH;
use crate::ports::ledger::{Ledger, billing_month};
use crate::telemetry::log_allowed;

/// How often the month's total is read again: other workers' batches move it too.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// The month and the paths billed in it so far, by all workers sharing the ledger.
#[derive(Debug, Default)]
pub struct MonthToDate {
    state: Mutex<(String, u64)>,
}

impl MonthToDate {
    /// Paths billed this month before a batch accepted at `month`; a new month starts from zero.
    pub fn billed_before(&self, month: &str) -> u64 {
        let state = self.state.lock().unwrap();
        if state.0 == month { state.1 } else { 0 }
    }

    /// This worker's batch was accepted: counted now, without waiting for the next read.
    pub fn add(&self, month: &str, paths: u64) {
        let mut state = self.state.lock().unwrap();
        if state.0 != month {
            *state = (month.to_owned(), 0);
        }
        state.1 += paths;
        publish(state.1);
    }

    fn set(&self, month: String, paths: u64) {
        *self.state.lock().unwrap() = (month, paths);
        publish(paths);
    }
}

fn publish(paths_billed: u64) {
    gauge!("cfi_month_paths_billed").set(paths_billed as f64);
    gauge!("cfi_month_free_paths_left").set(FREE_PATHS_PER_MONTH.saturating_sub(paths_billed) as f64);
}

/// Reads the month's total from the ledger now and every `REFRESH_EVERY` until `stop`.
pub async fn keep_current<L: Ledger>(
    ledger: std::sync::Arc<L>,
    month_to_date: std::sync::Arc<MonthToDate>,
    clock: WallClock,
    stop: CancellationToken,
) {
    loop {
        let month = billing_month(clock.now());
        match ledger.month_billing(&month).await {
            Ok(billing) => month_to_date.set(month, billing.total.paths_billed),
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
        month_to_date.set("2026-11".into(), 4_000);
        assert_eq!(month_to_date.billed_before("2026-11"), 4_000);
        assert_eq!(month_to_date.billed_before("2026-12"), 0);
        month_to_date.add("2026-12", 10);
        assert_eq!(month_to_date.billed_before("2026-12"), 10);
    }
}
