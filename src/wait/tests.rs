use std::time::{Duration, SystemTime};

use super::*;
use crate::fake::{MemoryLedger, pending_record};
use crate::model::{DistributionId, TenantId};
use crate::ports::ledger::{KeyClaim, KeyUse, Keys};

const DIST: &str = "EAAA";

fn ago(seconds: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(seconds)
}

fn sent(id: &str, paths: &[&str], sent_at: SystemTime) -> SentMessage {
    SentMessage {
        message_id: MessageId(id.into()),
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        sent_at,
        idempotency_key: None,
    }
}

/// Records a batch in `status`, sealed at `created_at`, holding `messages`.
async fn record(
    ledger: &MemoryLedger,
    status: BatchStatus,
    paths: &[&str],
    messages: &[&str],
    created_at: SystemTime,
) -> BatchRecord {
    let mut batch = BatchRecord {
        expires_at: SystemTime::now() + Duration::from_secs(3_600),
        ..pending_record(DIST, paths, messages, created_at)
    };
    ledger.record_intent(&batch).await.unwrap();
    if status != BatchStatus::Pending {
        batch.status = status;
        batch.invalidation_id = Some(format!("I{}", batch.caller_reference));
        batch.submitted_at = Some(created_at);
        ledger.record_outcome(&batch).await.unwrap();
    }
    batch
}

/// A look, each a `LIST_EVERY` after the one before, so that each lists: as the looks of a wait that goes on.
async fn look(wait: &mut Wait, ledger: &MemoryLedger) -> Look {
    let now = wait.listed_at.map_or_else(SystemTime::now, |at| at + LIST_EVERY);
    wait.look(ledger, now).await.unwrap()
}

fn wait(sent: Vec<SentMessage>) -> Wait {
    Wait::new(DistributionId::parse(DIST).unwrap(), sent)
}

#[tokio::test]
async fn completed_only_when_completed_batches_cover_every_path_of_every_message() {
    let ledger = MemoryLedger::default();
    let mut wait = wait(vec![sent("m1", &["/a", "/img/x.png"], ago(60)), sent("m2", &["/b"], ago(60))]);
    record(&ledger, BatchStatus::Completed, &["/a", "/img/*"], &["m1"], ago(50)).await;
    let mut open = record(&ledger, BatchStatus::Accepted, &["/b"], &["m2"], ago(50)).await;
    let seen = look(&mut wait, &ledger).await;
    assert_eq!(seen.standing, Standing::Waiting { accepted: 2, completed: 1 });
    assert_eq!(seen.batches.len(), 2);
    open.status = BatchStatus::Completed;
    ledger.record_outcome(&open).await.unwrap();
    assert_eq!(look(&mut wait, &ledger).await.standing, Standing::Completed);
}

#[tokio::test]
async fn a_batch_of_other_messages_created_before_the_send_does_not_count() {
    let ledger = MemoryLedger::default();
    let mut wait = wait(vec![sent("m1", &["/a"], ago(60))]);
    record(&ledger, BatchStatus::Completed, &["/a"], &["someone-else"], ago(61)).await;
    let seen = look(&mut wait, &ledger).await;
    assert_eq!(seen.standing, Standing::Waiting { accepted: 0, completed: 0 });
    assert!(seen.batches.is_empty(), "{:?}", seen.batches);
}

#[tokio::test]
async fn a_message_covered_by_other_messages_batches_created_after_it_was_sent_completes_with_them() {
    // The worker deletes such a message without a batch of its own, or it fell off a batch's capped id list.
    let ledger = MemoryLedger::default();
    let mut wait = wait(vec![sent("m1", &["/a", "/b"], ago(60))]);
    record(&ledger, BatchStatus::Completed, &["/*"], &["someone-else"], ago(55)).await;
    assert_eq!(look(&mut wait, &ledger).await.standing, Standing::Completed);
}

#[tokio::test]
async fn a_message_split_over_batches_is_covered_by_them_together() {
    let ledger = MemoryLedger::default();
    let mut wait = wait(vec![sent("m1", &["/a", "/b"], ago(60))]);
    record(&ledger, BatchStatus::Completed, &["/a"], &["m1"], ago(59)).await;
    record(&ledger, BatchStatus::Failed, &["/b"], &["m1"], ago(59)).await;
    let seen = look(&mut wait, &ledger).await;
    assert_eq!(seen.standing, Standing::Waiting { accepted: 0, completed: 0 }, "/b is not covered yet");
    record(&ledger, BatchStatus::Completed, &["/b"], &["m1"], ago(58)).await;
    assert_eq!(look(&mut wait, &ledger).await.standing, Standing::Completed);
}

/// A CI job re-run: the first run's message holds key `deploy-42` (of `tenant`, if given), and its batch completed
/// before the second, returned, was sent.
async fn rerun_of_a_completed_key(ledger: &MemoryLedger, tenant: Option<TenantId>) -> SentMessage {
    let key = KeyUse {
        distribution_id: DistributionId::parse(DIST).unwrap(),
        tenant_id: tenant,
        key: "deploy-42".into(),
        message_id: MessageId("first".into()),
        content: "same".into(),
    };
    let day = SystemTime::now() + Duration::from_secs(86_400);
    assert_eq!(ledger.claim_key(&key, ago(600), day).await.unwrap(), KeyClaim::First);
    record(ledger, BatchStatus::Completed, &["/a"], &["first"], ago(590)).await;
    SentMessage { idempotency_key: Some("deploy-42".into()), ..sent("second", &["/a"], ago(5)) }
}

#[tokio::test]
async fn a_duplicate_of_an_idempotency_key_completes_with_the_batches_of_the_message_that_holds_the_key() {
    let ledger = MemoryLedger::default();
    let rerun = rerun_of_a_completed_key(&ledger, None).await;
    let mut wait = wait(vec![rerun]);
    let seen = look(&mut wait, &ledger).await;
    assert_eq!(seen.standing, Standing::Waiting { accepted: 0, completed: 0 }, "the first look finds the key");
    assert_eq!(look(&mut wait, &ledger).await.standing, Standing::Completed);
}

#[tokio::test]
async fn send_tenant_wait_follows_the_tenants_own_key_to_the_message_that_holds_it() {
    let ledger = MemoryLedger::default();
    let tenant = TenantId::parse("dt_shop1").unwrap();
    let rerun = rerun_of_a_completed_key(&ledger, Some(tenant.clone())).await;
    let mut wait = Wait::new(Target::tenant(DistributionId::parse(DIST).unwrap(), tenant), vec![rerun]);
    look(&mut wait, &ledger).await;
    let standing = look(&mut wait, &ledger).await.standing;
    assert_eq!(standing, Standing::Completed, "the tenant's key, not the distribution's");
}

#[tokio::test]
async fn a_message_holding_its_own_key_is_answered_for_by_its_own_batches_only() {
    let ledger = MemoryLedger::default();
    let key = KeyUse {
        distribution_id: DistributionId::parse(DIST).unwrap(),
        tenant_id: None,
        key: "deploy-43".into(),
        message_id: MessageId("m1".into()),
        content: "same".into(),
    };
    let day = SystemTime::now() + Duration::from_secs(86_400);
    ledger.claim_key(&key, ago(30), day).await.unwrap();
    record(&ledger, BatchStatus::Completed, &["/a"], &["older"], ago(120)).await;
    let mut wait =
        wait(vec![SentMessage { idempotency_key: Some("deploy-43".into()), ..sent("m1", &["/a"], ago(40)) }]);
    for _ in 0..2 {
        let seen = look(&mut wait, &ledger).await;
        assert_eq!(seen.standing, Standing::Waiting { accepted: 0, completed: 0 });
    }
}

#[tokio::test]
async fn a_dead_letter_ends_the_wait_with_its_reason() {
    let ledger = MemoryLedger::default();
    let dead = DeadLetterRecord {
        message_id: MessageId("m2".into()),
        reason: "path #0 \"bad\" is invalid".into(),
        code: "invalid_path".into(),
        distribution_id: None,
        requester: None,
        created_at: SystemTime::now(),
        expires_at: SystemTime::now() + Duration::from_secs(3_600),
        outbox: false,
    };
    ledger.record_dead_letter(&dead).await.unwrap();
    let mut wait = wait(vec![sent("m1", &["/a"], ago(5)), sent("m2", &["/bad"], ago(5))]);
    let expected = Standing::DeadLettered { message_id: MessageId("m2".into()), reason: dead.reason.clone() };
    assert_eq!(look(&mut wait, &ledger).await.standing, expected);
}

#[tokio::test]
async fn once_every_message_is_answered_for_a_look_reads_only_the_open_batches_by_key() {
    let ledger = MemoryLedger::default();
    let mut wait = wait(vec![sent("m1", &["/a"], ago(60))]);
    record(&ledger, BatchStatus::Accepted, &["/a"], &["m1"], ago(59)).await;
    look(&mut wait, &ledger).await;
    ledger.engine().take_observed();
    // Many more batches of the distribution: none of them is read again.
    for n in 0..30 {
        record(&ledger, BatchStatus::Accepted, &[&format!("/other/{n}")], &["x"], ago(30)).await;
    }
    ledger.engine().take_observed();
    let seen = look(&mut wait, &ledger).await;
    assert_eq!(seen.standing, Standing::Waiting { accepted: 1, completed: 0 });
    let observed = ledger.engine().take_observed();
    assert_eq!(observed.requests.get("Query"), None, "no listing once answered for: {observed:?}");
    assert_eq!(observed.requests.get("GetItem"), Some(&1), "one read of the open batch: {observed:?}");
}

#[tokio::test]
async fn verifying_waits_for_the_checks_at_the_edge_and_ends_unproven_on_a_stale_one() {
    use crate::ports::ledger::EdgeOutcome;
    let check = |outcome| crate::fake::verification(outcome, SystemTime::now());
    let ledger = MemoryLedger::default();
    let mut plain = wait(vec![sent("m1", &["/a"], ago(60))]);
    let mut verifying = wait(vec![sent("m1", &["/a"], ago(60))]).verifying();
    record(&ledger, BatchStatus::Completed, &["/a"], &["m1"], ago(50)).await;
    assert_eq!(look(&mut plain, &ledger).await.standing, Standing::Completed);
    assert_eq!(look(&mut verifying, &ledger).await.standing, Standing::Verifying, "not checked yet");

    for (outcome, standing) in [
        (EdgeOutcome::Checking, Standing::Verifying),
        (EdgeOutcome::Healing, Standing::Verifying),
        (EdgeOutcome::Healed, Standing::Completed),
        (EdgeOutcome::Fresh, Standing::Completed),
        (
            EdgeOutcome::Stale,
            Standing::Unproven {
                caller_reference: CallerReference::from_recorded("stale".into()),
                outcome: EdgeOutcome::Stale,
                stale_paths: vec!["/a".into()],
            },
        ),
    ] {
        let ledger = MemoryLedger::default();
        let batch = record(&ledger, BatchStatus::Completed, &["/a"], &["m1"], ago(50)).await;
        let mut verifying = wait(vec![sent("m1", &["/a"], ago(60))]).verifying();
        look(&mut verifying, &ledger).await;
        ledger.record_verification(&batch.caller_reference, &check(outcome)).await.unwrap();
        let mut standing = standing;
        if let Standing::Unproven { caller_reference, .. } = &mut standing {
            *caller_reference = batch.caller_reference.clone();
        }
        assert_eq!(look(&mut verifying, &ledger).await.standing, standing, "{outcome:?}: read again by key");
    }
}
