//! Limits that follow the service (issue #26): the worker against CloudFront simulators whose quota model it is
//! told, or not, with a backlog. Five cases in one run:
//!
//! 1. the in-progress model (3,000 paths and 15 wildcards per distribution), the worker's defaults;
//! 2. the rate model (150 paths and 1 wildcard a second per account), the worker told so (`--account-path-rate 150
//!    --account-wildcard-rate 1 --in-progress-paths 0 --in-progress-wildcards 0 --create-rate 0`);
//! 3. the rate model, the worker's defaults (the wrong model: it must learn);
//! 4. an in-progress limit of 1,000 paths per distribution it is not told of, defaults;
//! 5. both models at once, three workers on one queue and ledger, defaults.
//!
//! Each case queues its backlog at once (single-path messages over three distributions, as the trial) and
//! runs the whole worker over the fakes on tokio's paused clock until the queue is empty. The simulator completes
//! each invalidation 10 to 25 s after creating it (AWS: P95 under 25 s), and its rate buckets hold one second's
//! worth. It prints, per case: the refusals (TooManyInvalidationsInProgress and Throttling) among the calls, in all
//! and after the first minute; the throughput (paths accepted a second from the first acceptance to the last, and
//! after the first minute) against the binding limit's; the p99 from enqueue to accepted against the freshness bound; what was
//! dead-lettered and left uncovered; and what each worker believes of the limits at the end. Under today's
//! in-progress model alone, also what an ideal worker that sees every completion at once reaches on the same draws
//! (`ideal_throughput`): the reference against which the worker's own share is read.
//!
//! `cargo bench --bench learned_limits` runs the full backlog (27,000 messages) and checks the bars; under
//! `cargo test --bench learned_limits` it runs 900 messages a case and checks only that nothing was dead-lettered
//! and every message was covered.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cf_invalidator::clock::WallClock;
use cf_invalidator::fake::{AccountRates, Completion, FakeCdn, MemoryLedger, MemoryQueue, SimConfig};
use cf_invalidator::limit::account::{AccountQuota, AccountQuotas};
use cf_invalidator::limit::belief::LimitBoard;
use cf_invalidator::model::DistributionId;
use cf_invalidator::model::path::is_covered_by;
use cf_invalidator::ports::budget::{Allowance, QUOTA};
use cf_invalidator::ports::{Queue, QueueStats};
use cf_invalidator::worker::{self, Exit, Services, Settings};
use common::{distribution_id, env_or, is_bench_run};
use tokio::time::Instant;

const DISTRIBUTIONS: usize = 3;
const COMPLETION: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(25));
/// The rate model, as the third-party listing gives it.
const PATHS_PER_SECOND: f64 = 150.0;
const FIRST_MINUTE: Duration = Duration::from_secs(60);
/// Far beyond any case: reaching it means the backlog never drained, which the report shows.
const GIVE_UP_AFTER: Duration = Duration::from_secs(3_600);

/// What the simulator enforces.
#[derive(Clone, Copy)]
enum Model {
    InProgress(u32),
    Rate,
    Both,
}

impl Model {
    fn config(self) -> SimConfig {
        let rates = AccountRates::listed();
        let (quotas, account_rates) = match self {
            Self::InProgress(paths) => (Some(Allowance { paths, wildcards: QUOTA.wildcards }), AccountRates::default()),
            Self::Rate => (None, rates),
            Self::Both => (Some(QUOTA), rates),
        };
        let completion = Completion::Between(COMPLETION.0, COMPLETION.1);
        SimConfig { quotas, account_rates, completion, validate_paths: true, ..SimConfig::default() }
    }

    /// The binding limit's throughput, in paths a second: a distribution's in-progress paths free up once per
    /// completion (the mean of the simulator's), or the account's rate.
    fn binding(self) -> f64 {
        let mean_completion = (COMPLETION.0 + COMPLETION.1).as_secs_f64() / 2.0;
        let in_progress = |paths: u32| DISTRIBUTIONS as f64 * f64::from(paths) / mean_completion;
        match self {
            Self::InProgress(paths) => in_progress(paths),
            Self::Rate => PATHS_PER_SECOND,
            Self::Both => PATHS_PER_SECOND.min(in_progress(QUOTA.paths)),
        }
    }

    /// The in-progress paths a distribution may hold, when the model has such a limit.
    fn in_progress_limit(self) -> Option<u32> {
        match self {
            Self::InProgress(paths) => Some(paths),
            Self::Both => Some(QUOTA.paths),
            Self::Rate => None,
        }
    }

    fn is_rate(self) -> bool {
        matches!(self, Self::Rate | Self::Both)
    }
}

struct Case {
    name: &'static str,
    model: Model,
    /// Told the model: the rate flags, in-progress quotas off.
    told: bool,
    workers: usize,
}

const CASES: [Case; 5] = [
    Case { name: "in-progress 3,000/15, defaults", model: Model::InProgress(3_000), told: false, workers: 1 },
    Case { name: "rate 150/1, matching flags", model: Model::Rate, told: true, workers: 1 },
    Case { name: "rate 150/1, defaults", model: Model::Rate, told: false, workers: 1 },
    Case { name: "in-progress 1,000, defaults", model: Model::InProgress(1_000), told: false, workers: 1 },
    Case { name: "both, 3 workers, defaults", model: Model::Both, told: false, workers: 3 },
];

fn settings(case: &Case, worker: usize) -> Settings {
    let clock = WallClock::following_tokio();
    let mut settings = Settings { clock, limits: Arc::new(LimitBoard::new(clock)), ..Settings::default() };
    settings.ledger.worker_id = format!("bench-worker-{worker}");
    settings.intake.receive_wait = Duration::from_secs(1);
    if case.told {
        // The rate model has no call rate of its own.
        settings.submission.create_rate = 0.0;
        settings.budget.quota = Allowance::quota(0, 0);
        settings.submission.account_quotas = AccountQuotas {
            paths: AccountQuota::configured(PATHS_PER_SECOND, 0),
            wildcards: AccountQuota::configured(1.0, 0),
        };
    }
    settings
}

struct Outcome {
    calls: usize,
    refused: usize,
    calls_after_first_minute: usize,
    refused_after_first_minute: usize,
    /// Paths a second over the whole run, and after the first minute.
    throughput: f64,
    throughput_after_first_minute: f64,
    p99: Duration,
    dead_lettered: usize,
    uncovered: usize,
    /// Per worker: (limit, scope) → believed.
    beliefs: Vec<HashMap<(String, String), f64>>,
    /// Paths in progress on a distribution, on average from the first acceptance to the last.
    mean_in_progress: f64,
}

async fn run(case: &Case, messages: usize) -> Outcome {
    let clock = WallClock::following_tokio();
    let queue = Arc::new(MemoryQueue::with_clock(clock));
    let dead_letter = Arc::new(MemoryQueue::with_clock(clock));
    let cdn = Arc::new(FakeCdn::simulator(case.model.config()));
    let distributions: Vec<DistributionId> =
        (0..DISTRIBUTIONS).map(|d| DistributionId::parse(&distribution_id(d)).unwrap()).collect();
    for distribution in &distributions {
        cdn.add_distribution(distribution.clone());
    }
    let paths: Vec<(usize, String)> = (0..messages).map(|n| (n % DISTRIBUTIONS, format!("/d/p{n}.html"))).collect();
    for (distribution, path) in &paths {
        let body = serde_json::json!({"distribution_id": distribution_id(*distribution), "paths": [path]});
        queue.send(&body.to_string(), &[]).await.unwrap();
    }
    let start = Instant::now();
    let ledger = Arc::new(MemoryLedger::default());
    let runs = (0..case.workers).map(|worker| {
        let settings = settings(case, worker);
        let board = Arc::clone(&settings.limits);
        let services = Services {
            queue: Arc::clone(&queue),
            dead_letter: Some(Arc::clone(&dead_letter)),
            cdn: Arc::clone(&cdn),
            ledger: Arc::clone(&ledger),
        };
        let drained = until_drained(Arc::clone(&queue), start);
        async move { (worker::run(services, settings, drained).await, board) }
    });
    let ended = futures_util::future::join_all(runs).await;
    let beliefs = ended
        .iter()
        .map(|(exit, board)| {
            assert_eq!(*exit, Exit::Drained);
            let learned = board.believed().into_iter();
            learned.map(|(limit, scope, b)| ((limit.to_owned(), scope), b.believed)).collect()
        })
        .collect();
    if std::env::var_os("CFI_BENCH_TIMELINE").is_some() {
        timeline(&cdn, start);
    }
    outcome(&cdn, &dead_letter, &paths, &distributions, start, beliefs)
}

/// Per 10 s of the run: calls, refusals and paths accepted, and the largest call (`CFI_BENCH_TIMELINE=1`).
fn timeline(cdn: &FakeCdn, start: Instant) {
    let slot = |at: Instant| (at.duration_since(start).as_secs() / 10) as usize;
    let mut slots: std::collections::BTreeMap<usize, (usize, usize, usize, usize)> = Default::default();
    for c in cdn.created() {
        let s = slots.entry(slot(c.at)).or_default();
        s.0 += 1;
        s.2 += c.paths.len();
        s.3 = s.3.max(c.paths.len());
    }
    for r in cdn.rejections() {
        slots.entry(slot(r.at)).or_default().1 += 1;
    }
    for (s, (calls, refused, paths, largest)) in slots {
        println!("  t={:>4}s calls {calls:>3} refused {refused:>2} paths {paths:>5} largest {largest:>4}", s * 10);
    }
}

/// The throughput, in paths a second from its first call to its last, of an ideal worker under an in-progress
/// limit of `limit` paths per distribution: it sees each completion the moment it happens and calls at once,
/// greedily in full batches, with the worker's defaults (reserve, batch size, call rate). The simulator draws the
/// k-th invalidation's completion time from k, so the ideal meets the very draws the worker met, in its own order.
/// A worker that sends the same batches in the same order, and learns of completions by asking, can only be later;
/// the worker's own order, like other batch sizes, meets other draws, and on a backlog of a few rounds which
/// distribution drew the long completions decides most of the figure: it is a reference, not a bound on every
/// schedule.
fn ideal_throughput(limit: u32, messages: usize) -> f64 {
    let defaults = Settings::default();
    let capacity = limit.saturating_sub(defaults.budget.reserve.paths).max(1) as usize;
    let largest = defaults.batching.max_paths;
    let (rate, burst) = (defaults.submission.create_rate, f64::from(defaults.submission.create_burst.get()));
    let completion = Model::InProgress(limit).config().completion;
    let mut backlog: Vec<usize> =
        (0..DISTRIBUTIONS).map(|d| (messages + DISTRIBUTIONS - 1 - d) / DISTRIBUTIONS).collect();
    let mut held = [0; DISTRIBUTIONS];
    // (completes at, distribution, paths), in seconds from the first call.
    let mut in_progress: Vec<(f64, usize, usize)> = Vec::new();
    let (mut now, mut last, mut tokens, mut created) = (0.0_f64, 0.0_f64, burst, 0_u64);
    while backlog.iter().any(|&left| left > 0) {
        let mut sent = true;
        while sent {
            sent = false;
            for d in 0..DISTRIBUTIONS {
                if backlog[d] == 0 || held[d] >= capacity || tokens < 1.0 {
                    continue;
                }
                let paths = largest.min(capacity - held[d]).min(backlog[d]);
                created += 1;
                tokens -= 1.0;
                in_progress.push((now + completion.delay(created).as_secs_f64(), d, paths));
                (held[d], backlog[d], last, sent) = (held[d] + paths, backlog[d] - paths, now, true);
            }
        }
        let next_completion = in_progress.iter().map(|(at, ..)| *at).fold(f64::INFINITY, f64::min);
        let next_token = if tokens < 1.0 { now + (1.0 - tokens) / rate } else { f64::INFINITY };
        let next = next_completion.min(next_token);
        if !next.is_finite() {
            break;
        }
        tokens = (tokens + (next - now) * rate).min(burst);
        if next == next_token {
            // The token waited for, whatever the rounding: a hair short of one would wait again for nothing.
            tokens = tokens.max(1.0);
        }
        now = next;
        in_progress.retain(|&(at, d, paths)| {
            let done = at <= now;
            if done {
                held[d] -= paths;
            }
            !done
        });
    }
    messages as f64 / last.max(f64::EPSILON)
}

/// Resolves once the queue is empty (every message deleted), or the case has run too long.
async fn until_drained(queue: Arc<MemoryQueue>, start: Instant) {
    while queue.depth().await.is_ok_and(|depth| depth.visible + depth.in_flight > 0) && start.elapsed() < GIVE_UP_AFTER
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn outcome(
    cdn: &FakeCdn,
    dead_letter: &MemoryQueue,
    paths: &[(usize, String)],
    distributions: &[DistributionId],
    start: Instant,
    beliefs: Vec<HashMap<(String, String), f64>>,
) -> Outcome {
    let created = cdn.created();
    let refusals: Vec<Instant> = cdn
        .rejections()
        .into_iter()
        .filter(|r| matches!(r.code, "TooManyInvalidationsInProgress" | "Throttling"))
        .map(|r| r.at)
        .collect();
    let after = |at: Instant| at.duration_since(start) >= FIRST_MINUTE;
    // From the first acceptance: the window before it is the worker's choice, no limit's.
    let first = created.iter().map(|c| c.at).min().unwrap_or(start);
    let last = created.iter().map(|c| c.at).max().unwrap_or(start);
    let elapsed = last.duration_since(first).as_secs_f64().max(f64::EPSILON);
    let total: usize = created.iter().map(|c| c.paths.len()).sum();
    let late: usize = created.iter().filter(|c| after(c.at)).map(|c| c.paths.len()).sum();
    let late_span = (last.duration_since(start).as_secs_f64() - FIRST_MINUTE.as_secs_f64()).max(f64::EPSILON);
    // Enqueued at the start: a path's freshness is when the first invalidation covering it was accepted.
    let mut by_distribution: HashMap<&DistributionId, Vec<(Instant, &[String])>> = HashMap::new();
    for c in &created {
        by_distribution.entry(&c.distribution_id).or_default().push((c.at, &c.paths));
    }
    let mut waits = Vec::with_capacity(paths.len());
    let mut uncovered = 0;
    for (distribution, path) in paths {
        let accepted = by_distribution
            .get(&distributions[*distribution])
            .and_then(|list| list.iter().find(|(_, paths)| is_covered_by(path, paths)).map(|(at, _)| *at));
        match accepted {
            Some(at) => waits.push(at.duration_since(start)),
            None => uncovered += 1,
        }
    }
    waits.sort();
    let far = last + GIVE_UP_AFTER;
    let completed: Vec<(Instant, Instant, usize)> = created
        .iter()
        .filter_map(|c| Some((c.at, cdn.last_completion_covering(c.target(), c.paths.first()?, far)?, c.paths.len())))
        .collect();
    let held = |(at, done, paths): &(Instant, Instant, usize)| {
        let (from, to) = ((*at).max(first), (*done).min(last));
        *paths as f64 * to.saturating_duration_since(from).as_secs_f64()
    };
    let path_seconds = completed.iter().map(held).sum::<f64>() / DISTRIBUTIONS as f64;
    Outcome {
        calls: created.len() + refusals.len(),
        refused: refusals.len(),
        calls_after_first_minute: created.iter().filter(|c| after(c.at)).count()
            + refusals.iter().filter(|at| after(**at)).count(),
        refused_after_first_minute: refusals.iter().filter(|at| after(**at)).count(),
        throughput: total as f64 / elapsed,
        throughput_after_first_minute: late as f64 / late_span,
        p99: waits.get(((waits.len() as f64 - 1.0) * 0.99).round() as usize).copied().unwrap_or_default(),
        dead_lettered: dead_letter.len(),
        uncovered,
        beliefs,
        mean_in_progress: path_seconds / elapsed,
    }
}

fn percent(part: usize, of: usize) -> f64 {
    if of == 0 { 0.0 } else { 100.0 * part as f64 / of as f64 }
}

/// Whether every worker believes the same limits, within a fifth of each other (each probes up on its own
/// successes between two shared cuts).
fn agree(beliefs: &[HashMap<(String, String), f64>]) -> bool {
    let Some(first) = beliefs.first() else { return true };
    beliefs.iter().all(|other| {
        other.len() == first.len()
            && first.iter().all(|(limit, believed)| {
                other.get(limit).is_some_and(|theirs| (theirs - believed).abs() <= 0.2 * believed.max(*theirs))
            })
    })
}

fn main() {
    let full = is_bench_run();
    let messages = env_or("CFI_BENCH_MESSAGES", if full { 27_000 } else { 900 });
    println!(
        "{messages} single-path messages over {DISTRIBUTIONS} distributions, queued at once; completion {:?} to {:?}; worker window {:?}",
        COMPLETION.0,
        COMPLETION.1,
        Settings::default().batching.window
    );
    println!(
        "| case | calls | refused | refused after the first minute | paths/s | after the first minute | binding paths/s | share of binding | p99 enqueue → accepted | freshness bound | dead-lettered | uncovered | learned (per worker) | workers agree | in-progress limit held | an ideal worker's share of binding, same draws | the worker's share of the ideal's throughput |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut failures = Vec::new();
    let only = std::env::var("CFI_BENCH_CASE").ok();
    for case in CASES.iter().filter(|case| only.as_deref().is_none_or(|only| case.name.contains(only))) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        let o = runtime.block_on(run(case, messages));
        let binding = case.model.binding();
        let share = o.throughput / binding;
        let bound = Settings::default().batching.window
            + Duration::from_secs_f64(messages as f64 / PATHS_PER_SECOND)
            + Duration::from_secs(2);
        let learned: Vec<String> = o
            .beliefs
            .iter()
            .map(|beliefs| {
                let mut shown: Vec<String> =
                    beliefs.iter().map(|((limit, scope), b)| format!("{limit}@{scope}={b:.0}")).collect();
                shown.sort();
                if shown.is_empty() { "nothing".to_owned() } else { shown.join(" ") }
            })
            .collect();
        let agreed = agree(&o.beliefs);
        // Where CloudFront's in-progress limit binds, what the worker did with it, apart from the simulator's luck:
        // the share of the limit held in progress, and, where the worker is told the limit as the ideal is, what an
        // ideal worker reaches on the same draws.
        let in_progress = case.model.in_progress_limit().filter(|_| !case.model.is_rate());
        let held = in_progress.map(|limit| o.mean_in_progress / f64::from(limit));
        let ideal = in_progress.filter(|limit| *limit == QUOTA.paths).map(|limit| {
            let ideal = ideal_throughput(limit, messages);
            (ideal / binding, o.throughput / ideal)
        });
        println!(
            "| {} | {} | {} ({:.1} %) | {} of {} ({:.1} %) | {:.1} | {:.1} | {:.1} | {:.1} % | {:.1} s | {} | {} | {} | {} | {} | {} | {} | {} |",
            case.name,
            o.calls,
            o.refused,
            percent(o.refused, o.calls),
            o.refused_after_first_minute,
            o.calls_after_first_minute,
            percent(o.refused_after_first_minute, o.calls_after_first_minute),
            o.throughput,
            o.throughput_after_first_minute,
            binding,
            100.0 * share,
            o.p99.as_secs_f64(),
            if case.model.is_rate() { format!("{:.1} s", bound.as_secs_f64()) } else { "—".to_owned() },
            o.dead_lettered,
            o.uncovered,
            learned.join("; "),
            if case.workers > 1 { agreed.to_string() } else { "—".to_owned() },
            held.map_or("—".to_owned(), |held| format!("{:.1} %", 100.0 * held)),
            ideal.map_or("—".to_owned(), |(ideal, _)| format!("{:.1} %", 100.0 * ideal)),
            ideal.map_or("—".to_owned(), |(_, of_ideal)| format!("{:.1} %", 100.0 * of_ideal)),
        );
        assert_eq!(
            (o.dead_lettered, o.uncovered),
            (0, 0),
            "{}: nothing dead-lettered, every message covered",
            case.name
        );
        if full {
            let exact = !case.model.is_rate() && !matches!(case.model, Model::InProgress(1_000)) || case.told;
            let bars = if exact {
                vec![(o.refused == 0, "0 refusals"), (share >= 0.95, "95 % of the binding throughput")]
            } else {
                vec![
                    (
                        percent(o.refused_after_first_minute, o.calls_after_first_minute) <= 5.0,
                        "≤ 5 % refused after the first minute",
                    ),
                    (share >= 0.85, "85 % of the binding throughput"),
                    (case.workers == 1 || agreed, "the workers agree"),
                ]
            };
            let fresh = !case.model.is_rate() || o.p99 <= bound;
            for (met, bar) in bars.into_iter().chain([(fresh, "p99 freshness within the bound")]) {
                if !met {
                    failures.push(format!("{}: {bar}", case.name));
                }
            }
        }
    }
    if !failures.is_empty() {
        println!("bars not met: {}", failures.join("; "));
    }
}
