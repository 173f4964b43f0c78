//! What the stages say about one message: its share of a batch, and what is to become of it.

use super::MessageId;
use crate::model::path::InvalidationPath;

/// A message's share of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchMember {
    pub message_id: MessageId,
    pub requester: Option<String>,
    /// The message's paths that went into this batch: what a split after `InvalidArgument` rebuilds from.
    pub paths: Vec<InvalidationPath>,
    /// How many batches carry paths of this message (usually 1).
    pub parts: u32,
}

/// What is to become of messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// An accepted invalidation covers these members' paths (for a split message: one of its parts).
    Covered(Vec<BatchMember>),
    /// Can never succeed: move to the dead-letter queue with the reason, then delete.
    /// `code` is a short name for the reason, for metrics.
    DeadLetter { message_ids: Vec<MessageId>, reason: String, code: &'static str },
    /// Cannot be done now: stop extending visibility so SQS delivers them again (and redrives them eventually).
    Release(Vec<MessageId>),
}
