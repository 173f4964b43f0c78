//! Acknowledgement: deleting covered messages, dead-lettering refused ones (and recording that in the ledger), and
//! keeping held messages invisible.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::ExponentialBuilder;
use metrics::{counter, histogram};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{error, warn};

use crate::clock::WallClock;
use crate::held::{InFlight, Released};
use crate::intake::parse::BodyHints;
use crate::model::MessageId;
use crate::model::message::{BatchMember, Delivery, Disposition};
use crate::model::text::capped;
use crate::ports::ledger::{DeadLetterRecord, DeadLetters, Owed};
use crate::ports::queue::{MAX_BATCH_ENTRIES, Queue, Receipt};
use crate::retry::{Transient, retry_transient};
use crate::telemetry::log_allowed;

/// Name of the message attribute that carries the reason on the dead-letter queue.
pub const REASON_ATTRIBUTE: &str = "reason";
/// Name of the message attribute that names the source message on the dead-letter queue.
pub const SOURCE_MESSAGE_ATTRIBUTE: &str = "source_message_id";

/// Where the acknowledger records dead-lettered messages (items `dlq#<message_id>`), and for how long.
pub struct DeadLetterLog<L> {
    pub ledger: Arc<L>,
    pub retention: Duration,
    pub clock: WallClock,
    /// With events on: each recorded dead letter goes in the ledger's outbox and to the tracker to publish.
    pub announce: Option<mpsc::Sender<Owed>>,
}

/// Applies dispositions, one at a time, until every sender is gone.
pub struct Acknowledger<Q: Queue, L: DeadLetters> {
    pub queue: Arc<Q>,
    pub dead_letter: Option<Arc<Q>>,
    pub inflight: Arc<InFlight>,
    /// What is still unaccepted of each message split over several batches, in `BatchMember::share` units.
    pub outstanding_parts: HashMap<Delivery, u64>,
    /// Backoff for delete and visibility calls.
    pub retry: ExponentialBuilder,
    pub log: DeadLetterLog<L>,
    /// Dead-letter records being written: off the acknowledgement path, so a slow ledger delays no delete.
    records: JoinSet<()>,
    /// Messages to delete, not deleted yet: deletes go out in full batches of 10 while dispositions keep coming,
    /// and at once when none is waiting, so a busy worker spends one DeleteMessageBatch per 10 messages.
    to_delete: Vec<Receipt>,
}

impl<Q: Queue, L: DeadLetters> Acknowledger<Q, L> {
    pub fn new(
        queue: Arc<Q>,
        dead_letter: Option<Arc<Q>>,
        inflight: Arc<InFlight>,
        retry: ExponentialBuilder,
        log: DeadLetterLog<L>,
    ) -> Self {
        Self {
            queue,
            dead_letter,
            inflight,
            outstanding_parts: HashMap::new(),
            retry,
            log,
            records: JoinSet::new(),
            to_delete: Vec::new(),
        }
    }

    pub async fn run(mut self, mut dispositions: mpsc::Receiver<Disposition>) {
        while let Some(disposition) = dispositions.recv().await {
            self.apply(disposition).await;
            let full = self.to_delete.len() - self.to_delete.len() % MAX_BATCH_ENTRIES;
            let ready: Vec<Receipt> = if dispositions.is_empty() {
                std::mem::take(&mut self.to_delete)
            } else {
                self.to_delete.drain(..full).collect()
            };
            self.delete(ready).await;
            while self.records.try_join_next().is_some() {}
        }
        let rest = std::mem::take(&mut self.to_delete);
        self.delete(rest).await;
        while self.records.join_next().await.is_some() {}
    }

    async fn apply(&mut self, disposition: Disposition) {
        match disposition {
            Disposition::Delete(members) => {
                let urgent: Vec<MessageId> =
                    members.iter().filter(|m| m.urgent).map(|m| m.delivery.message_id.clone()).collect();
                let complete = self.complete_messages(members);
                let released = self.inflight.release(complete);
                let now = SystemTime::now();
                for message in &released {
                    let Some(sent_at) = message.sent_at else { continue };
                    let waited = now.duration_since(sent_at).unwrap_or_default();
                    let priority = if urgent.contains(&message.receipt.message_id) { "urgent" } else { "normal" };
                    histogram!("cfi_enqueue_to_accepted_seconds", "priority" => priority).record(waited.as_secs_f64());
                }
                self.to_delete.extend(released.into_iter().map(|r| r.receipt));
            }
            Disposition::DeadLetter { deliveries, reason, code } => {
                let released = self.let_go(deliveries);
                self.dead_letter(released, &reason, code).await;
            }
            Disposition::Release(deliveries) => {
                let released = self.let_go(deliveries);
                counter!("cfi_messages_released_total").increment(released.len() as u64);
            }
        }
    }

    /// Stops holding messages whose fate is decided otherwise than by acceptance.
    fn let_go(&mut self, deliveries: Vec<Delivery>) -> Vec<Released> {
        for id in &deliveries {
            self.outstanding_parts.remove(id);
        }
        self.inflight.release(deliveries)
    }

    /// The members whose last outstanding part this was. Members no longer held (another part was refused, or
    /// the message was given up) are skipped, so their part counts do not linger.
    fn complete_messages(&mut self, members: Vec<BatchMember>) -> Vec<Delivery> {
        members
            .into_iter()
            .filter(|member| self.inflight.holds(&member.delivery))
            .filter(|member| {
                if member.is_whole() {
                    return true;
                }
                let left = self.outstanding_parts.entry(member.delivery.clone()).or_insert(member.whole());
                *left = left.saturating_sub(member.share());
                if *left == 0 {
                    self.outstanding_parts.remove(&member.delivery);
                    return true;
                }
                false
            })
            .map(|member| member.delivery)
            .collect()
    }

    async fn dead_letter(&mut self, released: Vec<Released>, reason: &str, code: &'static str) {
        let Some(dead_letter) = &self.dead_letter else {
            for message in &released {
                error!(message_id = %message.receipt.message_id, reason, "message refused and no dead-letter queue is configured: it stays on the queue until SQS redrive or retention removes it; set a RedrivePolicy or --dlq-url");
            }
            counter!("cfi_messages_refused_without_dlq_total").increment(released.len() as u64);
            return;
        };
        let mut moved = Vec::new();
        let mut records = Vec::new();
        let shown = capped(reason, MAX_REASON_ATTRIBUTE);
        for message in released {
            let id = message.receipt.message_id.to_string();
            let attributes = [(REASON_ATTRIBUTE, shown.as_str()), (SOURCE_MESSAGE_ATTRIBUTE, id.as_str())];
            let sent = match dead_letter.send(&message.body, &attributes).await {
                // SQS refused the message itself (body and reason past its size limit, characters it does not
                // take): send what identifies it instead, rather than leave it to loop until SQS redrives it.
                Err(e) if !e.is_transient() => {
                    warn!(message_id = %id, error = %e, "the dead-letter queue refused the message; sending its id and reason without the body");
                    dead_letter.send(&stand_in(&id, &shown, message.body.len()), &attributes).await
                }
                sent => sent,
            };
            match sent {
                Ok(()) => {
                    warn!(message_id = %id, reason = %shown, "message moved to the dead-letter queue");
                    records.push(self.dead_letter_record(&message, reason, code));
                    moved.push(message.receipt);
                }
                Err(e) => {
                    error!(message_id = %id, reason = %shown, error = %e, "could not move message to the dead-letter queue; it will be delivered again")
                }
            }
        }
        counter!("cfi_messages_dead_lettered_total", "reason" => code).increment(moved.len() as u64);
        self.delete(moved).await;
        for record in records {
            self.records.spawn(record_dead_letter(Arc::clone(&self.log.ledger), record, self.log.announce.clone()));
        }
    }

    fn dead_letter_record(&self, message: &Released, reason: &str, code: &str) -> DeadLetterRecord {
        let hints = BodyHints::of(&message.body);
        let now = self.log.clock.now();
        DeadLetterRecord {
            message_id: message.receipt.message_id.clone(),
            reason: reason.to_owned(),
            code: code.to_owned(),
            distribution_id: hints.distribution_id,
            requester: hints.requester,
            created_at: now,
            expires_at: now + self.log.retention,
            outbox: self.log.announce.is_some(),
        }
    }

    async fn delete(&self, receipts: Vec<Receipt>) {
        for chunk in receipts.chunks(MAX_BATCH_ENTRIES) {
            match retry_transient(self.retry, || self.queue.delete(chunk)).await {
                Ok(failures) => {
                    for failure in failures.iter().filter(|_| log_allowed("delete_entry_failed").is_some()) {
                        warn!(message_id = %failure.message_id, code = %failure.code, error = %failure.message, "delete failed for one message; it will be delivered again");
                    }
                    counter!("cfi_messages_deleted_total").increment((chunk.len() - failures.len()) as u64);
                    counter!("cfi_message_delete_failures_total").increment(failures.len() as u64);
                }
                Err(e) => {
                    if let Some(suppressed) = log_allowed("delete_failed") {
                        error!(error = %e, messages = chunk.len(), suppressed, "delete failed; the messages will be delivered again");
                    }
                    counter!("cfi_message_delete_failures_total").increment(chunk.len() as u64);
                }
            }
        }
    }
}

/// Longest reason sent as a message attribute; the ledger's `dlq#` record keeps more (DynamoDB's own bound).
const MAX_REASON_ATTRIBUTE: usize = 1_024;

/// What goes to the dead-letter queue when SQS will not take the message itself.
fn stand_in(message_id: &str, reason: &str, body_bytes: usize) -> String {
    serde_json::json!({
        "source_message_id": message_id,
        "reason": reason,
        "body_omitted": format!("the dead-letter queue refused the {body_bytes}-byte body"),
    })
    .to_string()
}

/// Best effort: the message is already on the dead-letter queue, which stays the authority; the ledger record only
/// makes it findable by `cf-invalidator audit`.
async fn record_dead_letter<L: DeadLetters>(
    ledger: Arc<L>,
    record: DeadLetterRecord,
    announce: Option<mpsc::Sender<Owed>>,
) {
    if let Err(e) = ledger.record_dead_letter(&record).await {
        if let Some(suppressed) = log_allowed("dead_letter_record_failed") {
            warn!(message_id = %record.message_id, error = %e, suppressed, "could not record the dead-lettered message in the ledger");
        }
        counter!("cfi_dead_letter_records_failed_total").increment(1);
        return;
    }
    if let Some(tracker) = announce {
        // A full channel only delays the event: the record waits in the outbox for adoption.
        let _ = tracker.try_send(Owed::DeadLetter { message_id: record.message_id, created_at: record.created_at });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{MemoryLedger, MemoryQueue};
    use crate::ports::queue::QueueError;

    const VISIBILITY: Duration = Duration::from_secs(10);

    async fn deliver(queue: &MemoryQueue, inflight: &InFlight) -> Delivery {
        let message = queue.receive(1, Duration::ZERO, VISIBILITY).await.unwrap().remove(0);
        inflight.admit(message, tokio::time::Instant::now() + VISIBILITY).expect("a new delivery")
    }

    fn part_of(delivery: &Delivery, parts: u32) -> BatchMember {
        BatchMember {
            delivery: delivery.clone(),
            requester: None,
            paths: Vec::new(),
            parts,
            halvings: 0,
            urgent: false,
            idempotency_key: None,
            awaited: false,
            sent_at: None,
        }
    }

    /// A message split in two whose first part was released is delivered again to the same worker and split
    /// again; the old delivery's second part is accepted late. That answer is about the old delivery: it must
    /// not count towards the new one, which is deleted only once both of its own parts are accepted.
    #[tokio::test(start_paused = true)]
    async fn an_answer_about_an_older_delivery_never_deletes_a_newer_one() {
        let queue = Arc::new(MemoryQueue::default());
        queue.send(r#"{"distribution_id":"EAAA","paths":["/a","/b"]}"#, &[]).await.unwrap();
        let inflight = Arc::new(InFlight::new(10));
        let log = DeadLetterLog {
            ledger: Arc::new(MemoryLedger::default()),
            retention: VISIBILITY,
            clock: WallClock::System,
            announce: None,
        };
        let acknowledger =
            Acknowledger::new(Arc::clone(&queue), None, Arc::clone(&inflight), ExponentialBuilder::default(), log);
        let (to_ack, dispositions) = mpsc::channel(8);
        let running = tokio::spawn(acknowledger.run(dispositions));

        let first = deliver(&queue, &inflight).await;
        to_ack.send(Disposition::Release(vec![first.clone()])).await.unwrap();
        tokio::time::sleep(VISIBILITY).await;
        let second = deliver(&queue, &inflight).await;
        assert_eq!(queue.messages()[0].receive_count, 2);
        to_ack.send(Disposition::Delete(vec![part_of(&first, 2)])).await.unwrap();
        to_ack.send(Disposition::Delete(vec![part_of(&second, 2)])).await.unwrap();
        drop(to_ack);
        running.await.unwrap();

        assert_eq!(queue.len(), 1, "one of the new delivery's parts is not accepted yet");
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_the_dead_letter_queue_refuses_goes_there_as_its_id_and_reason() {
        let queue = Arc::new(MemoryQueue::default());
        let dead_letter = Arc::new(MemoryQueue::default());
        dead_letter.faults.inject("send", QueueError::Other("InvalidParameterValue: message too long".into()));
        queue.send(r#"{"distribution_id":"EAAA","paths":["bad"]}"#, &[]).await.unwrap();
        let inflight = Arc::new(InFlight::new(10));
        let ledger = Arc::new(MemoryLedger::default());
        let log = DeadLetterLog {
            ledger: Arc::clone(&ledger),
            retention: VISIBILITY,
            clock: WallClock::System,
            announce: None,
        };
        let acknowledger = Acknowledger::new(
            Arc::clone(&queue),
            Some(Arc::clone(&dead_letter)),
            Arc::clone(&inflight),
            ExponentialBuilder::default(),
            log,
        );
        let (to_ack, dispositions) = mpsc::channel(8);
        let running = tokio::spawn(acknowledger.run(dispositions));
        let delivery = deliver(&queue, &inflight).await;
        let reason = "x".repeat(5_000);
        to_ack
            .send(Disposition::DeadLetter { deliveries: vec![delivery.clone()], reason, code: "invalid_path" })
            .await
            .unwrap();
        drop(to_ack);
        running.await.unwrap();

        assert!(queue.is_empty(), "deleted from the source queue, not looping");
        let moved = dead_letter.messages();
        assert_eq!(moved.len(), 1);
        let body: serde_json::Value = serde_json::from_str(&moved[0].body).unwrap();
        assert_eq!(body["source_message_id"], delivery.message_id.0.as_str());
        assert!(body["reason"].as_str().unwrap().ends_with(crate::model::text::CUT_MARKER));
        tokio::task::yield_now().await;
        assert_eq!(ledger.dead_letters()[0].reason.len(), 5_000, "the ledger keeps the whole reason");
    }
}
