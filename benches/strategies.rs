//! A publishing workload against the CloudFront simulator, handled two ways in the same run:
//! - **naive**: what the seed article does, one CreateInvalidation per message as it arrives (a Lambda per S3
//!   event), CallerReference = the current time in milliseconds, retried with exponential backoff (1 s doubling,
//!   8 attempts, a new reference each time, as the article's code mints one per call) and then given up;
//! - **cf-invalidator**: the worker, with its defaults except `--create-rate 0.5`, once with each `--coalesce`
//!   policy: `auto` (the default: an overloaded distribution's backlog is coalesced into directory wildcards),
//!   `cost` (also a directory's paths whenever its wildcard saves 10 billed paths) and `off`.
//!
//! The simulator has CloudFront's quotas (3,000 paths and 15 wildcards in progress per distribution), completion
//! between 15 and 35 s, and the reported request rate (0.5 calls/s, burst 6). Everything runs on tokio's paused
//! clock, so the figures are deterministic and the 10 simulated minutes take seconds. For each strategy it prints
//! requests made, paths billed, estimated cost, enqueue → accepted latency (p50, p99: from a message being sent to
//! the creation of the invalidations that cover its paths, the last of them), quota errors, messages never covered
//! (a path of theirs in no invalidation made after they were sent), and
//! the objects cleared needlessly: for each wildcard no producer asked for, the objects the workload's site holds
//! under it (`PathModel::objects_under`) less the distinct paths requested under it. For the worker it also
//! prints the AWS requests per invalidation other than SQS's: DynamoDB writes and reads, CreateInvalidation calls
//! (retries included) and status calls.
//!
//! `cargo bench --bench strategies` (env: `CFI_BENCH_MESSAGES`, default 3000, sent evenly over 10 minutes to 3
//! distributions). Under `cargo test --all-targets` it runs a small smoke version.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use cf_invalidator::clock::WallClock;
use cf_invalidator::fake::{Completion, CreateRate, Created, FakeCdn, MemoryLedger, MemoryQueue, SimConfig};
use cf_invalidator::intake::parse::{IntakeRules, Parsed, parse_message};
use cf_invalidator::model::path::is_covered_by;
use cf_invalidator::model::{CallerReference, DistributionId};
use cf_invalidator::plan;
use cf_invalidator::ports::{Cdn, CdnError, Queue};
use cf_invalidator::submit::{CostPolicy, Spending};
use cf_invalidator::worker::{self, Services, Settings};
use common::{CountingLedger, Counts, PathModel, pipeline_workload};
use tokio::time::Instant;

const SEED: u64 = 0x5eed_0003;
const DISTRIBUTIONS: usize = 3;
const PUBLISHING: Duration = Duration::from_secs(600);
const NAIVE_ATTEMPTS: u32 = 8;

/// A message as sent: its distribution, its encoded paths, and when.
struct Sent {
    distribution: DistributionId,
    paths: Vec<String>,
    at: Instant,
}

fn simulator() -> Arc<FakeCdn> {
    let config = SimConfig {
        completion: Completion::Between(Duration::from_secs(15), Duration::from_secs(35)),
        create_rate: Some(CreateRate { per_second: 0.5, burst: NonZeroU32::new(6).unwrap() }),
        ..SimConfig::cloudfront()
    };
    let cdn = FakeCdn::simulator(config);
    for n in 0..DISTRIBUTIONS {
        cdn.add_distribution(DistributionId::parse(&common::distribution_id(n)).unwrap());
    }
    Arc::new(cdn)
}

/// The workload's messages with their paths encoded as CloudFront wants them (both strategies send these).
fn requests(bodies: &[String]) -> Vec<(DistributionId, Vec<String>)> {
    let rules = IntakeRules::default();
    bodies
        .iter()
        .filter_map(|body| match parse_message(body, &rules) {
            Ok(Parsed::Requests(requests)) => requests.into_iter().next(),
            _ => None,
        })
        .map(|r| (r.distribution_id, r.paths.into_iter().map(|p| p.into_string()).collect()))
        .collect()
}

/// One Lambda invocation of the article's handler.
async fn naive_handler(cdn: Arc<FakeCdn>, distribution: DistributionId, paths: Vec<String>) {
    let mut backoff = Duration::from_secs(1);
    for _ in 0..NAIVE_ATTEMPTS {
        let millis = cdn.wall_time(Instant::now()).duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
        let reference = CallerReference::from_recorded(millis.to_string());
        match cdn.create_invalidation(&distribution, &reference, &paths).await {
            Ok(_) => return,
            Err(CdnError::InvalidArgument(_) | CdnError::NoSuchDistribution(_)) => return,
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
}

async fn run_naive(cdn: Arc<FakeCdn>, requests: Vec<(DistributionId, Vec<String>)>) -> Vec<Sent> {
    let gap = PUBLISHING / requests.len() as u32;
    let mut handlers = tokio::task::JoinSet::new();
    let mut sent = Vec::new();
    for (distribution, paths) in requests {
        sent.push(Sent { distribution: distribution.clone(), paths: paths.clone(), at: Instant::now() });
        handlers.spawn(naive_handler(Arc::clone(&cdn), distribution, paths));
        tokio::time::sleep(gap).await;
    }
    while handlers.join_next().await.is_some() {}
    sent
}

/// A `--coalesce` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coalesce {
    Auto,
    Cost,
    Off,
}

/// The worker, with a `--coalesce` policy.
async fn run_worker(
    cdn: Arc<FakeCdn>,
    bodies: Vec<String>,
    requests: Vec<(DistributionId, Vec<String>)>,
    coalesce: Coalesce,
    counts: Arc<Counts>,
) -> Vec<Sent> {
    let clock = WallClock::following_tokio();
    let queue = Arc::new(MemoryQueue::with_clock(clock));
    let services = Services {
        queue: Arc::clone(&queue),
        dead_letter: Some(Arc::new(MemoryQueue::with_clock(clock))),
        cdn,
        ledger: Arc::new(CountingLedger { inner: MemoryLedger::default(), counts }),
    };
    let mut settings = Settings { clock, ..Settings::default() };
    settings.intake.receive_wait = Duration::from_secs(1);
    settings.submission.create_rate = 0.5;
    settings.submission.create_burst = NonZeroU32::new(5).unwrap();
    settings.submission.overload.coalesce = coalesce != Coalesce::Off;
    if coalesce == Coalesce::Cost {
        let cost = CostPolicy { min_saving: 10, overrides: Arc::default() };
        settings.submission.spending = Spending { cost: Some(cost), ..Spending::default() };
    }
    let gap = PUBLISHING / bodies.len() as u32;
    let producer = {
        let queue = Arc::clone(&queue);
        async move {
            let mut sent = Vec::new();
            for (body, (distribution, paths)) in bodies.iter().zip(requests) {
                sent.push(Sent { distribution, paths, at: Instant::now() });
                queue.send(body, &[]).await.unwrap();
                tokio::time::sleep(gap).await;
            }
            sent
        }
    };
    let drained = async move {
        tokio::time::sleep(PUBLISHING).await;
        while !queue.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let (sent, _) = tokio::join!(producer, worker::run(services, settings, drained));
    sent
}

struct Row {
    name: &'static str,
    requests: usize,
    paths_billed: usize,
    dollars: f64,
    p50: Option<Duration>,
    p99: Option<Duration>,
    quota_errors: usize,
    never_covered: usize,
    /// GetInvalidation and ListInvalidations calls (completion tracking and budget resyncs).
    status_calls: (usize, usize),
    invalidations: usize,
    needless_objects: u64,
    /// The ledger's writes and reads, for the worker.
    ledger: Option<(u64, u64)>,
}

fn row(name: &'static str, cdn: &FakeCdn, sent: &[Sent], counts: Option<&Counts>) -> Row {
    let created = cdn.created();
    let billed: Vec<String> = created.iter().flat_map(|c| c.paths.iter().cloned()).collect();
    let mut latencies: Vec<Duration> = sent.iter().filter_map(|s| accepted_after(s, &created)).collect();
    latencies.sort();
    let percentile = |p: f64| latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).copied();
    let rejections = cdn.rejections();
    Row {
        name,
        requests: cdn.calls().len(),
        paths_billed: billed.len(),
        dollars: plan::cost(&billed, 0).dollars,
        p50: percentile(0.5),
        p99: percentile(0.99),
        quota_errors: rejections
            .iter()
            .filter(|r| matches!(r.code, "TooManyInvalidationsInProgress" | "Throttling"))
            .count(),
        never_covered: sent.len() - latencies.len(),
        status_calls: (cdn.status_checks().len(), cdn.list_calls().len()),
        invalidations: created.len(),
        needless_objects: needless_objects(&created, sent),
        ledger: counts.map(|c| {
            let c = c.snapshot();
            (c.dynamodb_writes, c.dynamodb_reads)
        }),
    }
}

/// Objects the wildcards nobody asked for cleared beyond the paths requested under them (each time: every
/// invalidation evicts what is cached again).
fn needless_objects(created: &[Created], sent: &[Sent]) -> u64 {
    let mut requested: HashMap<&DistributionId, BTreeSet<&str>> = HashMap::new();
    for s in sent {
        requested.entry(&s.distribution).or_default().extend(s.paths.iter().map(String::as_str));
    }
    let mut needless = 0;
    for invalidation in created {
        let asked = requested.get(&invalidation.distribution_id).cloned().unwrap_or_default();
        for wildcard in invalidation.paths.iter().filter(|p| p.ends_with('*') && !asked.contains(p.as_str())) {
            let dir = wildcard.trim_end_matches('*');
            let asked_under = asked.range(dir..).take_while(|p| p.starts_with(dir)).count() as u64;
            needless += PathModel::objects_under(dir).saturating_sub(asked_under);
        }
    }
    needless
}

/// From sending to the creation of the last of the invalidations, made after it was sent, that cover its paths:
/// for each path the first that covers it. A message is not always covered by one invalidation: its plain paths go
/// while its wildcards wait for wildcard room, and a message is cut in parts when its batch goes in part.
fn accepted_after(sent: &Sent, created: &[Created]) -> Option<Duration> {
    let after: Vec<&Created> =
        created.iter().filter(|c| c.distribution_id == sent.distribution && c.at >= sent.at).collect();
    let first_covering = |path: &String| after.iter().find(|c| is_covered_by(path, &c.paths)).map(|c| c.at - sent.at);
    sent.paths.iter().map(first_covering).try_fold(Duration::ZERO, |last, at| Some(last.max(at?)))
}

fn seconds(d: Option<Duration>) -> String {
    d.map_or_else(|| "—".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()))
}

fn print(rows: &[Row]) {
    println!(
        "| strategy | CreateInvalidation requests | paths billed | estimated cost | p50 enqueue→accepted | p99 | objects cleared needlessly | quota errors (TooMany + Throttling) | messages never covered | status calls: Get + List (per invalidation) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let (gets, lists) = r.status_calls;
        let per_invalidation = (gets + lists) as f64 / r.invalidations.max(1) as f64;
        println!(
            "| {} | {} | {} | ${:.2} | {} | {} | {} | {} | {} | {gets} + {lists} ({per_invalidation:.2}) |",
            r.name,
            r.requests,
            r.paths_billed,
            r.dollars,
            seconds(r.p50),
            seconds(r.p99),
            r.needless_objects,
            r.quota_errors,
            r.never_covered
        );
    }
    println!();
    println!(
        "| strategy | invalidations | AWS requests per invalidation, SQS aside | DynamoDB writes | DynamoDB reads | CreateInvalidation | status calls |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        let Some((writes, reads)) = r.ledger else { continue };
        let per = |n: f64| n / r.invalidations.max(1) as f64;
        let status = (r.status_calls.0 + r.status_calls.1) as f64;
        let total = writes as f64 + reads as f64 + r.requests as f64 + status;
        println!(
            "| {} | {} | **{:.2}** | {:.2} | {:.2} | {:.2} | {:.2} |",
            r.name,
            r.invalidations,
            per(total),
            per(writes as f64),
            per(reads as f64),
            per(r.requests as f64),
            per(status)
        );
    }
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let messages = if benching {
        std::env::var("CFI_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(3_000)
    } else {
        60
    };
    let (bodies, stats) = pipeline_workload(SEED, messages, DISTRIBUTIONS);
    println!("workload: {} over {} s", stats.describe(), PUBLISHING.as_secs());
    let requests = requests(&bodies);
    let runtime = || tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();

    let naive_cdn = simulator();
    let naive_sent = runtime().block_on(run_naive(Arc::clone(&naive_cdn), requests.clone()));
    let policies = [
        ("cf-invalidator --coalesce auto", Coalesce::Auto),
        ("cf-invalidator --coalesce cost", Coalesce::Cost),
        ("cf-invalidator --coalesce off", Coalesce::Off),
    ];
    let mut rows = vec![row("naive (one call per message)", &naive_cdn, &naive_sent, None)];
    for (name, policy) in policies {
        let cdn = simulator();
        let counts = Arc::new(Counts::default());
        let run = run_worker(Arc::clone(&cdn), bodies.clone(), requests.clone(), policy, Arc::clone(&counts));
        let sent = runtime().block_on(run);
        rows.push(row(name, &cdn, &sent, Some(&counts)));
    }
    print(&rows);
}
