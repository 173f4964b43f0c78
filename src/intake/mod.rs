//! Intake: receive messages, register them as held, parse and validate them, and route them on.

pub mod envelope;
pub mod parse;
pub mod routes;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use metrics::counter;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::parse::{IntakeRules, Parsed, Rejection, parse_message};
use crate::held::{self, InFlight};
use crate::model::message::{BatchMember, Delivery, Disposition};
use crate::model::path::InvalidationPath;
use crate::model::request::InvalidationRequest;
use crate::ports::ledger::{BatchRecord, Batches, Keys};
use crate::ports::queue::{MAX_BATCH_ENTRIES, Queue, QueueError, Receipt, ReceivedMessage};
use crate::redelivery::{Idempotency, Verdict};
use crate::telemetry::log_allowed;

/// A valid request on its way to the batcher.
#[derive(Debug)]
pub struct Accepted {
    pub delivery: Delivery,
    /// One per distribution.
    pub requests: Vec<InvalidationRequest>,
    /// Pending batches of a stopped worker that hold the message, taken over to be submitted again, each with
    /// the message's paths in its distribution.
    pub resumed: Vec<(BatchRecord, Vec<InvalidationPath>)>,
}

#[derive(Debug, Clone, Copy)]
pub struct PollSettings {
    /// Long-poll wait per ReceiveMessage.
    pub wait: Duration,
    /// Visibility timeout asked for on receipt; the heartbeat extends it while the message is held.
    pub visibility: Duration,
    /// Backoff after a failed receive.
    pub backoff: ExponentialBuilder,
}

/// Where a poller sends what it received.
#[derive(Clone)]
pub struct Outlets {
    pub to_batcher: mpsc::Sender<Accepted>,
    pub to_ack: mpsc::Sender<Disposition>,
}

/// How long a message waits before another look when the ledger cannot be asked whether it is already covered:
/// batching it blindly could pay for its paths twice.
const LEDGER_UNAVAILABLE_DELAY: Duration = Duration::from_secs(15);

/// How often a poller paused for want of room (`InFlight::has_room`) looks again: short next to any visibility
/// timeout, long enough to cost nothing.
const ROOM_RECHECK: Duration = Duration::from_millis(250);

/// One poller: receives until `stop` is cancelled or the next stage is gone.
pub async fn poll<Q: Queue, L: Batches + Keys>(
    queue: Arc<Q>,
    inflight: Arc<InFlight>,
    idempotency: Arc<Idempotency<L>>,
    rules: Arc<IntakeRules>,
    settings: PollSettings,
    outlets: Outlets,
    stop: CancellationToken,
) {
    let mut delays = settings.backoff.build();
    // Messages that must wait before they can be batched; dropped, and so abandoned to SQS, when the poller stops.
    let mut rechecks = JoinSet::new();
    loop {
        let (messages, invisible_until) = match receive_turn(&queue, &inflight, &settings, &mut delays, &stop).await {
            Turn::Received(messages, invisible_until) => (messages, invisible_until),
            Turn::Stop(unanswered) => {
                // The next stages need not wait for the receive's answer.
                drop((outlets, rechecks));
                if let Some(receiving) = unanswered {
                    hand_back_late_receive(&queue, receiving).await;
                }
                return;
            }
            Turn::Wait(delay) => tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = tokio::time::sleep(delay) => continue,
            },
        };
        counter!("cfi_messages_received_total").increment(messages.len() as u64);
        // Every message of the receive is held, and so extended by the heartbeat, before any is dispatched:
        // dispatching a redelivery reads the ledger, and ten reads in a row on a slow ledger can outlast the
        // visibility of the last messages, which would then lapse before the heartbeat knew of them.
        let admitted = admit(messages, invisible_until, &inflight, &rules);
        for (header, parsed) in admitted {
            match dispatch(header, parsed, &idempotency, &outlets).await {
                Dispatch::Sent => {}
                Dispatch::StageGone => return,
                Dispatch::Later { delay, message, requests } => {
                    let idempotency = Arc::clone(&idempotency);
                    let recheck = look_again(message, requests, delay, idempotency, outlets.clone(), stop.clone());
                    rechecks.spawn(recheck);
                }
            }
        }
        while rechecks.try_join_next().is_some() {}
    }
}

/// A receive that has not answered yet.
type Receiving<'a> = Pin<Box<dyn Future<Output = Result<Vec<ReceivedMessage>, QueueError>> + Send + 'a>>;

/// What one turn of a poller's loop got.
enum Turn<'a> {
    /// Messages, invisible until the instant given.
    Received(Vec<ReceivedMessage>, Instant),
    /// Nothing now: no room to hold more, or the receive failed.
    Wait(Duration),
    /// Stopped, maybe with a receive under way.
    Stop(Option<Receiving<'a>>),
}

async fn receive_turn<'a, Q: Queue>(
    queue: &'a Arc<Q>,
    inflight: &InFlight,
    settings: &PollSettings,
    delays: &mut ExponentialBackoff,
    stop: &CancellationToken,
) -> Turn<'a> {
    if !inflight.has_room() {
        counter!("cfi_receive_pauses_total").increment(1);
        return Turn::Wait(ROOM_RECHECK);
    }
    let visibility = inflight.receive_visibility(settings.visibility);
    // SQS starts the timeout somewhere within the call: counting from its start errs towards extending early.
    let asked = Instant::now();
    let mut receiving: Receiving<'a> = Box::pin(queue.receive(MAX_BATCH_ENTRIES, settings.wait, visibility));
    let received = tokio::select! {
        biased;
        () = stop.cancelled() => return Turn::Stop(Some(receiving)),
        received = &mut receiving => received,
    };
    match received {
        Ok(messages) => {
            *delays = settings.backoff.build();
            Turn::Received(messages, asked + visibility)
        }
        Err(e) => Turn::Wait(receive_failed(&e, delays)),
    }
}

/// A receive under way when the poller stopped is let answer (at most its long poll), and what it brings is handed
/// back at once. Dropped unanswered, it could still take messages, even ones handed back meanwhile, which would then
/// stay invisible for the whole visibility timeout. The worker's shutdown timeout bounds the wait.
async fn hand_back_late_receive<Q: Queue>(queue: &Arc<Q>, receiving: Receiving<'_>) {
    let Ok(messages) = receiving.await else { return };
    if messages.is_empty() {
        return;
    }
    let receipts = messages
        .into_iter()
        .map(|m| Receipt { message_id: m.message_id, receipt_handle: m.receipt_handle })
        .collect::<Vec<_>>();
    let received = receipts.len();
    let handed_back = held::hand_back(Arc::clone(queue), receipts).await;
    info!(received, handed_back, "stopping: handed back what the last receive brought");
}

/// Logs a failed receive; returns how long to wait before the next.
fn receive_failed(error: &QueueError, delays: &mut ExponentialBackoff) -> Duration {
    let delay = delays.next().unwrap_or(Duration::from_secs(30));
    if let Some(suppressed) = log_allowed("receive_failed") {
        warn!(%error, ?delay, suppressed, "receive failed");
    }
    counter!("cfi_receive_errors_total").increment(1);
    delay
}

/// Registers the received messages as held until `invisible_until`; returns each new one's header and what its
/// body said, parsed before the registry takes the body (a redelivery of a held message is parsed for nothing).
fn admit(
    messages: Vec<ReceivedMessage>,
    invisible_until: Instant,
    inflight: &InFlight,
    rules: &IntakeRules,
) -> Vec<(Admitted, Result<Parsed, Rejection>)> {
    let mut admitted = Vec::with_capacity(messages.len());
    for message in messages {
        let parsed = parse_message(&message.body, rules).map(|parsed| sent_at(parsed, message.sent_at));
        let header = header_of(&message);
        match inflight.admit(message, invisible_until) {
            Some(delivery) => admitted.push((Admitted { header, delivery }, parsed)),
            None => {
                debug!(message_id = %header.message_id, "message delivered again while held; keeping the newest receipt")
            }
        }
    }
    admitted
}

/// The requests as intake received them: stamped with when SQS says their message was sent.
fn sent_at(parsed: Parsed, sent_at: Option<std::time::SystemTime>) -> Parsed {
    match parsed {
        Parsed::Requests(requests) => {
            Parsed::Requests(requests.into_iter().map(|request| InvalidationRequest { sent_at, ..request }).collect())
        }
        skip => skip,
    }
}

/// A held message: its header and which delivery of it the worker is processing.
struct Admitted {
    header: ReceivedMessage,
    delivery: Delivery,
}

/// The message without its receipt handle and body, which the in-flight registry owns: what the ledger checks
/// look at (id, send time, receive count). Copies only the id.
fn header_of(message: &ReceivedMessage) -> ReceivedMessage {
    ReceivedMessage {
        message_id: message.message_id.clone(),
        receipt_handle: String::new(),
        body: String::new(),
        sent_at: message.sent_at,
        receive_count: message.receive_count,
    }
}

/// What became of a message handed to `dispatch`.
enum Dispatch {
    Sent,
    StageGone,
    /// The ledger cannot tell yet (another worker's batch holds the message and its lease runs, or the ledger is
    /// unreachable): look again after `delay`, still holding the message.
    Later {
        delay: Duration,
        message: Admitted,
        requests: Vec<InvalidationRequest>,
    },
}

/// Sends one message on, given its header and what its body said.
async fn dispatch<L: Batches + Keys>(
    message: Admitted,
    parsed: Result<Parsed, Rejection>,
    idempotency: &Idempotency<L>,
    outlets: &Outlets,
) -> Dispatch {
    let delivery = message.delivery.clone();
    let disposition = match parsed {
        Ok(Parsed::Requests(requests)) => return dispatch_requests(message, requests, idempotency, outlets).await,
        Ok(Parsed::Skip(why)) => {
            info!(message_id = %delivery, why, "nothing to invalidate; acknowledging");
            counter!("cfi_messages_skipped_total").increment(1);
            Disposition::Delete(vec![nothing_left(delivery)])
        }
        Err(rejection) => dead_letter(delivery, &rejection),
    };
    sent(outlets.to_ack.send(disposition).await.is_ok())
}

fn dead_letter(delivery: Delivery, rejection: &Rejection) -> Disposition {
    warn!(message_id = %delivery, reason = %rejection, "invalid message");
    counter!("cfi_messages_invalid_total").increment(1);
    Disposition::DeadLetter { deliveries: vec![delivery], reason: rejection.to_string(), code: rejection.code() }
}

/// Checks a valid message's requests against the ledger and sends on what is left to invalidate.
async fn dispatch_requests<L: Batches + Keys>(
    message: Admitted,
    requests: Vec<InvalidationRequest>,
    idempotency: &Idempotency<L>,
    outlets: &Outlets,
) -> Dispatch {
    let mut verdicts = Vec::with_capacity(requests.len());
    for request in &requests {
        match check(idempotency, &message.header, request).await {
            Verdict::Wait(delay) => return Dispatch::Later { delay, message, requests },
            verdict => verdicts.push(verdict),
        }
    }
    let delivery = message.delivery;
    let message_id = &delivery.message_id;
    let mut to_batch = Vec::new();
    let mut resumed = Vec::new();
    for (request, verdict) in requests.into_iter().zip(verdicts) {
        match verdict {
            Verdict::Fresh => to_batch.push(request),
            Verdict::Remaining(paths) => {
                info!(%message_id, remaining = paths.len(), "redelivered message partly covered already; batching the rest");
                to_batch.push(InvalidationRequest { paths, ..request });
            }
            Verdict::KeyConflict { key, first_message_id } => {
                let rejection = Rejection::KeyConflict { key, first_message_id };
                return sent(outlets.to_ack.send(dead_letter(delivery, &rejection)).await.is_ok());
            }
            Verdict::DuplicateKey { first_message_id } => {
                info!(%message_id, %first_message_id, "duplicate idempotency key; deleting without a new invalidation");
                counter!("cfi_messages_duplicate_total", "kind" => "idempotency_key").increment(1);
            }
            Verdict::AlreadyCovered => {
                info!(%message_id, distribution_id = %request.distribution_id, "redelivered message already covered by accepted invalidations");
                counter!("cfi_messages_duplicate_total", "kind" => "redelivery").increment(1);
            }
            Verdict::Resume { records, remaining } => {
                resumed.extend(records.into_iter().map(|record| (record, request.paths.clone())));
                if !remaining.is_empty() {
                    to_batch.push(InvalidationRequest { paths: remaining, ..request });
                }
            }
            Verdict::Wait(_) => unreachable!("a wait returns before any verdict is acted on"),
        }
    }
    if to_batch.is_empty() && resumed.is_empty() {
        return sent(outlets.to_ack.send(Disposition::Delete(vec![nothing_left(delivery)])).await.is_ok());
    }
    sent(outlets.to_batcher.send(Accepted { delivery, requests: to_batch, resumed }).await.is_ok())
}

fn sent(delivered: bool) -> Dispatch {
    if delivered { Dispatch::Sent } else { Dispatch::StageGone }
}

/// Holds a message the ledger could not settle yet and checks it again after `delay`, as often as it takes.
/// Handing it back to SQS instead would cost one of its receives each time: after a crash, a redelivery finds the
/// dead worker's batch still leased, and a few crashes in a row would send a valid message to the dead-letter
/// queue. The heartbeat keeps it invisible meanwhile.
async fn look_again<L: Batches + Keys>(
    message: Admitted,
    requests: Vec<InvalidationRequest>,
    delay: Duration,
    idempotency: Arc<Idempotency<L>>,
    outlets: Outlets,
    stop: CancellationToken,
) {
    let (mut message, mut requests, mut delay) = (message, requests, delay);
    // Looked up in the ledger as a redelivery, whatever its receive count said: while it waited, its visibility
    // may have lapsed and another worker may have batched it.
    message.header.receive_count = message.header.receive_count.max(2);
    loop {
        debug!(message_id = %message.delivery, ?delay, "holding the message until the ledger can tell whether it is covered");
        counter!("cfi_messages_deferred_total").increment(1);
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        match dispatch_requests(message, requests, &idempotency, &outlets).await {
            Dispatch::Later { delay: again, message: m, requests: r } => (message, requests, delay) = (m, r, again),
            Dispatch::Sent | Dispatch::StageGone => return,
        }
    }
}

/// What the ledger says about one of the message's requests; an unreachable ledger means "not now".
async fn check<L: Batches + Keys>(
    idempotency: &Idempotency<L>,
    message: &ReceivedMessage,
    request: &InvalidationRequest,
) -> Verdict {
    idempotency.check(message, request).await.unwrap_or_else(|e| {
        if let Some(suppressed) = log_allowed("ledger_check_failed") {
            warn!(message_id = %message.message_id, error = %e, suppressed, "cannot check the ledger for this message; looking again later");
        }
        Verdict::Wait(LEDGER_UNAVAILABLE_DELAY)
    })
}

/// A member with nothing left to invalidate: acknowledging it deletes the message.
fn nothing_left(delivery: Delivery) -> BatchMember {
    BatchMember::whole_of(delivery, Vec::new())
}
