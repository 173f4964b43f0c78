//! Every message this worker holds, from receipt until its final disposition.
//!
//! The registry is the single owner of receipt handles: deletes and visibility extensions always use the newest
//! handle, and a message redelivered while we still hold it (its visibility lapsed) is recognised and not batched
//! twice.
//!
//! It also says when the worker may take more: never beyond `max_held` messages, not while the heartbeat is
//! behind, and not while more sealed batches wait for submission than it can submit in half a visibility timeout
//! (`SubmissionBacklog`). A message whose visibility lapses is delivered again and counts towards the queue's
//! maxReceiveCount, so holding more than the heartbeat can keep invisible (a slow or throttled SQS, a long wait for
//! budget) would push valid messages into the dead-letter queue. And every message held past its visibility
//! timeout costs a ChangeMessageVisibility entry per round, while messages left in SQS cost nothing and wait for
//! any worker: under overload, the worker holds what it can submit soon.

mod hand_back;
pub mod heartbeat;

pub use self::hand_back::hand_back;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::model::MessageId;
use crate::model::message::Delivery;
use crate::ports::queue::{Receipt, ReceivedMessage};

/// Boxed strings: held for the whole window, so neither spare capacity nor a capacity field is kept.
#[derive(Debug)]
struct Held {
    /// Which delivery the worker is processing; a redelivery while held only brings a newer receipt handle.
    delivery: u64,
    receipt_handle: Box<str>,
    body: Box<str>,
    sent_at: Option<SystemTime>,
    invisible_until: Instant,
}

/// A message given up by the registry, with what is needed to delete or dead-letter it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub receipt: Receipt,
    pub body: String,
    pub sent_at: Option<SystemTime>,
}

/// A held message whose visibility is to be extended, and when it ends as far as this worker knows.
#[derive(Debug)]
pub struct Due {
    pub invisible_until: Instant,
    pub receipt: Receipt,
}

/// Batches on their way to CloudFront: sealed ones that submission has not finished with, and open windows. When
/// too many are sealed, receiving pauses; and a message received meanwhile is made invisible for as long as the
/// batches ahead of it will take at the CreateInvalidation rate, so that it needs no extension while it waits.
#[derive(Debug)]
pub struct SubmissionBacklog {
    sealed: AtomicUsize,
    open_windows: AtomicUsize,
    limit: usize,
    create_rate: f64,
    window: Duration,
}

/// Never fewer places than this: a worker with a low `--create-rate` still batches several distributions at once.
const MIN_BACKLOG: usize = 16;

impl SubmissionBacklog {
    /// Room for what `create_rate` calls a second submit in half of `visibility_timeout`, `window` being how long
    /// a window stays open.
    pub fn new(create_rate: f64, visibility_timeout: Duration, window: Duration) -> Self {
        let soon = (create_rate * visibility_timeout.as_secs_f64() / 2.0).ceil();
        // `as` saturates: an absurd rate means no limit worth the name, not a panic.
        let limit = (soon as usize).max(MIN_BACKLOG);
        Self { sealed: AtomicUsize::new(0), open_windows: AtomicUsize::new(0), limit, create_rate, window }
    }

    /// No limit and no wait: for tests of other stages.
    pub fn unlimited() -> Self {
        Self {
            sealed: AtomicUsize::new(0),
            open_windows: AtomicUsize::new(0),
            limit: usize::MAX,
            create_rate: f64::INFINITY,
            window: Duration::ZERO,
        }
    }

    pub fn set_sealed(&self, batches: usize) {
        self.sealed.store(batches, Ordering::Relaxed);
    }

    pub fn set_open_windows(&self, windows: usize) {
        self.open_windows.store(windows, Ordering::Relaxed);
    }

    fn is_full(&self) -> bool {
        self.sealed.load(Ordering::Relaxed) >= self.limit
    }

    /// Whether the worker has anything to submit: a batch sealed or running, or a window open.
    pub fn is_busy(&self) -> bool {
        self.sealed.load(Ordering::Relaxed) > 0 || self.open_windows.load(Ordering::Relaxed) > 0
    }

    /// How long a message received now waits for its batch's call: its window, then every batch ahead of it.
    fn expected_wait(&self) -> Duration {
        let ahead = self.sealed.load(Ordering::Relaxed) + self.open_windows.load(Ordering::Relaxed);
        let calls = Duration::try_from_secs_f64(ahead as f64 / self.create_rate).unwrap_or(Duration::ZERO);
        self.window + calls
    }
}

/// Bytes of message bodies held at most before receiving pauses: a dead letter carries its message's body, so every
/// held message keeps it. SQS allows 1 MiB a message, so without this `max_held` messages could hold gigabytes;
/// typical requests of a few hundred bytes never come near it.
pub const MAX_HELD_BODY_BYTES: usize = 256 << 20;

#[derive(Debug)]
pub struct InFlight {
    /// Ordered, so heartbeats visit messages in the same order on every run (deterministic simulations).
    held: Mutex<BTreeMap<MessageId, Held>>,
    max_held: usize,
    /// The bodies' bytes held: at most `MAX_HELD_BODY_BYTES` and one message more.
    body_bytes: AtomicUsize,
    heartbeat_behind: AtomicBool,
    /// The heartbeat's current extension, in milliseconds: receives ask for as long, so a message received while
    /// SQS is slow is not due before the heartbeat can reach it.
    extension_millis: AtomicU64,
    /// The number the last admitted delivery got.
    deliveries: AtomicU64,
    backlog: Arc<SubmissionBacklog>,
}

impl InFlight {
    pub fn new(max_held: usize) -> Self {
        Self::with_backlog(max_held, Arc::new(SubmissionBacklog::unlimited()))
    }

    /// Also pausing while `backlog` is full.
    pub fn with_backlog(max_held: usize, backlog: Arc<SubmissionBacklog>) -> Self {
        Self {
            backlog,
            held: Mutex::default(),
            max_held,
            body_bytes: AtomicUsize::new(0),
            heartbeat_behind: AtomicBool::new(false),
            extension_millis: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
        }
    }

    /// How long to make a message invisible on receipt: the heartbeat's current extension, at least `timeout`, and
    /// at least the backlog's expected wait with half a timeout to spare.
    pub fn receive_visibility(&self, timeout: Duration) -> Duration {
        let heartbeat = Duration::from_millis(self.extension_millis.load(Ordering::Relaxed));
        heartbeat.max(timeout).max(self.backlog.expected_wait() + timeout / 2)
    }

    pub fn set_extension(&self, extension: Duration) {
        let millis = u64::try_from(extension.as_millis()).unwrap_or(u64::MAX);
        self.extension_millis.store(millis, Ordering::Relaxed);
    }

    /// Whether a poller may receive more: fewer than `max_held` are held, their bodies take less than
    /// `MAX_HELD_BODY_BYTES`, the heartbeat keeps up, and submission is not behind.
    pub fn has_room(&self) -> bool {
        !self.heartbeat_behind.load(Ordering::Relaxed)
            && !self.backlog.is_full()
            && self.len() < self.max_held
            && self.body_bytes.load(Ordering::Relaxed) < MAX_HELD_BODY_BYTES
    }

    /// Whether receiving is paused because the heartbeat is behind.
    pub fn heartbeat_is_behind(&self) -> bool {
        self.heartbeat_behind.load(Ordering::Relaxed)
    }

    pub fn set_heartbeat_behind(&self, behind: bool) {
        self.heartbeat_behind.store(behind, Ordering::Relaxed);
    }

    /// Registers a delivery, taking its receipt handle and body, and numbers it. Returns `None` if the message
    /// was already held: the new handle replaces the old one, and the caller must not process the message again.
    pub fn admit(&self, message: ReceivedMessage, invisible_until: Instant) -> Option<Delivery> {
        let mut held = self.held.lock().unwrap();
        match held.get_mut(&message.message_id) {
            Some(existing) => {
                existing.receipt_handle = message.receipt_handle.into_boxed_str();
                existing.invisible_until = invisible_until;
                None
            }
            None => {
                let number = self.deliveries.fetch_add(1, Ordering::Relaxed) + 1;
                self.body_bytes.fetch_add(message.body.len(), Ordering::Relaxed);
                let entry = Held {
                    delivery: number,
                    receipt_handle: message.receipt_handle.into_boxed_str(),
                    body: message.body.into_boxed_str(),
                    sent_at: message.sent_at,
                    invisible_until,
                };
                let delivery = Delivery { message_id: message.message_id.clone(), number };
                held.insert(message.message_id, entry);
                Some(delivery)
            }
        }
    }

    /// Messages whose invisibility ends within `margin` of `now`, the closest to its end first: a heartbeat
    /// that falls behind then loses the fewest.
    pub fn due_for_extension(&self, now: Instant, margin: Duration) -> Vec<Due> {
        let held = self.held.lock().unwrap();
        let mut due: Vec<Due> = held
            .iter()
            .filter(|(_, h)| h.invisible_until <= now + margin)
            .map(|(id, h)| Due {
                invisible_until: h.invisible_until,
                receipt: Receipt { message_id: id.clone(), receipt_handle: h.receipt_handle.to_string() },
            })
            .collect();
        // Stable: equal ends keep the map's order, so simulations replay the same calls.
        due.sort_by_key(|d| d.invisible_until);
        due
    }

    /// Records a successful extension; ignores messages released or redelivered meanwhile.
    pub fn extended(&self, receipts: &[Receipt], invisible_until: Instant) {
        let mut held = self.held.lock().unwrap();
        for receipt in receipts {
            if let Some(h) = held.get_mut(&receipt.message_id).filter(|h| *h.receipt_handle == *receipt.receipt_handle)
            {
                h.invisible_until = invisible_until;
            }
        }
    }

    /// Removes deliveries from the registry; one no longer held, or superseded by a newer delivery, is skipped.
    pub fn release(&self, deliveries: impl IntoIterator<Item = Delivery>) -> Vec<Released> {
        let mut held = self.held.lock().unwrap();
        deliveries
            .into_iter()
            .filter_map(|delivery| {
                let id = delivery.message_id;
                if held.get(&id)?.delivery != delivery.number {
                    return None;
                }
                let h = held.remove(&id)?;
                self.body_bytes.fetch_sub(h.body.len(), Ordering::Relaxed);
                Some(Released {
                    receipt: Receipt { message_id: id, receipt_handle: h.receipt_handle.into_string() },
                    body: h.body.into_string(),
                    sent_at: h.sent_at,
                })
            })
            .collect()
    }

    /// Lets go of every held message, for a worker that stops with them unfinished: their newest receipts.
    pub fn release_all(&self) -> Vec<Receipt> {
        let mut guard = self.held.lock().unwrap();
        let held = std::mem::take(&mut *guard);
        self.body_bytes.store(0, Ordering::Relaxed);
        drop(guard);
        held.into_iter()
            .map(|(message_id, h)| Receipt { message_id, receipt_handle: h.receipt_handle.into_string() })
            .collect()
    }

    /// Whether this delivery, and not an older or newer one of the same message, is held.
    pub fn holds(&self, delivery: &Delivery) -> bool {
        self.held.lock().unwrap().get(&delivery.message_id).is_some_and(|h| h.delivery == delivery.number)
    }

    pub fn len(&self) -> usize {
        self.held.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiving_pauses_at_half_a_timeout_of_calls_and_waits_are_covered_by_the_receive() {
        let backlog = Arc::new(SubmissionBacklog::new(2.0, Duration::from_secs(60), Duration::from_secs(5)));
        let inflight = InFlight::with_backlog(1_000, Arc::clone(&backlog));
        backlog.set_sealed(59);
        assert!(inflight.has_room());
        backlog.set_sealed(60);
        assert!(!inflight.has_room(), "60 calls at 2 a second are half a minute");
        backlog.set_open_windows(40);
        // 5 s of window, 100 batches at 2 a second, and half the timeout to spare.
        assert_eq!(inflight.receive_visibility(Duration::from_secs(60)), Duration::from_secs(85));
        backlog.set_sealed(0);
        backlog.set_open_windows(0);
        assert_eq!(inflight.receive_visibility(Duration::from_secs(60)), Duration::from_secs(60));
        assert!(SubmissionBacklog::new(0.1, Duration::from_secs(30), Duration::ZERO).limit >= MIN_BACKLOG);
        let unlimited = Arc::new(SubmissionBacklog::unlimited());
        unlimited.set_sealed(1_000_000);
        unlimited.set_open_windows(1_000);
        let inflight = InFlight::with_backlog(10, unlimited);
        assert!(inflight.has_room(), "no backlog pauses it");
        assert_eq!(inflight.receive_visibility(Duration::from_secs(30)), Duration::from_secs(30));
    }

    fn delivery(id: &str, handle: &str) -> ReceivedMessage {
        ReceivedMessage {
            message_id: MessageId(id.into()),
            receipt_handle: handle.into(),
            body: "{}".into(),
            sent_at: None,
            receive_count: 1,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn receiving_pauses_once_the_held_bodies_reach_their_bound_and_resumes_as_they_go() {
        let inflight = InFlight::new(usize::MAX);
        let mib = |id: &str| ReceivedMessage { body: "x".repeat(1 << 20), ..delivery(id, "h") };
        let until = Instant::now() + Duration::from_secs(60);
        let admitted: Vec<Delivery> =
            (0..MAX_HELD_BODY_BYTES >> 20).filter_map(|n| inflight.admit(mib(&n.to_string()), until)).collect();
        assert!(!inflight.has_room(), "256 messages of 1 MiB are the bound");
        inflight.release(admitted.into_iter().take(1));
        assert!(inflight.has_room(), "one let go makes room");
        inflight.release_all();
        assert!(inflight.has_room());
    }

    fn receipts(due: Vec<Due>) -> Vec<Receipt> {
        due.into_iter().map(|d| d.receipt).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn the_closest_to_becoming_visible_are_extended_first() {
        let inflight = InFlight::new(usize::MAX);
        let now = Instant::now();
        inflight.admit(delivery("a", "h1"), now + Duration::from_secs(9));
        inflight.admit(delivery("b", "h2"), now + Duration::from_secs(3));
        inflight.admit(delivery("c", "h3"), now + Duration::from_secs(6));
        let order: Vec<String> = receipts(inflight.due_for_extension(now, Duration::from_secs(10)))
            .into_iter()
            .map(|r| r.message_id.0)
            .collect();
        assert_eq!(order, ["b", "c", "a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_room_at_the_limit_nor_while_the_heartbeat_is_behind() {
        let inflight = InFlight::new(2);
        let until = Instant::now() + Duration::from_secs(30);
        let a = inflight.admit(delivery("a", "h1"), until).unwrap();
        assert!(inflight.has_room());
        inflight.admit(delivery("b", "h2"), until);
        assert!(!inflight.has_room(), "two held, at most two");
        inflight.release([a]);
        assert!(inflight.has_room());
        inflight.set_heartbeat_behind(true);
        assert!(!inflight.has_room(), "the heartbeat is behind");
        inflight.set_heartbeat_behind(false);
        assert!(inflight.has_room());
    }

    #[tokio::test(start_paused = true)]
    async fn redelivery_of_a_held_message_updates_its_handle_only() {
        let inflight = InFlight::new(usize::MAX);
        let now = Instant::now();
        let first = inflight.admit(delivery("m1", "h1"), now + Duration::from_secs(30)).unwrap();
        assert!(inflight.admit(delivery("m1", "h2"), now + Duration::from_secs(60)).is_none());
        assert!(inflight.holds(&first));
        let released = inflight.release([first.clone()]);
        assert_eq!(released[0].receipt.receipt_handle, "h2");
        assert!(inflight.is_empty());
        assert!(inflight.release([first]).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_delivery_is_not_released_nor_held_in_the_name_of_an_older_one() {
        let inflight = InFlight::new(usize::MAX);
        let now = Instant::now();
        let old = inflight.admit(delivery("m1", "h1"), now + Duration::from_secs(30)).unwrap();
        inflight.release([old.clone()]);
        let new = inflight.admit(delivery("m1", "h2"), now + Duration::from_secs(30)).unwrap();
        assert_ne!(old, new);
        assert!(!inflight.holds(&old) && inflight.holds(&new));
        assert!(inflight.release([old]).is_empty(), "the old delivery's release leaves the new one held");
        assert_eq!(inflight.release([new]).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopping_worker_lets_go_of_everything_with_the_newest_receipts() {
        let inflight = InFlight::new(usize::MAX);
        let until = Instant::now() + Duration::from_secs(30);
        let first = inflight.admit(delivery("m1", "h1"), until).unwrap();
        inflight.admit(delivery("m1", "h2"), until);
        inflight.admit(delivery("m2", "h3"), until);
        let handles: Vec<String> = inflight.release_all().into_iter().map(|r| r.receipt_handle).collect();
        assert_eq!(handles, ["h2", "h3"]);
        assert!(inflight.is_empty() && !inflight.holds(&first));
    }

    #[tokio::test(start_paused = true)]
    async fn reports_messages_close_to_becoming_visible() {
        let inflight = InFlight::new(usize::MAX);
        let now = Instant::now();
        inflight.admit(delivery("soon", "h1"), now + Duration::from_secs(10));
        inflight.admit(delivery("later", "h2"), now + Duration::from_secs(50));
        let due = receipts(inflight.due_for_extension(now, Duration::from_secs(20)));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].message_id.0, "soon");

        inflight.extended(&due, now + Duration::from_secs(70));
        assert!(inflight.due_for_extension(now, Duration::from_secs(20)).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_extension_with_a_stale_handle_is_ignored() {
        let inflight = InFlight::new(usize::MAX);
        let now = Instant::now();
        inflight.admit(delivery("m1", "h1"), now + Duration::from_secs(10));
        let due = receipts(inflight.due_for_extension(now, Duration::from_secs(20)));
        inflight.admit(delivery("m1", "h2"), now + Duration::from_secs(5));
        inflight.extended(&due, now + Duration::from_secs(70));
        assert_eq!(inflight.due_for_extension(now, Duration::from_secs(20)).len(), 1);
    }
}
