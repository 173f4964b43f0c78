//! `dynamodb-sim`: the strict DynamoDB (`fake::dynamodb`) on a port, for a worker process pointed at it with
//! `AWS_ENDPOINT_URL_DYNAMODB` (docs/simulator.md). It prints its URL as the first line of standard output, so a
//! test can start it with `--port 0` and read where it listens.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use cf_invalidator::clock::WallClock;
use cf_invalidator::fake::dynamodb::{StrictDynamo, TTL_DELAY, wire};
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serve DynamoDB's JSON API with DynamoDB's hard limits, in memory, for tests and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "dynamodb-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,

    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 4598)]
    port: u16,

    /// How long after its TTL attribute's time an item is deleted (DynamoDB: up to days).
    #[arg(long, default_value_t = TTL_DELAY.into())]
    ttl_delay: humantime::Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(Args::parse()).await
}

async fn run(args: Args) -> anyhow::Result<()> {
    let engine = Arc::new(StrictDynamo::new(WallClock::System).with_ttl_delay(*args.ttl_delay));
    let listener = TcpListener::bind((args.host, args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "http://{}", listener.local_addr()?)?;
    stdout.flush()?;
    let stop = CancellationToken::new();
    let stopping = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stopping.cancel();
    });
    wire::serve(listener, engine, stop).await.context("serving")
}
