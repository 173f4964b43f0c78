//! End-to-end throughput of the whole worker (receive, parse, batch, submit, ledger, delete) over the in-memory
//! fakes, on one core (a current_thread tokio runtime), with the AWS requests it makes counted by kind.
//!
//! `cargo bench --bench pipeline` preloads a queue with a seeded, realistic workload (default 200,000 messages for
//! 1,000 distributions; see `common::pipeline_workload`), runs `worker::run` until the queue is empty, and does
//! the same with a plain single-loop consumer over the same fakes as the baseline (receive 10, parse, one
//! exact-dedup window per distribution, CreateInvalidation, one ledger put, delete in tens: what
//! scripts/bench-baseline-consumer.py does against the emulator). Every sample runs in a fresh child process so
//! its peak RSS is its own; the two consumers alternate, and the medians are printed.
//!
//! Environment: `CFI_BENCH_MESSAGES` (200000), `CFI_BENCH_DISTRIBUTIONS` (1000), `CFI_BENCH_WINDOW_MS` (100),
//! `CFI_BENCH_RUNS` (3), `CFI_BENCH_MODES` (`worker,baseline`).
//! Under `cargo test --all-targets` (no `--bench` argument) it runs a small smoke test and times nothing.

mod common;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cf_invalidator::worker::{self, Exit, Settings};
use common::fixture::{Fixture, run_baseline};
use common::*;

const SEED: u64 = 0x5eed_2026;
const MAX_BATCH_PATHS: usize = 1_000;

fn settings(window: Duration) -> Settings {
    let mut settings = Settings::default();
    settings.batching.window = window;
    settings.batching.max_paths = MAX_BATCH_PATHS;
    // Far above any rate reached here, so the limiter never waits.
    settings.submission.create_rate = 1_000_000.0;
    settings.submission.create_burst = NonZeroU32::new(1_000).unwrap();
    // The fake CloudFront completes at once: see it at once, so the budget measures its bookkeeping, not a
    // 10 s wait for room (the top distribution here gets far more than CloudFront's 3,000 paths per
    // completion).
    settings.tracking.poll = Duration::from_millis(1);
    settings.tracking.status_rate = 1_000_000.0;
    settings
}

async fn run_worker(fixture: &Fixture, window: Duration) {
    let queue = Arc::clone(&fixture.queue);
    let emptied = async move {
        while !queue.inner.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    assert_eq!(worker::run(fixture.services(), settings(window), emptied).await, Exit::Drained);
}

/// One sample: returns the `RESULT` pairs.
fn sample(mode: &str, messages: usize, distributions: usize, window: Duration) -> String {
    let (bodies, stats) = pipeline_workload(SEED, messages, distributions);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let fixture = runtime.block_on(Fixture::new(bodies, distributions));
    reset_peak_rss();
    let rss_before = status_kib("VmRSS");
    let cpu_before = cpu_time();
    let started = Instant::now();
    runtime.block_on(async {
        match mode {
            "worker" => run_worker(&fixture, window).await,
            "baseline" => drop(run_baseline(&fixture, window, MAX_BATCH_PATHS, None).await),
            other => panic!("unknown mode {other}"),
        }
    });
    let wall = started.elapsed();
    let cpu = cpu_time() - cpu_before;
    let hwm = status_kib("VmHWM");

    // Checks, after the clock stopped.
    assert!(fixture.queue.inner.is_empty(), "every message deleted");
    assert!(fixture.dead_letter.inner.is_empty(), "nothing dead-lettered: {:?}", fixture.dead_letter.inner.messages());
    let records = fixture.ledger.inner.records();
    // Completion tracking sees the fake's instant completions, so a record may already be Completed.
    assert!(records.iter().all(|r| r.status.is_accepted()), "every batch accepted");
    let submitted: usize = records.iter().map(|r| r.paths.len()).sum();
    let requested: usize = records.iter().map(|r| r.requested_paths).sum();
    assert_eq!(requested, stats.distinct_in_message, "every requested path went into a batch");
    let c = fixture.counts.snapshot();
    assert_eq!(c.sqs_delete_entries as usize, messages);
    format!(
        "mode={mode} messages={messages} wall_s={:.4} cpu_s={:.3} rss_before_kib={rss_before} hwm_kib={hwm} \
         batches={} paths_requested={requested} paths_submitted={submitted} sqs_receive={} sqs_receive_empty={} \
         sqs_received={} sqs_delete={} sqs_delete_entries={} sqs_visibility={} sqs_send={} cloudfront_create={} \
         cloudfront_get={} cloudfront_list={} dynamodb_writes={} dynamodb_reads={}",
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        records.len(),
        c.sqs_receive,
        c.sqs_receive_empty,
        c.sqs_received_messages,
        c.sqs_delete,
        c.sqs_delete_entries,
        c.sqs_visibility,
        c.sqs_send,
        c.cloudfront_create,
        c.cloudfront_get,
        c.cloudfront_list,
        c.dynamodb_writes,
        c.dynamodb_reads,
    )
}

fn smoke_test() {
    // Not a measurement: checks that both consumers drain a small workload, so the benchmark cannot rot.
    for mode in ["worker", "baseline"] {
        sample(mode, 2_000, 50, Duration::from_millis(20));
    }
    println!("pipeline benchmark smoke test: ok (nothing timed)");
}

fn main() {
    if !is_bench_run() {
        return smoke_test();
    }
    let messages = env_or("CFI_BENCH_MESSAGES", 200_000usize);
    let distributions = env_or("CFI_BENCH_DISTRIBUTIONS", 1_000usize);
    let window = Duration::from_millis(env_or("CFI_BENCH_WINDOW_MS", 100u64));
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        println!("RESULT {}", sample(&mode, messages, distributions, window));
        return;
    }
    let runs = env_or("CFI_BENCH_RUNS", 3usize);
    let modes_env = env_or("CFI_BENCH_MODES", "worker,baseline".to_owned());
    let modes: Vec<&str> = modes_env.split(',').collect();
    let (_, stats) = pipeline_workload(SEED, messages, distributions);
    println!("pipeline: whole worker over the in-memory fakes, current_thread runtime (one core)");
    println!("workload: seed {SEED:#x}, {}", stats.describe());
    println!(
        "settings: window {window:?}, max_batch_paths {MAX_BATCH_PATHS}, pollers 2, create_rate unlimited; {runs} runs per mode, alternating, each in a fresh process"
    );
    let mut samples: Vec<Vec<(String, String)>> = Vec::new();
    for run in 1..=runs {
        for mode in &modes {
            let pairs = run_child(mode);
            println!(
                "  run {run} {mode:<8} wall {:>7.3} s  {:>9.0} msg/s  cpu {:>6.3} s  {:>5.2} µs CPU/msg  peak RSS {:>6.1} MiB (preloaded {:>6.1} MiB)",
                field(&pairs, "wall_s"),
                messages as f64 / field(&pairs, "wall_s"),
                field(&pairs, "cpu_s"),
                1e6 * field(&pairs, "cpu_s") / messages as f64,
                mib(field(&pairs, "hwm_kib") as u64),
                mib(field(&pairs, "rss_before_kib") as u64),
            );
            samples.push(pairs);
        }
    }
    let med = |mode: &str, key: &str| {
        median(
            samples.iter().filter(|s| s.iter().any(|(k, v)| k == "mode" && v == mode)).map(|s| field(s, key)).collect(),
        )
    };
    let per_msg = |mode: &str, key: &str| med(mode, key) / messages as f64;
    println!();
    println!("medians of {runs} runs | {}", modes.join(" | "));
    let rows: Vec<(&str, Cell)> = vec![
        ("messages/s (wall)", Box::new(|m| format!("{:.0}", messages as f64 / med(m, "wall_s")))),
        ("messages per CPU-second", Box::new(|m| format!("{:.0}", messages as f64 / med(m, "cpu_s")))),
        ("CPU µs per message", Box::new(|m| format!("{:.2}", 1e6 * med(m, "cpu_s") / messages as f64))),
        ("peak RSS MiB (VmHWM)", Box::new(|m| format!("{:.1}", mib(med(m, "hwm_kib") as u64)))),
        ("  of which preloaded queue MiB", Box::new(|m| format!("{:.1}", mib(med(m, "rss_before_kib") as u64)))),
        ("SQS receive / msg", Box::new(|m| format!("{:.4}", per_msg(m, "sqs_receive")))),
        ("  empty receives", Box::new(|m| format!("{:.0}", med(m, "sqs_receive_empty")))),
        ("SQS delete / msg", Box::new(|m| format!("{:.4}", per_msg(m, "sqs_delete")))),
        ("  entries per delete", Box::new(|m| format!("{:.2}", med(m, "sqs_delete_entries") / med(m, "sqs_delete")))),
        ("SQS visibility / msg", Box::new(|m| format!("{:.4}", per_msg(m, "sqs_visibility")))),
        ("SQS total / msg", Box::new(|m| format!("{:.4}", sqs_total(&samples, m) / messages as f64))),
        ("CloudFront create / msg", Box::new(|m| format!("{:.4}", per_msg(m, "cloudfront_create")))),
        ("CloudFront get / msg", Box::new(|m| format!("{:.4}", per_msg(m, "cloudfront_get")))),
        ("CloudFront list / msg", Box::new(|m| format!("{:.4}", per_msg(m, "cloudfront_list")))),
        ("DynamoDB writes / msg", Box::new(|m| format!("{:.4}", per_msg(m, "dynamodb_writes")))),
        ("DynamoDB reads / msg", Box::new(|m| format!("{:.4}", per_msg(m, "dynamodb_reads")))),
        (
            "paths submitted / requested",
            Box::new(|m| format!("{:.3}", med(m, "paths_submitted") / med(m, "paths_requested"))),
        ),
    ];
    for (name, value) in &rows {
        let cells: Vec<String> = modes.iter().map(|m| value(m)).collect();
        println!("  {name:<32} | {}", cells.join(" | "));
    }
    let worker_rate = messages as f64 / med("worker", "wall_s");
    let mut summary = format!(
        "SUMMARY pipeline worker: {worker_rate:.0} msg/s (target >= 50000: {:.2}x), {:.2} µs CPU/msg, peak RSS {:.1} MiB, SQS {:.3} req/msg (target <= 0.25), DynamoDB writes {:.3}/msg",
        worker_rate / 50_000.0,
        1e6 * med("worker", "cpu_s") / messages as f64,
        mib(med("worker", "hwm_kib") as u64),
        sqs_total(&samples, "worker") / messages as f64,
        per_msg("worker", "dynamodb_writes"),
    );
    if modes.contains(&"baseline") {
        summary += &format!(
            "; baseline loop {:.0} msg/s, worker/baseline CPU per msg {:.2}x",
            messages as f64 / med("baseline", "wall_s"),
            med("worker", "cpu_s") / med("baseline", "cpu_s")
        );
    }
    println!("{summary}");
}

/// One cell of the medians table: the figure for a mode.
type Cell<'a> = Box<dyn Fn(&str) -> String + 'a>;

fn sqs_total(samples: &[Vec<(String, String)>], mode: &str) -> f64 {
    median(
        samples
            .iter()
            .filter(|s| s.iter().any(|(k, v)| k == "mode" && v == mode))
            .map(|s| {
                field(s, "sqs_receive") + field(s, "sqs_delete") + field(s, "sqs_visibility") + field(s, "sqs_send")
            })
            .collect(),
    )
}
