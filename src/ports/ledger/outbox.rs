//! The outbox: what is being tracked (accepted batches until their completion, and their events) and what is
//! still to be announced (failed batches, dead letters), for any worker to take up.

use std::future::Future;
use std::time::SystemTime;

use super::LedgerError;
use super::batches::Submitted;
use crate::model::{CallerReference, MessageId};
use crate::ports::events::EventKind;

/// What is in the outbox: a batch being tracked (and its events), a failed batch or a dead letter whose event is
/// still to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owed {
    Batch(Submitted),
    Failure { caller_reference: CallerReference, created_at: SystemTime },
    DeadLetter { message_id: MessageId, created_at: SystemTime },
}

/// A read of what is in progress: what it found, and where the next read goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InProgress {
    pub owed: Vec<Owed>,
    /// `None` when the read reached the end.
    pub next: Option<InProgressCursor>,
}

/// Where a read of what is in progress stopped: the sort key and the item key of the last item read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InProgressCursor {
    pub(crate) created_at: String,
    pub(crate) key: String,
}

impl Owed {
    /// What a log line names it by.
    pub fn subject(&self) -> String {
        match self {
            Self::Batch(submitted) => submitted.caller_reference.to_string(),
            Self::Failure { caller_reference, .. } => caller_reference.to_string(),
            Self::DeadLetter { message_id, .. } => message_id.to_string(),
        }
    }
}

/// Contract:
/// - `in_progress` returns, of every distribution and worker, at most `limit` of those created at or before
///   `created_before`, oldest first, going on `after` where an earlier read stopped (`InProgress::next`; `None`
///   once there is nothing more): accepted records not yet completed, completed ones whose events are still to
///   be published, and failed records and dead letters written with `outbox` whose event is not published yet.
///   An item it cannot read is skipped (and counted), never fatal.
/// - `give_up_tracking` takes one of them out of what `in_progress` returns for good, recording why
///   (`BatchRecord::tracking_abandoned`; a batch given up is among the `AuditLog::failures`).
/// - `mark_published` records that the batch's `kind` event was published; with `settled`, the record leaves
///   those `in_progress` returns. `mark_dead_letter_published` does so for a dead letter.
pub trait Outbox: Send + Sync + 'static {
    fn in_progress(
        &self,
        created_before: SystemTime,
        after: Option<&InProgressCursor>,
        limit: usize,
    ) -> impl Future<Output = Result<InProgress, LedgerError>> + Send;

    fn give_up_tracking(&self, owed: &Owed, reason: &str) -> impl Future<Output = Result<(), LedgerError>> + Send;

    fn mark_published(
        &self,
        caller_reference: &CallerReference,
        kind: EventKind,
        settled: bool,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    fn mark_dead_letter_published(&self, message: &MessageId) -> impl Future<Output = Result<(), LedgerError>> + Send;
}
