//! The message queue (SQS).

use std::future::Future;
use std::time::{Duration, SystemTime};

use thiserror::Error;

use crate::model::MessageId;
use crate::retry::Transient;

/// Most entries SQS takes in one ReceiveMessage, DeleteMessageBatch or ChangeMessageVisibilityBatch call.
pub const MAX_BATCH_ENTRIES: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: MessageId,
    /// Valid only for this delivery; a redelivery brings a new one.
    pub receipt_handle: String,
    pub body: String,
    pub sent_at: Option<SystemTime>,
    /// How many times the message has been received, this delivery included.
    pub receive_count: u32,
}

/// What a batch operation needs to address one delivery of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub message_id: MessageId,
    pub receipt_handle: String,
}

/// One entry of a batch call that SQS refused while the call as a whole succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEntryFailure {
    pub message_id: MessageId,
    pub code: String,
    pub message: String,
}

impl BatchEntryFailure {
    /// Whether asking again cannot help: the receipt handle is stale or the message is not in flight any more
    /// (deleted, or delivered to someone else), or the request itself is refused (12 hours of invisibility).
    /// Anything else is SQS's own failure on that entry, worth asking again.
    pub fn is_final(&self) -> bool {
        matches!(
            self.code.as_str(),
            "ReceiptHandleIsInvalid" | "InvalidReceiptHandle" | "MessageNotInflight" | "InvalidParameterValue"
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueueError {
    #[error("queue {0} does not exist: check --queue-url (or run `cf-invalidator setup`)")]
    NotFound(String),
    #[error(
        "access to queue {queue} was denied: {message}; the worker's role needs sqs:ReceiveMessage, sqs:DeleteMessage, sqs:ChangeMessageVisibility, sqs:GetQueueAttributes on it and sqs:SendMessage on its dead-letter queue"
    )]
    AccessDenied { queue: String, message: String },
    #[error("no AWS credentials: {0}; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run with a role")]
    Credentials(String),
    #[error("SQS request failed, will retry: {0}")]
    Transient(String),
    #[error("SQS request failed: {0}")]
    Other(String),
}

impl Transient for QueueError {
    fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// Contract:
/// - `receive` returns at most `max` (1..=10) messages, waiting up to `wait` for the first one; every returned
///   message stays invisible to other consumers for `visibility`, then comes back unless deleted or extended.
/// - `delete` and `extend_visibility` take at most 10 receipts with distinct message ids, and report per-entry
///   failures instead of failing the call; an empty slice is a no-op. Deleting with a stale receipt handle may
///   succeed without deleting the message (SQS semantics), so callers use the newest handle they hold.
/// - `send` enqueues one message with string attributes (used for the dead-letter queue and by producers).
pub trait Queue: Send + Sync + 'static {
    fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<ReceivedMessage>, QueueError>> + Send;

    fn delete(&self, receipts: &[Receipt]) -> impl Future<Output = Result<Vec<BatchEntryFailure>, QueueError>> + Send;

    fn extend_visibility(
        &self,
        receipts: &[Receipt],
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<BatchEntryFailure>, QueueError>> + Send;

    fn send(&self, body: &str, attributes: &[(&str, &str)]) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// A queue's message counts as SQS reports them (approximate, updated within about a minute).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Waiting to be received.
    pub visible: u64,
    /// Received and neither deleted nor visible again yet: what workers hold.
    pub in_flight: u64,
    /// Sent with a delay that has not passed yet.
    pub delayed: u64,
}

/// Reading a queue's depth, for operators: the worker never needs it.
///
/// Contract: `depth` counts the queue's messages without receiving any (a receive would hide them from workers).
/// SQS offers no age of the oldest message as a queue attribute (only the CloudWatch metric
/// `ApproximateAgeOfOldestMessage`), so none is given here.
pub trait QueueStats: Send + Sync + 'static {
    fn depth(&self) -> impl Future<Output = Result<QueueDepth, QueueError>> + Send;
}
