//! `send --wait`: whether what a producer sent has been invalidated and CloudFront has completed it, read from the
//! ledger (the worker writes every batch there with the ids of the messages it covers).

use std::time::SystemTime;

use crate::model::path::is_covered_by;
use crate::model::{DistributionId, MessageId};
use crate::ports::ledger::{BatchRecord, BatchStatus, Batches, DeadLetterRecord, DeadLetters, LedgerError};

/// Most batches of the distribution read per look: a deploy's messages are batched within minutes.
const BATCHES_PER_LOOK: usize = 1_000;

/// A message `send` put on the queue, and what it asked for as the worker encodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub message_id: MessageId,
    pub paths: Vec<String>,
}

/// Where the sent messages stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Every path is covered by invalidations CloudFront reports completed.
    Completed,
    /// Not yet: this many messages are covered by accepted invalidations, this many of those completed.
    Waiting { accepted: usize, completed: usize },
    /// The worker refused a message for good.
    DeadLettered { message_id: MessageId, reason: String },
}

/// A look at the ledger: the standing, and the batches that hold the sent messages, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Look {
    pub standing: Standing,
    pub batches: Vec<BatchRecord>,
}

/// Reads the distribution's batches since `since`, and the dead-letter record of each message no accepted batch
/// covers yet.
pub async fn look<L: Batches + DeadLetters>(
    ledger: &L,
    distribution: &DistributionId,
    sent: &[SentMessage],
    since: SystemTime,
) -> Result<Look, LedgerError> {
    let mut batches = ledger.list(distribution, since, BATCHES_PER_LOOK).await?;
    batches.retain(|batch| sent.iter().any(|m| batch.message_ids.contains(&m.message_id)));
    batches.reverse();
    let mut dead_letters = Vec::new();
    for message in sent.iter().filter(|m| !covered(m, &batches, BatchStatus::is_accepted)) {
        dead_letters.extend(ledger.dead_letter(&message.message_id).await?);
    }
    Ok(Look { standing: standing(sent, &batches, &dead_letters), batches })
}

/// What the batches and dead letters say about the sent messages. No I/O.
pub fn standing(sent: &[SentMessage], batches: &[BatchRecord], dead_letters: &[DeadLetterRecord]) -> Standing {
    if let Some(dead) = sent.iter().find_map(|m| dead_letters.iter().find(|d| d.message_id == m.message_id)) {
        return Standing::DeadLettered { message_id: dead.message_id.clone(), reason: dead.reason.clone() };
    }
    let completed = sent.iter().filter(|m| covered(m, batches, |s| s == BatchStatus::Completed)).count();
    if completed == sent.len() {
        return Standing::Completed;
    }
    let accepted = sent.iter().filter(|m| covered(m, batches, BatchStatus::is_accepted)).count();
    Standing::Waiting { accepted, completed }
}

/// Whether batches holding the message, in a status `counts`, together cover all its paths.
fn covered(message: &SentMessage, batches: &[BatchRecord], counts: impl Fn(BatchStatus) -> bool) -> bool {
    let paths: Vec<String> = batches
        .iter()
        .filter(|b| counts(b.status) && b.message_ids.contains(&message.message_id))
        .flat_map(|b| b.paths.iter().cloned())
        .collect();
    message.paths.iter().all(|path| is_covered_by(path, &paths))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::pending_record;

    fn sent(id: &str, paths: &[&str]) -> SentMessage {
        SentMessage { message_id: MessageId(id.into()), paths: paths.iter().map(|p| (*p).to_owned()).collect() }
    }

    fn batch(status: BatchStatus, paths: &[&str], messages: &[&str]) -> BatchRecord {
        BatchRecord { status, ..pending_record("EAAA", paths, messages, SystemTime::UNIX_EPOCH) }
    }

    #[test]
    fn completed_only_when_completed_batches_cover_every_path_of_every_message() {
        let messages = [sent("m1", &["/a", "/img/x.png"]), sent("m2", &["/b"])];
        let partly =
            [batch(BatchStatus::Completed, &["/a", "/img/*"], &["m1"]), batch(BatchStatus::Accepted, &["/b"], &["m2"])];
        assert_eq!(standing(&messages, &partly, &[]), Standing::Waiting { accepted: 2, completed: 1 });
        let all = [partly[0].clone(), batch(BatchStatus::Completed, &["/b"], &["m2"])];
        assert_eq!(standing(&messages, &all, &[]), Standing::Completed);
    }

    #[test]
    fn a_batch_of_other_messages_does_not_count() {
        let messages = [sent("m1", &["/a"])];
        let others = [batch(BatchStatus::Completed, &["/a"], &["someone-else"])];
        assert_eq!(standing(&messages, &others, &[]), Standing::Waiting { accepted: 0, completed: 0 });
    }

    #[test]
    fn a_message_split_over_batches_is_covered_by_them_together() {
        let messages = [sent("m1", &["/a", "/b"])];
        let halves = [
            batch(BatchStatus::Completed, &["/a"], &["m1"]),
            batch(BatchStatus::Failed, &["/b"], &["m1"]),
            batch(BatchStatus::Completed, &["/b"], &["m1"]),
        ];
        assert_eq!(standing(&messages, &halves, &[]), Standing::Completed, "a failed half retried counts once done");
    }

    #[test]
    fn a_dead_letter_ends_the_wait_with_its_reason() {
        let messages = [sent("m1", &["/a"]), sent("m2", &["bad"])];
        let dead = DeadLetterRecord {
            message_id: MessageId("m2".into()),
            reason: "path #0 \"bad\" is invalid".into(),
            code: "invalid_path".into(),
            distribution_id: None,
            requester: None,
            created_at: SystemTime::UNIX_EPOCH,
            expires_at: SystemTime::UNIX_EPOCH,
            outbox: false,
        };
        let expected = Standing::DeadLettered { message_id: MessageId("m2".into()), reason: dead.reason.clone() };
        assert_eq!(standing(&messages, &[], &[dead]), expected);
    }
}
