//! How soon a batch's room in the in-progress budget returns once CloudFront has completed its invalidation, with
//! N accepted batches in progress at once over D distributions, and what completion tracking costs in CloudFront
//! status calls (issue #15: room returns within seconds of completion, for any number of batches).
//!
//! The whole worker runs over the fakes on tokio's paused clock, with its default tracking settings (first look
//! 5 s after acceptance, then at most every 10 s, status calls at least 0.25 s apart). N one-path messages are
//! queued at once and each becomes its own batch; the create rate is raised far above CloudFront's so that all N
//! are accepted within seconds and really are in progress together (in production that many pile up when
//! CloudFront is slow). The CloudFront simulator completes each invalidation 15 to 35 s after creating it (a
//! seeded draw per message, so the bench knows each completion time exactly and every run is the same).
//!
//! Room returning is observed in the budget as stored: every 10 ms of simulated time the reservations still in
//! each distribution's budget are read, and a batch's room has returned at the first reading that no longer finds
//! its reservation. Latencies are therefore rounded up to the next 10 ms. For each case it prints the status calls
//! made (the tracker's ListInvalidations looks, the pages the SDK adapter would request for them, its
//! GetInvalidation calls, and the budget's resyncs apart), the completion → room-returned latency (p50, p99, max)
//! and the tracker's requests per batch. It asserts outcomes only: every batch reserved room, no room returned
//! before CloudFront completed, every reservation was released, and every batch is recorded completed.
//!
//! The simulator answers at once unless `CFI_BENCH_STATUS_RTT_MS` gives each status request (each page of a
//! list) a round trip: the tracker makes its calls one after another, so their round trips add up. Likewise
//! `CFI_BENCH_LEDGER_RTT_MS` gives each write of completions (with their releases) to the ledger a round trip.
//!
//! `cargo bench --bench room_return` runs the full grid; under `cargo test --bench room_return` (no `--bench`
//! argument) it runs two small cases. `CFI_BENCH_CASE=<batches>x<distributions>` (e.g. `3000x1`) runs one.

mod common;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cf_invalidator::clock::WallClock;
use cf_invalidator::fake::{MemoryLedger, MemoryQueue};
use cf_invalidator::model::{CallerReference, DistributionId, Target};
use cf_invalidator::ports::{BatchStatus, Cdn, CdnError, Invalidation, InvalidationDetail, Queue};
use cf_invalidator::worker::{self, Exit, Services, Settings};
use common::cloudfront::DelayedCdn;
use common::{Rng, distribution_id, env_or, is_bench_run};
use tokio::time::Instant;

const SEED: u64 = 0x5eed_0015;
const COMPLETION_MIN: Duration = Duration::from_secs(15);
const COMPLETION_SPREAD: Duration = Duration::from_secs(20);
/// The resolution of the latencies: fine against a poll of seconds, coarse enough that 3,000 batches take
/// seconds to run.
const OBSERVE_EVERY: Duration = Duration::from_millis(10);
/// Far beyond any completion plus a poll: reaching it means room never returned, which the asserts then report.
const GIVE_UP_AFTER: Duration = Duration::from_secs(1_800);
/// CloudFront's ListInvalidations page when MaxItems is not given (the SDK adapter does not give it).
const LIST_PAGE_SIZE: usize = 100;

/// (batches, distributions). One distribution is where a single list answers for the most batches (1,000 in
/// progress take 10 pages); 30 is where the call gap weighs most (30 looks × 0.25 s = 7.5 s of a 10 s poll).
/// 3,000 one-path batches on one distribution are 100 more than fit (the worker leaves 100 of CloudFront's 3,000
/// in-progress paths to people): the last wait for room, which is when its return matters. No 10 batches over 30
/// distributions: some would have none.
const GRID: [(usize, usize); 11] = [
    (10, 1),
    (100, 1),
    (1_000, 1),
    (3_000, 1),
    (10, 10),
    (100, 10),
    (1_000, 10),
    (3_000, 10),
    (100, 30),
    (1_000, 30),
    (3_000, 30),
];
const SMOKE: [(usize, usize); 2] = [(10, 1), (100, 10)];

/// One batch's invalidation, from its creation to its room returning.
struct Batch {
    reference: CallerReference,
    distribution: DistributionId,
    completes_at: Instant,
    /// Its reservation was seen in the budget: the absence that follows is a release, not a batch that never
    /// reserved.
    reserved_seen: bool,
    room_returned_at: Option<Instant>,
}

/// CloudFront status calls, split by caller: the tracker looks with ListInvalidations and asks GetInvalidation
/// for what the list no longer shows; the budget resyncs with ListInvalidations and GetInvalidation too.
#[derive(Debug, Default, Clone, Copy)]
struct StatusCalls {
    looks: usize,
    look_pages: usize,
    tracker_gets: usize,
    resyncs: usize,
    resync_pages: usize,
    resync_gets: usize,
}

/// The simulator, with each invalidation's completion time chosen and remembered here, and its status calls
/// counted by caller.
struct RoomCdn {
    cdn: DelayedCdn,
    /// What each status request (each page of a list) takes to answer.
    round_trip: Duration,
    batches: Mutex<Vec<Batch>>,
    calls: Mutex<StatusCalls>,
    /// The task that runs the tracker: the only caller of `list_recent`. A GetInvalidation from any other task
    /// belongs to a budget resync.
    tracker: Mutex<Option<tokio::task::Id>>,
}

impl RoomCdn {
    fn new(distributions: usize, round_trip: Duration, paths: &[String]) -> Self {
        Self {
            cdn: DelayedCdn::new(distributions, delays(paths)),
            round_trip,
            batches: Mutex::default(),
            calls: Mutex::default(),
            tracker: Mutex::default(),
        }
    }

    fn calls(&self) -> StatusCalls {
        *self.calls.lock().unwrap()
    }

    fn is_tracker(&self) -> bool {
        let current = tokio::task::try_id();
        current.is_some() && *self.tracker.lock().unwrap() == current
    }
}

fn delays(paths: &[String]) -> HashMap<String, Duration> {
    let mut rng = Rng(SEED);
    paths.iter().map(|path| (path.clone(), COMPLETION_MIN + COMPLETION_SPREAD.mul_f64(rng.unit()))).collect()
}

/// The pages a `list_recent` answer took: every one but the last is full.
fn pages(listed: &[Invalidation]) -> usize {
    listed.len().div_ceil(LIST_PAGE_SIZE).max(1)
}

impl Cdn for RoomCdn {
    async fn create_invalidation(
        &self,
        target: impl Into<Target> + Send,
        caller_reference: &CallerReference,
        paths: &[String],
    ) -> Result<Invalidation, CdnError> {
        let target = target.into();
        let distribution = &target.distribution;
        let (outcome, completes_at) = self.cdn.create(&target, caller_reference, paths).await;
        let mut batches = self.batches.lock().unwrap();
        if outcome.is_ok() && !batches.iter().any(|b| &b.reference == caller_reference) {
            batches.push(Batch {
                reference: caller_reference.clone(),
                distribution: distribution.clone(),
                completes_at,
                reserved_seen: false,
                room_returned_at: None,
            });
        }
        outcome
    }

    async fn get_invalidation(
        &self,
        target: impl Into<Target> + Send,
        id: &str,
    ) -> Result<InvalidationDetail, CdnError> {
        {
            let mut calls = self.calls.lock().unwrap();
            if self.is_tracker() {
                calls.tracker_gets += 1;
            } else {
                calls.resync_gets += 1;
            }
        }
        tokio::time::sleep(self.round_trip).await;
        self.cdn.inner.get_invalidation(target, id).await
    }

    async fn list_recent(
        &self,
        target: impl Into<Target> + Send,
        since: SystemTime,
    ) -> Result<Vec<Invalidation>, CdnError> {
        *self.tracker.lock().unwrap() = tokio::task::try_id();
        let listed = self.cdn.inner.list_recent(target, since).await;
        let requests = listed.as_deref().map_or(1, pages);
        {
            let mut calls = self.calls.lock().unwrap();
            calls.looks += 1;
            calls.look_pages += requests;
        }
        tokio::time::sleep(self.round_trip * requests as u32).await;
        listed
    }

    async fn list_in_progress(
        &self,
        target: impl Into<Target> + Send,
        since: SystemTime,
    ) -> Result<Vec<Invalidation>, CdnError> {
        let mut listed = self.cdn.inner.list_recent(target, since).await;
        let requests = listed.as_deref().map_or(1, pages);
        {
            let mut calls = self.calls.lock().unwrap();
            calls.resyncs += 1;
            calls.resync_pages += requests;
        }
        tokio::time::sleep(self.round_trip * requests as u32).await;
        if let Ok(listed) = &mut listed {
            listed.retain(|invalidation| !invalidation.is_completed());
        }
        listed
    }
}

/// The reservations the distribution's budget holds, as stored. The one place that says what "room returned"
/// means: whichever store call deletes a reservation, its absence here is what counts.
fn reservations_held(ledger: &MemoryLedger, distribution: &DistributionId) -> HashSet<CallerReference> {
    ledger.budget(distribution).reservations.into_iter().map(|r| r.id).collect()
}

/// Notes which batches' room has returned by `now`; returns how many batches still hold room.
fn observe(cdn: &RoomCdn, ledger: &MemoryLedger, now: Instant) -> usize {
    let mut batches = cdn.batches.lock().unwrap();
    let mut held: HashMap<DistributionId, HashSet<CallerReference>> = HashMap::new();
    let mut holding = 0;
    for batch in batches.iter_mut().filter(|b| b.room_returned_at.is_none()) {
        let reservations =
            held.entry(batch.distribution.clone()).or_insert_with(|| reservations_held(ledger, &batch.distribution));
        if reservations.contains(&batch.reference) {
            batch.reserved_seen = true;
            holding += 1;
        } else if batch.reserved_seen {
            batch.room_returned_at = Some(now);
        } else {
            holding += 1;
        }
    }
    holding
}

/// Watches the budget until every batch's room has returned and its completion is recorded (or it gives up): the
/// worker's shutdown signal, so that the tracker runs exactly as long as there is something to see.
async fn watch(cdn: &RoomCdn, ledger: &MemoryLedger, expected: usize) {
    let give_up = Instant::now() + GIVE_UP_AFTER;
    loop {
        tokio::time::sleep(OBSERVE_EVERY).await;
        let now = Instant::now();
        let holding = observe(cdn, ledger, now);
        let all_created = cdn.batches.lock().unwrap().len() == expected;
        let all_recorded = || ledger.records().iter().all(|r| r.status == BatchStatus::Completed);
        if (all_created && holding == 0 && all_recorded()) || now >= give_up {
            return;
        }
    }
}

fn settings() -> Settings {
    let mut settings = Settings { clock: WallClock::following_tokio(), ..Settings::default() };
    settings.intake.receive_wait = Duration::from_secs(1);
    // One path per message and per batch: a batch per message, sealed at once.
    settings.batching.max_paths = 1;
    // All batches accepted within seconds, and each stays its own batch.
    settings.submission.create_rate = 1_000.0;
    settings.submission.create_burst = NonZeroU32::new(1_000).unwrap();
    settings.submission.overload.coalesce = false;
    settings
}

struct Row {
    batches: usize,
    distributions: usize,
    calls: StatusCalls,
    /// Completion → room returned, sorted.
    latencies: Vec<Duration>,
}

async fn run_case(batches: usize, distributions: usize, round_trip: Duration, ledger_round_trip: Duration) -> Row {
    let clock = WallClock::following_tokio();
    let queue = Arc::new(MemoryQueue::with_clock(clock));
    let paths: Vec<String> = (0..batches).map(|n| format!("/room/{n}.html")).collect();
    for (n, path) in paths.iter().enumerate() {
        let body = serde_json::json!({"distribution_id": distribution_id(n % distributions), "paths": [path]});
        queue.send(&body.to_string(), &[]).await.unwrap();
    }
    let cdn = Arc::new(RoomCdn::new(distributions, round_trip, &paths));
    let ledger = Arc::new(MemoryLedger::default());
    ledger.faults.slow_down("record_completion", ledger_round_trip);
    let services = Services {
        queue,
        dead_letter: Some(Arc::new(MemoryQueue::with_clock(clock))),
        cdn: Arc::clone(&cdn),
        ledger: Arc::clone(&ledger),
    };
    let exit = worker::run(services, settings(), watch(&cdn, &ledger, batches)).await;
    assert_eq!(exit, Exit::Drained);

    let recorded = ledger.records();
    assert_eq!(recorded.len(), batches, "one ledger record per batch");
    assert!(recorded.iter().all(|r| r.status == BatchStatus::Completed), "every batch is recorded completed");
    let tracked = cdn.batches.lock().unwrap();
    assert_eq!(tracked.len(), batches, "one invalidation per batch");
    let mut latencies = Vec::with_capacity(batches);
    for batch in tracked.iter() {
        assert!(batch.reserved_seen, "{} never held room", batch.reference);
        let returned = batch.room_returned_at.unwrap_or_else(|| panic!("{}'s room never returned", batch.reference));
        assert!(returned >= batch.completes_at, "{}'s room returned before CloudFront completed", batch.reference);
        latencies.push(returned - batch.completes_at);
    }
    latencies.sort();
    Row { batches, distributions, calls: cdn.calls(), latencies }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn print(rows: &[Row]) {
    println!(
        "| batches | distributions | tracker ListInvalidations: looks (pages) | tracker GetInvalidation | budget resyncs: List (pages) + Get | completion → room p50 | p99 | max | tracker requests per batch |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let c = row.calls;
        let seconds = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        let per_batch = (c.look_pages + c.tracker_gets) as f64 / row.batches as f64;
        println!(
            "| {} | {} | {} ({}) | {} | {} ({}) + {} | {} | {} | {} | {per_batch:.3} |",
            row.batches,
            row.distributions,
            c.looks,
            c.look_pages,
            c.tracker_gets,
            c.resyncs,
            c.resync_pages,
            c.resync_gets,
            seconds(percentile(&row.latencies, 0.5)),
            seconds(percentile(&row.latencies, 0.99)),
            seconds(*row.latencies.last().expect("at least one batch")),
        );
    }
}

fn main() {
    // `CFI_BENCH_CASE=3000x1`: one case of the grid, as a case of the full grid takes minutes.
    let only = std::env::var("CFI_BENCH_CASE").ok();
    let cases: &[(usize, usize)] = if is_bench_run() || only.is_some() { &GRID } else { &SMOKE };
    let chosen = |&&(batches, distributions): &&(usize, usize)| {
        only.as_deref().is_none_or(|only| only == format!("{batches}x{distributions}"))
    };
    assert!(cases.iter().any(|case| chosen(&case)), "CFI_BENCH_CASE={only:?} names no case of the grid");
    let round_trip = Duration::from_millis(env_or("CFI_BENCH_STATUS_RTT_MS", 0));
    let ledger_round_trip = Duration::from_millis(env_or("CFI_BENCH_LEDGER_RTT_MS", 0));
    let tracking = Settings::default().tracking;
    println!(
        "worker defaults: first look {:?}, poll {:?}, {} status calls/s; CloudFront completes {:?} to {:?} after creation, answers status requests in {:?}; the ledger records completions in {:?}; latency observed to {:?}",
        tracking.first_look,
        tracking.poll,
        tracking.status_rate,
        COMPLETION_MIN,
        COMPLETION_MIN + COMPLETION_SPREAD,
        round_trip,
        ledger_round_trip,
        OBSERVE_EVERY,
    );
    let rows: Vec<Row> = cases
        .iter()
        .filter(chosen)
        .map(|&(batches, distributions)| {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
            runtime.block_on(run_case(batches, distributions, round_trip, ledger_round_trip))
        })
        .collect();
    print(&rows);
}
