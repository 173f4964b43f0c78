//! Peak memory while 100,000 paths of 1,000 distributions wait in open windows.
//!
//! `cargo bench --bench memory` spools to a file messages whose paths, after merging, leave exactly
//! `CFI_BENCH_PENDING_PATHS` (100,000) pending paths across `CFI_BENCH_DISTRIBUTIONS` (1,000) distributions, with
//! skewed traffic but no distribution reaching a batch limit or its in-progress budget (at most 2,899 paths and 12
//! wildcards each), so with a 1-hour window nothing seals. It runs the worker (current_thread runtime) until every
//! message is received and held, reads VmRSS and VmHWM from /proc/self/status, then shuts the worker down (which
//! seals and submits every window, checked afterwards: all batches sealed by `shutdown`, 100,000 paths submitted).
//!
//! The baseline in the same invocation is the plain consumer of `common::fixture` holding the same messages in
//! its windows (one `HashSet<String>` of paths and the receipts per distribution). Each sample runs in a fresh
//! child process, whose queue reads the bodies from the spool on receipt (`common::spool`): in production they wait
//! in SQS, not in the worker. VmHWM is reset (`/proc/self/clear_refs`) after the fakes are set up, and the RSS at
//! that point is reported beside it. `CFI_BENCH_RUNS` (3) samples per consumer, alternating.
//! Under `cargo test --all-targets` (no `--bench` argument) it runs a small smoke test and times nothing.

mod common;

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cf_invalidator::batch::merge::PathSet;
use cf_invalidator::batch::window::MAX_PATHS_PER_BATCH;
use cf_invalidator::model::path::InvalidationPath;
use cf_invalidator::worker::{self, Exit, Settings};
use common::fixture::{Fixture, run_baseline};
use common::spool::SpooledQueue;
use common::*;

const SEED: u64 = 0x3e30_2026;
/// Names the spool file for the children.
const SPOOL_ENV: &str = "CFI_BENCH_SPOOL";
const WINDOW: Duration = Duration::from_secs(3_600);
/// Per distribution, below what seals a window: the batch limits capped by the in-progress budget the default
/// reserve (100 paths, 2 wildcards) leaves, 2,900 paths and 13 wildcards (a window seals on reaching either), so
/// that nothing seals before shutdown and every batch can then be submitted without waiting for room.
const PATH_CAP: usize = 2_899;
const WILDCARD_CAP: usize = 12;

/// Messages leaving exactly `pending` merged paths across up to `distributions` distributions.
fn memory_workload(pending: usize, distributions: usize) -> (Vec<String>, WorkloadStats) {
    let mut rng = Rng(SEED);
    let traffic = Zipf::new(distributions, 1.0);
    let model = PathModel::default();
    let mut sets: Vec<PathSet> = (0..distributions).map(|_| PathSet::default()).collect();
    let mut total = 0;
    let mut stats = WorkloadStats::default();
    let mut bodies = Vec::new();
    let mut top_messages = 0;
    while total < pending {
        // Skewed traffic, but a distribution close to its cap sends no more (its producers would see full batches).
        let distribution = loop {
            let d = traffic.sample(&mut rng);
            if sets[d].len() + 8 <= PATH_CAP {
                break d;
            }
        };
        let home = model.section(&mut rng);
        let mut paths = Vec::new();
        for _ in 0..1 + rng.below(8) {
            let section = if rng.chance(0.8) { home.clone() } else { model.section(&mut rng) };
            let (mut raw, mut kind) = model.path(&mut rng, &section);
            while kind == PathKind::Wildcard && sets[distribution].wildcard_count() >= WILDCARD_CAP {
                (raw, kind) = model.path(&mut rng, &section);
            }
            let set = &mut sets[distribution];
            let before = set.len();
            set.add(&InvalidationPath::parse(&raw).expect("valid path"));
            total = total + set.len() - before;
            stats.wildcards += usize::from(kind == PathKind::Wildcard);
            stats.repeats += usize::from(set.len() == before);
            paths.push(raw);
            if total == pending {
                break;
            }
        }
        stats.paths += paths.len();
        stats.distinct_in_message += paths.iter().collect::<std::collections::HashSet<_>>().len();
        top_messages += usize::from(distribution == 0);
        bodies.push(body(distribution, &paths, &format!("deploy-{}", bodies.len() % 7)));
    }
    stats.messages = bodies.len();
    stats.distributions_used = sets.iter().filter(|s| !s.is_empty()).count();
    stats.top_distribution_share = top_messages as f64 / bodies.len() as f64;
    assert_eq!(sets.iter().map(PathSet::len).sum::<usize>(), pending);
    (bodies, stats)
}

fn settings() -> Settings {
    let mut settings = Settings::default();
    settings.batching.window = WINDOW;
    settings.batching.max_paths = MAX_PATHS_PER_BATCH;
    settings.submission.create_rate = 1_000_000.0;
    settings.submission.create_burst = NonZeroU32::new(1_000).unwrap();
    // The shutdown flush submits one batch per distribution at once, each after a look at what its
    // distribution has in progress: at the default GetInvalidation/list rate, 1,000 distributions would take
    // longer than the shutdown timeout. The fake CloudFront answers at once; see that at once too.
    settings.tracking.poll = Duration::from_millis(1);
    settings.tracking.status_rate = 1_000_000.0;
    settings
}

/// Waits until every preloaded message has been received, then lets the pipeline absorb what is in its channels.
async fn all_received<Q>(fixture: &Fixture<Q>, messages: u64) {
    while fixture.counts.sqs_received_messages.load(Relaxed) < messages {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Writes the workload's bodies to a file the children's queue reads from, so they are never in a child's memory.
fn spool(pending: usize, distributions: usize) -> (PathBuf, WorkloadStats) {
    let (bodies, stats) = memory_workload(pending, distributions);
    let path = std::env::temp_dir().join(format!("cfi-memory-bench-{}.jsonl", std::process::id()));
    SpooledQueue::write(&path, &bodies).unwrap();
    (path, stats)
}

fn sample(mode: &str, spool: &Path, pending: usize, distributions: usize) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let fixture = Fixture::spooled(spool, distributions);
    let messages = fixture.queue.inner.len() as u64;
    reset_peak_rss();
    let rss_loaded = status_kib("VmRSS");
    let held = Arc::new(Mutex::new((0, 0)));
    runtime.block_on(async {
        match mode {
            "worker" => {
                let held = Arc::clone(&held);
                let fixture_ref = &fixture;
                let shutdown = async move {
                    all_received(fixture_ref, messages).await;
                    *held.lock().unwrap() = (status_kib("VmRSS"), status_kib("VmHWM"));
                };
                assert_eq!(worker::run(fixture.services(), settings(), shutdown).await, Exit::Drained);
            }
            "baseline" => {
                let windows = run_baseline(&fixture, WINDOW, MAX_PATHS_PER_BATCH, Some(messages)).await;
                *held.lock().unwrap() = (status_kib("VmRSS"), status_kib("VmHWM"));
                let pending_paths: usize = windows.values().map(|w| w.paths.len()).sum();
                assert!(pending_paths >= pending, "exact dedup holds at least the merged paths");
            }
            other => panic!("unknown mode {other}"),
        }
    });
    let hwm_total = status_kib("VmHWM");
    let (rss_held, hwm_held) = *held.lock().unwrap();
    let records = fixture.ledger.inner.records();
    if mode == "worker" {
        let early: Vec<&str> = records.iter().map(|r| r.seal_reason.as_str()).filter(|r| *r != "shutdown").collect();
        assert!(early.is_empty(), "windows sealed before shutdown: {early:?}");
        assert!(fixture.queue.inner.is_empty());
    }
    format!(
        "mode={mode} messages={messages} rss_loaded_kib={rss_loaded} rss_held_kib={rss_held} \
         hwm_held_kib={hwm_held} hwm_total_kib={hwm_total} submitted_paths={} requested_paths={}",
        records.iter().map(|r| r.paths.len()).sum::<usize>(),
        records.iter().map(|r| r.requested_paths).sum::<usize>(),
    )
}

/// The worker held every pending path until shutdown, and each message's distinct paths were requested once.
fn check_worker(pairs: &[(String, String)], pending: usize, stats: &WorkloadStats) {
    assert_eq!(field(pairs, "submitted_paths") as usize, pending, "every pending path was held until shutdown");
    assert_eq!(field(pairs, "requested_paths") as usize, stats.distinct_in_message);
}

fn smoke_test() {
    let (pending, distributions) = (2_000, 50);
    let (path, stats) = spool(pending, distributions);
    for mode in ["worker", "baseline"] {
        let pairs = result_pairs(&sample(mode, &path, pending, distributions));
        if mode == "worker" {
            check_worker(&pairs, pending, &stats);
        }
    }
    std::fs::remove_file(path).unwrap();
    println!("memory benchmark smoke test: ok (nothing measured)");
}

fn main() {
    if !is_bench_run() {
        return smoke_test();
    }
    let pending = env_or("CFI_BENCH_PENDING_PATHS", 100_000usize);
    let distributions = env_or("CFI_BENCH_DISTRIBUTIONS", 1_000usize);
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        let spool = std::env::var_os(SPOOL_ENV).expect("the parent names the spool");
        println!("RESULT {}", sample(&mode, Path::new(&spool), pending, distributions));
        return;
    }
    let runs = env_or("CFI_BENCH_RUNS", 3usize);
    let (path, stats) = spool(pending, distributions);
    println!("memory: {pending} pending paths held in open windows (window {WINDOW:?}), current_thread runtime");
    println!("workload: seed {SEED:#x}, {}", stats.describe());
    println!("queue: bodies spooled to {} and read on receipt, as SQS holds them in production", path.display());
    let modes = ["worker", "baseline"];
    let mut samples = Vec::new();
    for run in 1..=runs {
        for mode in modes {
            let pairs = run_child_with(mode, &[(SPOOL_ENV, path.to_str().unwrap())]);
            if mode == "worker" {
                check_worker(&pairs, pending, &stats);
            }
            println!(
                "  run {run} {mode:<8} loaded fakes {:>6.1} MiB  RSS holding {:>6.1} MiB  peak while holding {:>6.1} MiB  peak incl. shutdown {:>6.1} MiB",
                mib(field(&pairs, "rss_loaded_kib") as u64),
                mib(field(&pairs, "rss_held_kib") as u64),
                mib(field(&pairs, "hwm_held_kib") as u64),
                mib(field(&pairs, "hwm_total_kib") as u64),
            );
            samples.push((mode, pairs));
        }
    }
    std::fs::remove_file(&path).unwrap();
    let med = |mode: &str, key: &str| {
        mib(median(samples.iter().filter(|(m, _)| *m == mode).map(|(_, p)| field(p, key)).collect()) as u64)
    };
    println!();
    println!("medians of {runs} runs (MiB)            | worker | baseline");
    for (name, key) in [
        ("RSS with the fakes loaded, before", "rss_loaded_kib"),
        ("RSS while holding", "rss_held_kib"),
        ("peak RSS while holding (VmHWM)", "hwm_held_kib"),
        ("peak RSS incl. shutdown flush", "hwm_total_kib"),
    ] {
        println!("  {name:<38} | {:>6.1} | {:>6.1}", med("worker", key), med("baseline", key));
    }
    let worker_peak = med("worker", "hwm_total_kib");
    let worker_growth = med("worker", "hwm_held_kib") - med("worker", "rss_loaded_kib");
    let baseline_growth = med("baseline", "hwm_held_kib") - med("baseline", "rss_loaded_kib");
    println!(
        "SUMMARY memory worker: peak RSS {worker_peak:.1} MiB (target <= 64: {:.2}x of budget), holding costs {worker_growth:.1} MiB over the loaded fakes ({:.0} bytes per pending path); baseline loop holding costs {baseline_growth:.1} MiB",
        worker_peak / 64.0,
        worker_growth * 1024.0 * 1024.0 / pending as f64,
    );
}
