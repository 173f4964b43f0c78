//! How soon `send --wait` returns once CloudFront has completed what it waits on (issue #25 item 7: p99 ≤ 2 s).
//!
//! The whole worker runs over the fakes on tokio's paused clock with its default settings. `PRODUCERS` producers
//! each send one message at a seeded moment over ten minutes to one of `DISTRIBUTIONS` distributions, then wait as
//! `send --wait` does: a `wait::Wait` look every `wait::POLL`. The CloudFront simulator completes each invalidation
//! a seeded 3 to 40 s after creating it (the draw of its first path), so the bench knows each completion time exactly. It prints completion →
//! wait returned (p50, p99, max) twice in one run: with the messages marked `awaited`, as `send --wait` sends them,
//! and without (the baseline: the tracker's regular looks at 5 s, then doubling gaps up to its poll), and the
//! tracker's ListInvalidations calls in each. It asserts outcomes only: every wait returned `Completed`, none
//! before CloudFront completed, and every batch is recorded completed.
//!
//! `cargo bench --bench wait_return` runs 200 producers; under `cargo test --bench wait_return` (no `--bench`
//! argument) 20. `CFI_BENCH_PRODUCERS` overrides.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cf_invalidator::clock::WallClock;
use cf_invalidator::fake::{MemoryLedger, MemoryQueue};
use cf_invalidator::model::{CallerReference, DistributionId, Target};
use cf_invalidator::ports::{BatchStatus, Cdn, CdnError, Invalidation, InvalidationDetail, Queue};
use cf_invalidator::wait::{self, SentMessage, Standing, Wait};
use cf_invalidator::worker::{self, Exit, Services, Settings};
use common::cloudfront::DelayedCdn;
use common::{Rng, distribution_id, env_or, is_bench_run};
use tokio::time::Instant;

const SEED: u64 = 0x5eed_0025;
const DISTRIBUTIONS: usize = 10;
const SENDING_OVER: Duration = Duration::from_secs(600);
const COMPLETION_MIN: Duration = Duration::from_secs(3);
const COMPLETION_SPREAD: Duration = Duration::from_secs(37);
/// Far beyond any completion plus a look: reaching it fails the bench's asserts.
const GIVE_UP_AFTER: Duration = Duration::from_secs(900);

/// The simulator, completing each path's invalidation after the delay drawn for it, remembering when, and
/// counting the tracker's looks.
struct TimedCdn {
    cdn: DelayedCdn,
    completes_at: Mutex<HashMap<String, Instant>>,
    looks: Mutex<usize>,
}

impl Cdn for TimedCdn {
    async fn create_invalidation(
        &self,
        target: impl Into<Target> + Send,
        caller_reference: &CallerReference,
        paths: &[String],
    ) -> Result<Invalidation, CdnError> {
        let (created, at) = self.cdn.create(target, caller_reference, paths).await;
        if created.is_ok() {
            // Messages that share a window share its batch, and its completion.
            let mut completes_at = self.completes_at.lock().unwrap();
            paths.iter().for_each(|path| _ = completes_at.entry(path.clone()).or_insert(at));
        }
        created
    }

    async fn get_invalidation(
        &self,
        target: impl Into<Target> + Send,
        id: &str,
    ) -> Result<InvalidationDetail, CdnError> {
        self.cdn.inner.get_invalidation(target, id).await
    }

    async fn list_recent(
        &self,
        target: impl Into<Target> + Send,
        since: SystemTime,
    ) -> Result<Vec<Invalidation>, CdnError> {
        *self.looks.lock().unwrap() += 1;
        self.cdn.inner.list_recent(target, since).await
    }

    async fn list_in_progress(
        &self,
        target: impl Into<Target> + Send,
        since: SystemTime,
    ) -> Result<Vec<Invalidation>, CdnError> {
        self.cdn.inner.list_in_progress(target, since).await
    }
}

/// One producer: when it sends, and where.
struct Producer {
    after: Duration,
    distribution: String,
    path: String,
}

fn producers(count: usize) -> (Vec<Producer>, HashMap<String, Duration>) {
    let mut rng = Rng(SEED);
    let mut delays = HashMap::new();
    let producers = (0..count)
        .map(|n| {
            let path = format!("/deploy/{n}/index.html");
            delays.insert(path.clone(), COMPLETION_MIN + COMPLETION_SPREAD.mul_f64(rng.unit()));
            let after = SENDING_OVER.mul_f64(rng.unit());
            Producer { after, distribution: distribution_id(rng.below(DISTRIBUTIONS as u64) as usize), path }
        })
        .collect();
    (producers, delays)
}

/// Sends, then looks every `wait::POLL` until the wait ends; returns when it ended.
async fn send_and_wait(producer: &Producer, awaited: bool, queue: &MemoryQueue, ledger: &MemoryLedger) -> Instant {
    tokio::time::sleep(producer.after).await;
    let clock = WallClock::following_tokio();
    let body =
        serde_json::json!({"distribution_id": producer.distribution, "paths": [producer.path], "awaited": awaited});
    queue.send(&body.to_string(), &[]).await.unwrap();
    let message_id = queue.messages().last().expect("just sent").message_id.clone();
    let sent =
        SentMessage { message_id, paths: vec![producer.path.clone()], sent_at: clock.now(), idempotency_key: None };
    let mut wait = Wait::new(DistributionId::parse(&producer.distribution).unwrap(), vec![sent]);
    let give_up = Instant::now() + GIVE_UP_AFTER;
    loop {
        let look = wait.look(ledger, clock.now()).await.expect("the fake ledger answers");
        match look.standing {
            Standing::Completed => return Instant::now(),
            Standing::DeadLettered { reason, .. } => panic!("{} was dead-lettered: {reason}", producer.path),
            Standing::Waiting { .. } if Instant::now() >= give_up => panic!("{} never completed", producer.path),
            Standing::Waiting { .. } => tokio::time::sleep(wait::POLL).await,
            Standing::Verifying | Standing::Unproven { .. } => unreachable!("this wait does not verify"),
        }
    }
}

struct Row {
    awaited: bool,
    /// Completion → wait returned, sorted.
    latencies: Vec<Duration>,
    looks: usize,
}

async fn run_case(count: usize, awaited: bool) -> Row {
    let clock = WallClock::following_tokio();
    let (producers, delays) = producers(count);
    let cdn = Arc::new(TimedCdn {
        cdn: DelayedCdn::new(DISTRIBUTIONS, delays),
        completes_at: Mutex::default(),
        looks: Mutex::default(),
    });
    let queue = Arc::new(MemoryQueue::with_clock(clock));
    let ledger = Arc::new(MemoryLedger::with_clock(clock));
    let services = Services {
        queue: Arc::clone(&queue),
        dead_letter: Some(Arc::new(MemoryQueue::with_clock(clock))),
        cdn: Arc::clone(&cdn),
        ledger: Arc::clone(&ledger),
    };
    let returned: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let waits = {
        let (returned, ledger) = (Arc::clone(&returned), Arc::clone(&ledger));
        async move {
            let waits = producers.iter().map(|p| async {
                let at = send_and_wait(p, awaited, &queue, &ledger).await;
                returned.lock().unwrap().insert(p.path.clone(), at);
            });
            futures_util::future::join_all(waits).await;
        }
    };
    let settings = Settings { clock, ..Settings::default() };
    assert_eq!(worker::run(services, settings, waits).await, Exit::Drained);

    assert!(ledger.records().iter().all(|r| r.status == BatchStatus::Completed), "every batch is recorded completed");
    let completes_at = cdn.completes_at.lock().unwrap();
    let returned = returned.lock().unwrap();
    assert_eq!(returned.len(), count, "every wait returned");
    let mut latencies: Vec<Duration> = returned
        .iter()
        .map(|(path, at)| {
            let completed = completes_at[path];
            assert!(*at >= completed, "{path}: the wait returned before CloudFront completed");
            *at - completed
        })
        .collect();
    latencies.sort();
    let looks = *cdn.looks.lock().unwrap();
    Row { awaited, latencies, looks }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let count = env_or("CFI_BENCH_PRODUCERS", if is_bench_run() { 200 } else { 20 });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    let rows: Vec<Row> = [true, false].into_iter().map(|awaited| runtime.block_on(run_case(count, awaited))).collect();
    println!(
        "{count} producers over {DISTRIBUTIONS} distributions; completion {COMPLETION_MIN:?} + up to {COMPLETION_SPREAD:?}"
    );
    println!("| messages | completion → send --wait returned p50 | p99 | max | tracker ListInvalidations |");
    println!("|---|---|---|---|---|");
    for row in &rows {
        let name = if row.awaited { "awaited (send --wait)" } else { "not awaited (baseline)" };
        let [p50, p99] = [0.5, 0.99].map(|p| percentile(&row.latencies, p));
        let max = row.latencies.last().copied().unwrap_or_default();
        println!("| {name} | {p50:.2?} | {p99:.2?} | {max:.2?} | {} |", row.looks);
    }
}
