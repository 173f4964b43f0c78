//! `cf-invalidator status`: the status page without a worker, from the ledger and the queue's attributes.

use std::sync::Arc;

use anyhow::Context;
use cf_invalidator::aws::dynamodb::DynamoLedger;
use cf_invalidator::aws::sqs::SqsQueue;
use cf_invalidator::status::StatusPage;
use cf_invalidator::status::view::StatusSettings;
use cf_invalidator::telemetry::{self, Endpoints};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::output::outln;
use crate::cli::StatusArgs;

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let config = super::aws_config().await?;
    let sqs = super::sqs(&config);
    let queue = SqsQueue::new(sqs.clone(), &args.queue_url);
    queue.check_access().await?;
    let ledger = DynamoLedger::new(super::dynamodb(&config), &args.table);
    ledger.check_access().await?;
    let dead_letter_queue = queue.dead_letter_queue_url().await?.map(|url| Arc::new(SqsQueue::new(sqs, url)));
    let page = StatusPage {
        ledger: Arc::new(ledger),
        queue: Arc::new(queue),
        dead_letter_queue,
        settings: StatusSettings {
            table: args.table.clone(),
            quota: args.reserve.quota(),
            reserve: args.reserve.allowance(),
            monthly_path_budget: args.monthly_path_budget,
        },
        waiting: None,
        limits: None,
        accounts: None,
        edge: None,
    };
    let listener =
        TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on --listen {}", args.listen))?;
    // The line scripts and tests wait for: the address actually bound (port 0 picks a free one).
    outln!("status page on http://{}/", listener.local_addr()?)?;
    let stop = CancellationToken::new();
    let endpoints = Endpoints { pages: Some(Arc::new(page)), ..Endpoints::default() };
    let serving = tokio::spawn(telemetry::serve(listener, endpoints, stop.clone()));
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    stop.cancel();
    serving.await.context("the server stopped")?.context("serving")?;
    Ok(())
}
