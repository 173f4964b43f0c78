//! The fakes with request counters, preloaded with a workload; and the baseline consumer that runs over them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cf_invalidator::fake::{FakeCdn, MemoryLedger, MemoryQueue};
use cf_invalidator::intake::parse::parse_request;
use cf_invalidator::model::{CallerReference, DistributionId};
use cf_invalidator::ports::{BatchRecord, BatchStatus, Batches, Cdn, Queue, Receipt};
use tokio::time::Instant;

use super::spool::SpooledQueue;
use super::{CountingCdn, CountingLedger, CountingQueue, Counts, distribution_id};

pub const VISIBILITY: Duration = Duration::from_secs(60);

pub struct Fixture<Q = MemoryQueue> {
    pub queue: Arc<CountingQueue<Q>>,
    pub dead_letter: Arc<CountingQueue<Q>>,
    pub cdn: Arc<CountingCdn<FakeCdn>>,
    pub ledger: Arc<CountingLedger>,
    pub counts: Arc<Counts>,
}

/// A queue the baseline can tell is empty, so it stops.
pub trait Drains: Queue {
    fn is_drained(&self) -> bool;
}

impl Drains for MemoryQueue {
    fn is_drained(&self) -> bool {
        self.is_empty()
    }
}

impl Drains for SpooledQueue {
    fn is_drained(&self) -> bool {
        self.is_empty()
    }
}

impl Fixture<MemoryQueue> {
    /// Fakes knowing `distributions` distributions, the queue holding `bodies` (loaded straight into the fake,
    /// so loading is not counted as requests).
    pub async fn new(bodies: Vec<String>, distributions: usize) -> Self {
        let fixture = Self::over(MemoryQueue::default(), MemoryQueue::default(), distributions);
        for body in bodies {
            fixture.queue.inner.send(&body, &[]).await.unwrap();
        }
        fixture
    }
}

impl Fixture<SpooledQueue> {
    /// Fakes knowing `distributions` distributions, the queue holding the bodies spooled to `path`.
    pub fn spooled(path: &Path, distributions: usize) -> Self {
        Self::over(SpooledQueue::open(path).unwrap(), SpooledQueue::temporary().unwrap(), distributions)
    }
}

impl<Q: Queue> Fixture<Q> {
    fn over(queue: Q, dead_letter: Q, distributions: usize) -> Self {
        let counts = Arc::new(Counts::default());
        let ids: Vec<String> = (0..distributions).map(distribution_id).collect();
        Self {
            queue: Arc::new(CountingQueue { inner: queue, counts: Arc::clone(&counts) }),
            dead_letter: Arc::new(CountingQueue { inner: dead_letter, counts: Arc::clone(&counts) }),
            cdn: Arc::new(CountingCdn {
                inner: FakeCdn::with_distributions(ids.iter().map(String::as_str)),
                counts: Arc::clone(&counts),
            }),
            ledger: Arc::new(CountingLedger { inner: MemoryLedger::default(), counts: Arc::clone(&counts) }),
            counts,
        }
    }

    pub fn services(&self) -> cf_invalidator::worker::Services<CountingQueue<Q>, CountingCdn<FakeCdn>, CountingLedger> {
        cf_invalidator::worker::Services {
            queue: Arc::clone(&self.queue),
            dead_letter: Some(Arc::clone(&self.dead_letter)),
            cdn: Arc::clone(&self.cdn),
            ledger: Arc::clone(&self.ledger),
        }
    }
}

/// One distribution's open window in the baseline consumer.
pub struct PlainWindow {
    generation: u64,
    pub paths: HashSet<String>,
    requested: usize,
    receipts: Vec<Receipt>,
}

/// The yardstick: the simplest correct consumer, one loop, the algorithm of scripts/bench-baseline-consumer.py:
/// receive 10, parse and validate, add to the distribution's window (exact duplicates dropped, no wildcard
/// coverage), and for each window that is due or full: CreateInvalidation, one ledger put, delete in tens.
///
/// With `hold_after = Some(n)` it stops once `n` messages are received and returns its open windows unsubmitted
/// (for the memory run); otherwise it runs until the queue is empty.
pub async fn run_baseline<Q: Drains>(
    fixture: &Fixture<Q>,
    window: Duration,
    max_paths: usize,
    hold_after: Option<u64>,
) -> HashMap<DistributionId, PlainWindow> {
    let mut open: HashMap<DistributionId, PlainWindow> = HashMap::new();
    let mut deadlines: VecDeque<(Instant, DistributionId, u64)> = VecDeque::new();
    let mut generation = 0;
    loop {
        let messages = fixture.queue.receive(10, Duration::ZERO, VISIBILITY).await.unwrap();
        let received_any = !messages.is_empty();
        let now = Instant::now();
        let mut full = Vec::new();
        for message in messages {
            let receipt = Receipt { message_id: message.message_id, receipt_handle: message.receipt_handle };
            let Ok(request) = parse_request(&message.body) else {
                fixture.queue.delete(&[receipt]).await.unwrap();
                continue;
            };
            let distribution = request.distribution_id;
            let window_of = open.entry(distribution.clone()).or_insert_with(|| {
                generation += 1;
                deadlines.push_back((now + window, distribution.clone(), generation));
                PlainWindow { generation, paths: HashSet::new(), requested: 0, receipts: Vec::new() }
            });
            window_of.requested += request.paths.len();
            window_of.paths.extend(request.paths.into_iter().map(|p| p.into_string()));
            window_of.receipts.push(receipt);
            if window_of.paths.len() >= max_paths {
                full.push(distribution);
            }
        }
        if hold_after
            .is_some_and(|n| fixture.counts.sqs_received_messages.load(std::sync::atomic::Ordering::Relaxed) >= n)
        {
            return open;
        }
        for distribution in full {
            if let Some(window_of) = open.remove(&distribution) {
                submit(fixture, distribution, window_of).await;
            }
        }
        while let Some((deadline, distribution, generation)) = deadlines.front().cloned() {
            if deadline > now {
                break;
            }
            deadlines.pop_front();
            if open.get(&distribution).is_some_and(|w| w.generation == generation) {
                let window_of = open.remove(&distribution).unwrap();
                submit(fixture, distribution, window_of).await;
            }
        }
        if !received_any {
            match deadlines.front() {
                Some((deadline, _, _)) => tokio::time::sleep_until(*deadline).await,
                None if fixture.queue.inner.is_drained() => return open,
                None => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }
}

async fn submit<Q: Queue>(fixture: &Fixture<Q>, distribution: DistributionId, window: PlainWindow) {
    let mut paths: Vec<String> = window.paths.into_iter().collect();
    paths.sort_unstable();
    let distinct = paths.len();
    let reference = CallerReference::mint();
    let invalidation = fixture.cdn.create_invalidation(&distribution, &reference, &paths).await.unwrap();
    let now = SystemTime::now();
    let record = BatchRecord {
        caller_reference: reference,
        distribution_id: distribution,
        tenant_id: None,
        account: None,
        paths,
        message_ids: window.receipts.iter().map(|r| r.message_id.clone()).collect(),
        requesters: Vec::new(),
        shares: Vec::new(),
        idempotency_keys: Vec::new(),
        requested_paths: window.requested,
        distinct_paths: distinct,
        seal_reason: "window_elapsed".into(),
        coalescing: None,
        created_at: now,
        status: BatchStatus::Accepted,
        invalidation_id: Some(invalidation.id),
        cloudfront_status: Some(invalidation.status),
        submitted_at: Some(now),
        completed_at: None,
        time_to_complete: None,
        failure: None,
        owner: "baseline".into(),
        sealed_by: "baseline".into(),
        awaited: false,
        lease_until: now,
        expires_at: now + Duration::from_secs(90 * 24 * 3_600),
        published: Vec::new(),
        outbox: false,
        tracking_abandoned: None,
        verification: None,
    };
    fixture.ledger.record_intent(&record).await.unwrap();
    for chunk in window.receipts.chunks(10) {
        fixture.queue.delete(chunk).await.unwrap();
    }
}
