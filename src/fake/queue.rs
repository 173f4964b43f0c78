use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::faults::Faults;
use crate::clock::WallClock;
use crate::model::MessageId;
use crate::ports::queue::{BatchEntryFailure, MAX_BATCH_ENTRIES, Queue, QueueError, Receipt, ReceivedMessage};

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
}

/// A standard SQS queue in memory: visibility timeouts, redelivery with a fresh receipt handle, and SQS's
/// lenient delete (a stale handle "succeeds" without deleting).
#[derive(Debug, Default)]
pub struct MemoryQueue {
    pub faults: Faults<QueueError>,
    /// Stamps `sent_at`; simulations make it follow tokio's clock.
    clock: WallClock,
    state: Mutex<State>,
    arrived: Notify,
}

#[derive(Debug, Default)]
struct State {
    next_sequence: u64,
    deliveries: u64,
    /// By send order, so receives are roughly FIFO like a lightly loaded SQS queue.
    messages: BTreeMap<u64, StoredMessage>,
}

impl MemoryQueue {
    pub fn with_clock(clock: WallClock) -> Self {
        Self { clock, ..Self::default() }
    }

    /// Every message not yet deleted, visible or not.
    pub fn messages(&self) -> Vec<StoredMessage> {
        self.state.lock().unwrap().messages.values().cloned().collect()
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
        if let Some(message) = state.messages.values_mut().find(|m| &m.message_id == message_id) {
            message.visible_at = message.visible_at.min(now);
        }
        drop(state);
        self.arrived.notify_waiters();
    }

    fn take_visible(&self, max: usize, visibility: Duration) -> Vec<ReceivedMessage> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap();
        let State { deliveries, messages, .. } = &mut *state;
        messages
            .iter_mut()
            .filter(|(_, m)| m.visible_at <= now)
            .take(max)
            .map(|(sequence, m)| {
                *deliveries += 1;
                let handle = format!("{sequence}:{deliveries}");
                m.receive_count += 1;
                m.visible_at = now + visibility;
                m.receipt_handle = Some(handle.clone());
                ReceivedMessage {
                    message_id: m.message_id.clone(),
                    receipt_handle: handle,
                    body: m.body.clone(),
                    sent_at: Some(m.sent_at),
                    receive_count: m.receive_count,
                }
            })
            .collect()
    }

    fn next_visible_at(&self) -> Option<Instant> {
        self.state.lock().unwrap().messages.values().map(|m| m.visible_at).min()
    }

    /// Applies `change` to each receipt's message; a receipt whose message is gone or whose handle is stale gets
    /// `stale` (None = silently succeed, as SQS does for deletes).
    fn for_each_receipt(
        &self,
        receipts: &[Receipt],
        stale: Option<&str>,
        mut change: impl FnMut(&mut BTreeMap<u64, StoredMessage>, u64),
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
                (Some(sequence), _) => change(&mut state.messages, sequence),
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
        self.faults.take("receive")?;
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
        self.faults.take("delete")?;
        self.for_each_receipt(receipts, None, |messages, sequence| {
            messages.remove(&sequence);
        })
    }

    async fn extend_visibility(
        &self,
        receipts: &[Receipt],
        visibility: Duration,
    ) -> Result<Vec<BatchEntryFailure>, QueueError> {
        self.faults.take("extend_visibility")?;
        let now = Instant::now();
        self.for_each_receipt(receipts, Some("ReceiptHandleIsInvalid"), |messages, sequence| {
            if let Some(message) = messages.get_mut(&sequence) {
                message.visible_at = now + visibility;
            }
        })
    }

    async fn send(&self, body: &str, attributes: &[(&str, &str)]) -> Result<(), QueueError> {
        self.faults.take("send")?;
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
                sent_at: self.clock.now(),
                visible_at: Instant::now(),
                receipt_handle: None,
            },
        );
        drop(state);
        self.arrived.notify_waiters();
        Ok(())
    }
}
