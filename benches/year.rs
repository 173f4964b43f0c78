//! A year in simulated time (#25): does anything the worker keeps, in the ledger or in memory, grow with time?
//!
//! `cargo bench --bench year` runs the whole worker (`worker::run`) on tokio's paused clock, its wall clock following
//! tokio's from 2027-01-01, so the run's months are calendar months. Its services: `MemoryQueue` (redrive to a
//! dead-letter queue after 5 receives), CloudFront as `FakeCdn` generations (`common::cloudfront`: completions in
//! 10–50 s, CloudFront's quotas and path rules) and `MemoryLedger` (the DynamoDB adapter over the strict in-process
//! DynamoDB, whose TTL deletes an hour after expiry). Through the simulated year:
//! - messages at random moments, `CFI_BENCH_MESSAGES_PER_DAY` (3,000: 1.1 million a year), from CI runs: each run
//!   is a requester `github:org-N/site@<sha>` of a pool of `CFI_BENCH_REQUESTERS` (100,000; 1 % of the names 256
//!   characters long) sending 1–5 messages of 1–8 paths (`PathModel`) to one of `CFI_BENCH_DISTRIBUTIONS` (1,000)
//!   distributions with Zipf(1) traffic. A fifth of the runs give their messages idempotency keys, and 5 % of keyed
//!   messages are sent again within 6 hours (a job re-run: deleted as duplicates). After 1 % of the sends, a message
//!   in flight has its visibility lapse (redelivered while its worker may still hold it);
//! - a crash a day at a random moment: the running worker's future is dropped mid-flight, and a worker with empty
//!   memory starts on the same queue, ledger and CloudFront;
//! - an hour-long outage a week, the ledger's and CloudFront's in turn: every call answers 503;
//! - the worker with its defaults, `--retention` `CFI_BENCH_RETENTION_DAYS` (30: the oldest records leave within
//!   the year) and a monthly path budget far above what is spent (its shaping reads and `committed` counters, never
//!   binding); with `CFI_BENCH_ACCOUNT_RATE=true`, also `--account-create-rate 1` (a share of the account's rate,
//!   taken from the roster every busy worker checks in to every 5 s).
//!
//! The scale (27,400 messages a day: 10 million a year, with the account rate) runs at about 30 s of wall
//! time per simulated day on this project's 2-core machine, some 3 hours a year; the defaults (1.1 million messages)
//! take about 20 minutes. Every other knob is the issue's.
//!
//! At the end of each month it prints a markdown row: the largest item written and its key's kind, the largest
//! expression, the items read per adoption round (the tracker's `by_tracking` page), the most items one query read,
//! DynamoDB requests per message, requests refused as invalid, the Prometheus page's series, and the process's
//! resident memory (VmRSS at the month's end, VmHWM during it: the ledger's items are in it, since the engine is
//! in process); and a second table of items and bytes in the table and each index. `CFI_BENCH_DAYS` (365) shortens
//! the year, `CFI_BENCH_SEED` changes the draws. Then one worker drains the queue, and the run must end with the
//! queue empty and nothing dead-lettered (every message is valid).
//!
//! Under `cargo test --benches` (no `--bench` argument) it runs January at 200 messages a day over 100
//! distributions and 2,000 requesters, with a 7-day retention so the ledger is steady by mid-month, and asserts the
//! bounds: nothing refused as invalid, nothing dead-lettered and the queue drained, items under 400 KB and
//! expressions under 4 KB, adoption rounds within their page, and the second half-month's figures no larger than the
//! first's (counts of items and memory within 5 %, the noise of a week's random traffic). Most of its time is the
//! worker's own steady requests, whatever the traffic: about 6,700 ledger requests a simulated day (an adoption round
//! every 30 s, the month's counters every minute, the roster and the shared limits while it has work), through the
//! SDK in a debug build.

mod common;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, UNIX_EPOCH};

use cf_invalidator::clock::WallClock;
use cf_invalidator::fake::dynamodb::{MAX_ITEM, Observed, Reads, StrictDynamo, TableFigures};
use cf_invalidator::fake::{Completion, MemoryLedger, MemoryQueue, SimConfig};
use cf_invalidator::limit::share::AccountRate;
use cf_invalidator::model::DistributionId;
use cf_invalidator::ports::{LedgerError, Queue};
use cf_invalidator::retry::RetryPolicy;
use cf_invalidator::worker::{self, Services, Settings};
use common::cloudfront::RollingCdn;
use common::*;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// 2027-01-01T00:00:00Z.
const START: Duration = Duration::from_secs(1_798_761_600);
const DAY: Duration = Duration::from_secs(86_400);
const MONTHS: [(&str, u64); 12] = [
    ("2027-01", 31),
    ("2027-02", 28),
    ("2027-03", 31),
    ("2027-04", 30),
    ("2027-05", 31),
    ("2027-06", 30),
    ("2027-07", 31),
    ("2027-08", 31),
    ("2027-09", 30),
    ("2027-10", 31),
    ("2027-11", 30),
    ("2027-12", 31),
];
fn days(n: u64) -> Duration {
    Duration::from_secs(n * DAY.as_secs())
}

const OUTAGE: Duration = Duration::from_secs(3_600);
/// SQS's redrive policy: a valid message received this often goes to the dead-letter queue, which the run forbids.
const MAX_RECEIVE_COUNT: u32 = 5;
/// The tracker's adoption page (`track::ADOPT_PAGE`): the most one round may read.
const ADOPT_PAGE: u64 = 100;
/// DynamoDB's limit on an expression.
const MAX_EXPRESSION: usize = 4_096;
/// How long a `FakeCdn` generation of `RollingCdn` lives: an hour's outage and the completions after it fit.
const CDN_GENERATION: Duration = Duration::from_secs(6 * 3_600);
const REQUESTER_CAP: usize = 256;

struct Knobs {
    per_day: u64,
    days: u64,
    distributions: usize,
    requesters: u64,
    retention_days: u64,
    /// `--account-create-rate`: the worker checks in to the ledger's roster every 5 s.
    account_rate: bool,
    seed: u64,
}

impl Knobs {
    fn from_env(defaults: Knobs) -> Self {
        Self {
            per_day: env_or("CFI_BENCH_MESSAGES_PER_DAY", defaults.per_day),
            days: env_or("CFI_BENCH_DAYS", defaults.days),
            distributions: env_or("CFI_BENCH_DISTRIBUTIONS", defaults.distributions),
            requesters: env_or("CFI_BENCH_REQUESTERS", defaults.requesters),
            retention_days: env_or("CFI_BENCH_RETENTION_DAYS", defaults.retention_days),
            account_rate: env_or("CFI_BENCH_ACCOUNT_RATE", defaults.account_rate),
            seed: env_or("CFI_BENCH_SEED", defaults.seed),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} days, {} messages a day, {} distributions, {} requesters, retention {} days, account rate {}, seed {:#x}",
            self.days,
            self.per_day,
            self.distributions,
            self.requesters,
            self.retention_days,
            if self.account_rate { "on" } else { "off" },
            self.seed
        )
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The services

/// The fake ledger, and an outage: every call of every port answers 503 until it is over.
struct YearLedger {
    inner: MemoryLedger,
    down_until: Mutex<Option<Instant>>,
}

impl YearLedger {
    async fn before(&self, _method: &'static str, _parts: &[&'static str]) -> Result<(), LedgerError> {
        match *self.down_until.lock().unwrap() {
            Some(until) if Instant::now() < until => Err(LedgerError::Unavailable("503 (a simulated outage)".into())),
            _ => Ok(()),
        }
    }

    fn after(&self, _method: &'static str) -> Result<(), LedgerError> {
        Ok(())
    }
}

cf_invalidator::hooked_ledger!(YearLedger, inner, before, after);

struct World {
    clock: WallClock,
    queue: Arc<MemoryQueue>,
    dead_letter: Arc<MemoryQueue>,
    cdn: Arc<RollingCdn>,
    ledger: Arc<YearLedger>,
    sent: AtomicU64,
}

impl World {
    fn new(distributions: usize) -> Self {
        let clock = WallClock::FollowsTokio { anchor: UNIX_EPOCH + START, since: Instant::now() };
        let dead_letter = Arc::new(MemoryQueue::with_clock(clock));
        let queue = Arc::new(MemoryQueue::with_clock(clock).with_redrive(Arc::clone(&dead_letter), MAX_RECEIVE_COUNT));
        let config = SimConfig {
            completion: Completion::Between(Duration::from_secs(10), Duration::from_secs(50)),
            ..SimConfig::cloudfront()
        };
        let ids = (0..distributions).map(|d| DistributionId::parse(&distribution_id(d)).unwrap()).collect();
        let cdn = Arc::new(RollingCdn::new(config, ids, CDN_GENERATION, clock));
        let ledger = Arc::new(YearLedger { inner: MemoryLedger::with_clock(clock), down_until: Mutex::new(None) });
        Self { clock, queue, dead_letter, cdn, ledger, sent: AtomicU64::new(0) }
    }

    fn engine(&self) -> &StrictDynamo {
        self.ledger.inner.engine()
    }

    fn services(&self) -> Services<MemoryQueue, RollingCdn, YearLedger> {
        Services {
            queue: Arc::clone(&self.queue),
            dead_letter: Some(Arc::clone(&self.dead_letter)),
            cdn: Arc::clone(&self.cdn),
            ledger: Arc::clone(&self.ledger),
        }
    }

    fn settings(&self, knobs: &Knobs, incarnation: u64) -> Settings {
        let mut settings =
            Settings { clock: self.clock, retry: RetryPolicy::seeded(knobs.seed ^ incarnation), ..Settings::default() };
        settings.ledger.worker_id = format!("worker-{incarnation}");
        settings.ledger.retention = days(knobs.retention_days);
        if knobs.account_rate {
            settings.submission.account_rate =
                Some(AccountRate { per_second: 1.0, burst: NonZeroU32::new(5).unwrap() });
        }
        // Eight paths a message at most, and ten times that: never binding.
        settings.submission.spending.monthly_path_budget = Some(knobs.per_day * 31 * 8 * 10);
        settings
    }

    /// A worker that runs until it is aborted (a crash).
    fn start_worker(&self, knobs: &Knobs, incarnation: u64) -> JoinHandle<worker::Exit> {
        tokio::spawn(worker::run(self.services(), self.settings(knobs, incarnation), std::future::pending()))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The producers

struct Run {
    distribution: usize,
    requester: String,
    section: String,
    key: Option<String>,
    left: u64,
}

struct Producer {
    rng: Rng,
    traffic: Zipf,
    model: PathModel,
    requesters: u64,
    runs: u64,
    run: Option<Run>,
    /// Keyed messages to send again (a job re-run), by when.
    resends: BTreeMap<(Instant, u64), String>,
    resent: u64,
    lapses: u64,
}

impl Producer {
    fn new(knobs: &Knobs) -> Self {
        Self {
            rng: Rng(knobs.seed),
            traffic: Zipf::new(knobs.distributions, 1.0),
            model: PathModel::default(),
            requesters: knobs.requesters,
            runs: 0,
            run: None,
            resends: BTreeMap::new(),
            resent: 0,
            lapses: 0,
        }
    }

    /// Requester `n` of the pool: a CI run's name, one in a hundred as long as the worker takes.
    fn requester(n: u64) -> String {
        let sha = format!("{:016x}{:016x}{:08x}", n.wrapping_mul(0x9E37_79B9_7F4A_7C15), !n, n as u32);
        let name = if n.is_multiple_of(100) {
            format!("github:org-{}/{}@{sha}", n % 997, "a-long-repository-name-".repeat(12))
        } else {
            format!("github:org-{}/site@{sha}", n % 997)
        };
        name.chars().rev().take(REQUESTER_CAP).collect::<Vec<_>>().into_iter().rev().collect()
    }

    fn next_run(&mut self) -> Run {
        self.runs += 1;
        let requester = Self::requester(self.rng.below(self.requesters));
        let key = self.rng.chance(0.2).then(|| format!("run-{}", self.runs));
        Run {
            distribution: self.traffic.sample(&mut self.rng),
            requester,
            section: self.model.section(&mut self.rng),
            key,
            left: 1 + self.rng.below(5),
        }
    }

    fn next_body(&mut self) -> String {
        let mut run = match self.run.take() {
            Some(run) if run.left > 0 => run,
            _ => self.next_run(),
        };
        run.left -= 1;
        let paths: Vec<String> = (0..1 + self.rng.below(8))
            .map(|_| {
                let section =
                    if self.rng.chance(0.8) { run.section.clone() } else { self.model.section(&mut self.rng) };
                self.model.path(&mut self.rng, &section).0
            })
            .collect();
        let mut body = serde_json::json!({
            "distribution_id": distribution_id(run.distribution),
            "paths": paths,
            "requester": run.requester,
        });
        if let Some(key) = &run.key {
            body["idempotency_key"] = format!("{key}-{}", run.left).into();
        }
        let body = body.to_string();
        if run.key.is_some() && self.rng.chance(0.05) {
            let at = Instant::now() + Duration::from_secs(60 + self.rng.below(6 * 3_600));
            self.resends.insert((at, self.runs * 8 + run.left), body.clone());
        }
        self.run = Some(run);
        body
    }

    /// Makes a message in flight visible again, as when its visibility lapses.
    fn lapse(&mut self, queue: &MemoryQueue) {
        let in_flight: Vec<_> = queue.messages().into_iter().filter(|m| m.receive_count > 0).collect();
        if !in_flight.is_empty() {
            let message = &in_flight[self.rng.below(in_flight.len() as u64) as usize];
            queue.expire_visibility(&message.message_id);
            self.lapses += 1;
        }
    }
}

/// Sends messages at random moments, `per_day` a day on average, until `end`.
async fn produce(world: Arc<World>, mut producer: Producer, per_day: u64, end: Instant) -> Producer {
    let mean_gap = DAY.as_secs_f64() / per_day as f64;
    loop {
        let gap = Duration::from_secs_f64(-mean_gap * (1.0 - producer.rng.unit()).ln());
        let at = Instant::now() + gap;
        if at >= end {
            tokio::time::sleep_until(end).await;
            return producer;
        }
        while let Some(entry) = producer.resends.first_entry().filter(|e| e.key().0 <= at) {
            tokio::time::sleep_until(entry.key().0).await;
            send(&world, &entry.remove()).await;
            producer.resent += 1;
        }
        tokio::time::sleep_until(at).await;
        send(&world, &producer.next_body()).await;
        if producer.rng.chance(0.01) {
            producer.lapse(&world.queue);
        }
    }
}

async fn send(world: &World, body: &str) {
    world.queue.send(body, &[]).await.expect("the fake queue takes every message");
    world.sent.fetch_add(1, Relaxed);
}

// ---------------------------------------------------------------------------------------------------------------
// The figures

/// A period's figures: what the engine observed during it, and the tables and the process at its end.
struct Row {
    period: String,
    days: u64,
    messages: u64,
    observed: Observed,
    tables: Vec<TableFigures>,
    metric_series: usize,
    rss_kib: u64,
    peak_rss_kib: u64,
}

impl Row {
    fn take(world: &World, metrics: &PrometheusHandle, period: &str, days: u64, messages: u64) -> Self {
        let engine = world.engine();
        let observed = engine.take_observed();
        let tables = engine.stats().tables;
        let metric_series = metrics.render().lines().filter(|line| !line.starts_with('#') && !line.is_empty()).count();
        let (rss_kib, peak_rss_kib) = (status_kib("VmRSS"), status_kib("VmHWM"));
        reset_peak_rss();
        Self { period: period.to_owned(), days, messages, observed, tables, metric_series, rss_kib, peak_rss_kib }
    }

    fn adoption(&self) -> Reads {
        self.observed.reads.get("by_tracking").copied().unwrap_or_default()
    }

    fn requests(&self) -> u64 {
        self.observed.requests.values().sum()
    }

    fn ledger(&self) -> &TableFigures {
        self.tables.iter().find(|t| t.name == "ledger").expect("the ledger table")
    }

    fn markdown(&self) -> String {
        let adoption = self.adoption();
        let per_round = adoption.items as f64 / adoption.pages.max(1) as f64;
        format!(
            "| {} | {} | {} B `{}` | {} B {} | {per_round:.2} ({} at most, {} rounds) | {} | {:.2} | {} | {} | {:.0} | {:.0} |",
            self.period,
            self.messages,
            self.observed.largest_item.bytes,
            item_kind(&self.observed.largest_item.what),
            self.observed.largest_expression.bytes,
            expression_kind(&self.observed.largest_expression.what),
            adoption.most,
            adoption.pages,
            self.observed.most_read_by_a_page,
            self.requests() as f64 / self.messages.max(1) as f64,
            self.observed.refused_as_invalid(),
            self.metric_series,
            mib(self.rss_kib),
            mib(self.peak_rss_kib),
        )
    }

    fn storage_markdown(&self) -> String {
        let ledger = self.ledger();
        let indexes: Vec<String> =
            ledger.indexes.iter().map(|i| format!("{} / {:.1}", i.items, i.bytes as f64 / 1_048_576.0)).collect();
        format!(
            "| {} | {} / {:.1} | {} |",
            self.period,
            ledger.items,
            ledger.bytes as f64 / 1_048_576.0,
            indexes.join(" | ")
        )
    }
}

/// The kind of a ledger item, from the engine's `<table> <key>`: its key with the variable parts named.
fn item_kind(what: &str) -> String {
    let key = what.split_once(' ').map_or(what, |(_, key)| key);
    let parts: Vec<&str> = key.split('#').collect();
    match parts.as_slice() {
        ["month", _] => "month#<month>".into(),
        ["month", _, "requester", _] => "month#<month>#requester#<digest>".into(),
        ["month", _, "requesters", which] => format!("month#<month>#requesters#{which}"),
        ["month", _, _] => "month#<month>#<distribution>".into(),
        ["batch" | "lease", _] => format!("{}#<CallerReference>", parts[0]),
        ["budget", _] => "budget#<distribution>".into(),
        ["key", ..] => "key#<distribution>#<key>".into(),
        ["day", _] => "day#<day>".into(),
        ["dlq", _] => "dlq#<message id>".into(),
        ["worker", _] => "worker#<worker id>".into(),
        [kind, ..] => format!("{kind}#…"),
        [] => String::new(),
    }
}

/// An expression's kind and its first words, from the engine's `<kind>: <text>`.
fn expression_kind(what: &str) -> String {
    let (kind, text) = what.split_once(": ").unwrap_or((what, ""));
    let start: String = text.chars().take(28).collect();
    format!("{kind} `{}…`", start.replace('`', "'").replace('|', "\\|"))
}

fn print_tables(rows: &[Row]) {
    println!(
        "| month | messages | largest item | largest expression | items read per adoption round | most items one query read | DynamoDB requests per message | refused as invalid | metric series | VmRSS at its end (MiB) | peak VmRSS (MiB) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    rows.iter().for_each(|row| println!("{}", row.markdown()));
    println!();
    let names: Vec<String> = rows[0].ledger().indexes.iter().map(|i| format!("`{}`", i.name)).collect();
    println!("Items / MiB at the month's end:");
    println!();
    println!("| month | table | {} |", names.join(" | "));
    println!("|---|---|{}", "---|".repeat(names.len()));
    rows.iter().for_each(|row| println!("{}", row.storage_markdown()));
    println!();
    for row in rows {
        let per_day = |n: &u64| *n as f64 / row.days as f64;
        let requests: Vec<String> =
            row.observed.requests.iter().map(|(op, n)| format!("{op} {:.0}", per_day(n))).collect();
        let reads: Vec<String> = row
            .observed
            .reads
            .iter()
            .map(|(what, r)| {
                format!("{what} {:.0} ({:.2} items each)", per_day(&r.pages), r.items as f64 / r.pages as f64)
            })
            .collect();
        println!(
            "{}: DynamoDB requests a day: {}; query pages a day: {}; refused: {:?}; first of each: {:?}",
            row.period,
            requests.join(", "),
            reads.join(", "),
            row.observed.refused,
            row.observed.first_refusal
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The run

/// The periods reported: calendar months, or January's two halves; each with the day it ends on.
fn periods(days: u64, halves: bool) -> Vec<(String, u64)> {
    if halves {
        let first = ("2027-01-01…15".to_owned(), 15.min(days));
        return if days > 15 { vec![first, ("2027-01-16…31".into(), days)] } else { vec![first] };
    }
    let mut end = 0;
    let mut periods = Vec::new();
    for (month, length) in MONTHS.iter().cycle().take(24) {
        if end >= days {
            break;
        }
        end += length;
        let name =
            if end <= days { (*month).to_owned() } else { format!("{month} (to day {})", days - (end - length)) };
        periods.push((name, end.min(days)));
    }
    periods
}

struct Outcome {
    rows: Vec<Row>,
    producer: Producer,
    crashes: u64,
    outages: u64,
    left_on_queue: usize,
    dead_lettered: usize,
    dead_letter_records: usize,
    retired_lookups: u64,
    wall: std::time::Duration,
}

async fn run_year(knobs: &Knobs, halves: bool, metrics: &PrometheusHandle) -> Outcome {
    let wall = std::time::Instant::now();
    let world = Arc::new(World::new(knobs.distributions));
    let start = Instant::now();
    let end = start + days(knobs.days);
    let producer = tokio::spawn(produce(Arc::clone(&world), Producer::new(knobs), knobs.per_day, end));
    let mut rng = Rng(knobs.seed ^ 0xC4A5);
    let mut incarnation = 0;
    let mut worker = world.start_worker(knobs, incarnation);
    let (mut crashes, mut outages) = (0, 0);
    let mut periods = periods(knobs.days, halves).into_iter().peekable();
    let (mut counted, mut period_start) = (0, 0);
    let mut rows = Vec::new();
    for day in 0..knobs.days {
        let midnight = start + days(day);
        let mut events = vec![(midnight + Duration::from_secs(rng.below(DAY.as_secs())), None)];
        if day % 7 == 3 {
            events.push((midnight + Duration::from_secs(rng.below(DAY.as_secs() - 3_600)), Some(day / 7 % 2 == 0)));
        }
        events.sort();
        for (at, outage) in events {
            tokio::time::sleep_until(at).await;
            match outage {
                Some(true) => *world.ledger.down_until.lock().unwrap() = Some(at + OUTAGE),
                Some(false) => world.cdn.down_for(OUTAGE),
                None => {
                    worker.abort();
                    let _ = worker.await;
                    incarnation += 1;
                    worker = world.start_worker(knobs, incarnation);
                    crashes += 1;
                    continue;
                }
            }
            outages += 1;
        }
        tokio::time::sleep_until(midnight + DAY).await;
        if let Some((name, _)) = periods.next_if(|(_, last)| *last == day + 1) {
            let sent = world.sent.load(Relaxed);
            rows.push(Row::take(&world, metrics, &name, day + 1 - period_start, sent - counted));
            (counted, period_start) = (sent, day + 1);
            if !halves {
                println!("{}   ({:.0?} so far)", rows.last().unwrap().markdown(), wall.elapsed());
            }
        }
    }
    let producer = producer.await.expect("the producer");
    worker.abort();
    let _ = worker.await;
    let drained = {
        let queue = Arc::clone(&world.queue);
        async move {
            let give_up = Instant::now() + DAY;
            while !queue.is_empty() && Instant::now() < give_up {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    worker::run(world.services(), world.settings(knobs, incarnation + 1), drained).await;
    Outcome {
        rows,
        producer,
        crashes,
        outages,
        left_on_queue: world.queue.len(),
        dead_lettered: world.dead_letter.len(),
        dead_letter_records: world.ledger.inner.dead_letters().len(),
        retired_lookups: world.cdn.retired_lookups.load(Relaxed),
        wall: wall.elapsed(),
    }
}

fn simulate(knobs: &Knobs, halves: bool) -> Outcome {
    let metrics = cf_invalidator::telemetry::install_metrics().expect("the metrics recorder");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    runtime.block_on(run_year(knobs, halves, &metrics))
}

fn summary(outcome: &Outcome) -> String {
    let producer = &outcome.producer;
    format!(
        "{} messages sent ({} again by a re-run), {} CI runs, {} visibility lapses, {} crashes, {} hour-long outages; \
         after the drain: {} messages left on the queue, {} dead-lettered ({} dead-letter records); {} lookups of \
         invalidations older than the CloudFront fake keeps; {:.1?} wall",
        outcome.rows.iter().map(|r| r.messages).sum::<u64>(),
        producer.resent,
        producer.runs,
        producer.lapses,
        outcome.crashes,
        outcome.outages,
        outcome.left_on_queue,
        outcome.dead_lettered,
        outcome.dead_letter_records,
        outcome.retired_lookups,
        outcome.wall,
    )
}

/// The bounds every period meets, and what a run must end with.
fn check(outcome: &Outcome) {
    for row in &outcome.rows {
        let observed = &row.observed;
        assert_eq!(
            observed.refused_as_invalid(),
            0,
            "{}: requests refused as invalid: {:?}, the first of each: {:?}",
            row.period,
            observed.refused,
            observed.first_refusal
        );
        assert!(observed.largest_item.bytes < MAX_ITEM, "{}: {:?}", row.period, observed.largest_item);
        assert!(
            observed.largest_expression.bytes < MAX_EXPRESSION,
            "{}: {:?}",
            row.period,
            observed.largest_expression
        );
        assert!(row.adoption().pages > 0, "{}: adoption rounds ran", row.period);
        assert!(row.adoption().most <= ADOPT_PAGE, "{}: an adoption round read {}", row.period, row.adoption().most);
    }
    assert_eq!(outcome.left_on_queue, 0, "the queue drains");
    assert_eq!(outcome.dead_lettered, 0, "every message is valid: nothing is dead-lettered");
    assert_eq!(outcome.dead_letter_records, 0, "no dead-letter record");
}

/// The second half-month's figures are no larger than the first's: the ledger is steady once its retention has
/// passed.
fn check_flat(first: &Row, second: &Row) {
    let no_larger = |what: &str, first: u64, second: u64| {
        assert!(second <= first, "{what} grew from {first} in the first half-month to {second} in the second");
    };
    let within = |what: &str, first: u64, second: u64| {
        assert!(
            second as f64 <= first as f64 * 1.05,
            "{what} grew by more than 5 % from {first} in the first half-month to {second} in the second"
        );
    };
    no_larger(
        "the largest expression",
        first.observed.largest_expression.bytes as u64,
        second.observed.largest_expression.bytes as u64,
    );
    within("the largest item", first.observed.largest_item.bytes as u64, second.observed.largest_item.bytes as u64);
    within("the ledger's items", first.ledger().items as u64, second.ledger().items as u64);
    for (a, b) in first.ledger().indexes.iter().zip(&second.ledger().indexes) {
        within(&format!("{}'s items", a.name), a.items as u64, b.items as u64);
    }
    within("the metric series", first.metric_series as u64, second.metric_series as u64);
    within("VmRSS", first.rss_kib, second.rss_kib);
}

fn smoke_test() {
    let knobs = Knobs::from_env(Knobs {
        per_day: 200,
        days: 31,
        distributions: 100,
        requesters: 2_000,
        retention_days: 7,
        account_rate: false,
        seed: 0x7ea2_2027,
    });
    let outcome = simulate(&knobs, true);
    print_tables(&outcome.rows);
    println!("{}", summary(&outcome));
    check(&outcome);
    if let [first, second] = &outcome.rows[..] {
        check_flat(first, second);
    }
    println!("year benchmark smoke test: ok ({})", knobs.describe());
}

fn main() {
    if !is_bench_run() {
        return smoke_test();
    }
    let knobs = Knobs::from_env(Knobs {
        per_day: 3_000,
        days: 365,
        distributions: 1_000,
        requesters: 100_000,
        retention_days: 30,
        account_rate: false,
        seed: 0x7ea2_2027,
    });
    println!("year: {}", knobs.describe());
    let outcome = simulate(&knobs, false);
    println!();
    print_tables(&outcome.rows);
    println!();
    println!("{}", summary(&outcome));
    check(&outcome);
}
