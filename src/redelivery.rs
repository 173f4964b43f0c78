//! Idempotency against the ledger, decided at intake: a message is batched only if nothing already covers it.
//!
//! First deliveries cost nothing here (no reads); a message with a producer `idempotency_key` costs one
//! conditional write; only a redelivered message (ApproximateReceiveCount > 1) costs a query of its
//! distribution's batches since the message was sent. See docs/design.md.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tracing::info;

use crate::clock::WallClock;
use crate::coverage::{CLOCK_SKEW, Since, covers};
use crate::model::DistributionId;
use crate::model::path::InvalidationPath;
use crate::model::path::is_covered_by;
use crate::model::request::InvalidationRequest;
use crate::ports::ledger::{BatchRecord, BatchStatus, Batches, KeyClaim, KeyUse, Keys, LedgerError};
use crate::ports::queue::ReceivedMessage;

/// Most batches of one distribution read back for a redelivered message. A message is redelivered within a few
/// visibility timeouts of being sent, so this covers hours of 5-second windows.
const LOOKBACK_LIMIT: usize = 1_000;

/// What to do with a received message.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Nothing covers it yet: batch it.
    Fresh,
    /// Accepted invalidations created after it was sent cover some of its paths: batch only these.
    Remaining(Vec<InvalidationPath>),
    /// Another message used the same producer key for the same request within the deduplication period.
    DuplicateKey { first_message_id: String },
    /// Another message used the same producer key for another request within the period: a producer error.
    KeyConflict { key: String, first_message_id: String },
    /// Accepted invalidations created after the message was sent already cover all its paths.
    AlreadyCovered,
    /// Batches holding this message were left pending by a worker that stopped; this worker took them over and
    /// submits them again with their CallerReferences. `remaining`: paths neither they nor accepted batches
    /// cover, to batch afresh (the message's other parts never reached a batch).
    Resume { records: Vec<BatchRecord>, remaining: Vec<InvalidationPath> },
    /// Another worker is still submitting a batch holding this message: look again after the delay.
    Wait(Duration),
}

/// What the ledger says about a redelivered message, before any lease is considered.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding<'a> {
    /// These of its paths are not covered by accepted batches (all of them, if none is).
    Uncovered(Vec<InvalidationPath>),
    Covered,
    /// These pending batches hold the message; with the accepted ones they cover all but `remaining`.
    Pending {
        records: Vec<&'a BatchRecord>,
        remaining: Vec<InvalidationPath>,
    },
}

/// How long one read of a distribution's batches answers for other redelivered messages. A crash makes hundreds
/// of messages come back at once; without this each would query the same batches again. Staleness is safe: a
/// take-over is a conditional write, so a stale view at worst holds a message back for another look.
const RECENT_BATCHES_TTL: Duration = Duration::from_secs(1);

/// Looks for the message in the batches of its distribution: which of its paths accepted invalidations created
/// after it was sent cover (`coverage`), and which pending batches hold it. Only batches of its target count:
/// another tenant's invalidation, or the whole distribution's for a tenant, invalidates none of its paths.
pub fn find<'a>(
    records: &'a [BatchRecord],
    message: &ReceivedMessage,
    sent_at: SystemTime,
    request: &InvalidationRequest,
) -> Finding<'a> {
    let since = Since::Message { id: &message.message_id, sent_at };
    let records: Vec<&'a BatchRecord> = records.iter().filter(|r| r.tenant_id == request.tenant_id).collect();
    let uncovered: Vec<InvalidationPath> =
        request.paths.iter().filter(|p| !records.iter().any(|r| covers(r, since, p.as_str()))).cloned().collect();
    if uncovered.is_empty() {
        return Finding::Covered;
    }
    let pending: Vec<&BatchRecord> = records
        .into_iter()
        .filter(|r| r.status == BatchStatus::Pending && r.message_ids.contains(&message.message_id))
        .collect();
    if pending.is_empty() {
        return Finding::Uncovered(uncovered);
    }
    let pending_paths: Vec<String> = pending.iter().flat_map(|r| r.paths.iter().cloned()).collect();
    let remaining = uncovered.into_iter().filter(|p| !is_covered_by(p.as_str(), &pending_paths)).collect();
    Finding::Pending { records: pending, remaining }
}

pub struct Idempotency<L> {
    ledger: Arc<L>,
    worker_id: String,
    lease: Duration,
    key_period: Duration,
    clock: WallClock,
    recent: Mutex<HashMap<DistributionId, RecentBatches>>,
}

/// One read of a distribution's batches created since `since`.
struct RecentBatches {
    read_at: Instant,
    since: SystemTime,
    records: Arc<Vec<BatchRecord>>,
}

impl<L: Batches + Keys> Idempotency<L> {
    pub fn new(ledger: Arc<L>, worker_id: String, lease: Duration, key_period: Duration, clock: WallClock) -> Self {
        Self { ledger, worker_id, lease, key_period, clock, recent: Mutex::default() }
    }

    /// The distribution's batches created since `since`, read again only when the last read is too old or does
    /// not reach back far enough.
    async fn batches_since(
        &self,
        distribution: &DistributionId,
        since: SystemTime,
    ) -> Result<Arc<Vec<BatchRecord>>, LedgerError> {
        let fresh = |r: &RecentBatches| r.read_at.elapsed() < RECENT_BATCHES_TTL;
        if let Some(recent) = self.recent.lock().unwrap().get(distribution).filter(|r| fresh(r) && r.since <= since) {
            return Ok(Arc::clone(&recent.records));
        }
        let records = Arc::new(self.ledger.list(distribution, since, LOOKBACK_LIMIT).await?);
        let mut recent = self.recent.lock().unwrap();
        recent.retain(|_, r| fresh(r));
        let read = RecentBatches { read_at: Instant::now(), since, records: Arc::clone(&records) };
        recent.insert(distribution.clone(), read);
        Ok(records)
    }

    pub async fn check(
        &self,
        message: &ReceivedMessage,
        request: &InvalidationRequest,
    ) -> Result<Verdict, LedgerError> {
        let now = self.clock.now();
        if let Some(key) = &request.idempotency_key {
            let key = KeyUse {
                distribution_id: request.distribution_id.clone(),
                tenant_id: request.tenant_id.clone(),
                key: key.clone(),
                message_id: message.message_id.clone(),
                content: request.content_digest(),
            };
            match self.ledger.claim_key(&key, now, now + self.key_period).await? {
                KeyClaim::First => {}
                KeyClaim::Duplicate { first_message_id } => {
                    return Ok(Verdict::DuplicateKey { first_message_id: first_message_id.0 });
                }
                KeyClaim::Conflict { first_message_id } => {
                    return Ok(Verdict::KeyConflict { key: key.key, first_message_id: first_message_id.0 });
                }
            }
        }
        let (true, Some(sent_at)) = (message.receive_count > 1, message.sent_at) else {
            return Ok(Verdict::Fresh);
        };
        // Batches holding the message were sealed after SQS delivered it, but by a clock that may be behind SQS's.
        let since = sent_at.checked_sub(CLOCK_SKEW).unwrap_or(sent_at);
        let records = self.batches_since(&request.distribution_id, since).await?;
        match find(&records, message, sent_at, request) {
            Finding::Uncovered(remaining) if remaining.len() == request.paths.len() => Ok(Verdict::Fresh),
            Finding::Uncovered(remaining) => Ok(Verdict::Remaining(remaining)),
            Finding::Covered => Ok(Verdict::AlreadyCovered),
            Finding::Pending { records, remaining } => self.take_over(records, remaining, now).await,
        }
    }

    async fn take_over(
        &self,
        pending: Vec<&BatchRecord>,
        remaining: Vec<InvalidationPath>,
        now: SystemTime,
    ) -> Result<Verdict, LedgerError> {
        let mut taken = Vec::new();
        for record in pending {
            if record.lease_until >= now {
                let remaining = record.lease_until.duration_since(now).unwrap_or_default();
                return Ok(Verdict::Wait(remaining.max(Duration::from_secs(1))));
            }
            if !self.ledger.take_over(&record.caller_reference, &self.worker_id, now, now + self.lease).await? {
                return Ok(Verdict::Wait(self.lease));
            }
            info!(caller_reference = %record.caller_reference, previous_owner = %record.owner, "took over a pending batch of a stopped worker");
            taken.push(record.clone());
        }
        Ok(Verdict::Resume { records: taken, remaining })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::parse::parse_request;
    use crate::model::{MessageId, TenantId};

    const SENT: SystemTime = SystemTime::UNIX_EPOCH;

    fn message(id: &str) -> ReceivedMessage {
        ReceivedMessage {
            message_id: MessageId(id.into()),
            receipt_handle: "h".into(),
            body: String::new(),
            sent_at: Some(SystemTime::UNIX_EPOCH),
            receive_count: 2,
        }
    }

    fn request(paths: &[&str]) -> InvalidationRequest {
        parse_request(&serde_json::json!({"distribution_id": "EAAA", "paths": paths}).to_string()).unwrap()
    }

    fn record(status: BatchStatus, paths: &[&str], messages: &[&str]) -> BatchRecord {
        BatchRecord { status, ..crate::fake::pending_record("EAAA", paths, messages, SystemTime::now()) }
    }

    #[test]
    fn accepted_batches_together_may_cover_a_message() {
        // A completed invalidation covers as much as one still in progress.
        let records =
            [record(BatchStatus::Accepted, &["/a"], &["m1"]), record(BatchStatus::Completed, &["/img/*"], &["other"])];
        assert_eq!(find(&records, &message("m1"), SENT, &request(&["/a", "/img/x.png"])), Finding::Covered);
        let partly = request(&["/a", "/b"]);
        assert_eq!(find(&records, &message("m1"), SENT, &partly), Finding::Uncovered(vec![partly.paths[1].clone()]));
    }

    #[test]
    fn only_batches_of_the_message_s_own_target_cover_it() {
        let tenant = |id: &str, record: BatchRecord| BatchRecord { tenant_id: TenantId::parse(id).ok(), ..record };
        let records = [
            record(BatchStatus::Accepted, &["/a"], &["other"]),
            tenant("dt_b", record(BatchStatus::Accepted, &["/b"], &["other"])),
            tenant("dt_a", record(BatchStatus::Pending, &["/c"], &["m1"])),
        ];
        let for_a = InvalidationRequest { tenant_id: TenantId::parse("dt_a").ok(), ..request(&["/a", "/b", "/c"]) };
        let resumable = Finding::Pending { records: vec![&records[2]], remaining: for_a.paths[..2].to_vec() };
        assert_eq!(find(&records, &message("m1"), SENT, &for_a), resumable);
        let whole = request(&["/a", "/b"]);
        assert_eq!(find(&records, &message("m1"), SENT, &whole), Finding::Uncovered(vec![whole.paths[1].clone()]));
    }

    #[test]
    fn pending_batches_holding_the_message_are_resumed_and_the_rest_batched_afresh() {
        let records = [
            record(BatchStatus::Accepted, &["/a"], &["m1"]),
            record(BatchStatus::Pending, &["/b"], &["m1"]),
            record(BatchStatus::Pending, &["/c"], &["someone-else"]),
            record(BatchStatus::Failed, &["/d"], &["m2"]),
        ];
        let resumable = Finding::Pending { records: vec![&records[1]], remaining: vec![] };
        assert_eq!(find(&records, &message("m1"), SENT, &request(&["/a", "/b"])), resumable);
        // /c is pending, but not in a batch of this message: resume /b's batch, batch /c afresh.
        let with_c = request(&["/a", "/b", "/c"]);
        let partly = Finding::Pending { records: vec![&records[1]], remaining: vec![with_c.paths[2].clone()] };
        assert_eq!(find(&records, &message("m1"), SENT, &with_c), partly);
        // m2's only batch failed: nothing holds it, batch it all afresh.
        let failed = request(&["/d"]);
        assert_eq!(find(&records, &message("m2"), SENT, &failed), Finding::Uncovered(failed.paths.clone()));
    }
}
