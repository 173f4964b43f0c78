//! The worker: its stages, the bounded channels between them, and shutdown (each stage is built in `wiring`).
//!
//! ```text
//! pollers ──Accepted──▶ batcher ──Batch──▶ submitter ──Disposition──▶ acknowledger
//!    └──────────────────────── Disposition (invalid messages) ───────────▲
//!                                              └──Owed──▶ tracker (completion, events)
//! heartbeat: keeps every held message invisible until the acknowledger lets it go
//! ```
//! Channels are bounded, so a slow CloudFront or ledger slows polling instead of filling memory. Shutdown stops
//! the pollers; each stage then finishes when its input closes: the batcher seals its open windows, the submitter
//! finishes its batches, the acknowledger deletes. Then the heartbeat stops, whatever is still held is handed back
//! to the queue at once, and the tracker takes one last look at this worker's invalidations, all within the
//! shutdown timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

mod settings;
mod wiring;

use self::wiring::{acknowledger, batch_limits, budget, spawn_pollers, start_tracker, submitter};

pub use self::settings::{
    BatchingSettings, BudgetTuning, DEFAULT_MAX_HELD_MESSAGES, IntakeSettings, LedgerSettings, Settings,
    SubmissionSettings, TrackingSettings, default_worker_id,
};
use crate::ack::{Acknowledger, DeadLetterLog};
use crate::batch::{
    self,
    window::{BatchLimits, Batcher, MAX_WILDCARDS_PER_BATCH},
};
use crate::billing::{self, MonthToDate};
use crate::edge::stage::{EdgeHandoff, EdgeStage};
use crate::held::{self, InFlight, SubmissionBacklog};
use crate::intake::{self, Outlets, PollSettings};
use crate::limit::accounts::Accounts;
use crate::limit::{Budget, BudgetSettings, CreateRateLimiter, share};
use crate::ports::ledger::Owed;
use crate::ports::{Allowance, Batches, Cdn, DeadLetters, JointWrites, Keys, Ledger, Queue};
use crate::redelivery::Idempotency;
use crate::submit::{Ownership, Submitter};
use crate::track::{TrackSettings, Tracker};

/// Room in each channel between stages: enough to absorb one receive per poller without stalling.
const CHANNEL_CAPACITY: usize = 256;

/// The AWS services the worker uses; `dead_letter` is `None` when the queue has no dead-letter queue.
pub struct Services<Q, C, L> {
    pub queue: Arc<Q>,
    pub dead_letter: Option<Arc<Q>>,
    pub cdn: Arc<C>,
    pub ledger: Arc<L>,
}

/// The same services: the clients are shared, whatever they are (a derive would ask them to be `Clone`).
impl<Q, C, L> Clone for Services<Q, C, L> {
    fn clone(&self) -> Self {
        Self {
            queue: Arc::clone(&self.queue),
            dead_letter: self.dead_letter.clone(),
            cdn: Arc::clone(&self.cdn),
            ledger: Arc::clone(&self.ledger),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every received message reached its disposition before the deadline.
    Drained,
    /// The shutdown timeout struck first; the `held` messages were handed back to the queue.
    TimedOut { held: usize },
}

/// How long a stopping worker tries to check out of the roster of workers sharing the account's rate, and to share
/// its last cuts of the limits it learned; if it cannot, its check-in runs out on its own.
const CHECK_OUT_WITHIN: Duration = Duration::from_secs(2);

/// The end of a shutdown kept for what follows the drain (handing back, the last look, checking out): a quarter
/// of the shutdown timeout, at most this.
const AFTER_DRAIN: Duration = Duration::from_secs(5);

/// Runs the worker until `shutdown` resolves, then drains within the shutdown timeout.
pub async fn run<Q, C, L>(services: Services<Q, C, L>, settings: Settings, shutdown: impl Future<Output = ()>) -> Exit
where
    Q: Queue,
    C: Cdn,
    L: Ledger,
{
    // A worker sharing the account's rate gets a share of it, never more.
    let rate = settings.submission.account_rate.map_or(settings.submission.create_rate, |rate| rate.per_second);
    let rate = if rate > 0.0 { rate } else { f64::INFINITY };
    let backlog = Arc::new(SubmissionBacklog::new(rate, settings.intake.visibility_timeout, settings.batching.window));
    let inflight = Arc::new(InFlight::with_backlog(settings.intake.max_held_messages, Arc::clone(&backlog)));
    let stop_receiving = CancellationToken::new();
    let (to_batcher, from_intake) = mpsc::channel(CHANNEL_CAPACITY);
    let (to_submitter, from_batcher) = mpsc::channel(CHANNEL_CAPACITY);
    let (to_ack, from_stages) = mpsc::channel(CHANNEL_CAPACITY);

    let mut stages = JoinSet::new();
    let outlets = Outlets { to_batcher, to_ack: to_ack.clone() };
    spawn_pollers(&mut stages, &services, &settings, &inflight, outlets, &stop_receiving);
    let capacity = settings.budget.quota - settings.budget.reserve;
    let limits = batch_limits(settings.batching, capacity);
    let batcher = Batcher::new(limits);
    stages.spawn(batch::run(batcher, settings.clock, from_intake, to_submitter, Arc::clone(&backlog)));
    let budget = Arc::new(budget(&services, &settings, capacity));
    // Not a stage, as it holds no messages: stopped after the drain, so that its last look sees what the drain
    // submitted.
    let mut tracking = JoinSet::new();
    let stop_tracking = CancellationToken::new();
    let tracker = start_tracker(&services, &settings, &budget, &mut tracking, stop_tracking.clone());
    let acknowledger = acknowledger(&services, &settings, &inflight, tracker.clone());
    let month_to_date = Arc::new(MonthToDate::default());
    let ledger = Arc::clone(&services.ledger);
    let roster = Arc::clone(&services.ledger);
    let (backlog_seen, backlog_known) = (Arc::clone(&backlog), Arc::clone(&backlog));
    let submitter = Arc::new(submitter(
        services.cdn,
        services.ledger,
        &settings,
        budget,
        tracker,
        Arc::clone(&month_to_date),
        backlog,
    ));
    let accounts = submitter.accounts.month_accounts();
    if !accounts.is_empty() {
        month_to_date.count_apart();
    }
    let stop = stop_receiving.clone();
    tracking.spawn(billing::keep_current(ledger, month_to_date, accounts, settings.clock, stop));
    // Checks out only after the last batch: its own JoinSet, stopped after the stages.
    let stop_sharing = CancellationToken::new();
    let mut sharing = JoinSet::new();
    let sharers = share::Sharers::of(&submitter.accounts, settings.submission.account_rate);
    let worker = settings.ledger.worker_id.clone();
    let busy = move || backlog_seen.is_busy();
    let stop = stop_sharing.clone();
    sharing.spawn(share::keep_share(Arc::clone(&roster), sharers, worker, settings.clock, busy, stop));
    let board = Arc::clone(&settings.limits);
    let (budget, accounts) = (Arc::clone(&submitter.budget), Arc::clone(&submitter.accounts));
    let busy = move || backlog_known.is_busy();
    sharing.spawn(share::keep_beliefs(roster, board, budget, accounts, settings.clock, busy, stop_sharing.clone()));
    stages.spawn(submitter.run(from_batcher, to_ack, settings.submission.max_concurrent, limits));
    stages.spawn(acknowledger.run(from_stages));
    // In a JoinSet so that dropping `run` (a crash in simulations) stops the heartbeat too.
    let stop_heartbeat = CancellationToken::new();
    let mut heartbeat = JoinSet::new();
    heartbeat.spawn(held::heartbeat::keep_invisible(
        Arc::clone(&services.queue),
        Arc::clone(&inflight),
        settings.intake.visibility_timeout,
        settings.retry.queue,
        stop_heartbeat.clone(),
    ));

    let (drained, deadline) =
        until_drained(stages, shutdown, &stop_receiving, settings.shutdown_timeout, &inflight).await;
    // Nothing held will be finished now. The heartbeat finishes the call it is making, if any, before anything is
    // handed back (that call must not reach SQS afterwards and hide the messages again), within half of what is
    // left: the hand-back matters more.
    stop_heartbeat.cancel();
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let _ = tokio::time::timeout(left / 2, heartbeat.join_next()).await;
    heartbeat.shutdown().await;
    let held = hand_back_what_is_left(services.queue, &inflight, deadline).await;
    stop_sharing.cancel();
    stop_tracking.cancel();
    let checked_out = tokio::time::timeout(CHECK_OUT_WITHIN, async { while sharing.join_next().await.is_some() {} });
    let last_look = async { while tracking.join_next().await.is_some() {} };
    let _ = tokio::time::timeout_at(deadline, async { tokio::join!(checked_out, last_look) }).await;
    tracking.shutdown().await;
    sharing.shutdown().await;
    if drained {
        info!("drained");
        Exit::Drained
    } else {
        error!(held, "shutdown timeout reached; held messages were handed back");
        Exit::TimedOut { held }
    }
}

/// Hands every message still held back to the queue, by `deadline`: what the drain could not finish, and what
/// waited for another look at the ledger. Answers how many there were.
async fn hand_back_what_is_left<Q: Queue>(queue: Arc<Q>, inflight: &InFlight, deadline: tokio::time::Instant) -> usize {
    let left = inflight.release_all();
    let held = left.len();
    if held > 0 {
        let handed_back = tokio::time::timeout_at(deadline, held::hand_back(queue, left)).await;
        info!(held, handed_back = handed_back.unwrap_or(0), "handed back what this worker could not finish");
    }
    held
}

/// Runs the stages until `shutdown`, then stops receiving and gives them most of the shutdown timeout to finish
/// (the stages are dropped, and so stopped, if they overrun). Answers whether they finished, and when the whole
/// shutdown must be over.
async fn until_drained(
    mut stages: JoinSet<()>,
    shutdown: impl Future<Output = ()>,
    stop_receiving: &CancellationToken,
    timeout: Duration,
    inflight: &InFlight,
) -> (bool, tokio::time::Instant) {
    let stages_done = async {
        while let Some(outcome) = stages.join_next().await {
            if let Err(e) = outcome {
                error!(error = %e, "a pipeline stage failed");
            }
        }
    };
    tokio::pin!(stages_done);
    tokio::select! {
        biased;
        () = shutdown => info!(held = inflight.len(), "shutting down: no new messages, draining what is held"),
        () = &mut stages_done => error!("pipeline stopped on its own"),
    }
    let deadline = tokio::time::Instant::now() + timeout;
    stop_receiving.cancel();
    let drained = tokio::time::timeout(timeout - AFTER_DRAIN.min(timeout / 4), &mut stages_done).await.is_ok();
    (drained, deadline)
}

/// The runtime the worker runs on: one thread unless more are asked for. The worker waits on AWS almost all the
/// time, and a single-threaded runtime spends no CPU waking other threads for each answer.
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder.enable_all().build()
}
