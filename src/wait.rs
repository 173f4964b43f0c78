//! `send --wait`: whether what a producer sent has been invalidated and CloudFront has completed it, read from the
//! ledger with the predicate every stage uses (`coverage`): a message is answered for, path by path, by accepted
//! batches that hold it or were created after it was sent. So a message the worker deleted without a batch of its
//! own (covered by others, or past a batch's capped id list) is answered for too, and one deleted as a duplicate of
//! its idempotency key is answered for by the batches of the message that holds the key.
//!
//! Each look reads a bounded amount: the batches found answering, by key, until they complete; and while some
//! message is not yet answered for by accepted batches, every `LIST_EVERY`, the newest `BATCHES_PER_LOOK` batches of
//! the distribution since the oldest such message was sent and at most `POINT_READS_PER_LOOK` dead letters and key
//! claims.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::coverage::{Since, covers};
use crate::model::{CallerReference, MessageId, Target};
use crate::ports::audit::AuditLog;
use crate::ports::ledger::{
    BatchRecord, BatchStatus, Batches, DeadLetterRecord, DeadLetters, EdgeOutcome, LedgerError, VerificationRecord,
};

/// How often `send --wait` looks: the worker looks at an awaited invalidation every second, so the wait returns
/// within about 1.5 s of a completion (benches/wait_return.rs); a look reads the open answering batches by key.
pub const POLL: Duration = Duration::from_millis(500);

/// How often a look also lists the distribution's batches, while some message is not answered for yet.
const LIST_EVERY: Duration = Duration::from_secs(2);

/// Most batches of the distribution one look lists: the batches of a deploy are created within minutes of it.
const BATCHES_PER_LOOK: usize = 200;

/// Most dead letters and key claims one look reads, taking the unanswered messages in turn.
const POINT_READS_PER_LOOK: usize = 20;

/// Batches are listed from this long before a send: the worker's clock may be behind this one, and a batch that
/// holds the message answers for it whatever its time.
const LISTING_MARGIN: Duration = Duration::from_secs(60);

/// A message `send` put on the queue: what it asked for as the worker encodes it, when (on this machine's clock,
/// read once SQS had answered) and under which idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub message_id: MessageId,
    pub paths: Vec<String>,
    pub sent_at: SystemTime,
    pub idempotency_key: Option<String>,
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
    /// `--verify`: every message is completed; the checks at the edge are not over yet.
    Verifying,
    /// `--verify`: a completed batch's check at the edge ended without showing the new objects (stale after the
    /// second invalidation, or no answer that could tell).
    Unproven { caller_reference: CallerReference, outcome: EdgeOutcome, stale_paths: Vec<String> },
}

/// A look at the ledger: the standing, and the batches that answer for the sent messages, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Look {
    pub standing: Standing,
    pub batches: Vec<BatchRecord>,
}

/// A sent message and whose batches answer for it.
#[derive(Debug, Clone)]
struct Awaited {
    sent: SentMessage,
    /// Itself, or the message holding its idempotency key, whose batches answer for it instead.
    answering: MessageId,
    /// When `answering` was known to be sent by: `sent_at`, or when the key was claimed.
    since: SystemTime,
}

impl Awaited {
    fn since(&self) -> Since<'_> {
        Since::Message { id: &self.answering, sent_at: self.since }
    }

    fn answered(&self, batches: &BTreeMap<CallerReference, BatchRecord>, counts: fn(BatchStatus) -> bool) -> bool {
        self.sent.paths.iter().all(|path| batches.values().any(|b| counts(b.status) && covers(b, self.since(), path)))
    }

    fn answered_by(&self, batch: &BatchRecord) -> bool {
        self.sent.paths.iter().any(|path| covers(batch, self.since(), path))
    }
}

/// The state of one `send --wait` between looks.
#[derive(Debug)]
pub struct Wait {
    /// The distribution, or the tenant, the messages were sent to: its batches are the distribution's, its
    /// idempotency keys its own.
    target: Target,
    messages: Vec<Awaited>,
    /// The batches found answering for some message, as last read.
    answering: BTreeMap<CallerReference, BatchRecord>,
    dead_letter: Option<DeadLetterRecord>,
    /// Where the next look's point reads start among the unanswered messages.
    turn: usize,
    listed_at: Option<SystemTime>,
    /// `--verify`: completed is not enough, the batches' checks at the edge must have shown the new objects.
    verify: bool,
}

impl Wait {
    pub fn new(target: impl Into<Target>, sent: Vec<SentMessage>) -> Self {
        let messages = sent
            .into_iter()
            .map(|sent| Awaited { answering: sent.message_id.clone(), since: sent.sent_at, sent })
            .collect();
        Self {
            target: target.into(),
            messages,
            answering: BTreeMap::new(),
            dead_letter: None,
            turn: 0,
            listed_at: None,
            verify: false,
        }
    }

    /// Waits for the worker's check at the edge (`--verify-edge`) of the completed batches, too.
    pub fn verifying(self) -> Self {
        Self { verify: true, ..self }
    }

    /// Nothing more will change in the batch that the wait reads.
    fn settled(&self, batch: &BatchRecord) -> bool {
        let checked = |b: &BatchRecord| b.verification.as_ref().is_some_and(|v| v.outcome.is_final());
        batch.status == BatchStatus::Completed && (!self.verify || checked(batch))
    }

    /// Reads what changed since the last look and says where the messages stand.
    pub async fn look<L: Batches + DeadLetters + AuditLog>(
        &mut self,
        ledger: &L,
        now: SystemTime,
    ) -> Result<Look, LedgerError> {
        self.reread_answering(ledger).await?;
        let unanswered = self.unanswered();
        let list_due = self.listed_at.is_none_or(|at| now >= at + LIST_EVERY);
        if let Some(since) = unanswered.iter().map(|&i| self.messages[i].since).min().filter(|_| list_due) {
            self.listed_at = Some(now);
            let listed = ledger.list(&self.target.distribution, since - LISTING_MARGIN, BATCHES_PER_LOOK).await?;
            self.keep_answering(listed);
            self.point_reads(ledger, now).await?;
        }
        Ok(self.summary())
    }

    /// The batches found answering that have not completed, read again by key: they are what the wait is for.
    async fn reread_answering<L: Batches>(&mut self, ledger: &L) -> Result<(), LedgerError> {
        let open: Vec<CallerReference> =
            self.answering.values().filter(|b| !self.settled(b)).map(|b| b.caller_reference.clone()).collect();
        for caller_reference in open {
            match ledger.batch(&caller_reference).await? {
                Some(record) => self.answering.insert(caller_reference, record),
                None => self.answering.remove(&caller_reference),
            };
        }
        Ok(())
    }

    fn keep_answering(&mut self, listed: Vec<BatchRecord>) {
        for record in listed {
            if self.messages.iter().any(|m| m.answered_by(&record)) {
                self.answering.insert(record.caller_reference.clone(), record);
            }
        }
    }

    /// Messages not yet answered for by accepted batches, by index.
    fn unanswered(&self) -> Vec<usize> {
        (0..self.messages.len())
            .filter(|&i| !self.messages[i].answered(&self.answering, BatchStatus::is_accepted))
            .collect()
    }

    /// Dead letters and key claims of the unanswered messages, a bounded number per look, in turn.
    async fn point_reads<L: DeadLetters + AuditLog>(&mut self, ledger: &L, now: SystemTime) -> Result<(), LedgerError> {
        let unanswered = self.unanswered();
        if unanswered.is_empty() {
            return Ok(());
        }
        let mut reads = 0;
        for n in 0..unanswered.len() {
            if reads >= POINT_READS_PER_LOOK {
                break;
            }
            let index = unanswered[(self.turn + n) % unanswered.len()];
            let message_id = self.messages[index].sent.message_id.clone();
            reads += 1;
            if let Some(dead) = ledger.dead_letter(&message_id).await? {
                self.dead_letter = Some(dead);
                return Ok(());
            }
            if let Some(key) = self.messages[index].sent.idempotency_key.clone() {
                reads += 1;
                self.follow_key(index, ledger.key_claim(&self.target, &key).await?, now);
            }
        }
        self.turn = self.turn.wrapping_add(POINT_READS_PER_LOOK);
        Ok(())
    }

    /// A message whose key another message holds is deleted by the worker as that message's duplicate: the
    /// holder's batches answer for it, and they may have been created before this message was sent.
    fn follow_key(&mut self, index: usize, claim: Option<crate::ports::ledger::KeyRecord>, now: SystemTime) {
        let awaited = &mut self.messages[index];
        match claim.filter(|c| c.expires_at > now && c.message_id != awaited.sent.message_id) {
            Some(claim) => {
                awaited.answering = claim.message_id;
                awaited.since = claim.created_at;
            }
            None => {
                awaited.answering = awaited.sent.message_id.clone();
                awaited.since = awaited.sent.sent_at;
            }
        }
    }

    fn summary(&self) -> Look {
        let mut batches: Vec<BatchRecord> = self.answering.values().cloned().collect();
        batches.sort_by_key(|b| b.created_at);
        let standing = match &self.dead_letter {
            Some(dead) => Standing::DeadLettered { message_id: dead.message_id.clone(), reason: dead.reason.clone() },
            None if self.verify => verified(standing(&self.messages, &self.answering), &self.answering),
            None => standing(&self.messages, &self.answering),
        };
        Look { standing, batches }
    }
}

/// What the answering batches say about the sent messages. No I/O.
fn standing(messages: &[Awaited], batches: &BTreeMap<CallerReference, BatchRecord>) -> Standing {
    let completed = messages.iter().filter(|m| m.answered(batches, |s| s == BatchStatus::Completed)).count();
    if completed == messages.len() {
        return Standing::Completed;
    }
    let accepted = messages.iter().filter(|m| m.answered(batches, BatchStatus::is_accepted)).count();
    Standing::Waiting { accepted, completed }
}

/// With `--verify`: completed once every completed batch's check at the edge showed the new objects; unproven as
/// soon as one ended without. No I/O.
fn verified(completed: Standing, batches: &BTreeMap<CallerReference, BatchRecord>) -> Standing {
    if completed != Standing::Completed {
        return completed;
    }
    let checks: Vec<(&BatchRecord, Option<&VerificationRecord>)> = batches
        .values()
        .filter(|b| b.status == BatchStatus::Completed)
        .map(|b| (b, b.verification.as_ref().filter(|v| v.outcome.is_final())))
        .collect();
    for (batch, check) in &checks {
        if let Some(check) = check.filter(|v| !v.outcome.is_proven()) {
            return Standing::Unproven {
                caller_reference: batch.caller_reference.clone(),
                outcome: check.outcome,
                stale_paths: check.stale_paths.clone(),
            };
        }
    }
    if checks.iter().all(|(_, check)| check.is_some()) { Standing::Completed } else { Standing::Verifying }
}

#[cfg(test)]
mod tests;
