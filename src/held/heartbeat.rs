//! The visibility heartbeat: keeps every held message invisible until its batch is settled.
//!
//! A message whose visibility lapses is delivered again and counts towards the queue's maxReceiveCount, so the
//! heartbeat must reach every held message before it lapses. It extends them one ChangeMessageVisibilityBatch (10
//! messages) at a time, so a pass over everything held takes `held / 10` calls. When SQS answers slowly (throttled,
//! far away, an emulator), a fixed extension shorter than that pass loses messages however early it starts. So the
//! extension grows with the pass, estimated from the timed calls and the number held: messages stay invisible for
//! several passes, and a crashed worker's messages come back later in exchange.

use std::sync::Arc;
use std::time::Duration;

use backon::ExponentialBuilder;
use metrics::{counter, gauge};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::InFlight;
use crate::ports::queue::{BatchEntryFailure, MAX_BATCH_ENTRIES, Queue, QueueError, Receipt};
use crate::retry::retry_transient;
use crate::telemetry::log_allowed;

/// How many worst-case passes one extension lasts. A message is due at half of it, two passes before it lapses,
/// and the heartbeat reaches it within one: one pass spare for a call that takes longer than the last ones.
const PASSES_PER_EXTENSION: u32 = 4;

/// SQS refuses a visibility timeout beyond 12 hours.
const MAX_EXTENSION: Duration = Duration::from_secs(12 * 60 * 60);

/// How long a slow call keeps counting: the estimate halves with each minute of faster answers, so a busy spell
/// of SQS is remembered across the passes it affects.
const LATENCY_HALF_LIFE: Duration = Duration::from_secs(60);

/// How long to make held messages invisible for, from how long extension calls take. Pure: the heartbeat feeds it
/// the calls it times.
#[derive(Debug, Clone)]
pub struct ExtensionLength {
    /// `--visibility-timeout`: never less, so a fast SQS sees exactly what the operator configured.
    floor: Duration,
    /// Rises at once with a slow call and falls back over minutes, so a few fast answers do not undo the caution.
    call_latency: Duration,
    observed_at: Option<Instant>,
}

impl ExtensionLength {
    pub fn new(floor: Duration) -> Self {
        Self { floor, call_latency: Duration::ZERO, observed_at: None }
    }

    /// A call that ended at `at` took `took`.
    pub fn observe_call(&mut self, took: Duration, at: Instant) {
        self.call_latency = took.max(self.latency_at(at));
        self.observed_at = Some(at);
    }

    /// The extension to ask for at `now` while `held` messages are held.
    pub fn length(&self, held: usize, now: Instant) -> Duration {
        let calls_per_pass = u32::try_from(held.div_ceil(MAX_BATCH_ENTRIES)).unwrap_or(u32::MAX);
        let pass = self.latency_at(now).saturating_mul(calls_per_pass);
        pass.saturating_mul(PASSES_PER_EXTENSION).clamp(self.floor, MAX_EXTENSION.max(self.floor))
    }

    /// Messages with less than this left are extended now.
    pub fn margin(&self, held: usize, now: Instant) -> Duration {
        self.length(held, now) / 2
    }

    /// Whether no call has been timed for a half-life: the estimate may have decayed below what SQS takes now.
    pub fn is_stale(&self, now: Instant) -> bool {
        self.observed_at.is_none_or(|at| now.saturating_duration_since(at) >= LATENCY_HALF_LIFE)
    }

    /// The slowest recent call, halved for each half-life since it was observed: a heartbeat with nothing to
    /// extend lets the extension fall back too.
    fn latency_at(&self, now: Instant) -> Duration {
        let since = self.observed_at.map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        self.call_latency.mul_f64(0.5f64.powf(since.as_secs_f64() / LATENCY_HALF_LIFE.as_secs_f64()))
    }
}

/// Extends the visibility of every held message before it runs out, until `stop` is cancelled. A call under way
/// is finished first: dropped, it could still reach SQS after the messages were handed back, and hide them again.
pub async fn keep_invisible<Q: Queue>(
    queue: Arc<Q>,
    inflight: Arc<InFlight>,
    visibility: Duration,
    retry: ExponentialBuilder,
    stop: CancellationToken,
) {
    let mut extension = ExtensionLength::new(visibility);
    // Checking often enough that a check never comes too late for the shortest extension.
    let tick = (visibility / 6).clamp(Duration::from_millis(200), Duration::from_secs(5));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = Instant::now();
        gauge!("cfi_messages_held").set(inflight.len() as f64);
        let margin = extension.margin(inflight.len(), now);
        inflight.set_extension(extension.length(inflight.len(), now));
        let mut due = inflight.due_for_extension(now, margin);
        if due.is_empty() && extension.is_stale(now) {
            // Messages received for a long wait are not due for a while, then all at once: time one call now, so
            // that the margin has learnt how slow SQS is before they are.
            due = inflight.due_for_extension(now, MAX_EXTENSION);
            due.truncate(MAX_BATCH_ENTRIES);
        }
        let mut due = due.into_iter().peekable();
        while let Some(most_urgent) = due.peek().map(|d| d.invisible_until) {
            if stop.is_cancelled() {
                return;
            }
            // A healthy heartbeat extends a message with at least half the margin left; one that finds a message
            // with less is behind, and pollers wait until it has caught up.
            note_behind(&inflight, most_urgent < Instant::now() + margin / 2);
            let chunk: Vec<Receipt> = due.by_ref().take(MAX_BATCH_ENTRIES).map(|d| d.receipt).collect();
            let started = Instant::now();
            let length = extension.length(inflight.len(), started);
            let outcome = retry_transient(retry, || queue.extend_visibility(&chunk, length)).await;
            let ended = Instant::now();
            extension.observe_call(ended - started, ended);
            inflight.set_extension(extension.length(inflight.len(), ended));
            report_length(length, visibility);
            record_extension(&inflight, &chunk, started + length, outcome);
        }
        inflight.set_heartbeat_behind(false);
    }
}

fn note_behind(inflight: &InFlight, behind: bool) {
    if behind && !inflight.heartbeat_is_behind() {
        counter!("cfi_heartbeat_behind_total").increment(1);
        if let Some(suppressed) = log_allowed("heartbeat_behind") {
            warn!(
                held = inflight.len(),
                suppressed, "visibility extensions are falling behind; receiving no more until they catch up"
            );
        }
    }
    inflight.set_heartbeat_behind(behind);
}

fn record_extension(
    inflight: &InFlight,
    chunk: &[Receipt],
    invisible_until: Instant,
    outcome: Result<Vec<BatchEntryFailure>, QueueError>,
) {
    match outcome {
        Ok(failures) => {
            inflight.extended(&settled(chunk, &failures), invisible_until);
            counter!("cfi_visibility_extensions_total").increment((chunk.len() - failures.len()) as u64);
            for failure in failures.iter().filter(|_| log_allowed("visibility_entry_failed").is_some()) {
                info!(message_id = %failure.message_id, code = %failure.code, retried = !failure.is_final(), "could not extend visibility");
            }
        }
        Err(e) => {
            if let Some(suppressed) = log_allowed("visibility_failed") {
                warn!(error = %e, messages = chunk.len(), suppressed, "visibility extension failed; will try again");
            }
        }
    }
}

/// The receipts of a chunk that need no extension at the next tick: those extended, and those refused for good
/// (the message was deleted, or redelivered to someone: it stays held so that its batch still deletes it with the
/// newest handle). An entry SQS failed on its own side is asked again at the next tick, before it lapses.
fn settled(chunk: &[Receipt], failures: &[BatchEntryFailure]) -> Vec<Receipt> {
    let retried = |receipt: &&Receipt| failures.iter().any(|f| f.message_id == receipt.message_id && !f.is_final());
    chunk.iter().filter(|receipt| !retried(receipt)).cloned().collect()
}

fn report_length(length: Duration, visibility: Duration) {
    gauge!("cfi_visibility_extension_seconds").set(length.as_secs_f64());
    if length > visibility
        && let Some(suppressed) = log_allowed("extension_lengthened")
    {
        info!(
            extension = ?length,
            ?visibility,
            suppressed,
            "SQS answers slowly for what is held: extending visibility for longer than the timeout"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::fake::MemoryQueue;
    use crate::model::MessageId;
    use crate::ports::queue::ReceivedMessage;

    /// The fake queue, except that SQS fails the first few extensions of one message on its own side.
    struct FailsAtFirst {
        queue: MemoryQueue,
        victim: Mutex<Option<(MessageId, u32)>>,
    }

    impl FailsAtFirst {
        fn fails_now(&self, receipt: &Receipt) -> bool {
            let mut victim = self.victim.lock().unwrap();
            match victim.as_mut() {
                Some((id, left)) if *id == receipt.message_id && *left > 0 => {
                    *left -= 1;
                    true
                }
                _ => false,
            }
        }
    }

    impl Queue for FailsAtFirst {
        async fn receive(
            &self,
            max: usize,
            wait: Duration,
            visibility: Duration,
        ) -> Result<Vec<ReceivedMessage>, QueueError> {
            self.queue.receive(max, wait, visibility).await
        }

        async fn delete(&self, receipts: &[Receipt]) -> Result<Vec<BatchEntryFailure>, QueueError> {
            self.queue.delete(receipts).await
        }

        async fn extend_visibility(
            &self,
            receipts: &[Receipt],
            visibility: Duration,
        ) -> Result<Vec<BatchEntryFailure>, QueueError> {
            let (failed, passed): (Vec<Receipt>, Vec<Receipt>) =
                receipts.iter().cloned().partition(|r| self.fails_now(r));
            let mut failures = self.queue.extend_visibility(&passed, visibility).await?;
            failures.extend(failed.into_iter().map(|r| BatchEntryFailure {
                message_id: r.message_id,
                code: "InternalError".into(),
                message: "we encountered an internal error".into(),
            }));
            Ok(failures)
        }

        async fn send(&self, body: &str, attributes: &[(&str, &str)]) -> Result<(), QueueError> {
            self.queue.send(body, attributes).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_sqs_failed_on_its_side_is_extended_again_before_it_lapses() {
        let visibility = Duration::from_secs(10);
        let queue = Arc::new(FailsAtFirst { queue: MemoryQueue::default(), victim: Mutex::default() });
        queue.send("held", &[]).await.unwrap();
        let message = queue.receive(1, Duration::ZERO, visibility).await.unwrap().remove(0);
        *queue.victim.lock().unwrap() = Some((message.message_id.clone(), 2));
        let inflight = Arc::new(InFlight::new(10));
        inflight.admit(message, Instant::now() + visibility);
        let stop = CancellationToken::new();
        let retry = ExponentialBuilder::default().with_max_times(0);
        let heartbeat =
            tokio::spawn(keep_invisible(Arc::clone(&queue), Arc::clone(&inflight), visibility, retry, stop.clone()));
        // Before, a failed entry counted as extended: SQS was not asked again until the message had lapsed.
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let back = queue.receive(10, Duration::ZERO, visibility).await.unwrap();
            assert!(back.is_empty(), "the held message lapsed and was delivered again");
        }
        stop.cancel();
        heartbeat.await.unwrap();
    }

    const FLOOR: Duration = Duration::from_secs(10);

    #[test]
    fn a_fast_queue_gets_exactly_the_configured_timeout() {
        let (mut extension, now) = (ExtensionLength::new(FLOOR), Instant::now());
        extension.observe_call(Duration::from_millis(30), now);
        // 100 held: 10 calls of 30 ms, four passes in 1.2 s.
        assert_eq!(extension.length(100, now), FLOOR);
        assert_eq!(extension.margin(100, now), FLOOR / 2);
    }

    #[test]
    fn a_slow_queue_lengthens_the_extension_to_four_passes_over_what_is_held() {
        let (mut extension, now) = (ExtensionLength::new(FLOOR), Instant::now());
        extension.observe_call(Duration::from_millis(1_100), now);
        // 50 held: 5 calls of 1.1 s per pass.
        assert_eq!(extension.length(50, now), Duration::from_millis(22_000));
        assert_eq!(extension.margin(50, now), Duration::from_millis(11_000));
        assert_eq!(extension.length(0, now), FLOOR);
    }

    #[test]
    fn a_slow_call_is_remembered_for_minutes_of_fast_ones() {
        let mut extension = ExtensionLength::new(Duration::ZERO);
        let start = Instant::now();
        let at = |second| start + Duration::from_secs(second);
        extension.observe_call(Duration::from_secs(2), start);
        for second in 1..=60 {
            extension.observe_call(Duration::from_millis(10), at(second));
        }
        // Ten held, one call per pass: after a minute, half of the slow call still counts.
        assert_eq!(extension.length(10, at(60)).as_millis(), 4_000);
        for second in 61..=900 {
            extension.observe_call(Duration::from_millis(10), at(second));
        }
        assert_eq!(extension.length(10, at(900)), Duration::from_millis(40));
    }

    #[test]
    fn with_nothing_to_extend_the_extension_falls_back_all_the_same() {
        let mut extension = ExtensionLength::new(FLOOR);
        let start = Instant::now();
        extension.observe_call(Duration::from_secs(2), start);
        assert_eq!(extension.length(50, start), Duration::from_secs(40));
        assert_eq!(extension.length(50, start + Duration::from_secs(60)).as_millis(), 20_000);
        assert_eq!(extension.length(50, start + Duration::from_secs(600)), FLOOR);
    }

    #[test]
    fn never_beyond_what_sqs_accepts() {
        let (mut extension, now) = (ExtensionLength::new(FLOOR), Instant::now());
        extension.observe_call(Duration::from_secs(5), now);
        assert_eq!(extension.length(50_000, now), MAX_EXTENSION);
    }
}
