//! What `run` checks before the worker takes a message: the queue answers, the ledger table has the key and the
//! indexes `setup` makes, and the dead-letter queue exists.
//!
//! What cannot heal is refused with one line (a missing queue, a table of another schema, a dead-letter queue that
//! is gone): a worker started on it would dead-letter every valid message or loop on invalid ones. What may heal (a
//! dependency that does not answer, an index still being built) is waited out, not ready and saying why: during an
//! outage, every restarted replica would otherwise die at once and leave the held messages to the survivors.

use std::time::Duration;

use cf_invalidator::aws::dynamodb::{DynamoLedger, TableCheck, check_table};
use cf_invalidator::aws::sqs::{DeadLetterError, SqsQueue};
use cf_invalidator::ports::ledger::LedgerError;
use cf_invalidator::ports::queue::QueueError;
use cf_invalidator::telemetry::Health;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How often start-up looks again at what it waits for, and says so in the log.
pub const LOOK_AGAIN_EVERY: Duration = Duration::from_secs(10);

/// How start-up ended.
pub enum Started {
    /// Everything is there; refused messages go to this dead-letter queue, if any.
    Ready { dead_letter: Option<String> },
    /// SIGTERM or SIGINT came first.
    Stopped,
}

/// Looks until everything is there, or something is found that cannot heal, or `stop` is cancelled.
pub async fn checked(
    queue: &SqsQueue,
    ledger: &DynamoLedger,
    dlq_url: Option<&str>,
    health: &Health,
    stop: &CancellationToken,
) -> anyhow::Result<Started> {
    loop {
        let why = match look(queue, ledger, dlq_url).await? {
            Look::Ready(dead_letter) => {
                health.starting(None);
                return Ok(Started::Ready { dead_letter });
            }
            Look::Waiting(why) => why,
        };
        warn!(reason = %why, next_look_in = ?LOOK_AGAIN_EVERY, "not starting yet: waiting, not ready");
        health.starting(Some(why));
        tokio::select! {
            () = stop.cancelled() => return Ok(Started::Stopped),
            () = tokio::time::sleep(LOOK_AGAIN_EVERY) => {}
        }
    }
}

/// What one look found.
enum Look {
    Ready(Option<String>),
    /// Not yet, and why.
    Waiting(String),
}

async fn look(queue: &SqsQueue, ledger: &DynamoLedger, dlq_url: Option<&str>) -> anyhow::Result<Look> {
    match queue.check_access().await {
        Err(QueueError::Transient(why)) => return Ok(Look::Waiting(format!("SQS is unavailable ({why})"))),
        checked => checked?,
    }
    match check_table(ledger).await {
        Err(LedgerError::Unavailable(why)) => return Ok(Look::Waiting(format!("DynamoDB is unavailable ({why})"))),
        Err(e) => return Err(e.into()),
        Ok(Err(unusable)) => return Err(unusable.into()),
        Ok(Ok(TableCheck::Building(why))) => return Ok(Look::Waiting(why)),
        Ok(Ok(TableCheck::Ready)) => {}
    }
    let dead_letter = match dlq_url {
        Some(url) => queue.check_dead_letter_queue(url).await.map(|()| Some(url.to_owned())),
        None => queue.dead_letter_queue_url().await,
    };
    match dead_letter {
        Ok(url) => Ok(Look::Ready(url)),
        Err(DeadLetterError::Queue(QueueError::Transient(why))) => {
            Ok(Look::Waiting(format!("SQS is unavailable ({why})")))
        }
        Err(DeadLetterError::Queue(e)) => Err(e.into()),
        Err(unusable) => Err(unusable.into()),
    }
}
