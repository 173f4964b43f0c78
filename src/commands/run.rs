use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use cf_invalidator::aws::cloudfront::CloudFront;
use cf_invalidator::aws::dynamodb::DynamoLedger;
use cf_invalidator::aws::sqs::SqsQueue;
use cf_invalidator::worker::{self, Exit, Services, Settings};
use tracing::{info, warn};

use crate::cli::RunArgs;

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    ensure!(
        args.create_rate.is_finite() && args.create_rate > 0.0,
        "--create-rate must be a positive number of calls per second"
    );
    let settings = Settings {
        window: args.window.into(),
        max_batch_paths: usize::from(args.max_batch_paths),
        pollers: usize::from(args.pollers),
        visibility_timeout: args.visibility_timeout.into(),
        shutdown_timeout: args.shutdown_timeout.into(),
        create_rate: args.create_rate,
        create_burst: NonZeroU32::new(args.create_burst).context("--create-burst must be at least 1")?,
        // A stopped worker's messages come back after one visibility timeout; by two, its lease is over.
        lease: 2 * Duration::from(args.visibility_timeout),
        retention: args.retention.into(),
        key_period: args.idempotency_period.into(),
        ..Settings::default()
    };
    ensure!(
        settings.visibility_timeout.as_secs() >= 10,
        "--visibility-timeout must be at least 10s so the heartbeat can extend it in time"
    );
    let config = super::aws_config().await?;
    let sqs = super::sqs(&config);
    let queue = SqsQueue::new(sqs.clone(), &args.queue_url);
    queue.check_access().await?;
    let ledger = DynamoLedger::new(super::dynamodb(&config), &args.table);
    ledger.check_access().await?;
    let dead_letter = match args.dlq_url {
        Some(url) => Some(url),
        None => queue.dead_letter_queue_url().await?,
    };
    match &dead_letter {
        Some(url) => info!(dlq_url = %url, "refused messages go to the dead-letter queue"),
        None => warn!(
            "the queue has no dead-letter queue: refused messages stay on the queue; set a RedrivePolicy or --dlq-url"
        ),
    }
    let services = Services {
        queue: Arc::new(queue),
        dead_letter: dead_letter.map(|url| Arc::new(SqsQueue::new(sqs, url))),
        cdn: Arc::new(CloudFront::new(super::cloudfront(&config))),
        ledger: Arc::new(ledger),
    };
    info!(queue_url = %args.queue_url, table = %args.table, window = %args.window, "worker started");
    match worker::run(services, settings, shutdown_signal()).await {
        Exit::Drained => Ok(()),
        // Nothing is lost: the held messages return to the queue. Exiting 0 keeps orchestrators from flagging a
        // normal scale-in as a crash.
        Exit::TimedOut { held } => {
            warn!(held, "exiting with messages still held; they will be delivered again");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the worker");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
    }
}
