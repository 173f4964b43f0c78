//! Whether accepted invalidations cover a path: one answer for every stage that asks (a redelivered message, a batch
//! shaped for the monthly budget, `send --wait`), on one time base.
//!
//! An invalidation answers for a change only if CloudFront created it after the change, and a producer sends its
//! message after its change. So a batch's invalidation covers a path for a message when its paths cover the path
//! and it was created after the message was sent. The ledger knows two things that prove that:
//! - the message is one of the batch's: the batch was built from it, after SQS delivered it;
//! - the batch was sealed after the message was sent, by more than the clocks may disagree: the batch's
//!   CloudFront call, which created the invalidation, came after its seal (`created_at`, on the sealing worker's
//!   clock), and `sent_at` is SQS's `SentTimestamp`, on SQS's clock;
//! - for what a worker's own batch awaits (its messages were sent before it was sealed): the covering batch was
//!   sealed later by the same worker, on the same clock, or later by more than the clocks may disagree.
//!
//! Not `submitted_at`: it is taken once CloudFront has answered, so an invalidation created before a message was sent
//! can have been submitted after it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::MessageId;
use crate::model::path::is_covered_by;
use crate::ports::ledger::BatchRecord;

/// How far the workers' clocks and SQS's may disagree. AWS's hosts keep time to well within a millisecond
/// (Amazon Time Sync); a second covers a container whose clock drifted, at the cost of invalidating again what a
/// batch sealed less than a second after a message was sent covers anyway.
pub const CLOCK_SKEW: Duration = Duration::from_secs(1);

/// What a covering invalidation must have been created after.
#[derive(Debug, Clone, Copy)]
pub enum Since<'a> {
    /// A message, sent at `sent_at` by SQS's clock: a batch it belongs to counts whatever its times.
    Message { id: &'a MessageId, sent_at: SystemTime },
    /// A seal by worker `by`, on its clock: every message of that batch was sent before.
    Sealed { at: SystemTime, by: &'a str },
}

/// Whether `batch`'s invalidation was created after `since`, as far as the ledger can tell.
pub fn created_after(batch: &BatchRecord, since: Since) -> bool {
    match since {
        Since::Message { id, .. } if batch.message_ids.contains(id) => true,
        Since::Message { sent_at, .. } => sealed_after(batch, sent_at + CLOCK_SKEW),
        Since::Sealed { at, by } if batch.sealed_by == by => millis(batch.created_at) > millis(at),
        Since::Sealed { at, .. } => sealed_after(batch, at + CLOCK_SKEW),
    }
}

/// Compared in whole milliseconds: the ledger keeps times to the millisecond, and SQS's `SentTimestamp` is one.
fn sealed_after(batch: &BatchRecord, at: SystemTime) -> bool {
    millis(batch.created_at) >= millis(at)
}

fn millis(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
}

/// Whether `batch` covers `path` for what was changed before `since`: CloudFront accepted it, it was created after
/// `since`, and its paths cover `path`.
pub fn covers(batch: &BatchRecord, since: Since, path: &str) -> bool {
    batch.status.is_accepted() && created_after(batch, since) && is_covered_by(path, &batch.paths)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::fake::pending_record;
    use crate::ports::ledger::BatchStatus;

    const T0: Duration = Duration::from_secs(1_800_000_000);

    fn at(millis: u64) -> SystemTime {
        UNIX_EPOCH + T0 + Duration::from_millis(millis)
    }

    fn accepted(paths: &[&str], messages: &[&str], sealed_ms: u64) -> BatchRecord {
        BatchRecord { status: BatchStatus::Accepted, ..pending_record("EAAA", paths, messages, at(sealed_ms)) }
    }

    fn message(id: &MessageId, sent_ms: u64) -> Since<'_> {
        Since::Message { id, sent_at: at(sent_ms) }
    }

    #[test]
    fn a_batch_covers_its_own_messages_whatever_its_times() {
        let id = MessageId("m-1".into());
        let batch = accepted(&["/a"], &["m-1"], 1_000);
        assert!(covers(&batch, message(&id, 1_000), "/a"), "sealed in the millisecond it was sent");
        assert!(!covers(&batch, message(&id, 1_000), "/b"), "not a path of the batch");
        let pending = BatchRecord { status: BatchStatus::Pending, ..batch };
        assert!(!covers(&pending, message(&id, 0), "/a"), "not accepted");
    }

    #[test]
    fn another_messages_batch_covers_only_when_sealed_a_clock_skew_after_the_send() {
        let id = MessageId("m-2".into());
        let batch = accepted(&["/img/*"], &["m-1"], 10_000);
        assert!(covers(&batch, message(&id, 9_000), "/img/a.png"));
        assert!(!covers(&batch, message(&id, 9_001), "/img/a.png"), "within the clocks' disagreement");
        assert!(!covers(&batch, message(&id, 11_000), "/img/a.png"), "sealed before the message was sent");
    }

    #[test]
    fn a_batch_being_shaped_is_covered_only_by_batches_sealed_after_it() {
        let later = BatchRecord { sealed_by: "w2".into(), ..accepted(&["/a"], &["m-9"], 5_000) };
        let by_w1 = |at| Since::Sealed { at, by: "w1" };
        assert!(covers(&later, by_w1(at(4_000)), "/a"), "another worker's, a skew later");
        assert!(!covers(&later, by_w1(at(4_500)), "/a"), "another worker's, within the skew");
        let own = BatchRecord { sealed_by: "w1".into(), ..later.clone() };
        assert!(covers(&own, by_w1(at(4_999)), "/a"), "the same worker's clock, a millisecond later");
        assert!(!covers(&own, by_w1(at(5_000)), "/a"), "sealed in the same millisecond: not provably later");
        // The old check compared `submitted_at`, taken after CloudFront answered: an invalidation created before
        // the batch's messages were sent can have been submitted after the batch was sealed.
        let submitted_late = BatchRecord { submitted_at: Some(at(9_000)), ..accepted(&["/a"], &["m-9"], 3_500) };
        assert!(!covers(&submitted_late, by_w1(at(4_000)), "/a"));
    }

    proptest! {
        /// Whatever the times, a batch counts for a message it does not hold only if it was sealed at least a clock
        /// skew after the message was sent.
        #[test]
        fn never_covers_what_was_sent_after_the_seal_less_the_skew(sealed in 0u64..100_000, sent in 0u64..100_000) {
            let id = MessageId("m-2".into());
            let batch = accepted(&["/*"], &["m-1"], sealed);
            let covered = covers(&batch, message(&id, sent), "/x");
            prop_assert_eq!(covered, sealed >= sent + CLOCK_SKEW.as_millis() as u64);
        }
    }
}
