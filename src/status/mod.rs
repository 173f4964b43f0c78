//! The status page operators open: headroom per distribution, the queue and its dead letters, recent
//! invalidations, this month's cost and the workers holding room. Served by the worker on `--metrics-addr` and by
//! `cf-invalidator status`, which needs no worker.
//!
//! Reading is thin and bounded whatever the number of distributions: three queries of the `by_board` index
//! (budgets, pending batches, newest outcomes), two of `by_outcome` (failures), the month's counters (and each
//! account's, for a worker serving several) and one GetQueueAttributes per queue, all at once. `view` turns what
//! was read into what is shown without I/O, and `page` renders it.

pub mod page;
pub mod view;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::StatusCode;

use self::view::{FAILURES_LIMIT, RECENT_LIMIT, Snapshot, StatusSettings};
use crate::edge::tally::EdgeTally;
use crate::limit::WaitingBoard;
use crate::limit::accounts::AccountBoard;
use crate::limit::belief::LimitBoard;
use crate::ports::ledger::{LedgerError, billing_month};
use crate::ports::{AuditLog, Bills, QueueDepth, QueueError, QueueStats};
use crate::telemetry::{Page, Pages};

/// Pending batches read: far more than a healthy ledger holds (they last seconds), so the oldest is among them.
const PENDING_LIMIT: usize = 1_000;
/// How far back the failures list looks.
const FAILURES_SINCE: Duration = Duration::from_secs(7 * 24 * 3_600);

pub struct StatusPage<L, Q> {
    pub ledger: Arc<L>,
    pub queue: Arc<Q>,
    /// `None` when the queue has no dead-letter queue.
    pub dead_letter_queue: Option<Arc<Q>>,
    pub settings: StatusSettings,
    /// Set by the worker; `cf-invalidator status` cannot know.
    pub waiting: Option<Arc<WaitingBoard>>,
    /// What the worker believes of CloudFront's limits, where it learned to believe less; set by the worker.
    pub limits: Option<Arc<LimitBoard>>,
    /// Each account's rates and this worker's headroom in them; set by the worker.
    pub accounts: Option<Arc<AccountBoard>>,
    /// Set by a worker that checks at the edge (`--verify-edge`, `--warm`).
    pub edge: Option<Arc<EdgeTally>>,
}

fn depth_text(depth: Result<QueueDepth, QueueError>) -> Result<QueueDepth, String> {
    depth.map_err(|e| e.to_string())
}

impl<L: Bills + AuditLog, Q: QueueStats> StatusPage<L, Q> {
    /// Everything the page shows, read at once.
    pub async fn snapshot(&self, now: SystemTime) -> Result<Snapshot, LedgerError> {
        let ledger = &self.ledger;
        let month = billing_month(now);
        let dead_letter_depth = async {
            match &self.dead_letter_queue {
                Some(queue) => Some(depth_text(queue.depth().await)),
                None => None,
            }
        };
        let accounts = self.accounts.as_ref().map(|board| board.rows()).unwrap_or_default();
        // Each account's part of the month, when there are several.
        let account_months = async {
            let several = if accounts.len() > 1 { accounts.as_slice() } else { &[] };
            let parts = several
                .iter()
                .map(|row| async { Ok((row.account.clone(), ledger.account_totals(&month, &row.account).await?)) });
            futures_util::future::try_join_all(parts).await
        };
        let (budgets, pending, recent, failures, billing, account_months, queue, dead_letter_queue) = tokio::join!(
            ledger.budgets(),
            ledger.pending_batches(PENDING_LIMIT),
            ledger.recent_batches(RECENT_LIMIT),
            ledger.failures(now - FAILURES_SINCE, FAILURES_LIMIT),
            ledger.month_billing(&month),
            account_months,
            self.queue.depth(),
            dead_letter_depth,
        );
        Ok(Snapshot {
            now,
            budgets: budgets?,
            pending: pending?,
            recent: recent?,
            failures: failures?,
            queue: depth_text(queue),
            dead_letter_queue,
            billing: billing?,
            account_months: account_months?,
            waiting: self.waiting.as_ref().map(|board| board.now()),
            limits: self.limits.as_ref().map(|board| board.believed()).unwrap_or_default(),
            accounts,
            edge: self.edge.as_ref().map(|tally| tally.line().unwrap_or_else(|| "no batch checked yet".into())),
        })
    }

    async fn respond(&self, path: &str) -> Option<Page> {
        if path == "/" {
            return Some(match self.snapshot(SystemTime::now()).await {
                Ok(snapshot) => Page::ok(page::render(&view::view(&snapshot, &self.settings))),
                Err(e) => Page::unavailable(page::render_error(&format!("the ledger could not be read: {e}"))),
            });
        }
        let id = path.strip_prefix("/invalidation/")?;
        Some(match self.ledger.batch_by_invalidation(id).await {
            Ok(Some(record)) => Page::ok(page::render_batch(&record, &self.settings.table)),
            Ok(None) => Page {
                status: StatusCode::NOT_FOUND,
                html: page::render_error(&format!("no batch in the ledger has invalidation {id}")),
            },
            Err(e) => Page::unavailable(page::render_error(&format!("the ledger could not be read: {e}"))),
        })
    }
}

impl<L: Bills + AuditLog, Q: QueueStats> Pages for StatusPage<L, Q> {
    fn page<'a>(&'a self, path: &'a str) -> Pin<Box<dyn Future<Output = Option<Page>> + Send + 'a>> {
        Box::pin(self.respond(path))
    }
}

#[cfg(all(test, feature = "test-support"))]
mod tests;
