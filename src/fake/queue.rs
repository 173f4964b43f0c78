use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::faults::Faults;
use crate::clock::WallClock;
use crate::model::MessageId;
use crate::ports::queue::{
    BatchEntryFailure, MAX_BATCH_ENTRIES, Queue, QueueDepth, QueueError, QueueStats, Receipt, ReceivedMessage,
};

/// A message as the fake queue holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub message_id: MessageId,
    pub body: String,
    pub attributes: Vec<(String, String)>,
    pub receive_count: u32,
    sent_at: SystemTime,
    visible_at: Instant,
    /// The handle of the latest delivery; older handles are stale.
    receipt_handle: Option<String>,
    /// When the latest delivery was received: SQS keeps a message invisible for at most 12 hours from then.
    received_at: Instant,
}

/// SQS refuses to make a message invisible for longer than this after its receive.
pub const MAX_INVISIBLE: Duration = Duration::from_secs(12 * 3_600);

/// A standard SQS queue in memory: visibility timeouts, redelivery with a fresh receipt handle, SQS's lenient
/// delete (a stale handle "succeeds" without deleting), the 12-hour ceiling on invisibility, and, with a redrive
/// policy, the move to a dead-letter queue of a message received `maxReceiveCount` times.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    pub faults: Faults<QueueError>,
    /// Stamps `sent_at`; simulations make it follow tokio's clock.
    clock: WallClock,
    state: Mutex<State>,
    arrived: Notify,
    redrive: Option<(Arc<MemoryQueue>, u32)>,
}

#[derive(Debug, Default)]
struct State {
    next_sequence: u64,
    deliveries: u64,
    /// ChangeMessageVisibility entries asked for, failed ones included: what the heartbeat costs.
    extension_entries: u64,
    /// By send order, so receives are roughly FIFO like a lightly loaded SQS queue.
    messages: BTreeMap<u64, StoredMessage>,
    /// An index of `messages` so that a receive does not walk past every message in flight: each message is in
    /// exactly one of `visible` (its `visible_at` had passed when it was last looked at) and `hidden` (by
    /// `visible_at`). A receive moves what has become visible from `hidden` to `visible`, then takes the first
    /// sequences of `visible`: the same messages, in the same order, as filtering all messages by `visible_at`.
    visible: BTreeSet<u64>,
    hidden: BTreeSet<(Instant, u64)>,
}

impl State {
    fn set_visible_at(&mut self, sequence: u64, at: Instant) {
        let Some(message) = self.messages.get_mut(&sequence) else { return };
        if !self.visible.remove(&sequence) {
            self.hidden.remove(&(message.visible_at, sequence));
        }
        message.visible_at = at;
        self.hidden.insert((at, sequence));
    }

    fn remove(&mut self, sequence: u64) {
        if let Some(message) = self.messages.remove(&sequence)
            && !self.visible.remove(&sequence)
        {
            self.hidden.remove(&(message.visible_at, sequence));
        }
    }

    /// Moves every message whose `visible_at` has passed into `visible`.
    fn reveal(&mut self, now: Instant) {
        while let Some(&(at, sequence)) = self.hidden.first() {
            if at > now {
                break;
            }
            self.hidden.pop_first();
            self.visible.insert(sequence);
        }
    }
}

impl MemoryQueue {
    pub fn with_clock(clock: WallClock) -> Self {
        Self { clock, ..Self::default() }
    }

    /// Moves a message that was received `max_receive_count` times to `dead_letter` instead of delivering it
    /// again, as SQS's RedrivePolicy does (without a reason: SQS adds none).
    pub fn with_redrive(self, dead_letter: Arc<MemoryQueue>, max_receive_count: u32) -> Self {
        Self { redrive: Some((dead_letter, max_receive_count)), ..self }
    }

    /// Every message not yet deleted, visible or not.
    pub fn messages(&self) -> Vec<StoredMessage> {
        self.state.lock().unwrap().messages.values().cloned().collect()
    }

    /// Deliveries so far, redeliveries included: what the receive counts add up to, still readable once the
    /// messages are deleted.
    pub fn deliveries(&self) -> u64 {
        self.state.lock().unwrap().deliveries
    }

    /// ChangeMessageVisibility entries the queue was asked for so far.
    pub fn extension_entries(&self) -> u64 {
        self.state.lock().unwrap().extension_entries
    }

    /// Messages received and not deleted: what the consumers hold now.
    pub fn in_flight(&self) -> usize {
        let now = Instant::now();
        let state = self.state.lock().unwrap();
        state.messages.values().filter(|m| m.receive_count > 0 && m.visible_at > now).count()
    }

    pub fn len(&self) -> usize {
        self.state.lock().unwrap().messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes a message that is in flight visible at once, as when its visibility lapses or SQS delivers a
    /// standard-queue message twice.
    pub fn expire_visibility(&self, message_id: &MessageId) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap();
        if let Some((&sequence, message)) = state.messages.iter().find(|(_, m)| &m.message_id == message_id) {
            let at = message.visible_at.min(now);
            state.set_visible_at(sequence, at);
        }
        drop(state);
        self.arrived.notify_waiters();
    }

    fn take_visible(&self, max: usize, visibility: Duration) -> Vec<ReceivedMessage> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap();
        state.reveal(now);
        let State { deliveries, messages, visible, hidden, .. } = &mut *state;
        let mut received = Vec::with_capacity(max.min(visible.len()));
        while received.len() < max
            && let Some(sequence) = visible.pop_first()
        {
            if let Some((dead_letter, max_receive_count)) = &self.redrive
                && messages[&sequence].receive_count >= *max_receive_count
            {
                let moved = messages.remove(&sequence).expect("indexed messages exist");
                dead_letter.push(&moved.body, &[]);
                continue;
            }
            let m = messages.get_mut(&sequence).expect("indexed messages exist");
            *deliveries += 1;
            let handle = format!("{sequence}:{deliveries}");
            m.receive_count += 1;
            m.received_at = now;
            m.visible_at = now + visibility;
            hidden.insert((m.visible_at, sequence));
            m.receipt_handle = Some(handle.clone());
            received.push(ReceivedMessage {
                message_id: m.message_id.clone(),
                receipt_handle: handle,
                body: m.body.clone(),
                sent_at: Some(m.sent_at),
                receive_count: m.receive_count,
            });
        }
        received
    }

    /// The earliest `visible_at` of all messages.
    fn next_visible_at(&self) -> Option<Instant> {
        let state = self.state.lock().unwrap();
        let hidden = state.hidden.first().map(|(at, _)| *at);
        state.visible.iter().map(|sequence| state.messages[sequence].visible_at).chain(hidden).min()
    }

    /// Applies `change` to each receipt's message; a receipt whose message is gone or whose handle is stale gets
    /// `stale` (None = silently succeed, as SQS does for deletes).
    fn for_each_receipt(
        &self,
        receipts: &[Receipt],
        stale: Option<&str>,
        mut change: impl FnMut(&mut State, u64),
    ) -> Result<Vec<BatchEntryFailure>, QueueError> {
        if receipts.len() > MAX_BATCH_ENTRIES {
            return Err(QueueError::Other(format!("TooManyEntriesInBatchRequest: {}", receipts.len())));
        }
        let mut state = self.state.lock().unwrap();
        let mut failures = Vec::new();
        for receipt in receipts {
            let current =
                receipt.receipt_handle.split_once(':').and_then(|(sequence, _)| sequence.parse::<u64>().ok()).filter(
                    |sequence| {
                        state.messages.get(sequence).and_then(|m| m.receipt_handle.as_deref())
                            == Some(receipt.receipt_handle.as_str())
                    },
                );
            match (current, stale) {
                (Some(sequence), _) => change(&mut state, sequence),
                (None, Some(code)) => failures.push(BatchEntryFailure {
                    message_id: receipt.message_id.clone(),
                    code: code.to_owned(),
                    message: "the receipt handle is not the message's latest".to_owned(),
                }),
                (None, None) => {}
            }
        }
        Ok(failures)
    }
}

impl Queue for MemoryQueue {
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.faults.call("receive").await?;
        let give_up = Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            let received = self.take_visible(max.clamp(1, MAX_BATCH_ENTRIES), visibility);
            if !received.is_empty() || Instant::now() >= give_up {
                return Ok(received);
            }
            let wake = self.next_visible_at().map_or(give_up, |at| at.min(give_up));
            tokio::select! {
                biased;
                () = arrived => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn delete(&self, receipts: &[Receipt]) -> Result<Vec<BatchEntryFailure>, QueueError> {
        self.faults.call("delete").await?;
        self.for_each_receipt(receipts, None, |state, sequence| state.remove(sequence))
    }

    async fn extend_visibility(
        &self,
        receipts: &[Receipt],
        visibility: Duration,
    ) -> Result<Vec<BatchEntryFailure>, QueueError> {
        self.faults.call("extend_visibility").await?;
        self.state.lock().unwrap().extension_entries += receipts.len() as u64;
        let now = Instant::now();
        let mut failures = Vec::new();
        let mut changed = self.for_each_receipt(receipts, Some("ReceiptHandleIsInvalid"), |state, sequence| {
            let message = &state.messages[&sequence];
            if now + visibility > message.received_at + MAX_INVISIBLE {
                failures.push(BatchEntryFailure {
                    message_id: message.message_id.clone(),
                    code: "InvalidParameterValue".to_owned(),
                    message: "the visibility timeout would exceed 12 hours from the receive".to_owned(),
                });
                return;
            }
            state.set_visible_at(sequence, now + visibility)
        })?;
        changed.extend(failures);
        Ok(changed)
    }

    async fn send(&self, body: &str, attributes: &[(&str, &str)]) -> Result<(), QueueError> {
        self.faults.call("send").await?;
        self.push(body, attributes);
        Ok(())
    }
}

/// Messages are never delayed here: `send` takes no delay.
impl QueueStats for MemoryQueue {
    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let mut state = self.state.lock().unwrap();
        state.reveal(Instant::now());
        Ok(QueueDepth { visible: state.visible.len() as u64, in_flight: state.hidden.len() as u64, delayed: 0 })
    }
}

impl MemoryQueue {
    fn push(&self, body: &str, attributes: &[(&str, &str)]) {
        let mut state = self.state.lock().unwrap();
        state.next_sequence += 1;
        let sequence = state.next_sequence;
        state.messages.insert(
            sequence,
            StoredMessage {
                message_id: MessageId(format!("msg-{sequence:08}")),
                body: body.to_owned(),
                attributes: attributes.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
                receive_count: 0,
                sent_at: whole_millis(self.clock.now()),
                visible_at: Instant::now(),
                receipt_handle: None,
                received_at: Instant::now(),
            },
        );
        state.visible.insert(sequence);
        drop(state);
        self.arrived.notify_waiters();
    }
}

/// SQS's `SentTimestamp` is epoch milliseconds.
fn whole_millis(at: SystemTime) -> SystemTime {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    std::time::UNIX_EPOCH + Duration::from_millis(since.as_millis() as u64)
}
