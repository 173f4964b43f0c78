//! The worker's own ledger requests (`DynamoLedger`, the table `setup` creates) on the strict engine, in the three
//! situations issue 25 found. Each asserts what the ledger must do; before the fixes, DynamoDB refused each request:
//! the month item's requesters set passed 400 KB after 1,599 distinct requesters ("Item size to update has exceeded
//! the maximum allowed size"); two requesters cut to one value repeated a set member ("Input collection [...]
//! contains duplicates"); and removing 233 expired reservations took 4,920 bytes of expression ("Expression size
//! has exceeded the maximum allowed size").

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cf_invalidator::aws::dynamodb::{DynamoLedger, create_table};
use cf_invalidator::fake::dynamodb::StrictDynamo;
use cf_invalidator::fake::pending_record;
use cf_invalidator::model::{CallerReference, DistributionId};
use cf_invalidator::ports::ledger::RequesterShare;
use cf_invalidator::ports::{Allowance, BatchRecord, BatchStatus, Batches, Budgets, Reservation};

async fn ledger() -> DynamoLedger {
    let client = Arc::new(StrictDynamo::default()).client();
    create_table(&client, "ledger").await.unwrap();
    DynamoLedger::new(client, "ledger")
}

fn in_a_day() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 86_400)
}

/// An accepted batch of one message from `requesters` (each its own share).
fn accepted(requesters: &[String]) -> BatchRecord {
    let now = SystemTime::now();
    let shares = RequesterShare::of(requesters.iter().map(|r| (Some(r.as_str()), 1)));
    BatchRecord {
        status: BatchStatus::Accepted,
        invalidation_id: Some(CallerReference::mint().to_string()),
        submitted_at: Some(now),
        requesters: requesters.to_vec(),
        shares,
        expires_at: in_a_day(),
        lease_until: now,
        ..pending_record("EFINDINGS", &["/a"], &["m-1"], now)
    }
}

async fn accept(ledger: &DynamoLedger, record: &BatchRecord) -> Result<(), String> {
    ledger.record_intent(record).await.map_err(|e| e.to_string())?;
    ledger.record_outcome(record).await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_month_of_distinct_requesters_keeps_every_acceptance_recordable() {
    let ledger = ledger().await;
    for n in 0..2_000 {
        let requester = format!("github:org/site@{n:06}{}", "x".repeat(240));
        let outcome = accept(&ledger, &accepted(&[requester])).await;
        assert!(outcome.is_ok(), "acceptance {n} was refused: {outcome:?}");
    }
}

#[tokio::test]
async fn requesters_that_agree_on_their_first_256_bytes_are_recorded() {
    let ledger = ledger().await;
    let common = "r".repeat(300);
    let outcome = accept(&ledger, &accepted(&[format!("{common}-one"), format!("{common}-two")])).await;
    assert_eq!(outcome, Ok(()));
}

#[tokio::test]
async fn a_reservation_that_clears_many_expired_ones_is_written() {
    let ledger = ledger().await;
    let distribution = DistributionId::parse("EFINDINGS").unwrap();
    let reservation = || Reservation {
        id: CallerReference::mint(),
        owner: "w1".into(),
        need: Allowance { paths: 1, wildcards: 0 },
        until: SystemTime::now() + Duration::from_secs(60),
        invalidation_id: None,
    };
    assert!(ledger.write_reservation(&distribution, 0, &reservation(), &[]).await.unwrap());
    let expired: Vec<CallerReference> = (0..233).map(|_| CallerReference::mint()).collect();
    let written = ledger.write_reservation(&distribution, 1, &reservation(), &expired).await;
    assert!(matches!(written, Ok(true)), "{written:?}");
}

/// Every list and text of a batch record at the most any input can make it: the intent, a refusal with a long error
/// text, an acceptance and a tracker's give-up all stay under DynamoDB's 400 KB item limit. Before the texts were
/// capped, 4-byte requester names and a long coalescing note put the intent over it, and the batch's valid
/// messages were dead-lettered (`LedgerValidation`).
#[tokio::test]
async fn the_largest_batch_record_any_input_can_make_is_written_at_every_step() {
    use cf_invalidator::ports::{Outbox, Owed};

    let ledger = ledger().await;
    let wide = |n: usize| format!("{n:04}{}", "𝄞".repeat(63));
    let paths: Vec<String> = (0..3_000).map(|n| format!("/{n:04}/{}", "p".repeat(4_000))).collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let messages: Vec<String> = (0..10_000).map(|n| format!("{n:08}-0000-0000-0000-000000000000")).collect();
    let messages: Vec<&str> = messages.iter().map(String::as_str).collect();
    let texts: Vec<String> = (0..1_000).map(wide).collect();
    let mut record = BatchRecord {
        requesters: texts.clone(),
        idempotency_keys: texts.clone(),
        shares: RequesterShare::of(texts.iter().map(|r| (Some(r.as_str()), 1))),
        coalescing: Some(format!("replaced by {}", "/w/*, ".repeat(12_000))),
        expires_at: in_a_day(),
        ..pending_record("EFINDINGS", &paths, &messages, SystemTime::now())
    };
    ledger.record_intent(&record).await.expect("the intent is written");
    record.status = BatchStatus::Failed;
    record.failure = Some(format!("InvalidArgument: {}", "e".repeat(60_000)));
    ledger.record_outcome(&record).await.expect("the refusal is written");
    record.status = BatchStatus::Accepted;
    record.failure = None;
    record.invalidation_id = Some("I2J0I21PCUYOIK".into());
    record.submitted_at = Some(SystemTime::now());
    ledger.record_outcome(&record).await.expect("the acceptance is written");
    let owed = Owed::Batch(record.submitted().unwrap());
    ledger.give_up_tracking(&owed, &"r".repeat(60_000)).await.expect("the give-up is written");
}

/// The year run's one refusal (October 2027, after a crash): completions that named one batch twice made the
/// release of their reservations remove the same map entry twice ("Two document paths overlap"). A batch's
/// completion, listed twice, is recorded and its reservation released once.
#[tokio::test]
async fn completions_that_name_one_batch_twice_release_its_reservation_once() {
    use cf_invalidator::ports::{Completion, JointWrites};

    let ledger = ledger().await;
    let record = accepted(&["ci".to_owned()]);
    accept(&ledger, &record).await.unwrap();
    let distribution = record.distribution_id.clone();
    let reservation = Reservation {
        id: record.caller_reference.clone(),
        owner: "w1".into(),
        need: Allowance { paths: 1, wildcards: 0 },
        until: SystemTime::now() + Duration::from_secs(60),
        invalidation_id: None,
    };
    assert!(ledger.write_reservation(&distribution, 0, &reservation, &[]).await.unwrap());
    let completion = Completion {
        caller_reference: record.caller_reference.clone(),
        cloudfront_status: "Completed".into(),
        completed_at: SystemTime::now(),
        time_to_complete: Duration::from_secs(20),
        keep_tracking: false,
    };
    let recorded = ledger.release_completed(&distribution, &[completion.clone(), completion]).await;
    assert!(recorded.is_ok(), "{recorded:?}");
    assert!(ledger.read_budget(&distribution).await.unwrap().reservations.is_empty());
    let stored = ledger.batch(&record.caller_reference).await.unwrap().unwrap();
    assert_eq!(stored.status, BatchStatus::Completed);
}
