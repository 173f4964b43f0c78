//! Dead letters: a record of each message the worker moved to the dead-letter queue, with why.

use std::future::Future;
use std::time::SystemTime;

use super::LedgerError;
use crate::model::{DistributionId, MessageId};

/// A message the worker moved to the dead-letter queue: item `dlq#<message_id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord {
    pub message_id: MessageId,
    /// The `reason` attribute the message carries on the dead-letter queue.
    pub reason: String,
    /// A short, stable name for the reason (the metrics label), e.g. `malformed` or `NoSuchDistribution`.
    pub code: String,
    /// The distribution the body asked for, when it names a valid one.
    pub distribution_id: Option<DistributionId>,
    /// The body's `requester`, when it has one.
    pub requester: Option<String>,
    pub created_at: SystemTime,
    pub expires_at: SystemTime,
    /// Its event is to be published: the record stays among those `in_progress` returns until it is.
    pub outbox: bool,
}

/// Contract: `record_dead_letter` stores the record of a dead-lettered message, replacing an earlier one for the
/// same message id (a message can be dead-lettered twice if its delete failed); `dead_letter` returns it.
pub trait DeadLetters: Send + Sync + 'static {
    fn record_dead_letter(&self, record: &DeadLetterRecord) -> impl Future<Output = Result<(), LedgerError>> + Send;

    fn dead_letter(
        &self,
        message: &MessageId,
    ) -> impl Future<Output = Result<Option<DeadLetterRecord>, LedgerError>> + Send;
}
