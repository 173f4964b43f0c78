//! How a batch is reshaped on its way: the part that fits the budget now, halves to isolate a refused path,
//! wildcards for an overloaded distribution, and the ledger record it is written as. No I/O.

use std::time::{Duration, SystemTime};

use super::Submitter;
use crate::batch::Batch;
use crate::batch::window::{SealReason, SealedBatch};
use crate::clock::WallClock;
use crate::limit::BudgetKey;
use crate::limit::room::time_to_clear;
use crate::model::message::BatchMember;
use crate::model::path::{is_covered_by, is_wildcard};
use crate::plan::Plan;
use crate::ports::budget::{Allowance, JointWrites};
use crate::ports::cdn::Cdn;
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
            tenant_id: content.tenant_id.clone(),
            account: self.accounts.month_account(&content.distribution_id),
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

impl<C: Cdn, L: JointWrites> Submitter<C, L> {
    /// How long the distribution's backlog would take to clear under its budget, when that is longer than the
    /// maximum delay and `--coalesce auto` is on: its batches are then coalesced into wildcards that fit the room.
    pub(super) fn overloaded(&self, key: &BudgetKey) -> Option<Duration> {
        if !self.overload.coalesce {
            return None;
        }
        let (backlog, capacity) = (self.budget.backlog(key), self.budget.capacity(key));
        let clears_in = time_to_clear(backlog, capacity, self.budget.completion_estimate());
        (clears_in > self.overload.max_delay).then_some(clears_in)
    }

    /// Why an overloaded distribution's batch was coalesced, for its record.
    pub(super) fn overload_note(&self, batch: &Batch, plan: &Plan, clears_in: Duration) -> String {
        let backlog = self.budget.backlog(&self.budget.key(&batch.content.target()));
        let wildcards: Vec<&str> = plan.replacements.iter().map(|r| r.wildcard.as_str()).collect();
        let replaced_paths: usize = plan.replacements.iter().map(|r| r.replaced).sum();
        format!(
            "{replaced_paths} paths replaced by {}: a backlog of {} paths and {} wildcards would take {} to clear under the budget, more than the maximum delay of {}",
            wildcards.join(", "),
            backlog.paths,
            backlog.wildcards,
            humantime::format_duration(clears_in),
            humantime::format_duration(self.overload.max_delay),
        )
    }
}

/// A part is worth a call of its own only if it carries at least this share of what the batch could carry in
/// one call, in paths or in wildcards.
const SLIVER: u32 = 4;

/// As `split_to_fit`, unless the part that fits `room` is a sliver of what the batch could carry (within `fit`,
/// what the worker believes one call may): then the batch waits whole. A CreateInvalidation is the scarcest thing
/// (the call rate), and the room a completion returns soon takes a fuller part; a part of plain paths whose
/// wildcards wait is never a sliver of its batch.
pub(super) fn split_worth_a_call(
    batch: &Batch,
    room: Allowance,
    fit: Allowance,
    clock: WallClock,
) -> Option<Vec<Batch>> {
    let could = Allowance::of(&batch.content.paths).min(fit);
    split_to_fit(batch, room, clock).filter(|parts| {
        let now = Allowance::of(&parts[1].content.paths);
        now.paths * SLIVER >= could.paths || (could.wildcards > 0 && now.wildcards * SLIVER >= could.wildcards)
    })
}

/// The batch in two parts, each with a new CallerReference: a first part that fits `room`, and the rest; `None`
/// when all of it fits, or not even one path does. When the wildcards do not fit but paths do, the first part is
/// the batch's plain paths (what is free goes now, the wildcards wait); otherwise it is the longest run of whole
/// first messages that fits, or, when not even the first message fits, as many of its paths as do.
pub(super) fn split_to_fit(batch: &Batch, room: Allowance, clock: WallClock) -> Option<Vec<Batch>> {
    let need = Allowance::of(&batch.content.paths);
    let members = &batch.content.members;
    if need.fits_in(room) || (room.paths == 0 && room.wildcards == 0) {
        return None;
    }
    let (now, later) = if need.wildcards > room.wildcards && need.paths > 0 && room.paths > 0 {
        by_kind(members)
    } else {
        let fits = |members: &[BatchMember]| load(members).fits_in(room);
        // The paths of a prefix only grow with its length, so the longest one that fits is found by bisection.
        let (mut fitting, mut too_many) = (0, members.len());
        while too_many - fitting > 1 {
            let middle = (fitting + too_many) / 2;
            if fits(&members[..middle]) { fitting = middle } else { too_many = middle }
        }
        if fitting == 0 && fits(&members[..1]) {
            fitting = 1;
        }
        match fitting {
            0 => first_paths(members, room)?,
            _ if fitting == members.len() => return None,
            _ => (members[..fitting].to_vec(), members[fitting..].to_vec()),
        }
    };
    if now.is_empty() || later.is_empty() {
        return None;
    }
    let target = batch.content.target();
    // The parts keep the time their messages were sealed (a redelivery's ledger check goes back that far), and
    // whether invalidations may cover them: one part may be covered where the whole was not.
    let sealed = |members: Vec<BatchMember>, reason| {
        let content = SealedBatch::from_members(target.clone(), members, reason);
        Batch { sealed_at: batch.sealed_at, may_be_covered: batch.may_be_covered, ..Batch::seal(content, clock) }
    };
    // Popped from the end: the part that fits goes first. The rest is what the batch was (urgent stays urgent).
    Some(vec![sealed(later, batch.content.reason), sealed(now, SealReason::FitBudget)])
}

/// What `members` hold, merged as a batch of them would be.
fn load(members: &[BatchMember]) -> Allowance {
    let mut merged = crate::batch::merge::PathSet::default();
    for path in members.iter().flat_map(|m| &m.paths) {
        merged.add(path);
    }
    let wildcards = merged.wildcard_count() as u32;
    Allowance { paths: merged.len() as u32 - wildcards, wildcards }
}

/// The members' plain paths, and their wildcards: a member holding both is cut in two.
fn by_kind(members: &[BatchMember]) -> (Vec<BatchMember>, Vec<BatchMember>) {
    let (mut plain, mut wild) = (Vec::new(), Vec::new());
    for member in members {
        match member.split_paths(|_, path| !is_wildcard(path.as_str())) {
            Some((own_plain, own_wild)) => {
                plain.push(own_plain);
                wild.push(own_wild);
            }
            None if member.paths.iter().all(|path| !is_wildcard(path.as_str())) => plain.push(member.clone()),
            None => wild.push(member.clone()),
        }
    }
    (plain, wild)
}

/// As many of the first message's paths as fit `room` (in its order), and the rest of it with the other members.
fn first_paths(members: &[BatchMember], room: Allowance) -> Option<(Vec<BatchMember>, Vec<BatchMember>)> {
    let first = members.first()?;
    let (mut paths, mut wildcards) = (0, 0);
    let keep: Vec<bool> = first
        .paths
        .iter()
        .map(|path| {
            let (count, room) =
                if is_wildcard(path.as_str()) { (&mut wildcards, room.wildcards) } else { (&mut paths, room.paths) };
            *count += 1;
            *count <= room
        })
        .collect();
    let (now, rest) = first.split_paths(|at, _| keep[at])?;
    let mut later = vec![rest];
    later.extend_from_slice(&members[1..]);
    Some((vec![now], later))
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
/// messages; or, for one message, its own paths alone that the batch held or covered (a coalesced batch's wildcard
/// covers them), so that another message's path never gets it dead-lettered (the others find their record failed
/// when they come back, and are batched afresh).
pub(super) fn split(batch: Batch, clock: WallClock) -> Vec<Batch> {
    let target = batch.content.target();
    let mut first = batch.content.members;
    let parts = if first.len() > 1 {
        let second = first.split_off(first.len() / 2);
        vec![first, second]
    } else {
        let paths = &batch.content.paths;
        for member in &mut first {
            member.paths.retain(|own| is_covered_by(own.as_str(), paths));
        }
        vec![first]
    };
    // The parts keep the time their messages were sealed and whether they may be covered, as `split_to_fit`'s do.
    let sealed = |members| Batch {
        sealed_at: batch.sealed_at,
        may_be_covered: batch.may_be_covered,
        ..Batch::seal(SealedBatch::from_members(target.clone(), members, SealReason::Split), clock)
    };
    parts.into_iter().map(sealed).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::message::Delivery;
    use crate::model::path::InvalidationPath;
    use crate::model::{DistributionId, MessageId};

    /// One message asking for `own`, in a batch whose paths are `held` (recorded, or coalesced).
    fn one_message(own: &[&str], held: &[&str]) -> Batch {
        let member = BatchMember::whole_of(
            Delivery { message_id: MessageId("m".to_owned()), number: 1 },
            own.iter().map(|p| InvalidationPath::parse(p).unwrap()).collect(),
        );
        let target = DistributionId::parse("EDFDVBD6EXAMPLE").unwrap().into();
        let mut batch =
            Batch::seal(SealedBatch::from_members(target, vec![member], SealReason::Full), WallClock::default());
        batch.content.paths = held.iter().map(|p| (*p).to_owned()).collect();
        batch
    }

    #[test]
    fn a_message_narrowed_down_keeps_its_own_paths_that_its_batch_held() {
        let resumed = one_message(&["/a.html", "/b.html"], &["/a.html", "/b.html", "/other.html"]);
        let parts = split(resumed, WallClock::default());
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].content.paths, ["/a.html", "/b.html"]);
    }

    #[test]
    fn a_coalesced_message_narrowed_down_goes_back_to_its_own_paths() {
        let coalesced = one_message(&["/s2/p1", "/s2/p10"], &["/s2/*"]);
        let parts = split(coalesced, WallClock::default());
        assert_eq!(parts[0].content.paths, ["/s2/p1", "/s2/p10"], "never an empty batch");
    }
}
