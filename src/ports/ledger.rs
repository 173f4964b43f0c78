//! The ledger (DynamoDB): one record per batch, written before CloudFront is called.

use std::future::Future;
use std::time::SystemTime;

use thiserror::Error;

use super::cdn::Invalidation;
use crate::model::{CallerReference, DistributionId, MessageId};

/// Life cycle: `Pending` (intent written, CloudFront maybe not called yet) → `Accepted` (CloudFront returned an
/// invalidation id) or `Failed` (CloudFront refused the batch for good).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchStatus {
    Pending,
    Accepted,
    Failed,
}

impl BatchStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Pending, Self::Accepted, Self::Failed].into_iter().find(|status| status.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    pub caller_reference: CallerReference,
    pub distribution_id: DistributionId,
    pub paths: Vec<String>,
    pub message_ids: Vec<MessageId>,
    pub requesters: Vec<String>,
    /// Paths requested by the messages before merging; `paths.len()` of them were submitted.
    pub requested_paths: usize,
    pub seal_reason: String,
    pub created_at: SystemTime,
    pub status: BatchStatus,
    pub invalidation_id: Option<String>,
    pub cloudfront_status: Option<String>,
    pub submitted_at: Option<SystemTime>,
    pub failure: Option<String>,
    /// The worker that is submitting the batch, until `lease_until`; after that any worker may take it over.
    pub owner: String,
    pub lease_until: SystemTime,
    /// When the record may be deleted (DynamoDB TTL); readers ignore expired records.
    pub expires_at: SystemTime,
}

impl BatchRecord {
    /// What CloudFront's answer changes on the record.
    pub fn accept(&mut self, invalidation: &Invalidation, submitted_at: SystemTime) {
        self.status = BatchStatus::Accepted;
        self.invalidation_id = Some(invalidation.id.clone());
        self.cloudfront_status = Some(invalidation.status.clone());
        self.submitted_at = Some(submitted_at);
    }

    pub fn fail(&mut self, reason: &str) {
        self.status = BatchStatus::Failed;
        self.failure = Some(reason.to_owned());
    }
}

/// Result of claiming a producer's idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// First use of the key within its period (or a redelivery of the message that first used it).
    First,
    /// Another message used the key within its period.
    Duplicate { first_message_id: MessageId },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LedgerError {
    #[error("ledger table {0} does not exist: check --table (or run `cf-invalidator setup`)")]
    NotFound(String),
    #[error(
        "access to ledger table {table} was denied: {message}; the worker's role needs dynamodb:PutItem, dynamodb:UpdateItem and dynamodb:Query on it"
    )]
    AccessDenied { table: String, message: String },
    #[error("no AWS credentials: {0}; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run with a role")]
    Credentials(String),
    #[error("ledger unavailable, will retry: {0}")]
    Unavailable(String),
    #[error("ledger record {0} is missing or was changed by someone else")]
    Conflict(String),
    #[error("ledger request failed: {0}")]
    Other(String),
}

impl LedgerError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Contract:
/// - `record_intent` stores a new `Pending` record; storing the same CallerReference again (a retry after an
///   unknown outcome) succeeds without changing the stored record.
/// - `record_outcome` stores the `Accepted` or `Failed` fields of a record written by `record_intent`, and fails
///   with `Conflict` if there is no such record.
/// - `list` returns a distribution's unexpired records created at or after `since`, newest first, at most `limit`.
/// - `take_over` makes `owner` the owner of a `Pending` record whose lease ended before `now`, and says whether
///   it did; it never changes a record that is not pending or whose lease still runs.
/// - `claim_key` records that `message_id` used the producer key `key` until `expires_at`; it answers
///   `Duplicate` if another message holds an unexpired claim, and `First` otherwise (a repeated claim by the same
///   message included).
pub trait Ledger: Send + Sync + 'static {
    fn record_intent(&self, record: &BatchRecord) -> impl Future<Output = Result<(), LedgerError>> + Send;

    fn record_outcome(&self, record: &BatchRecord) -> impl Future<Output = Result<(), LedgerError>> + Send;

    fn list(
        &self,
        distribution: &DistributionId,
        since: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<BatchRecord>, LedgerError>> + Send;

    fn take_over(
        &self,
        caller_reference: &CallerReference,
        owner: &str,
        now: SystemTime,
        lease_until: SystemTime,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    fn claim_key(
        &self,
        key: &str,
        message_id: &MessageId,
        now: SystemTime,
        expires_at: SystemTime,
    ) -> impl Future<Output = Result<KeyClaim, LedgerError>> + Send;
}
