//! The five audit questions (docs/audit.md), answered from the ledger: what `cf-invalidator audit` prints.

use std::time::SystemTime;

use crate::model::path::InvalidationPath;
use crate::model::path::covering;
use crate::model::{CallerReference, DistributionId, MessageId, Target};
use crate::ports::audit::{AuditLog, FailureRecord};
use crate::ports::ledger::{BatchRecord, Batches, DeadLetterRecord, DeadLetters, KeyRecord, LedgerError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Question {
    /// 1. A distribution's batches created since `since`, newest first.
    Batches { distribution: DistributionId, since: SystemTime, limit: usize },
    /// 2. One batch by its CloudFront invalidation id.
    Invalidation(String),
    /// 2. One batch by its CallerReference.
    CallerReference(CallerReference),
    /// 3. What happened to a message: the batches holding it (of its distribution when known, else found by a scan
    ///    of the table) and its dead-letter record.
    Message { message: MessageId, distribution: Option<DistributionId>, since: SystemTime },
    /// 3. What happened to the message holding a producer key's claim (later messages with the key were dropped):
    ///    keys are per target, a distribution's apart from each of its tenants'.
    IdempotencyKey { target: Target, key: String, since: SystemTime },
    /// 4. The newest batch that invalidated a path, exactly or by a wildcard.
    Path { distribution: DistributionId, path: InvalidationPath, since: SystemTime },
    /// 5. Failed batches and dead-lettered messages, newest first: of one distribution, or of all.
    Failures { distribution: Option<DistributionId>, since: SystemTime, limit: usize },
}

/// One line of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    Batch(BatchRecord),
    /// The batch that last invalidated `path`, with its path that covers it (`path` itself, or a wildcard).
    Covering {
        path: String,
        covered_by: String,
        batch: BatchRecord,
    },
    DeadLetter(DeadLetterRecord),
    Key(KeyRecord),
}

pub async fn answer<L: Batches + DeadLetters + AuditLog>(
    ledger: &L,
    question: Question,
) -> Result<Vec<Row>, LedgerError> {
    match question {
        Question::Batches { distribution, since, limit } => {
            Ok(ledger.list(&distribution, since, limit).await?.into_iter().map(Row::Batch).collect())
        }
        Question::Invalidation(id) => {
            Ok(ledger.batch_by_invalidation(&id).await?.into_iter().map(Row::Batch).collect())
        }
        Question::CallerReference(reference) => {
            Ok(ledger.batch(&reference).await?.into_iter().map(Row::Batch).collect())
        }
        Question::Message { message, distribution, since } => {
            message_fate(ledger, &message, distribution.as_ref(), since).await
        }
        Question::IdempotencyKey { target, key, since } => {
            let Some(claim) = ledger.key_claim(&target, &key).await? else {
                return Ok(Vec::new());
            };
            let fate = message_fate(ledger, &claim.message_id, Some(&target.distribution), since).await?;
            Ok(std::iter::once(Row::Key(claim)).chain(fate).collect())
        }
        Question::Path { distribution, path, since } => {
            let found = ledger.latest_covering(&distribution, path.as_str(), since).await?;
            Ok(found.into_iter().filter_map(|batch| covering_row(path.as_str(), batch)).collect())
        }
        Question::Failures { distribution, since, limit } => {
            failures(ledger, distribution.as_ref(), since, limit).await
        }
    }
}

async fn message_fate<L: DeadLetters + AuditLog>(
    ledger: &L,
    message: &MessageId,
    distribution: Option<&DistributionId>,
    since: SystemTime,
) -> Result<Vec<Row>, LedgerError> {
    let mut rows: Vec<Row> =
        ledger.batches_with_message(message, distribution, since).await?.into_iter().map(Row::Batch).collect();
    rows.extend(ledger.dead_letter(message).await?.map(Row::DeadLetter));
    Ok(rows)
}

fn covering_row(path: &str, batch: BatchRecord) -> Option<Row> {
    let covered_by = covering(path, &batch.paths)?.to_owned();
    Some(Row::Covering { path: path.to_owned(), covered_by, batch })
}

async fn failures<L: AuditLog>(
    ledger: &L,
    distribution: Option<&DistributionId>,
    since: SystemTime,
    limit: usize,
) -> Result<Vec<Row>, LedgerError> {
    // Failures are rare: for one distribution, read them all and keep its own.
    let read = if distribution.is_some() { usize::MAX } else { limit };
    let of_distribution = |failure: &FailureRecord| match (distribution, failure) {
        (None, _) => true,
        (Some(wanted), FailureRecord::Batch(batch)) => &batch.distribution_id == wanted,
        (Some(wanted), FailureRecord::DeadLetter(dead)) => dead.distribution_id.as_ref() == Some(wanted),
    };
    Ok(ledger
        .failures(since, read)
        .await?
        .into_iter()
        .filter(of_distribution)
        .take(limit)
        .map(|failure| match failure {
            FailureRecord::Batch(batch) => Row::Batch(*batch),
            FailureRecord::DeadLetter(dead) => Row::DeadLetter(dead),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::fake::MemoryLedger;
    use crate::ports::cdn::Invalidation;
    use crate::ports::ledger::{KeyUse, Keys};

    fn distribution(id: &str) -> DistributionId {
        DistributionId::parse(id).unwrap()
    }

    /// An hour from now, in the whole seconds DynamoDB's TTL attribute keeps.
    fn in_an_hour() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3_600)
    }

    fn batch(of: &str, paths: &[&str], messages: &[&str], created_s: u64) -> BatchRecord {
        let created_at = UNIX_EPOCH + Duration::from_secs(1_800_000_000 + created_s);
        BatchRecord {
            requesters: vec!["ci".into()],
            shares: Vec::new(),
            expires_at: in_an_hour(),
            ..crate::fake::pending_record(distribution(of).as_str(), paths, messages, created_at)
        }
    }

    async fn store(ledger: &MemoryLedger, mut record: BatchRecord, outcome: Option<&str>) -> BatchRecord {
        ledger.record_intent(&record).await.unwrap();
        match outcome {
            Some(id) => record.accept(&Invalidation { id: id.into(), status: "InProgress".into() }, record.created_at),
            None => record.fail("NoSuchDistribution"),
        }
        ledger.record_outcome(&record).await.unwrap();
        record
    }

    fn dead_letter(message: &str, of: Option<&str>, created_s: u64) -> DeadLetterRecord {
        DeadLetterRecord {
            message_id: MessageId(message.into()),
            reason: "bad".into(),
            code: "invalid_path".into(),
            distribution_id: of.map(distribution),
            requester: None,
            created_at: UNIX_EPOCH + Duration::from_secs(1_800_000_000 + created_s),
            expires_at: in_an_hour(),
            outbox: false,
        }
    }

    #[tokio::test]
    async fn an_idempotency_key_leads_to_its_first_message_and_that_message_to_its_batch() {
        let ledger = MemoryLedger::default();
        let held = store(&ledger, batch("EAAA", &["/a"], &["m-1"], 10), Some("I1")).await;
        let now = SystemTime::now();
        let until = now + Duration::from_secs(60);
        let key_use = KeyUse {
            distribution_id: distribution("EAAA"),
            tenant_id: None,
            key: "deploy-7".into(),
            message_id: MessageId("m-1".into()),
            content: "digest".into(),
        };
        ledger.claim_key(&key_use, now, until).await.unwrap();

        let ask = |target: Target, key: &str| Question::IdempotencyKey { target, key: key.into(), since: UNIX_EPOCH };
        let rows = answer(&ledger, ask(distribution("EAAA").into(), "deploy-7")).await.unwrap();
        assert!(matches!(&rows[0], Row::Key(claim) if claim.message_id.0 == "m-1"), "{rows:?}");
        assert_eq!(rows[1..], [Row::Batch(held)]);
        assert_eq!(answer(&ledger, ask(distribution("EAAA").into(), "never")).await.unwrap(), []);
        assert_eq!(
            answer(&ledger, ask(distribution("EBBB").into(), "deploy-7")).await.unwrap(),
            [],
            "keys are per distribution"
        );
    }

    #[tokio::test]
    async fn a_tenants_idempotency_key_leads_to_its_first_message_and_that_messages_tenant_batch() {
        let ledger = MemoryLedger::default();
        let tenant = crate::model::TenantId::parse("dt_shop1").unwrap();
        let of_tenant = BatchRecord { tenant_id: Some(tenant.clone()), ..batch("EAAA", &["/a"], &["m-1"], 10) };
        let held = store(&ledger, of_tenant, Some("I1")).await;
        let now = SystemTime::now();
        let key_use = KeyUse {
            distribution_id: distribution("EAAA"),
            tenant_id: Some(tenant.clone()),
            key: "deploy-7".into(),
            message_id: MessageId("m-1".into()),
            content: "digest".into(),
        };
        ledger.claim_key(&key_use, now, now + Duration::from_secs(60)).await.unwrap();

        let ask = |target, key: &str| Question::IdempotencyKey { target, key: key.into(), since: UNIX_EPOCH };
        let rows = answer(&ledger, ask(Target::tenant(distribution("EAAA"), tenant.clone()), "deploy-7")).await;
        let rows = rows.unwrap();
        let claim_is_tenants =
            |row: &Row| matches!(row, Row::Key(c) if c.message_id.0 == "m-1" && c.tenant_id.as_ref() == Some(&tenant));
        assert!(claim_is_tenants(&rows[0]), "{rows:?}");
        assert_eq!(rows[1..], [Row::Batch(held)], "the tenant's batch holding the message");
        let whole = answer(&ledger, ask(distribution("EAAA").into(), "deploy-7")).await.unwrap();
        assert_eq!(whole, [], "the key is the tenant's, not the whole distribution's");
    }

    #[tokio::test]
    async fn a_message_s_fate_includes_its_dead_letter_record() {
        let ledger = MemoryLedger::default();
        let failed = store(&ledger, batch("EGONE", &["/a"], &["m-1"], 10), None).await;
        let dead = dead_letter("m-1", Some("EGONE"), 11);
        ledger.record_dead_letter(&dead).await.unwrap();

        let question = Question::Message { message: MessageId("m-1".into()), distribution: None, since: UNIX_EPOCH };
        assert_eq!(answer(&ledger, question).await.unwrap(), [Row::Batch(failed), Row::DeadLetter(dead)]);
    }

    #[tokio::test]
    async fn a_path_is_answered_with_the_batch_path_that_covers_it() {
        let ledger = MemoryLedger::default();
        let wildcard = store(&ledger, batch("EAAA", &["/img/*", "/x"], &["m-1"], 10), Some("I1")).await;
        let since = UNIX_EPOCH;
        let ask = |raw: &str| Question::Path {
            distribution: distribution("EAAA"),
            path: InvalidationPath::parse(raw).unwrap(),
            since,
        };

        let rows = answer(&ledger, ask("/img/a b.png")).await.unwrap();
        let expected =
            Row::Covering { path: "/img/a%20b.png".into(), covered_by: "/img/*".into(), batch: wildcard.clone() };
        assert_eq!(rows, [expected], "the path is encoded as the worker encodes it before it is looked up");
        let rows = answer(&ledger, ask("/x")).await.unwrap();
        assert!(matches!(&rows[..], [Row::Covering { covered_by, .. }] if covered_by == "/x"));
        assert_eq!(answer(&ledger, ask("/y")).await.unwrap(), []);
    }

    #[tokio::test]
    async fn failures_of_one_distribution_are_filtered_before_the_limit() {
        let ledger = MemoryLedger::default();
        let failed = store(&ledger, batch("EAAA", &["/a"], &["m-1"], 10), None).await;
        for n in 0..5 {
            ledger.record_dead_letter(&dead_letter(&format!("other-{n}"), Some("EBBB"), 20 + n)).await.unwrap();
        }
        ledger.record_dead_letter(&dead_letter("unknown", None, 30)).await.unwrap();

        let ask = |of: Option<&str>, limit| Question::Failures {
            distribution: of.map(distribution),
            since: UNIX_EPOCH,
            limit,
        };
        assert_eq!(answer(&ledger, ask(Some("EAAA"), 1)).await.unwrap(), [Row::Batch(failed)]);
        let all = answer(&ledger, ask(None, 3)).await.unwrap();
        assert!(matches!(&all[0], Row::DeadLetter(d) if d.message_id.0 == "unknown"), "newest first: {all:?}");
        assert_eq!(all.len(), 3);
    }
}
