//! Reading the ledger back for operators (the `audit` command). The worker never calls these, so its role needs
//! no read permissions beyond `dynamodb:Query` on `by_distribution`.

use std::future::Future;
use std::time::{Duration, SystemTime};

use super::budget::BudgetState;
use super::ledger::{BatchRecord, BatchStatus, DeadLetterRecord, KeyRecord, LedgerError};
use crate::model::{CallerReference, DistributionId, MessageId, Target};

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

/// A batch as the status page lists it: its record without the path and message lists, which the status page
/// never shows and which would make its reads large.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSummary {
    pub caller_reference: CallerReference,
    pub distribution_id: DistributionId,
    pub created_at: SystemTime,
    pub status: BatchStatus,
    /// Paths and tags submitted (`paths.len()` of the record).
    pub path_count: usize,
    pub requesters: Vec<String>,
    pub invalidation_id: Option<String>,
    pub submitted_at: Option<SystemTime>,
    pub time_to_complete: Option<Duration>,
    pub owner: String,
    pub lease_until: SystemTime,
}

impl From<&BatchRecord> for BatchSummary {
    fn from(record: &BatchRecord) -> Self {
        Self {
            caller_reference: record.caller_reference.clone(),
            distribution_id: record.distribution_id.clone(),
            created_at: record.created_at,
            status: record.status,
            path_count: record.paths.len(),
            requesters: record.requesters.clone(),
            invalidation_id: record.invalidation_id.clone(),
            submitted_at: record.submitted_at,
            time_to_complete: record.time_to_complete,
            owner: record.owner.clone(),
            lease_until: record.lease_until,
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
/// - `key_claim` returns the claim of a producer key in a target: a distribution's keys and each tenant's are apart.
/// - `failures` returns failed batch records and dead-letter records created at or after `since`, newest first,
///   at most `limit`.
/// - `budgets` returns the budget (`BudgetStore::read_budget`'s answer, eventually consistent) of every
///   distribution that has one, in a few requests however many distributions there are.
/// - `pending_batches` returns `Pending` records, oldest first, at most `limit`; `recent_batches` returns records
///   with an outcome (accepted, completed or failed), newest first, at most `limit`. Both only of batches written
///   by this version or later, which mark them for these reads.
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
        target: &Target,
        key: &str,
    ) -> impl Future<Output = Result<Option<KeyRecord>, LedgerError>> + Send;

    fn failures(
        &self,
        since: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<FailureRecord>, LedgerError>> + Send;

    fn budgets(&self) -> impl Future<Output = Result<Vec<(DistributionId, BudgetState)>, LedgerError>> + Send;

    fn pending_batches(&self, limit: usize) -> impl Future<Output = Result<Vec<BatchSummary>, LedgerError>> + Send;

    fn recent_batches(&self, limit: usize) -> impl Future<Output = Result<Vec<BatchSummary>, LedgerError>> + Send;
}
