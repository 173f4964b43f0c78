//! The worker over the in-memory fakes, on tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use cf_invalidator::clock::WallClock;
use cf_invalidator::fake::{FakeCdn, MemoryLedger, MemoryQueue};
use cf_invalidator::worker::{self, Exit, Services, Settings};

/// A 5 s window, 1 s receives and 100 calls a second: quick enough for a test, the worker's logic unchanged.
pub fn settings() -> Settings {
    let mut settings = Settings { clock: WallClock::following_tokio(), ..Settings::default() };
    settings.batching.window = Duration::from_secs(5);
    settings.intake.receive_wait = Duration::from_secs(1);
    settings.submission.create_rate = 100.0;
    settings
}

/// Runs the worker without a dead-letter queue for `duration` of simulated time, then shuts it down.
pub async fn run_for(
    queue: &Arc<MemoryQueue>,
    cdn: &Arc<FakeCdn>,
    ledger: &Arc<MemoryLedger>,
    duration: Duration,
    settings: Settings,
) -> Exit {
    let services =
        Services { queue: Arc::clone(queue), dead_letter: None, cdn: Arc::clone(cdn), ledger: Arc::clone(ledger) };
    worker::run(services, settings, tokio::time::sleep(duration)).await
}
