//! What the stages say about one message: its share of a batch, and what is to become of it.

use std::fmt;

use super::MessageId;
use crate::model::path::InvalidationPath;

/// One delivery of a message to this worker. SQS hands a message over again when its visibility lapses; once the
/// worker has let go of the old delivery, whatever is still under way about it (a late acceptance of one of its
/// parts, a release) must not act on the new one. `number` tells them apart: the held-message registry numbers
/// each delivery it admits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Delivery {
    pub message_id: MessageId,
    pub number: u64,
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.message_id.fmt(f)
    }
}

/// A message's share of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchMember {
    pub delivery: Delivery,
    pub requester: Option<String>,
    /// The message's paths that went into this batch: what a split after `InvalidArgument` rebuilds from.
    pub paths: Vec<InvalidationPath>,
    /// How many batches carry paths of this message (usually 1).
    pub parts: u32,
    /// Sent with `"priority": "urgent"`: its latency is measured apart.
    pub urgent: bool,
    /// The producer's key, named in the batch's events.
    pub idempotency_key: Option<String>,
    /// Someone waits for the message's completion (`send --wait`).
    pub awaited: bool,
    /// When SQS says the message was sent, if it said.
    pub sent_at: Option<std::time::SystemTime>,
}

/// What is to become of messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// An accepted invalidation covers these members' paths (for a split message: one of its parts).
    Covered(Vec<BatchMember>),
    /// Can never succeed: move to the dead-letter queue with the reason, then delete.
    /// `code` is a short name for the reason, for metrics.
    DeadLetter { deliveries: Vec<Delivery>, reason: String, code: &'static str },
    /// Batch them afresh: stop extending visibility so SQS delivers them again.
    Release(Vec<Delivery>),
}
