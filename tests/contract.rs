//! One contract suite per port, run against the in-memory fake and against the SDK adapter on the emulator, so
//! the fakes the pipeline tests rely on behave like the real services.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cf_invalidator::aws::cloudfront::CloudFront;
use cf_invalidator::aws::dynamodb::DynamoLedger;
use cf_invalidator::aws::sqs::SqsQueue;
use cf_invalidator::fake::{FakeCdn, MemoryLedger, MemoryQueue};
use cf_invalidator::model::{CallerReference, DistributionId, MessageId};
use cf_invalidator::ports::{
    BatchRecord, BatchStatus, Cdn, CdnError, Invalidation, KeyClaim, Ledger, LedgerError, Queue, Receipt,
};

const WAIT: Duration = Duration::from_secs(1);
const HIDDEN: Duration = Duration::from_secs(60);

async fn receive_all<Q: Queue>(queue: &Q, expected: usize) -> Vec<cf_invalidator::ports::ReceivedMessage> {
    let mut received = Vec::new();
    for _ in 0..20 {
        if received.len() >= expected {
            break;
        }
        received.extend(queue.receive(10, WAIT, HIDDEN).await.unwrap());
    }
    received
}

fn receipt(message: &cf_invalidator::ports::ReceivedMessage) -> Receipt {
    Receipt { message_id: message.message_id.clone(), receipt_handle: message.receipt_handle.clone() }
}

async fn queue_contract<Q: Queue>(queue: &Q) {
    assert!(queue.receive(10, WAIT, HIDDEN).await.unwrap().is_empty(), "a new queue is empty");

    for body in ["one", "two", "three"] {
        queue.send(body, &[("reason", "contract")]).await.unwrap();
    }
    let received = receive_all(queue, 3).await;
    let bodies: BTreeSet<&str> = received.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, BTreeSet::from(["one", "three", "two"]));
    assert!(received.iter().all(|m| m.receive_count == 1 && m.sent_at.is_some()));
    assert!(queue.receive(10, Duration::ZERO, HIDDEN).await.unwrap().is_empty(), "received messages are invisible");

    let failures = queue.delete(&[receipt(&received[0]), receipt(&received[1])]).await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");

    // Visibility 0 makes the last one come straight back, as a new delivery with a new handle.
    let failures = queue.extend_visibility(&[receipt(&received[2])], Duration::ZERO).await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    let again = receive_all(queue, 1).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id, received[2].message_id);
    assert_eq!(again[0].receive_count, 2);
    assert_ne!(again[0].receipt_handle, received[2].receipt_handle);

    let bogus = Receipt { message_id: again[0].message_id.clone(), receipt_handle: "bogus-handle".into() };
    let failures = queue.extend_visibility(&[bogus], HIDDEN).await.unwrap();
    assert_eq!(failures.len(), 1, "an unknown handle is reported per entry");
    assert_eq!(failures[0].message_id, again[0].message_id);

    assert!(queue.delete(&[receipt(&again[0])]).await.unwrap().is_empty());
    assert!(queue.delete(&[]).await.unwrap().is_empty(), "an empty delete is a no-op");
    assert!(queue.receive(10, WAIT, Duration::ZERO).await.unwrap().is_empty(), "deleted messages are gone");
}

fn millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn record(distribution: &DistributionId, created_ms: u64) -> BatchRecord {
    BatchRecord {
        caller_reference: CallerReference::mint(),
        distribution_id: distribution.clone(),
        paths: vec!["/a".into(), "/img/*".into()],
        message_ids: vec![MessageId("m-1".into()), MessageId("m-2".into())],
        requesters: vec!["ci".into()],
        requested_paths: 5,
        seal_reason: "window_elapsed".into(),
        created_at: millis(created_ms),
        status: BatchStatus::Pending,
        invalidation_id: None,
        cloudfront_status: None,
        submitted_at: None,
        failure: None,
        owner: "worker-a".into(),
        lease_until: millis(created_ms + 60_000),
        // Whole seconds: DynamoDB's TTL attribute is in epoch seconds.
        expires_at: UNIX_EPOCH
            + Duration::from_secs(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3_600),
    }
}

async fn ledger_contract<L: Ledger>(ledger: &L) {
    let distribution = DistributionId::parse("ECONTRACT").unwrap();
    let other = DistributionId::parse("EOTHER").unwrap();
    let base = 1_800_000_000_000;
    let older = record(&distribution, base);
    let newer = record(&distribution, base + 1_000);
    ledger.record_intent(&older).await.unwrap();
    ledger.record_intent(&older).await.expect("writing the same intent again succeeds");
    ledger.record_intent(&newer).await.unwrap();
    ledger.record_intent(&record(&other, base)).await.unwrap();

    let listed = ledger.list(&distribution, millis(base - 1_000), 10).await.unwrap();
    assert_eq!(listed, [newer.clone(), older.clone()], "newest first, only this distribution, stored as written");
    assert_eq!(ledger.list(&distribution, millis(base + 500), 10).await.unwrap(), std::slice::from_ref(&newer));
    assert_eq!(ledger.list(&distribution, millis(base - 1_000), 1).await.unwrap(), std::slice::from_ref(&newer));

    let mut accepted = older.clone();
    accepted.accept(&Invalidation { id: "I2J0I21PCUYOIK".into(), status: "InProgress".into() }, millis(base + 2_000));
    ledger.record_outcome(&accepted).await.unwrap();
    ledger.record_intent(&older).await.expect("a late duplicate intent is harmless");
    let mut failed = newer.clone();
    failed.fail("NoSuchDistribution");
    ledger.record_outcome(&failed).await.unwrap();
    let listed = ledger.list(&distribution, millis(base - 1_000), 10).await.unwrap();
    assert_eq!(listed, [failed, accepted.clone()], "outcomes recorded, and not overwritten by a late intent");

    let unknown = record(&distribution, base);
    assert!(matches!(ledger.record_outcome(&unknown).await, Err(LedgerError::Conflict(_))));

    // Expired records are invisible to readers even before TTL deletes them.
    let mut expired = record(&distribution, base + 5_000);
    expired.expires_at = UNIX_EPOCH + Duration::from_secs(1_000);
    ledger.record_intent(&expired).await.unwrap();
    assert_eq!(ledger.list(&distribution, millis(base + 4_000), 10).await.unwrap(), []);

    // Take-over: only a pending record whose lease has ended, and only once.
    let pending = record(&distribution, base + 6_000);
    ledger.record_intent(&pending).await.unwrap();
    let during_lease = pending.lease_until - Duration::from_secs(1);
    let after_lease = pending.lease_until + Duration::from_secs(1);
    let new_lease = millis(base + 600_000);
    let take = |now| ledger.take_over(&pending.caller_reference, "worker-b", now, new_lease);
    assert!(!take(during_lease).await.unwrap(), "the lease still runs");
    assert!(take(after_lease).await.unwrap());
    assert!(!take(after_lease).await.unwrap(), "now worker-b's lease runs");
    let taken = ledger.list(&distribution, millis(base + 6_000), 1).await.unwrap();
    assert_eq!((taken[0].owner.as_str(), taken[0].lease_until), ("worker-b", new_lease));
    assert!(!ledger.take_over(&accepted.caller_reference, "worker-b", millis(u64::MAX / 4), new_lease).await.unwrap());

    // Producer keys: the first message wins for the period; its own redelivery is not a duplicate.
    let key = format!("deploy-{}", CallerReference::mint());
    let (first, second) = (MessageId("m-first".into()), MessageId("m-second".into()));
    let now = SystemTime::now();
    let until = now + Duration::from_secs(3_600);
    assert_eq!(ledger.claim_key(&key, &first, now, until).await.unwrap(), KeyClaim::First);
    assert_eq!(ledger.claim_key(&key, &first, now, until).await.unwrap(), KeyClaim::First);
    assert_eq!(
        ledger.claim_key(&key, &second, now, until).await.unwrap(),
        KeyClaim::Duplicate { first_message_id: first.clone() }
    );
    let later = until + Duration::from_secs(1);
    assert_eq!(ledger.claim_key(&key, &second, later, later + Duration::from_secs(60)).await.unwrap(), KeyClaim::First);
}

async fn cdn_contract<C: Cdn>(cdn: &C, distribution: &DistributionId, models_caller_reference: bool) {
    let paths = vec!["/a".to_owned(), "/img/*".to_owned()];
    let first_reference = CallerReference::mint();
    let first = cdn.create_invalidation(distribution, &first_reference, &paths).await.unwrap();
    assert!(!first.id.is_empty() && !first.status.is_empty());

    let second = cdn.create_invalidation(distribution, &CallerReference::mint(), &paths).await.unwrap();
    assert_ne!(first.id, second.id, "a new reference is a new invalidation");

    let missing = DistributionId::parse("ENOSUCHDIST").unwrap();
    let refused = cdn.create_invalidation(&missing, &CallerReference::mint(), &paths).await;
    assert!(matches!(refused, Err(CdnError::NoSuchDistribution(_))), "{refused:?}");

    if models_caller_reference {
        let again = cdn.create_invalidation(distribution, &first_reference, &paths).await.unwrap();
        assert_eq!(again.id, first.id, "the same reference and paths return the first invalidation");
        let changed = cdn.create_invalidation(distribution, &first_reference, &["/other".to_owned()]).await;
        assert!(matches!(changed, Err(CdnError::BatchAlreadyExists(_))), "{changed:?}");
    }
}

#[tokio::test]
async fn memory_queue_meets_the_queue_contract() {
    queue_contract(&MemoryQueue::default()).await;
}

#[tokio::test]
async fn sqs_adapter_meets_the_queue_contract() {
    let config = common::emulator().await;
    let queues = common::create_queues(&config).await;
    queue_contract(&SqsQueue::new(aws_sdk_sqs::Client::new(&config), queues.queue_url)).await;
}

#[tokio::test]
async fn memory_ledger_meets_the_ledger_contract() {
    ledger_contract(&MemoryLedger::default()).await;
}

#[tokio::test]
async fn dynamodb_adapter_meets_the_ledger_contract() {
    let config = common::emulator().await;
    let table = common::create_table(&config).await;
    ledger_contract(&DynamoLedger::new(aws_sdk_dynamodb::Client::new(&config), table)).await;
}

#[tokio::test]
async fn fake_cdn_meets_the_cdn_contract() {
    cdn_contract(&FakeCdn::with_distributions(["EFAKE"]), &DistributionId::parse("EFAKE").unwrap(), true).await;
}

#[tokio::test]
async fn cloudfront_adapter_meets_the_cdn_contract() {
    let config = common::emulator().await;
    let cloudfront = common::cloudfront(&config);
    let distribution = common::create_distribution(&cloudfront).await;
    cdn_contract(&CloudFront::new(cloudfront), &distribution, common::emulator_models_caller_reference()).await;
}
