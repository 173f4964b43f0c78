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
    /// How many batches carry paths of this message (usually 1), as the batcher spread it.
    pub parts: u32,
    /// How often this part was cut in two since (`split_paths`): it is `1 / (parts × 2^halvings)` of the message.
    pub halvings: u32,
    /// Sent with `"priority": "urgent"`: its latency is measured apart.
    pub urgent: bool,
    /// The producer's key, named in the batch's events.
    pub idempotency_key: Option<String>,
    /// Someone waits for the message's completion (`send --wait`).
    pub awaited: bool,
    /// When SQS says the message was sent, if it said.
    pub sent_at: Option<std::time::SystemTime>,
}

/// A message's share in units of `1 / (parts × SHARE_UNITS)`: what its parts add up to once all are accepted.
pub const SHARE_UNITS: u64 = 1 << MAX_HALVINGS;
/// A message holds at most 3,000 paths per distribution, so a dozen halvings isolate any one of them.
pub const MAX_HALVINGS: u32 = 32;

impl BatchMember {
    /// The whole of a message nothing else is known of (no requester, key, priority or send time), asking for `paths`.
    pub fn whole_of(delivery: Delivery, paths: Vec<InvalidationPath>) -> Self {
        Self {
            delivery,
            requester: None,
            paths,
            parts: 1,
            halvings: 0,
            urgent: false,
            idempotency_key: None,
            awaited: false,
            sent_at: None,
        }
    }

    /// Whether this member is the whole message.
    pub fn is_whole(&self) -> bool {
        self.parts <= 1 && self.halvings == 0
    }

    /// This part's share of the message, in `SHARE_UNITS` of one of the batcher's parts.
    pub fn share(&self) -> u64 {
        SHARE_UNITS >> self.halvings.min(MAX_HALVINGS)
    }

    /// The whole message, in the same units.
    pub fn whole(&self) -> u64 {
        u64::from(self.parts.max(1)) * SHARE_UNITS
    }

    /// This part cut in two by its paths: those `first` keeps, and the others; `None` when either would be
    /// empty, or the part cannot be halved again. The halves add up to the part, so the message is deleted only
    /// once both are accepted.
    pub fn split_paths(&self, first: impl Fn(usize, &InvalidationPath) -> bool) -> Option<(Self, Self)> {
        if self.halvings >= MAX_HALVINGS {
            return None;
        }
        let (mut kept, mut rest) = (Vec::new(), Vec::new());
        for (at, path) in self.paths.iter().enumerate() {
            if first(at, path) { kept.push(path.clone()) } else { rest.push(path.clone()) }
        }
        if kept.is_empty() || rest.is_empty() {
            return None;
        }
        let half = |paths| Self { paths, halvings: self.halvings + 1, ..self.clone() };
        Some((half(kept), half(rest)))
    }
}

/// What is to become of messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Nothing is left to do for these members' paths (for a split message: one of its parts): an accepted
    /// invalidation covers them, or one already did, or they needed none. Deleted once every part is.
    Delete(Vec<BatchMember>),
    /// Can never succeed: move to the dead-letter queue with the reason, then delete.
    /// `code` is a short name for the reason, for metrics.
    DeadLetter { deliveries: Vec<Delivery>, reason: String, code: &'static str },
    /// Batch them afresh: stop extending visibility so SQS delivers them again.
    Release(Vec<Delivery>),
}
