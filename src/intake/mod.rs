//! Intake: receive messages, register them as held, parse and validate them, and route them on.

pub mod parse;
pub mod path;

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use metrics::counter;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use self::parse::{InvalidationRequest, parse_request};
use crate::ack::Disposition;
use crate::ack::inflight::InFlight;
use crate::model::MessageId;
use crate::ports::queue::{MAX_BATCH_ENTRIES, Queue};

/// A valid request on its way to the batcher.
#[derive(Debug)]
pub struct Accepted {
    pub message_id: MessageId,
    pub request: InvalidationRequest,
}

#[derive(Debug, Clone, Copy)]
pub struct PollSettings {
    /// Long-poll wait per ReceiveMessage.
    pub wait: Duration,
    /// Visibility timeout asked for on receipt; the heartbeat extends it while the message is held.
    pub visibility: Duration,
}

/// One poller: receives until `stop` is cancelled or the batcher is gone.
pub async fn poll<Q: Queue>(
    queue: Arc<Q>,
    inflight: Arc<InFlight>,
    settings: PollSettings,
    to_batcher: mpsc::Sender<Accepted>,
    to_ack: mpsc::Sender<Disposition>,
    stop: CancellationToken,
) {
    let backoff = || {
        ExponentialBuilder::default().with_max_delay(Duration::from_secs(30)).with_jitter().without_max_times().build()
    };
    let mut delays = backoff();
    loop {
        // Dropping an unfinished receive is safe: anything it had taken becomes visible again after the timeout.
        let received = tokio::select! {
            () = stop.cancelled() => return,
            received = queue.receive(MAX_BATCH_ENTRIES, settings.wait, settings.visibility) => received,
        };
        let messages = match received {
            Ok(messages) => {
                delays = backoff();
                messages
            }
            Err(e) => {
                let delay = delays.next().unwrap_or(Duration::from_secs(30));
                warn!(error = %e, ?delay, "receive failed");
                counter!("cfi_receive_errors_total").increment(1);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => continue,
                }
            }
        };
        counter!("cfi_messages_received_total").increment(messages.len() as u64);
        let invisible_until = Instant::now() + settings.visibility;
        for message in messages {
            if !inflight.admit(&message, invisible_until) {
                debug!(message_id = %message.message_id, "message delivered again while held; keeping the newest receipt");
                continue;
            }
            let routed = match parse_request(&message.body) {
                Ok(request) => to_batcher.send(Accepted { message_id: message.message_id, request }).await.is_ok(),
                Err(rejection) => {
                    warn!(message_id = %message.message_id, reason = %rejection, "invalid message");
                    counter!("cfi_messages_invalid_total").increment(1);
                    let disposition = Disposition::DeadLetter {
                        message_ids: vec![message.message_id],
                        reason: rejection.to_string(),
                    };
                    to_ack.send(disposition).await.is_ok()
                }
            };
            if !routed {
                return;
            }
        }
    }
}
