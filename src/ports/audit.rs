//! Reading the ledger back for operators (the `audit` command). The worker never calls these, so its role needs
//! no read permissions beyond `dynamodb:Query` on `by_distribution`.

use std::future::Future;
use std::time::SystemTime;

use super::ledger::{BatchRecord, DeadLetterRecord, KeyRecord, LedgerError};
use crate::model::{DistributionId, MessageId};

/// Something that went wrong: a batch CloudFront refused, or a message moved to the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureRecord {
    Batch(Box<BatchRecord>),
    DeadLetter(DeadLetterRecord),
}

impl FailureRecord {
    pub fn created_at(&self) -> SystemTime {
        match self {
            Self::Batch(record) => record.created_at,
            Self::DeadLetter(record) => record.created_at,
        }
    }
}

/// Contract (every answer leaves out expired items, as `Ledger::list` does):
/// - `batch_by_invalidation` returns the record CloudFront's invalidation `id` belongs to (only accepted and
///   completed records have one).
/// - `batches_with_message` returns the records created at or after `since` whose `message_ids` hold `message`,
///   newest first: of `distribution` only when given (a query), otherwise of the whole table (a scan).
/// - `latest_covering` returns the newest accepted or completed record of `distribution` created at or after
///   `since` whose paths cover `path` (the path itself, or a wildcard prefix of it).
/// - `key_claim` returns the claim of a producer key in a distribution.
/// - `failures` returns failed batch records and dead-letter records created at or after `since`, newest first,
///   at most `limit`.
pub trait AuditLog: Send + Sync + 'static {
    fn batch_by_invalidation(&self, id: &str) -> impl Future<Output = Result<Option<BatchRecord>, LedgerError>> + Send;

    fn batches_with_message(
        &self,
        message: &MessageId,
        distribution: Option<&DistributionId>,
        since: SystemTime,
    ) -> impl Future<Output = Result<Vec<BatchRecord>, LedgerError>> + Send;

    fn latest_covering(
        &self,
        distribution: &DistributionId,
        path: &str,
        since: SystemTime,
    ) -> impl Future<Output = Result<Option<BatchRecord>, LedgerError>> + Send;

    fn key_claim(
        &self,
        distribution: &DistributionId,
        key: &str,
    ) -> impl Future<Output = Result<Option<KeyRecord>, LedgerError>> + Send;

    fn failures(
        &self,
        since: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<FailureRecord>, LedgerError>> + Send;
}
