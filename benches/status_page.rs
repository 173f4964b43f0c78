//! The status page with 1,000 distributions and 10,000 ledger items in the fakes: how long reading, building and
//! rendering take, and how many ledger requests one page costs (it must not grow with the distributions).
//!
//! Seeded: a reservation on each of 1,000 distributions (the fullest near its quota), 9,000 accepted batches and
//! 1,000 pending ones spread over them, 100 dead letters. The ledger count is of DynamoDB requests as the adapter
//! makes them: one query per `by_board` list, two for failures (two `by_outcome` partitions), and the month's
//! counters.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cf_invalidator::fake::{MemoryLedger, MemoryQueue, pending_record};
use cf_invalidator::model::{CallerReference, DistributionId, MessageId};
use cf_invalidator::ports::{Allowance, Batches, Budgets, DeadLetterRecord, DeadLetters, Invalidation, Reservation};
use cf_invalidator::status::StatusPage;
use cf_invalidator::status::view::StatusSettings;
use cf_invalidator::telemetry::Pages;
use common::{CountingLedger, Counts};
use criterion::{Criterion, criterion_group, criterion_main};

const DISTRIBUTIONS: usize = 1_000;
const BATCHES: usize = 10_000;
const DEAD_LETTERS: usize = 100;

async fn seeded(now: SystemTime) -> MemoryLedger {
    let ledger = MemoryLedger::default();
    let later = now + Duration::from_secs(3_600);
    let distribution = |n: usize| format!("E{n:013}");
    for n in 0..DISTRIBUTIONS {
        let reservation = Reservation {
            id: CallerReference::mint(),
            owner: format!("worker-{}", n % 4),
            need: Allowance { paths: (n as u32 * 7) % 2_900, wildcards: (n as u32) % 13 },
            until: now + Duration::from_secs(120),
            invalidation_id: None,
        };
        let id = DistributionId::parse(&distribution(n)).unwrap();
        assert!(ledger.write_reservation(&id, 0, &reservation, &[]).await.unwrap());
    }
    for n in 0..BATCHES {
        let created = now - Duration::from_secs((BATCHES - n) as u64);
        let paths = ["/index.html", "/img/logo.png", "/docs/*"];
        let mut record = pending_record(&distribution(n % DISTRIBUTIONS), &paths, &["m"], created);
        record.expires_at = later;
        record.requesters = vec![format!("deploy-{n}")];
        ledger.record_intent(&record).await.unwrap();
        if n % 10 != 0 {
            let invalidation = Invalidation { id: format!("I{n:012}"), status: "InProgress".into() };
            record.accept(&invalidation, created);
            ledger.record_outcome(&record).await.unwrap();
        }
    }
    for n in 0..DEAD_LETTERS {
        let letter = DeadLetterRecord {
            message_id: MessageId(format!("dead-{n}")),
            reason: format!("path #0 \"no-slash-{n}\" is invalid: path must start with '/'"),
            code: "invalid_path".into(),
            distribution_id: None,
            requester: None,
            created_at: now - Duration::from_secs(n as u64),
            expires_at: later,
            outbox: false,
        };
        ledger.record_dead_letter(&letter).await.unwrap();
    }
    ledger
}

fn status_page(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let counts = Arc::new(Counts::default());
    let ledger = runtime.block_on(seeded(SystemTime::now()));
    let page = StatusPage {
        ledger: Arc::new(CountingLedger { inner: ledger, counts: Arc::clone(&counts) }),
        queue: Arc::new(MemoryQueue::default()),
        dead_letter_queue: Some(Arc::new(MemoryQueue::default())),
        settings: StatusSettings {
            table: "invalidations".into(),
            quota: cf_invalidator::ports::budget::QUOTA,
            reserve: Allowance { paths: 100, wildcards: 2 },
            monthly_path_budget: Some(50_000),
        },
        waiting: None,
        limits: None,
        accounts: None,
        edge: None,
    };

    let before = counts.snapshot().dynamodb_reads;
    let html = runtime.block_on(page.page("/")).unwrap().html;
    let requests = counts.snapshot().dynamodb_reads - before;
    assert!(html.contains("E0000000000999") && html.contains("I000000009999"), "the page lacks the seeded data");
    // Five ledger reads (budgets, pending and recent batches, failures, the month's billing): none per distribution.
    assert_eq!(requests, 5, "ledger requests per page");
    eprintln!(
        "status page: {DISTRIBUTIONS} distributions, {BATCHES} batches: {requests} ledger requests, {} KiB of HTML",
        html.len() / 1024
    );

    c.bench_function("status_page/read_build_render", |b| {
        b.iter(|| black_box(runtime.block_on(page.page("/")).unwrap().html.len()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = status_page
}
criterion_main!(benches);
