//! How a batch is reshaped on its way: the part that fits the budget now, halves to isolate a refused path, and
//! the ledger record it is written as. No I/O.

use std::time::SystemTime;

use super::Submitter;
use crate::batch::Batch;
use crate::batch::window::{SealReason, SealedBatch};
use crate::clock::WallClock;
use crate::model::message::BatchMember;
use crate::ports::budget::Allowance;
use crate::ports::ledger::{BatchRecord, BatchStatus, RequesterShare};

impl<C, L> Submitter<C, L> {
    /// The record's lease and retention counted from now: what a record built a while before it is written needs.
    pub(super) fn renew_terms(&self, record: &mut BatchRecord) {
        let now = self.ownership.clock.now();
        record.lease_until = now + self.ownership.lease;
        record.expires_at = now + self.ownership.retention;
    }

    pub(super) fn intent_record(&self, batch: &Batch) -> BatchRecord {
        let content = &batch.content;
        let mut requesters: Vec<String> = content.members.iter().filter_map(|m| m.requester.clone()).collect();
        requesters.sort_unstable();
        requesters.dedup();
        let mut idempotency_keys: Vec<String> =
            content.members.iter().filter_map(|m| m.idempotency_key.clone()).collect();
        idempotency_keys.sort_unstable();
        idempotency_keys.dedup();
        let mut record = BatchRecord {
            caller_reference: batch.caller_reference.clone(),
            distribution_id: content.distribution_id.clone(),
            paths: content.paths.clone(),
            message_ids: content.members.iter().map(|m| m.delivery.message_id.clone()).collect(),
            requesters,
            shares: RequesterShare::of(content.members.iter().map(|m| (m.requester.as_deref(), m.paths.len()))),
            idempotency_keys,
            requested_paths: content.requested_paths,
            distinct_paths: content
                .members
                .iter()
                .flat_map(|m| m.paths.iter().map(|p| p.as_str()))
                .collect::<std::collections::HashSet<&str>>()
                .len(),
            seal_reason: content.reason.as_str().to_owned(),
            coalescing: batch.coalescing.clone(),
            created_at: batch.sealed_at,
            status: BatchStatus::Pending,
            invalidation_id: None,
            cloudfront_status: None,
            submitted_at: None,
            completed_at: None,
            time_to_complete: None,
            failure: None,
            owner: self.ownership.worker_id.clone(),
            sealed_by: self.ownership.worker_id.clone(),
            awaited: content.members.iter().any(|m| m.awaited),
            lease_until: SystemTime::UNIX_EPOCH,
            expires_at: SystemTime::UNIX_EPOCH,
            published: Vec::new(),
            outbox: false,
            tracking_abandoned: None,
            verification: None,
        };
        self.renew_terms(&mut record);
        record
    }
}

/// The longest run of first messages whose paths fit `room`, and the rest, each with a new CallerReference;
/// `None` when not even the first message fits, or all of them do.
pub(super) fn split_to_fit(batch: &Batch, room: Allowance, clock: WallClock) -> Option<Vec<Batch>> {
    let members = &batch.content.members;
    let distribution_id = &batch.content.distribution_id;
    let part = |members: &[BatchMember]| {
        SealedBatch::from_members(distribution_id.clone(), members.to_vec(), SealReason::FitBudget)
    };
    let fits = |count: usize| Allowance::of(&part(&members[..count]).paths).fits_in(room);
    // A batch waiting for room asks again at each release: when not even its first message fits, say so at once.
    if members.len() < 2 || !fits(1) {
        return None;
    }
    // The paths of a prefix only grow with its length, so the longest one that fits is found by bisection.
    let (mut fitting, mut too_many) = (1, members.len());
    while too_many - fitting > 1 {
        let middle = (fitting + too_many) / 2;
        if fits(middle) { fitting = middle } else { too_many = middle }
    }
    let (now, later) = members.split_at(fitting);
    // The parts keep the time their messages were sealed: a redelivery's ledger check goes back that far.
    let sealed = |content| Batch { sealed_at: batch.sealed_at, ..Batch::seal(content, clock) };
    // Popped from the end: the part that fits goes first.
    Some(vec![sealed(part(later)), sealed(part(now))])
}

/// Whether a batch CloudFront refused as invalid can be narrowed down to the message whose path it refuses: it
/// holds several messages, or paths of messages it does not hold (a batch resumed from a stopped worker's record
/// holds every recorded path but only the message redelivered to this worker).
pub(super) fn splittable(batch: &Batch) -> bool {
    batch.content.members.len() > 1 || batch.content.paths.iter().any(|path| !own(&batch.content.members, path))
}

fn own(members: &[BatchMember], path: &str) -> bool {
    members.iter().any(|member| member.paths.iter().any(|own| own.as_str() == path))
}

/// A refused batch narrowed down, each part with a new CallerReference (their paths differ): halves of its
/// messages; or, for one message, its own paths alone, so that another message's path never gets it
/// dead-lettered (the others find their record failed when they come back, and are batched afresh).
pub(super) fn split(batch: Batch, clock: WallClock) -> Vec<Batch> {
    let distribution_id = batch.content.distribution_id;
    let mut first = batch.content.members;
    let parts = if first.len() > 1 {
        let second = first.split_off(first.len() / 2);
        vec![first, second]
    } else {
        let paths = &batch.content.paths;
        for member in &mut first {
            member.paths.retain(|own| paths.iter().any(|path| path == own.as_str()));
        }
        vec![first]
    };
    parts
        .into_iter()
        .map(|members| {
            Batch::seal(SealedBatch::from_members(distribution_id.clone(), members, SealReason::Split), clock)
        })
        .collect()
}
