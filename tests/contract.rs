//! One contract suite per port, run against the in-memory fake and against the SDK adapter on the emulator, so
//! the fakes the pipeline tests rely on behave like the real services. The fake ledger is itself the DynamoDB
//! adapter on the strict in-process DynamoDB, so its suites also check the adapter's requests against DynamoDB's
//! limits.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cf_invalidator::aws::cloudfront::CloudFront;
use cf_invalidator::aws::dynamodb::DynamoLedger;
use cf_invalidator::aws::sqs::SqsQueue;
use cf_invalidator::fake::cloudfront_http::SimServer;
use cf_invalidator::fake::{FakeCdn, MemoryLedger, MemoryQueue, SimConfig, pending_record};
use cf_invalidator::model::{CallerReference, DistributionId, MessageId, Target, TenantId};
use cf_invalidator::ports::budget::{Beliefs, SharedBelief};
use cf_invalidator::ports::events::EventKind;
use cf_invalidator::ports::ledger::{
    Billing, EdgeOutcome, Intent, LISTED_REQUESTERS, MAX_LISTED, MonthCap, Requester, RequesterShare,
    VerificationRecord, billing_day, billing_month,
};
use cf_invalidator::ports::{
    Allowance, AuditLog, BatchRecord, BatchStatus, BatchSummary, Batches, BudgetState, Budgets, Cdn, CdnError,
    Completion, DeadLetterRecord, FailureRecord, Invalidation, KeyClaim, KeyRecord, KeyUse, Ledger, LedgerError, Owed,
    Queue, QueueDepth, QueueStats, Receipt, Reservation, ReservationWrite, Roster, Submitted,
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

/// An hour from now in whole seconds: DynamoDB's TTL attribute is in epoch seconds.
fn in_an_hour() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3_600)
}

/// Now in whole milliseconds, as the ledger stores timestamps.
fn now_millis() -> SystemTime {
    millis(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64)
}

fn record(distribution: &DistributionId, created_ms: u64) -> BatchRecord {
    BatchRecord {
        requesters: vec!["ci".into()],
        requested_paths: 5,
        owner: "worker-a".into(),
        lease_until: millis(created_ms + 60_000),
        expires_at: in_an_hour(),
        ..pending_record(distribution.as_str(), &["/a", "/img/*"], &["m-1", "m-2"], millis(created_ms))
    }
}

/// Everything in progress, page by page.
async fn all_in_progress<L: Ledger>(ledger: &L) -> Vec<Owed> {
    let (mut owed, mut after) = (Vec::new(), None);
    loop {
        let page = ledger.in_progress(millis(4_102_444_800_000), after.as_ref(), 3).await.unwrap();
        owed.extend(page.owed);
        match page.next {
            Some(next) => after = Some(next),
            None => return owed,
        }
    }
}

async fn ledger_contract<L: Ledger>(ledger: &L) {
    let distribution = DistributionId::parse("ECONTRACT").unwrap();
    let other = DistributionId::parse("EOTHER").unwrap();
    let base = 1_800_000_000_000;
    // A tenant's batch: its tenant comes back with the record and with the tracked batch an adopter reads.
    let older = BatchRecord { tenant_id: TenantId::parse("dt_contract").ok(), ..record(&distribution, base) };
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
    assert_eq!(listed, [failed.clone(), accepted.clone()], "outcomes recorded, and not overwritten by a late intent");
    // Accepted and not completed: what any worker's tracker may adopt. Failed and pending ones are not there.
    let tracked = |owed: Vec<Owed>| -> Vec<Submitted> {
        owed.into_iter()
            .filter_map(|o| match o {
                Owed::Batch(s) if s.distribution_id == distribution => Some(s),
                _ => None,
            })
            .collect()
    };
    assert_eq!(tracked(all_in_progress(ledger).await), [accepted.submitted().unwrap()]);
    // Only what was created by a given time, so that adoption reads what is old enough and no more.
    let before_it = ledger.in_progress(millis(base - 1), None, 1_000).await.unwrap();
    assert_eq!(tracked(before_it.owed), [], "created after the time asked for");

    let unknown = record(&distribution, base);
    assert!(matches!(ledger.record_outcome(&unknown).await, Err(LedgerError::Conflict(_))));

    // Completion: the fields come back as written, only for an existing record.
    let completion = Completion {
        caller_reference: accepted.caller_reference.clone(),
        cloudfront_status: "Completed".into(),
        completed_at: millis(base + 62_000),
        time_to_complete: Duration::from_millis(60_000),
        keep_tracking: false,
    };
    assert!(ledger.record_completion(&completion).await.unwrap(), "recorded");
    assert!(!ledger.record_completion(&completion).await.unwrap(), "recorded once: a second tracker is told");
    assert_eq!(tracked(all_in_progress(ledger).await), [], "no longer to be tracked");
    let mut completed = accepted.clone();
    completed.complete(&completion);
    assert_eq!(completed.status, BatchStatus::Completed);
    assert_eq!(ledger.list(&distribution, millis(base - 1_000), 10).await.unwrap(), [failed, completed]);
    let missing = Completion { caller_reference: unknown.caller_reference.clone(), ..completion.clone() };
    assert!(matches!(ledger.record_completion(&missing).await, Err(LedgerError::Conflict(_))));

    // Verification at the edge: stored on the record, replaced by a later one, bounded; only for an existing record.
    let mut check = VerificationRecord {
        outcome: EdgeOutcome::Checking,
        at: millis(base + 63_000),
        checked: 40,
        fresh: 28,
        stale: 12,
        errors: 0,
        pops: (0..12).map(|n| format!("POP{n}-C1")).collect(),
        stale_paths: (0..12).map(|n| format!("/{n}/{}", "x".repeat(1_000))).collect(),
        healed_by: None,
        warmed: None,
        warm_failed: None,
    };
    ledger.record_verification(&accepted.caller_reference, &check).await.unwrap();
    check.outcome = EdgeOutcome::Healing;
    check.healed_by = Some("heal-1".into());
    check.warmed = Some(10);
    check.warm_failed = Some(0);
    ledger.record_verification(&accepted.caller_reference, &check).await.unwrap();
    let stored = ledger.batch(&accepted.caller_reference).await.unwrap().unwrap().verification.unwrap();
    assert_eq!(stored, check.clone().bounded(), "the last one, within its bounds");
    assert_eq!((stored.pops.len(), stored.stale_paths.len(), stored.stale), (MAX_LISTED, MAX_LISTED, 12));
    assert!(matches!(
        ledger.record_verification(&unknown.caller_reference, &check).await,
        Err(LedgerError::Conflict(_))
    ));
    assert_eq!(ledger.batch(&unknown.caller_reference).await.unwrap(), None, "no record made by it");

    // The outbox: a completed batch whose events are still to be published stays tracked until they are.
    let mut announced = record(&distribution, base + 3_000);
    ledger.record_intent(&announced).await.unwrap();
    announced.accept(&Invalidation { id: "I3ANNOUNCED".into(), status: "InProgress".into() }, millis(base + 3_100));
    ledger.record_outcome(&announced).await.unwrap();
    let reference = announced.caller_reference.clone();
    ledger.mark_published(&reference, EventKind::Accepted, false).await.unwrap();
    let keeping = Completion { caller_reference: reference.clone(), keep_tracking: true, ..completion.clone() };
    assert!(ledger.record_completion(&keeping).await.unwrap());
    let owed = tracked(all_in_progress(ledger).await);
    assert_eq!(owed.len(), 1, "{owed:?}");
    assert_eq!(
        (owed[0].status, owed[0].published.as_slice()),
        (BatchStatus::Completed, [EventKind::Accepted].as_slice())
    );
    ledger.mark_published(&reference, EventKind::Completed, true).await.unwrap();
    assert_eq!(tracked(all_in_progress(ledger).await), [], "settled once its events are published");
    let stored = ledger.batch(&reference).await.unwrap().unwrap();
    assert_eq!(stored.published, [EventKind::Accepted, EventKind::Completed]);
    assert!(matches!(
        ledger.mark_published(&unknown.caller_reference, EventKind::Accepted, false).await,
        Err(LedgerError::Conflict(_))
    ));

    // A failure to announce is in the outbox until its event is recorded published; one not to announce never is.
    let announced_failure = record(&distribution, base + 3_500);
    ledger.record_intent(&announced_failure).await.unwrap();
    let mut refused = announced_failure.clone();
    refused.fail("NoSuchDistribution");
    refused.outbox = true;
    ledger.record_outcome(&refused).await.unwrap();
    let is_this = |owed: &Owed| matches!(owed, Owed::Failure { caller_reference, .. } if *caller_reference == refused.caller_reference);
    assert_eq!(all_in_progress(ledger).await.iter().filter(|o| is_this(o)).count(), 1);
    ledger.mark_published(&refused.caller_reference, EventKind::Failed, true).await.unwrap();
    assert!(!all_in_progress(ledger).await.iter().any(is_this));

    // In progress a page at a time, oldest first, the next page going on where the last stopped; one given up
    // leaves for good, with its reason recorded.
    let mut in_flight = Vec::new();
    for n in 0..3 {
        let mut batch = record(&distribution, base + 3_700 + n);
        ledger.record_intent(&batch).await.unwrap();
        batch.accept(&Invalidation { id: format!("IPAGE{n}"), status: "InProgress".into() }, millis(base + 3_800));
        ledger.record_outcome(&batch).await.unwrap();
        in_flight.push(batch.submitted().unwrap());
    }
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = ledger.in_progress(millis(base + 3_750), after.as_ref(), 1).await.unwrap();
        assert!(page.owed.len() <= 1);
        paged.extend(tracked(page.owed));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, in_flight, "each once, oldest first");
    ledger.give_up_tracking(&Owed::Batch(in_flight[1].clone()), "CloudFront refused: AccessDenied").await.unwrap();
    let left = tracked(all_in_progress(ledger).await);
    assert_eq!(left, [in_flight[0].clone(), in_flight[2].clone()], "given up for good");
    let given_up = ledger.batch(&in_flight[1].caller_reference).await.unwrap().unwrap();
    assert_eq!(given_up.tracking_abandoned.as_deref(), Some("CloudFront refused: AccessDenied"));
    assert_eq!(given_up.status, BatchStatus::Accepted, "its status is what was known");
    for submitted in &in_flight {
        let done = Completion { caller_reference: submitted.caller_reference.clone(), ..completion.clone() };
        ledger.record_completion(&done).await.unwrap();
    }

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

    // Lease renewal: only by the lease's owner; a renewed lease keeps others from taking the batch over.
    let renewed = millis(base + 900_000);
    assert!(!ledger.renew_lease(&pending.caller_reference, "worker-a", renewed).await.unwrap(), "worker-b owns it now");
    assert!(ledger.renew_lease(&pending.caller_reference, "worker-b", renewed).await.unwrap());
    let between = new_lease + Duration::from_secs(1);
    assert!(!ledger.take_over(&pending.caller_reference, "worker-c", between, renewed).await.unwrap(), "renewed");
    let after_renewal = renewed + Duration::from_secs(1);
    assert!(ledger.take_over(&pending.caller_reference, "worker-c", after_renewal, renewed).await.unwrap());
    // A lease renewed after its batch's outcome (a renewal racing the acceptance) lets nobody take it over.
    ledger.renew_lease(&accepted.caller_reference, &accepted.owner, renewed).await.unwrap();
    assert!(!ledger.take_over(&accepted.caller_reference, "worker-c", after_renewal, renewed).await.unwrap());

    // Requesters are producers' free text: even an essay must not make the record too big to store.
    let mut chatty = record(&distribution, base + 7_000);
    chatty.requesters = vec!["x".repeat(500_000), "ci".into()];
    ledger.record_intent(&chatty).await.expect("a huge requester does not break the record");

    // Producer keys: the first message wins for the period; its own redelivery is not a duplicate; the same key
    // for other content is a conflict; another distribution's use of the key is its own.
    let key = format!("deploy-{}", CallerReference::mint());
    let (first, second) = (MessageId("m-first".into()), MessageId("m-second".into()));
    let now = SystemTime::now();
    let until = now + Duration::from_secs(3_600);
    let other_distribution = DistributionId::parse(&format!("{distribution}X")).unwrap();
    let key_use = |message: &MessageId, distribution: &DistributionId, content: &str| KeyUse {
        distribution_id: distribution.clone(),
        tenant_id: None,
        key: key.clone(),
        message_id: message.clone(),
        content: content.into(),
    };
    let claim = |key: KeyUse, now, until| async move { ledger.claim_key(&key, now, until).await.unwrap() };
    assert_eq!(claim(key_use(&first, &distribution, "c1"), now, until).await, KeyClaim::First);
    assert_eq!(claim(key_use(&first, &distribution, "c1"), now, until).await, KeyClaim::First);
    let duplicate = KeyClaim::Duplicate { first_message_id: first.clone() };
    assert_eq!(claim(key_use(&second, &distribution, "c1"), now, until).await, duplicate);
    let conflict = KeyClaim::Conflict { first_message_id: first.clone() };
    assert_eq!(claim(key_use(&second, &distribution, "c2"), now, until).await, conflict);
    assert_eq!(claim(key_use(&second, &other_distribution, "c2"), now, until).await, KeyClaim::First);
    let for_tenant = KeyUse { tenant_id: TenantId::parse("dt_contract").ok(), ..key_use(&second, &distribution, "c2") };
    assert_eq!(claim(for_tenant, now, until).await, KeyClaim::First, "a key is scoped to its tenant too");
    let later = until + Duration::from_secs(1);
    assert_eq!(
        claim(key_use(&second, &distribution, "c2"), later, later + Duration::from_secs(60)).await,
        KeyClaim::First
    );
}

/// The ledger's read side, over batches in every state, a producer key and dead-letter records.
async fn audit_contract<L: Ledger + AuditLog>(ledger: &L) {
    let distribution = DistributionId::parse("EAUDIT").unwrap();
    let other = DistributionId::parse("EOTHER").unwrap();
    let base = 1_800_000_000_000;
    let message = |id: &str| MessageId(id.into());
    let batch = |distribution: &DistributionId, created_ms, paths: &[&str], messages: &[&str]| BatchRecord {
        paths: paths.iter().map(|p| p.to_string()).collect(),
        message_ids: messages.iter().map(|m| message(m)).collect(),
        ..record(distribution, created_ms)
    };
    let accept = |mut record: BatchRecord, id: &str| {
        record.accept(&Invalidation { id: id.into(), status: "InProgress".into() }, millis(base + 10_000));
        record
    };
    let wildcard = accept(batch(&distribution, base, &["/img/*", "/index.html"], &["m-1"]), "I-WILDCARD");
    let exact = accept(batch(&distribution, base + 1_000, &["/img/logo.png"], &["m-2", "m-3"]), "I-EXACT");
    let mut failed = batch(&distribution, base + 2_000, &["/img/new.png"], &["m-4"]);
    failed.fail("NoSuchDistribution");
    let pending = batch(&distribution, base + 3_000, &["/img/pending.png"], &["m-5"]);
    let elsewhere = accept(batch(&other, base + 1_500, &["/img/logo.png"], &["m-2"]), "I-ELSEWHERE");
    for record in [&wildcard, &exact, &failed, &pending, &elsewhere] {
        ledger.record_intent(record).await.unwrap();
        if record.status != BatchStatus::Pending {
            ledger.record_outcome(record).await.unwrap();
        }
    }
    let completion = Completion {
        caller_reference: wildcard.caller_reference.clone(),
        cloudfront_status: "Completed".into(),
        completed_at: millis(base + 70_000),
        time_to_complete: Duration::from_millis(60_000),
        keep_tracking: false,
    };
    ledger.record_completion(&completion).await.unwrap();
    let mut completed = wildcard.clone();
    completed.complete(&completion);
    let since = millis(base - 1);

    // By CallerReference and by invalidation id.
    assert_eq!(ledger.batch(&exact.caller_reference).await.unwrap().as_ref(), Some(&exact));
    assert_eq!(ledger.batch(&CallerReference::mint()).await.unwrap(), None);
    assert_eq!(ledger.batch_by_invalidation("I-WILDCARD").await.unwrap().as_ref(), Some(&completed));
    assert_eq!(ledger.batch_by_invalidation("I-UNKNOWN").await.unwrap(), None);

    // By message: one distribution, or all of them (newest first).
    let with_message = |id, distribution, since| async move {
        ledger.batches_with_message(&message(id), distribution, since).await.unwrap()
    };
    assert_eq!(with_message("m-2", Some(&distribution), since).await, std::slice::from_ref(&exact));
    assert_eq!(with_message("m-2", None, since).await, [elsewhere.clone(), exact.clone()]);
    assert_eq!(with_message("m-4", Some(&distribution), since).await, std::slice::from_ref(&failed));
    assert_eq!(with_message("m-2", Some(&distribution), millis(base + 1_001)).await, []);
    assert_eq!(with_message("m-9", None, since).await, []);

    // By path: the newest accepted or completed batch covering it, exactly or by a wildcard; failed and pending
    // batches invalidated nothing.
    let covering = |path, since| ledger.latest_covering(&distribution, path, since);
    assert_eq!(covering("/img/logo.png", since).await.unwrap().as_ref(), Some(&exact));
    assert_eq!(covering("/img/new.png", since).await.unwrap().as_ref(), Some(&completed), "by the wildcard");
    assert_eq!(covering("/img/pending.png", since).await.unwrap().as_ref(), Some(&completed));
    assert_eq!(covering("/img/new.png", millis(base + 500)).await.unwrap(), None);
    assert_eq!(covering("/nothing", since).await.unwrap(), None);

    // A producer key's claim names its message and distribution.
    let key = format!("deploy-{}", CallerReference::mint());
    let (claimed_at, until) = (now_millis(), in_an_hour());
    let key_use = KeyUse {
        distribution_id: distribution.clone(),
        tenant_id: None,
        key: key.clone(),
        message_id: message("m-1"),
        content: "digest".into(),
    };
    ledger.claim_key(&key_use, claimed_at, until).await.unwrap();
    let expected = KeyRecord {
        key: key.clone(),
        message_id: message("m-1"),
        distribution_id: distribution.clone(),
        tenant_id: None,
        created_at: claimed_at,
        expires_at: until,
    };
    let whole = Target::from(&distribution);
    assert_eq!(ledger.key_claim(&whole, &key).await.unwrap(), Some(expected.clone()));
    assert_eq!(ledger.key_claim(&whole, "never-used").await.unwrap(), None);
    let elsewhere = DistributionId::parse(&format!("{distribution}X")).unwrap();
    assert_eq!(ledger.key_claim(&elsewhere.into(), &key).await.unwrap(), None, "keys are per distribution");
    // The same key used for a tenant is the tenant's own claim, found by the tenant.
    let tenant = TenantId::parse("dt_contractkey").unwrap();
    let tenant_target = Target::tenant(distribution.clone(), tenant.clone());
    assert_eq!(ledger.key_claim(&tenant_target, &key).await.unwrap(), None, "a distribution's key is not its tenants'");
    let tenant_use = KeyUse { tenant_id: Some(tenant.clone()), message_id: message("m-2"), ..key_use };
    ledger.claim_key(&tenant_use, claimed_at, until).await.unwrap();
    let tenant_claim = KeyRecord { message_id: message("m-2"), tenant_id: Some(tenant), ..expected.clone() };
    assert_eq!(ledger.key_claim(&tenant_target, &key).await.unwrap(), Some(tenant_claim));
    assert_eq!(ledger.key_claim(&whole, &key).await.unwrap(), Some(expected), "nor a tenant's the distribution's");

    // Dead letters: the last record per message wins; expired ones are invisible.
    let dead = |id: &str, created_ms| DeadLetterRecord {
        message_id: message(id),
        reason: "path #0 \"bad\" is invalid".into(),
        code: "invalid_path".into(),
        distribution_id: Some(distribution.clone()),
        requester: Some("bob".into()),
        created_at: millis(created_ms),
        expires_at: in_an_hour(),
        outbox: false,
    };
    ledger
        .record_dead_letter(&DeadLetterRecord { reason: "first try".into(), ..dead("m-6", base + 2_400) })
        .await
        .unwrap();
    let dead_letter = dead("m-6", base + 2_500);
    ledger.record_dead_letter(&dead_letter).await.unwrap();
    let unknown_origin = DeadLetterRecord { distribution_id: None, requester: None, ..dead("m-7", base + 2_600) };
    ledger.record_dead_letter(&unknown_origin).await.unwrap();
    let expired = DeadLetterRecord { expires_at: UNIX_EPOCH + Duration::from_secs(1_000), ..dead("m-8", base + 2_700) };
    ledger.record_dead_letter(&expired).await.unwrap();
    assert_eq!(ledger.dead_letter(&message("m-6")).await.unwrap().as_ref(), Some(&dead_letter));
    assert_eq!(ledger.dead_letter(&message("m-8")).await.unwrap(), None, "expired");
    assert_eq!(ledger.dead_letter(&message("m-9")).await.unwrap(), None);

    // Failures: failed batches and dead letters of every distribution, newest first.
    let all = [
        FailureRecord::DeadLetter(unknown_origin.clone()),
        FailureRecord::DeadLetter(dead_letter),
        FailureRecord::Batch(Box::new(failed)),
    ];
    assert_eq!(ledger.failures(since, 10).await.unwrap(), all);
    assert_eq!(ledger.failures(since, 1).await.unwrap(), [FailureRecord::DeadLetter(unknown_origin)]);
    assert_eq!(ledger.failures(millis(base + 2_450), 10).await.unwrap(), all[..2]);
    assert_eq!(ledger.failures(millis(base + 2_601), 10).await.unwrap(), []);

    // A dead letter written with `outbox` waits in the outbox until its event is recorded published.
    let to_announce = DeadLetterRecord { outbox: true, ..dead("m-11", base + 2_650) };
    ledger.record_dead_letter(&to_announce).await.unwrap();
    let is_this = |owed: &Owed| matches!(owed, Owed::DeadLetter { message_id, .. } if *message_id == message("m-11"));
    assert_eq!(all_in_progress(ledger).await.iter().filter(|o| is_this(o)).count(), 1);
    ledger.mark_dead_letter_published(&message("m-11")).await.unwrap();
    assert!(!all_in_progress(ledger).await.iter().any(is_this));
    let kept = ledger.dead_letter(&message("m-11")).await.unwrap().unwrap();
    assert_eq!((kept.reason.as_str(), kept.outbox), (to_announce.reason.as_str(), false));

    // Billing: an accepted batch adds to the counters of its month once, however often its outcome is recorded.
    // Submitted in a month of its own, so the other records here do not count.
    let billed_at = millis(base) + Duration::from_secs(400 * 24 * 3_600);
    let month = billing_month(billed_at);
    let other = DistributionId::parse(&format!("{distribution}B")).unwrap();
    for (of, n) in [(&distribution, 0), (&distribution, 1), (&other, 2)] {
        let mut batch = record(of, base + 9_000 + n);
        batch.shares = RequesterShare::of([(Some("ci"), 3), (None, 2)]);
        ledger.record_intent(&batch).await.unwrap();
        // The shares are read back from the intent, as a worker resuming the batch would.
        batch.shares.clear();
        let batch_as_recorded = ledger.batch(&batch.caller_reference).await.unwrap().unwrap();
        batch.shares = batch_as_recorded.shares;
        batch.accept(&Invalidation { id: format!("IBILL{n}"), status: "InProgress".into() }, billed_at);
        ledger.record_outcome(&batch).await.unwrap();
        ledger.record_outcome(&batch).await.unwrap();
    }
    let one = Billing { batches: 1, messages: 2, paths_billed: 2, paths_requested: 5, paths_distinct: 2, wildcards: 1 };
    let two =
        Billing { batches: 2, messages: 4, paths_billed: 4, paths_requested: 10, paths_distinct: 4, wildcards: 2 };
    let billing = ledger.month_billing(&month).await.unwrap();
    assert_eq!(
        billing.total,
        Billing { batches: 3, messages: 6, paths_billed: 6, paths_requested: 15, paths_distinct: 6, wildcards: 3 }
    );
    assert_eq!(billing.distributions, [(distribution.clone(), two), (other, one)], "counted once each");
    assert_eq!(billing.days, [(billing_day(billed_at), billing.total)], "the daily series");
    let share = |requested| Billing {
        batches: 3,
        messages: 3,
        paths_billed: 3,
        paths_requested: requested,
        ..Billing::default()
    };
    assert_eq!(billing.requesters, [(Requester::Named("ci".into()), share(9)), (Requester::Unnamed, share(6))]);
    assert_eq!(ledger.month_billing("1999-01").await.unwrap().total, Billing::default());
    let totals = ledger.month_totals(&month).await.unwrap();
    assert_eq!((totals.total, totals.distributions.len(), totals.requesters.len()), (billing.total, 0, 0));

    // Every CI run its own requester: the month lists the biggest, and its items stay small whatever their number.
    let busy_month = billing_month(billed_at + Duration::from_secs(50 * 24 * 3_600));
    let busy_at = humantime::parse_rfc3339(&format!("{busy_month}-15T00:00:00Z")).unwrap();
    for n in 0..(LISTED_REQUESTERS as u64 + 5) {
        let mut batch = record(&distribution, base + 9_050 + n);
        // Names that agree on their first 300 characters are still different requesters.
        let name = format!("{}{n:03}", "github:org/site@".repeat(20));
        batch.paths = (0..=n).map(|p| format!("/run-{n}/{p}")).collect();
        batch.shares = RequesterShare::of([(Some(name.as_str()), batch.paths.len())]);
        ledger.record_intent(&batch).await.unwrap();
        batch.accept(&Invalidation { id: format!("IBUSY{n}"), status: "InProgress".into() }, busy_at);
        ledger.record_outcome(&batch).await.unwrap();
    }
    let busy = ledger.month_billing(&busy_month).await.unwrap();
    assert_eq!(busy.requesters.len(), LISTED_REQUESTERS, "the biggest requesters only");
    let biggest: Vec<u64> = busy.requesters.iter().map(|(_, b)| b.paths_billed).collect();
    assert_eq!(biggest.first(), Some(&(LISTED_REQUESTERS as u64 + 5)), "biggest first: {biggest:?}");
    assert!(biggest.windows(2).all(|pair| pair[0] >= pair[1]), "{biggest:?}");
    assert!(busy.requesters.iter().all(|(r, _)| r.name().is_some_and(|n| n.starts_with("github:org/site@"))));

    // A monthly cap: intents count their paths once, and none takes the month past the cap, whether counted by
    // capped intents or billed by uncapped ones.
    let capped_month = billing_month(billed_at + Duration::from_secs(100 * 24 * 3_600));
    let cap = MonthCap { month: capped_month.clone(), limit: 5, account: None };
    let (first, second, third) =
        (record(&distribution, base + 9_100), record(&distribution, base + 9_101), record(&distribution, base + 9_102));
    assert_eq!(ledger.record_intent_capped(&first, &cap).await.unwrap(), Intent::Recorded);
    assert_eq!(ledger.record_intent_capped(&first, &cap).await.unwrap(), Intent::Recorded, "a retry");
    assert_eq!(ledger.record_intent_capped(&second, &cap).await.unwrap(), Intent::Recorded);
    assert_eq!(ledger.record_intent_capped(&third, &cap).await.unwrap(), Intent::OverCap { spent: 4 });
    assert_eq!(ledger.batch(&third.caller_reference).await.unwrap(), None, "refused, so not recorded");
    assert_eq!(ledger.batch(&first.caller_reference).await.unwrap().map(|r| r.status), Some(BatchStatus::Pending));
    assert_eq!(ledger.month_billing(&capped_month).await.unwrap().committed, 4);
    let over_billed = MonthCap { month: month.clone(), limit: 7, account: None };
    assert_eq!(ledger.record_intent_capped(&third, &over_billed).await.unwrap(), Intent::OverCap { spent: 6 });
    let too_big = MonthCap { month: capped_month.clone(), limit: 1, account: None };
    assert!(matches!(ledger.record_intent_capped(&third, &too_big).await.unwrap(), Intent::OverCap { .. }));

    // A tenant's batch counts in its distribution and under its tenant too; a batch naming its account counts in
    // the account's part of the month, which an account's cap checks alone.
    let tenant_month = billing_month(billed_at + Duration::from_secs(150 * 24 * 3_600));
    let tenant_at = humantime::parse_rfc3339(&format!("{tenant_month}-15T00:00:00Z")).unwrap();
    let account = "111122223333";
    let cap = MonthCap { month: tenant_month.clone(), limit: 3, account: Some(account.into()) };
    let tenant = TenantId::parse("dt_shop1").unwrap();
    let mut of_tenant = record(&distribution, base + 9_200);
    (of_tenant.tenant_id, of_tenant.account) = (Some(tenant.clone()), Some(account.into()));
    assert_eq!(ledger.record_intent_capped(&of_tenant, &cap).await.unwrap(), Intent::Recorded);
    of_tenant.accept(&Invalidation { id: "ITENANT".into(), status: "InProgress".into() }, tenant_at);
    ledger.record_outcome(&of_tenant).await.unwrap();
    let billed = ledger.month_billing(&tenant_month).await.unwrap();
    let one = billed.total;
    assert_eq!(billed.distributions, [(distribution.clone(), one)]);
    assert_eq!(billed.tenants, [(Target::tenant(distribution.clone(), tenant), one)], "under its tenant");
    let in_account = ledger.account_totals(&tenant_month, account).await.unwrap();
    assert_eq!((in_account.total, in_account.committed), (one, 2));
    assert_eq!(ledger.month_totals(&tenant_month).await.unwrap().committed, 0, "not the total's");
    let next = record(&distribution, base + 9_201);
    assert_eq!(ledger.record_intent_capped(&next, &cap).await.unwrap(), Intent::OverCap { spent: 2 });
    let own = MonthCap { account: Some("own".into()), ..cap };
    assert_eq!(ledger.record_intent_capped(&next, &own).await.unwrap(), Intent::Recorded, "another account's");

    // A reason of any length is stored, whole or cut with a marker, never refused for size.
    let essay = DeadLetterRecord { reason: "é".repeat(200_000), ..dead("m-10", base + 2_800) };
    ledger.record_dead_letter(&essay).await.expect("a huge reason does not break the record");
    let stored = ledger.dead_letter(&message("m-10")).await.unwrap().unwrap().reason;
    assert!(stored == essay.reason || stored.ends_with(cf_invalidator::model::text::CUT_MARKER), "{}", stored.len());
    assert!(stored.starts_with(&"é".repeat(1_000)));
}

/// The shared budget: reservations written only on an unchanged version, renewals and releases that leave the
/// version alone, expired reservations deleted with the next write.
/// The status page's reads: every budget, the pending batches oldest first, the outcomes newest first.
async fn board_contract<L: Ledger + AuditLog>(ledger: &L) {
    assert!(ledger.budgets().await.unwrap().is_empty());
    assert!(ledger.pending_batches(10).await.unwrap().is_empty());
    assert!(ledger.recent_batches(10).await.unwrap().is_empty());
    let (one, two) = (DistributionId::parse("EBOARDA").unwrap(), DistributionId::parse("EBOARDB").unwrap());
    let reservation = Reservation {
        id: CallerReference::mint(),
        owner: "w1".into(),
        need: Allowance { paths: 7, wildcards: 1 },
        until: now_millis() + HIDDEN,
        invalidation_id: None,
    };
    for distribution in [&one, &two] {
        assert!(ledger.write_reservation(distribution, 0, &reservation, &[]).await.unwrap());
    }
    let mut budgets = ledger.budgets().await.unwrap();
    budgets.sort_by(|a, b| a.0.cmp(&b.0));
    let expected = BudgetState { reservations: vec![reservation.clone()], version: 1 };
    assert_eq!(budgets, [(one.clone(), expected.clone()), (two.clone(), expected)]);

    let base = now_millis().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let records: Vec<BatchRecord> = (0..4).map(|n| record(&one, base - 40_000 + n * 10_000)).collect();
    for record in &records {
        ledger.record_intent(record).await.unwrap();
    }
    let mut accepted = records[1].clone();
    accepted.accept(&Invalidation { id: "IBOARD1".into(), status: "InProgress".into() }, millis(base));
    ledger.record_outcome(&accepted).await.unwrap();
    let mut failed = records[2].clone();
    failed.fail("refused");
    ledger.record_outcome(&failed).await.unwrap();

    let pending = ledger.pending_batches(10).await.unwrap();
    let pending_ids: Vec<_> = pending.iter().map(|b| b.caller_reference.clone()).collect();
    assert_eq!(pending_ids, [records[0].caller_reference.clone(), records[3].caller_reference.clone()]);
    assert_eq!(pending[0], BatchSummary::from(&records[0]), "a summary is the record without its lists");
    assert_eq!(ledger.pending_batches(1).await.unwrap().len(), 1);
    let recent = ledger.recent_batches(10).await.unwrap();
    assert_eq!(recent, [BatchSummary::from(&failed), BatchSummary::from(&accepted)], "newest first");
    assert_eq!(ledger.recent_batches(1).await.unwrap(), [BatchSummary::from(&failed)]);
}

/// Counting never receives: what it counts stays where it was.
async fn depth_contract<Q: Queue + QueueStats>(queue: &Q) {
    assert_eq!(queue.depth().await.unwrap(), QueueDepth::default());
    for body in ["one", "two", "three"] {
        queue.send(body, &[]).await.unwrap();
    }
    assert_eq!(queue.depth().await.unwrap(), QueueDepth { visible: 3, in_flight: 0, delayed: 0 });
    assert_eq!(queue.receive(1, WAIT, HIDDEN).await.unwrap().len(), 1);
    assert_eq!(queue.depth().await.unwrap(), QueueDepth { visible: 2, in_flight: 1, delayed: 0 });
    assert_eq!(queue.depth().await.unwrap(), QueueDepth { visible: 2, in_flight: 1, delayed: 0 });
}

async fn budget_contract<B: Budgets>(store: &B) {
    let distribution = DistributionId::parse("EBUDGET").unwrap();
    assert_eq!(store.read_budget(&distribution).await.unwrap(), BudgetState::default());
    let until = now_millis() + HIDDEN;
    let reservation = |paths, wildcards| Reservation {
        id: CallerReference::mint(),
        owner: "w1".into(),
        need: Allowance { paths, wildcards },
        until,
        invalidation_id: None,
    };
    let sorted = |mut state: BudgetState| {
        state.reservations.sort_by(|a, b| a.id.cmp(&b.id));
        state
    };
    let (first, second, third) = (reservation(10, 1), reservation(20, 0), reservation(0, 2));

    assert!(store.write_reservation(&distribution, 0, &first, &[]).await.unwrap());
    assert!(!store.write_reservation(&distribution, 0, &second, &[]).await.unwrap(), "a stale version is refused");
    assert_eq!(
        store.read_budget(&distribution).await.unwrap(),
        BudgetState { reservations: vec![first.clone()], version: 1 }
    );

    let renewed_until = until + HIDDEN;
    assert!(store.renew_reservation(&distribution, &first.id, renewed_until, Some("I1")).await.unwrap());
    let renewed = Reservation { until: renewed_until, invalidation_id: Some("I1".into()), ..first.clone() };
    assert!(store.write_reservation(&distribution, 1, &second, &[]).await.unwrap(), "renewals leave the version alone");
    assert_eq!(
        sorted(store.read_budget(&distribution).await.unwrap()),
        sorted(BudgetState { reservations: vec![renewed.clone(), second.clone()], version: 2 })
    );

    assert!(store.write_reservation(&distribution, 2, &third, std::slice::from_ref(&second.id)).await.unwrap());
    store.release_reservation(&distribution, &renewed.id).await.unwrap();
    store.release_reservation(&distribution, &renewed.id).await.unwrap();
    assert_eq!(store.read_budget(&distribution).await.unwrap(), BudgetState { reservations: vec![third], version: 3 });
    assert!(!store.renew_reservation(&distribution, &first.id, renewed_until, None).await.unwrap(), "released");

    let untouched = DistributionId::parse("EUNTOUCHED").unwrap();
    store.release_reservation(&untouched, &first.id).await.unwrap();
    assert!(!store.renew_reservation(&untouched, &first.id, until, None).await.unwrap());
    assert_eq!(store.read_budget(&untouched).await.unwrap(), BudgetState::default(), "nothing created");
}

/// The roster of workers sharing the account's rate: each table is its own account here, so the names only need
/// to be distinct within it.
async fn roster_contract<R: Roster>(store: &R) {
    let now = SystemTime::now();
    let soon = now + Duration::from_secs(30);
    assert_eq!(store.check_in("worker-b", now, soon).await.unwrap(), ["worker-b"]);
    assert_eq!(store.check_in("worker-a", now, soon).await.unwrap(), ["worker-a", "worker-b"]);
    assert_eq!(store.check_in("worker-b", now, soon).await.unwrap(), ["worker-a", "worker-b"], "once each");
    let later = now + Duration::from_secs(60);
    assert_eq!(
        store.check_in("worker-c", later, later + Duration::from_secs(30)).await.unwrap(),
        ["worker-c"],
        "ran out"
    );
    store.check_out("worker-a").await.unwrap();
    assert_eq!(store.check_in("worker-b", now, soon).await.unwrap(), ["worker-b", "worker-c"], "checked out");
}

/// What workers learned of CloudFront's limits: one belief per limit and scope, a later cut replacing an earlier
/// one and never the other way round, all read at once.
async fn beliefs_contract<B: Beliefs>(store: &B) {
    let cut =
        UNIX_EPOCH + Duration::from_millis(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64);
    let belief = |limit: &str, scope: &str, believed: f64, cut: SystemTime| SharedBelief {
        limit: limit.into(),
        scope: scope.into(),
        believed,
        cut,
    };
    let first = belief("in_progress_paths", "EAAA", 2_320.0, cut);
    assert!(store.share_belief(&first).await.unwrap());
    let later = belief("in_progress_paths", "EAAA", 1_856.0, cut + Duration::from_secs(1));
    assert!(store.share_belief(&later).await.unwrap());
    assert!(!store.share_belief(&first).await.unwrap(), "an earlier cut never replaces a later one");
    let account = belief("account_paths_per_second", "account", 120.5, cut);
    assert!(store.share_belief(&account).await.unwrap());
    let mut shared = store.shared_beliefs(SystemTime::now()).await.unwrap();
    shared.sort_by(|a, b| a.limit.cmp(&b.limit));
    assert_eq!(shared, [account, later]);
}

#[tokio::test]
async fn memory_ledger_meets_the_beliefs_contract() {
    beliefs_contract(&MemoryLedger::default()).await;
}

#[tokio::test]
async fn dynamodb_adapter_meets_the_beliefs_contract() {
    let Some(config) = common::emulator().await else { return };
    let table = common::create_table(&config).await;
    beliefs_contract(&DynamoLedger::new(aws_sdk_dynamodb::Client::new(&config), table)).await;
}

/// The joint writes of the hot path: a reservation with its batch's intent, an acceptance with the note on its
/// reservation, a completion with its release. Each is one write: both parts or neither.
async fn joint_writes_contract<L: Ledger>(ledger: &L) {
    let distribution = DistributionId::parse("EJOINT").unwrap();
    let base = now_millis().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let batch = record(&distribution, base);
    let reservation = |record: &BatchRecord| Reservation {
        id: record.caller_reference.clone(),
        owner: "w1".into(),
        need: Allowance::of(&record.paths),
        until: now_millis() + HIDDEN,
        invalidation_id: None,
    };
    let held = reservation(&batch);
    assert_eq!(
        ledger.reserve_recording(&distribution, 0, &held, &[], &batch, None).await.unwrap(),
        ReservationWrite::Written
    );
    assert_eq!(
        ledger.read_budget(&distribution).await.unwrap(),
        BudgetState { reservations: vec![held.clone()], version: 1 }
    );
    assert_eq!(ledger.batch(&batch.caller_reference).await.unwrap().map(|r| r.status), Some(BatchStatus::Pending));

    // A retry after a lost answer: the version moved, and once read again the intent is found stored.
    assert_eq!(
        ledger.reserve_recording(&distribution, 0, &held, &[], &batch, None).await.unwrap(),
        ReservationWrite::VersionMoved
    );
    assert_eq!(
        ledger.reserve_recording(&distribution, 1, &held, &[], &batch, None).await.unwrap(),
        ReservationWrite::Written,
        "the stored intent is left alone"
    );
    assert_eq!(ledger.read_budget(&distribution).await.unwrap().version, 2);

    let late = record(&distribution, base + 1);
    assert_eq!(
        ledger.reserve_recording(&distribution, 1, &reservation(&late), &[], &late, None).await.unwrap(),
        ReservationWrite::VersionMoved
    );
    assert_eq!(ledger.batch(&late.caller_reference).await.unwrap(), None, "a stale version writes no intent");
    let month = billing_month(SystemTime::now() + Duration::from_secs(200 * 24 * 3_600));
    let cap = MonthCap { month: month.clone(), limit: 3, account: None };
    assert_eq!(
        ledger.reserve_recording(&distribution, 2, &reservation(&late), &[], &late, Some(&cap)).await.unwrap(),
        ReservationWrite::Written
    );
    assert_eq!(ledger.month_billing(&month).await.unwrap().committed, 2);
    let over = record(&distribution, base + 2);
    assert_eq!(
        ledger.reserve_recording(&distribution, 3, &reservation(&over), &[], &over, Some(&cap)).await.unwrap(),
        ReservationWrite::OverCap { spent: 2 }
    );
    assert_eq!(ledger.batch(&over.caller_reference).await.unwrap(), None, "over the cap, nothing is written");
    assert_eq!(ledger.read_budget(&distribution).await.unwrap().version, 3, "nor reserved");

    let mut accepted = batch.clone();
    accepted.accept(&Invalidation { id: "IJOINT1".into(), status: "InProgress".into() }, now_millis());
    let until = now_millis() + HIDDEN + HIDDEN;
    ledger.record_acceptance(&accepted.distribution_id, &accepted, until).await.unwrap();
    let noted = ledger.read_budget(&distribution).await.unwrap();
    let noted = noted.reservations.iter().find(|r| r.id == batch.caller_reference).unwrap();
    assert_eq!((noted.until, noted.invalidation_id.as_deref()), (until, Some("IJOINT1")));
    assert_eq!(ledger.batch(&batch.caller_reference).await.unwrap().map(|r| r.status), Some(BatchStatus::Accepted));
    let billed = ledger.month_billing(&billing_month(now_millis())).await.unwrap();
    ledger.record_acceptance(&accepted.distribution_id, &accepted, until).await.unwrap();
    assert_eq!(ledger.month_billing(&billing_month(now_millis())).await.unwrap(), billed, "billed once");

    let completion = |record: &BatchRecord| Completion {
        caller_reference: record.caller_reference.clone(),
        cloudfront_status: "Completed".into(),
        completed_at: now_millis(),
        time_to_complete: Duration::from_secs(20),
        keep_tracking: false,
    };
    // Completions found together are recorded and released together.
    let third = record(&distribution, base + 4);
    assert_eq!(
        ledger.reserve_recording(&distribution, 3, &reservation(&third), &[], &third, None).await.unwrap(),
        ReservationWrite::Written
    );
    let together = [completion(&batch), completion(&third)];
    assert_eq!(ledger.release_completed(&distribution, &together).await.unwrap(), [Ok(true), Ok(true)], "recorded");
    let left = ledger.read_budget(&distribution).await.unwrap();
    let left_ids: Vec<&CallerReference> = left.reservations.iter().map(|r| &r.id).collect();
    assert_eq!(left_ids, [&late.caller_reference], "both released");
    assert_eq!(left.version, 4, "a release leaves the version alone");
    for done in [&batch, &third] {
        let status = ledger.batch(&done.caller_reference).await.unwrap().map(|r| r.status);
        assert_eq!(status, Some(BatchStatus::Completed));
    }
    assert_eq!(
        ledger.release_completed(&distribution, &[completion(&batch)]).await.unwrap(),
        [Ok(false)],
        "recorded once"
    );

    // Its reservation gone, an acceptance is still recorded, and so is its completion, beside one recorded before
    // and one with no record.
    ledger.release_reservation(&distribution, &late.caller_reference).await.unwrap();
    let mut orphan = late.clone();
    orphan.accept(&Invalidation { id: "IJOINT2".into(), status: "InProgress".into() }, now_millis());
    ledger.record_acceptance(&orphan.distribution_id, &orphan, until).await.unwrap();
    assert_eq!(ledger.batch(&late.caller_reference).await.unwrap().map(|r| r.status), Some(BatchStatus::Accepted));
    assert!(ledger.read_budget(&distribution).await.unwrap().reservations.is_empty(), "no reservation made up");
    let missing = record(&distribution, base + 3);
    let mixed = [completion(&batch), completion(&late), completion(&missing)];
    assert_eq!(
        ledger.release_completed(&distribution, &mixed).await.unwrap(),
        [Ok(false), Ok(true), Err(LedgerError::Conflict(missing.caller_reference.to_string()))]
    );
    assert_eq!(ledger.batch(&late.caller_reference).await.unwrap().map(|r| r.status), Some(BatchStatus::Completed));
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

    let detail = cdn.get_invalidation(distribution, &first.id).await.unwrap();
    assert_eq!((detail.caller_reference.as_str(), &detail.paths), (first_reference.as_str(), &paths));
    let status = detail.invalidation;
    assert_eq!(status.id, first.id);
    assert!(["inprogress", "completed"].contains(&status.status.to_lowercase().as_str()), "{status:?}");
    let unknown = cdn.get_invalidation(distribution, "INOSUCHINVALIDATION").await;
    assert!(matches!(unknown, Err(CdnError::NoSuchInvalidation(_))), "{unknown:?}");

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
    let Some(config) = common::emulator().await else { return };
    let queues = common::create_queues(&config).await;
    queue_contract(&SqsQueue::new(aws_sdk_sqs::Client::new(&config), queues.queue_url)).await;
}

#[tokio::test]
async fn memory_ledger_meets_the_ledger_contract() {
    ledger_contract(&MemoryLedger::default()).await;
}

#[tokio::test]
async fn dynamodb_adapter_meets_the_ledger_contract() {
    let Some(config) = common::emulator().await else { return };
    let table = common::create_table(&config).await;
    ledger_contract(&DynamoLedger::new(aws_sdk_dynamodb::Client::new(&config), table)).await;
}

#[tokio::test]
async fn memory_ledger_meets_the_audit_contract() {
    audit_contract(&MemoryLedger::default()).await;
}

#[tokio::test]
async fn dynamodb_adapter_meets_the_audit_contract() {
    let Some(config) = common::emulator().await else { return };
    let table = common::create_table(&config).await;
    audit_contract(&DynamoLedger::new(aws_sdk_dynamodb::Client::new(&config), table)).await;
}

#[tokio::test]
async fn memory_ledger_meets_the_board_contract() {
    board_contract(&MemoryLedger::default()).await;
}

#[tokio::test]
async fn dynamodb_adapter_meets_the_board_contract() {
    let Some(config) = common::emulator().await else { return };
    let table = common::create_table(&config).await;
    board_contract(&DynamoLedger::new(aws_sdk_dynamodb::Client::new(&config), table)).await;
}

#[tokio::test]
async fn memory_queue_meets_the_depth_contract() {
    depth_contract(&MemoryQueue::default()).await;
}

#[tokio::test]
async fn sqs_adapter_meets_the_depth_contract() {
    let Some(config) = common::emulator().await else { return };
    let queues = common::create_queues(&config).await;
    depth_contract(&SqsQueue::new(aws_sdk_sqs::Client::new(&config), queues.queue_url)).await;
}

#[tokio::test]
async fn memory_ledger_meets_the_joint_writes_contract() {
    joint_writes_contract(&MemoryLedger::default()).await;
}

#[tokio::test]
async fn dynamodb_adapter_meets_the_joint_writes_contract() {
    let Some(config) = common::emulator().await else { return };
    let table = common::create_table(&config).await;
    joint_writes_contract(&DynamoLedger::new(aws_sdk_dynamodb::Client::new(&config), table)).await;
}

#[tokio::test]
async fn memory_ledger_meets_the_budget_contract() {
    budget_contract(&MemoryLedger::default()).await;
}

#[tokio::test]
async fn memory_ledger_meets_the_roster_contract() {
    roster_contract(&MemoryLedger::default()).await;
}

#[tokio::test]
async fn dynamodb_adapter_meets_the_roster_contract() {
    let Some(config) = common::emulator().await else { return };
    let table = common::create_table(&config).await;
    roster_contract(&DynamoLedger::new(aws_sdk_dynamodb::Client::new(&config), table)).await;
}

#[tokio::test]
async fn dynamodb_adapter_meets_the_budget_contract() {
    let Some(config) = common::emulator().await else { return };
    let table = common::create_table(&config).await;
    budget_contract(&DynamoLedger::new(aws_sdk_dynamodb::Client::new(&config), table)).await;
}

#[tokio::test]
async fn fake_cdn_meets_the_cdn_contract() {
    cdn_contract(&FakeCdn::with_distributions(["EFAKE"]), &DistributionId::parse("EFAKE").unwrap(), true).await;
}

/// The simulator over HTTP, through the same adapter and SDK client as the emulator, with CloudFront's quotas on.
#[tokio::test]
async fn cloudfront_adapter_on_the_simulator_meets_the_cdn_contract() {
    let cdn = Arc::new(FakeCdn::simulator(SimConfig::cloudfront()));
    let distribution = DistributionId::parse("ESIM").unwrap();
    cdn.add_distribution(distribution.clone());
    let server = SimServer::start(cdn).await.unwrap();
    cdn_contract(&CloudFront::new(server.client()), &distribution, true).await;
}

#[tokio::test]
async fn cloudfront_adapter_meets_the_cdn_contract() {
    let Some(config) = common::emulator().await else { return };
    let cloudfront = common::cloudfront(&config);
    let distribution = common::create_distribution(&cloudfront).await;
    cdn_contract(&CloudFront::new(cloudfront), &distribution, common::emulator_models_caller_reference()).await;
}

/// One item the adapter cannot read (written by hand, or by a broken or newer version) is skipped, not fatal:
/// before, it failed every adoption round of every worker.
#[tokio::test]
async fn dynamodb_adapter_skips_an_unreadable_item_in_progress() {
    let Some(config) = common::emulator().await else { return };
    let table = common::create_table(&config).await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let ledger = DynamoLedger::new(client.clone(), &table);
    use aws_sdk_dynamodb::types::AttributeValue::S;
    client
        .put_item()
        .table_name(&table)
        .item("pk", S("batch#hand-written".into()))
        .item("tracking", S("in_progress".into()))
        .item("created_at", S("2026-01-01T00:00:00.000Z".into()))
        .send()
        .await
        .unwrap();
    let distribution = DistributionId::parse("EUNREADABLE").unwrap();
    let mut accepted = record(&distribution, 1_800_000_000_000);
    ledger.record_intent(&accepted).await.unwrap();
    accepted.accept(&Invalidation { id: "IREADABLE".into(), status: "InProgress".into() }, millis(1_800_000_001_000));
    ledger.record_outcome(&accepted).await.unwrap();

    let owed = all_in_progress(&ledger).await;
    assert_eq!(owed, [Owed::Batch(accepted.submitted().unwrap())], "the readable one, the other skipped");
}
