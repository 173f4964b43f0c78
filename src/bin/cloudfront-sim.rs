//! `cloudfront-sim`: the CloudFront simulator on a port (docs/simulator.md). It prints its URL as the first line
//! of standard output, so a test can start it with `--port 0` and read where it listens. With `--edge-port` it also
//! serves the simulator's edge: its URL is the second line, then one line per POP's own listener.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cf_invalidator::edge::url::Pop;
use cf_invalidator::fake::cloudfront_http;
use cf_invalidator::fake::edge_http::EdgeServer;
use cf_invalidator::fake::{AccountRates, Completion, CreateRate, EdgeConfig, FakeCdn, FakeEdge, RateQuota, SimConfig};
use cf_invalidator::model::DistributionId;
use cf_invalidator::ports::Allowance;
use cf_invalidator::ports::budget::QUOTA;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Serve CloudFront's invalidation API with CloudFront's quotas, for tests and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "cloudfront-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,

    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 4599)]
    port: u16,

    /// A distribution that exists (repeat the flag for several; more can be added with POST /_sim/distributions/ID).
    #[arg(long = "distribution", value_parser = parse_distribution)]
    distributions: Vec<DistributionId>,

    /// How long an invalidation stays InProgress (AWS quotes about 25 s at P95).
    #[arg(long, default_value = "30s")]
    completion: humantime::Duration,

    /// Spread completion times between --completion and this, reproducibly per invalidation.
    #[arg(long)]
    completion_max: Option<humantime::Duration>,

    /// Non-wildcard paths (cache tags included) in progress per distribution; 0 turns the quota off.
    #[arg(long, default_value_t = QUOTA.paths)]
    max_paths: u32,

    /// Wildcard paths in progress per distribution, counted apart from --max-paths; 0 turns the quota off.
    #[arg(long, default_value_t = QUOTA.wildcards)]
    max_wildcards: u32,

    /// The rate model: paths and cache tags (wildcards apart) per second for the whole account, beyond which
    /// CreateInvalidation answers TooManyInvalidationsInProgress; 0 (the default) turns it off. A third-party
    /// listing of the quotas page (2026-09) gives 150.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    account_path_rate: f64,

    /// Paths the account may submit at once after a quiet spell under --account-path-rate; default: one
    /// second's worth.
    #[arg(long)]
    account_path_burst: Option<u32>,

    /// The rate model: wildcard paths per second for the whole account; 0 (the default) turns it off. The same
    /// listing gives 1.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    account_wildcard_rate: f64,

    /// Wildcard paths the account may submit at once after a quiet spell; default: one second's worth.
    #[arg(long)]
    account_wildcard_burst: Option<u32>,

    /// CreateInvalidation calls per second before `Throttling`; 0 turns the limit off. CloudFront publishes no
    /// rate: 0.5/s with a burst of 6 is what users report (docs/simulator.md).
    #[arg(long, default_value_t = 0.5, value_parser = parse_rate)]
    rate: f64,

    /// CreateInvalidation calls allowed at once after a quiet spell.
    #[arg(long, default_value_t = NonZeroU32::new(6).expect("non-zero"))]
    burst: NonZeroU32,

    /// Delay before every answer.
    #[arg(long, default_value = "0s")]
    latency: humantime::Duration,

    /// Fraction of calls answered 503 ServiceUnavailable (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    fail_rate: f64,

    /// Serve the edge too, on this port (0 picks a free one): POP caches in front of a small origin that drop
    /// copies as invalidations complete. Its URL is the second line of standard output.
    #[arg(long)]
    edge_port: Option<u16>,

    /// A POP of the edge (repeat for several); IAD89-C1 and FRA56-P2 when none is given.
    #[arg(long = "edge-pop", value_parser = parse_pop)]
    edge_pops: Vec<String>,

    /// How long after an invalidation completes a POP drops its copies: POP=DURATION (repeat for several POPs).
    #[arg(long = "edge-lag", value_parser = parse_lag)]
    edge_lags: Vec<(String, humantime::Duration)>,

    /// A POP that never drops its copies (repeat for several).
    #[arg(long = "edge-stale-pop", value_parser = parse_pop)]
    edge_stale_pops: Vec<String>,
}

impl Args {
    fn config(&self) -> anyhow::Result<SimConfig> {
        let completion = match self.completion_max {
            None => Completion::After(*self.completion),
            Some(max) if *max >= *self.completion => Completion::Between(*self.completion, *max),
            Some(max) => anyhow::bail!("--completion-max {max} is shorter than --completion {}", self.completion),
        };
        let rate = |per_second: f64, burst: Option<u32>| {
            let quota = RateQuota::per_second(per_second);
            (per_second > 0.0).then(|| RateQuota { burst: burst.map_or(quota.burst, |burst| burst.max(1)), ..quota })
        };
        let in_progress = self.max_paths > 0 || self.max_wildcards > 0;
        Ok(SimConfig {
            quotas: in_progress.then(|| Allowance::quota(self.max_paths, self.max_wildcards)),
            account_rates: AccountRates {
                paths: rate(self.account_path_rate, self.account_path_burst),
                wildcards: rate(self.account_wildcard_rate, self.account_wildcard_burst),
            },
            completion,
            create_rate: (self.rate > 0.0).then_some(CreateRate { per_second: self.rate, burst: self.burst }),
            latency: *self.latency,
            fail_rate: self.fail_rate,
            validate_paths: true,
        })
    }
}

impl Args {
    /// The edge's layout, with every POP a flag names among its POPs.
    fn edge(&self) -> anyhow::Result<EdgeConfig> {
        let mut config = EdgeConfig::default();
        if !self.edge_pops.is_empty() {
            config.pops.clone_from(&self.edge_pops);
        }
        config.lag =
            self.edge_lags.iter().map(|(pop, lag)| (pop.clone(), Duration::from(*lag))).collect::<BTreeMap<_, _>>();
        for pop in config.lag.keys().chain(&self.edge_stale_pops) {
            anyhow::ensure!(
                config.pops.contains(pop),
                "{pop} is not one of the edge's POPs ({})",
                config.pops.join(", ")
            );
        }
        Ok(config)
    }
}

fn parse_pop(raw: &str) -> Result<String, String> {
    Pop::parse(raw).map(|pop| pop.to_string()).map_err(|e| e.to_string())
}

fn parse_lag(raw: &str) -> Result<(String, humantime::Duration), String> {
    let (pop, lag) = raw.split_once('=').ok_or_else(|| format!("{raw:?} is not POP=DURATION, e.g. FRA56-P2=90s"))?;
    Ok((parse_pop(pop)?, lag.parse().map_err(|e| format!("{lag:?} is not a duration: {e}"))?))
}

fn parse_distribution(raw: &str) -> Result<DistributionId, String> {
    DistributionId::parse(raw).map_err(|_| format!("{raw:?} is not a distribution id (upper-case letters and digits)"))
}

/// Up to a million a second: beyond that the token bucket's period rounds to zero nanoseconds.
fn parse_rate(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(rate) if (0.0..=1e6).contains(&rate) => Ok(rate),
        _ => Err(format!("{raw:?} is not a rate (calls per second, from 0 to 1000000)")),
    }
}

fn parse_fraction(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(fraction) if (0.0..=1.0).contains(&fraction) => Ok(fraction),
        _ => Err(format!("{raw:?} is not a fraction between 0.0 and 1.0")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_env("CLOUDFRONT_SIM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let cdn = Arc::new(FakeCdn::simulator(args.config()?));
    for distribution in &args.distributions {
        cdn.add_distribution(distribution.clone());
    }
    let listener = TcpListener::bind((args.host, args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let mut lines = format!("http://{}\n", listener.local_addr()?);
    let _edge = match args.edge_port {
        None => None,
        Some(port) => {
            let edge = FakeEdge::new(Arc::clone(&cdn), args.edge()?);
            for pop in &args.edge_stale_pops {
                edge.keep_stale_pop(pop);
            }
            let server = EdgeServer::start_on(args.host, port, Arc::new(edge))
                .await
                .with_context(|| format!("binding the edge on {}:{port}", args.host))?;
            writeln!(lines, "{}", server.url())?;
            for (pop, addr) in server.pops() {
                writeln!(lines, "{pop} http://{addr}")?;
            }
            Some(server)
        }
    };
    // One write: a reader that stops after the first line must not make a later write fail.
    let mut stdout = std::io::stdout();
    stdout.write_all(lines.as_bytes())?;
    stdout.flush()?;
    let stop = CancellationToken::new();
    tokio::spawn(stop_on_signal(stop.clone()));
    cloudfront_http::serve(listener, cdn, stop).await.context("serving")
}

async fn stop_on_signal(stop: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    stop.cancel();
}
