use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::SystemTime;

use super::faults::Faults;
use crate::model::path::is_covered_by;
use crate::model::{CallerReference, DistributionId, MessageId};
use crate::ports::audit::{AuditLog, BatchSummary, FailureRecord};
use crate::ports::budget::{BudgetState, BudgetStore, Recorded, Reservation, ReservationWrite};
use crate::ports::events::EventKind;
use crate::ports::ledger::{
    BatchRecord, BatchStatus, Billing, Completion, DeadLetterRecord, InProgress, InProgressCursor, Intent, KeyClaim,
    KeyRecord, KeyUse, Ledger, LedgerError, MonthBilling, MonthCap, Owed, Requester, billing_day, billing_month,
};

/// A pending batch record for tests, owned by `w1`, its lease ended and its expiry at `created_at`: override what
/// a test needs with struct update syntax.
pub fn pending_record(distribution: &str, paths: &[&str], messages: &[&str], created_at: SystemTime) -> BatchRecord {
    BatchRecord {
        caller_reference: CallerReference::mint(),
        distribution_id: DistributionId::parse(distribution).expect("valid distribution id"),
        paths: paths.iter().map(|p| p.to_string()).collect(),
        message_ids: messages.iter().map(|m| MessageId(m.to_string())).collect(),
        requesters: Vec::new(),
        shares: Vec::new(),
        idempotency_keys: Vec::new(),
        requested_paths: paths.len(),
        distinct_paths: paths.len(),
        seal_reason: "window_elapsed".into(),
        coalescing: None,
        created_at,
        status: BatchStatus::Pending,
        invalidation_id: None,
        cloudfront_status: None,
        submitted_at: None,
        completed_at: None,
        time_to_complete: None,
        failure: None,
        owner: "w1".into(),
        lease_until: created_at,
        expires_at: created_at,
        published: Vec::new(),
        outbox: false,
        tracking_abandoned: None,
    }
}

/// Billing counters by month and distribution, and the batches already counted.
#[derive(Debug, Default)]
struct MonthCounters {
    by_month: HashMap<(String, DistributionId), Billing>,
    by_day: std::collections::BTreeMap<String, Billing>,
    by_requester: HashMap<(String, Requester), Billing>,
    counted: HashSet<CallerReference>,
    /// Paths committed under a monthly cap, by month.
    committed: HashMap<String, u64>,
}

impl MonthCounters {
    fn month(&self, month: &str) -> MonthBilling {
        let distributions: Vec<(DistributionId, Billing)> =
            self.by_month.iter().filter(|((m, _), _)| m == month).map(|((_, d), b)| (d.clone(), *b)).collect();
        let mut total = Billing::default();
        distributions.iter().for_each(|(_, billing)| total.add(*billing));
        // `MonthBilling` keeps the biggest distributions and requesters, as the ledger's ranked lists do.
        let days = self.by_day.iter().filter(|(day, _)| day.starts_with(month)).map(|(d, b)| (d.clone(), *b));
        let requesters =
            self.by_requester.iter().filter(|((m, _), _)| m == month).map(|((_, r), b)| (r.clone(), *b)).collect();
        let mut billing = MonthBilling::new(month, total, distributions, days.collect()).with_requesters(requesters);
        billing.committed = self.committed.get(month).copied().unwrap_or_default();
        billing
    }
}

#[derive(Debug, Default)]
pub struct MemoryLedger {
    pub faults: Faults<LedgerError>,
    /// With the order of insertion, so records created in the same instant list in a reproducible order.
    records: Mutex<HashMap<CallerReference, (usize, BatchRecord)>>,
    keys: Mutex<HashMap<(DistributionId, String), (KeyRecord, String)>>,
    billing: Mutex<MonthCounters>,
    /// Completed records no longer tracked: their completion was recorded without events to publish, or their
    /// events are published (`tracking` removed, in DynamoDB terms).
    settled: Mutex<HashSet<CallerReference>>,
    dead_letters: Mutex<HashMap<MessageId, DeadLetterRecord>>,
    budgets: Mutex<HashMap<DistributionId, BudgetState>>,
    /// Each batch's lease, apart from its record as the ledger keeps it: (owner, until).
    leases: Mutex<HashMap<CallerReference, (String, SystemTime)>>,
    /// Workers sharing the account's rate, with when their check-in runs out.
    roster: Mutex<HashMap<String, SystemTime>>,
}

impl MemoryLedger {
    /// Every batch record, oldest first, expired ones included.
    pub fn records(&self) -> Vec<BatchRecord> {
        let mut records: Vec<(usize, BatchRecord)> = self.records.lock().unwrap().values().cloned().collect();
        records.sort_by_key(|(inserted, record)| (record.created_at, *inserted));
        records.into_iter().map(|(_, record)| record).collect()
    }

    /// Every dead-letter record, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetterRecord> {
        let mut records: Vec<DeadLetterRecord> = self.dead_letters.lock().unwrap().values().cloned().collect();
        records.sort_by(|a, b| (a.created_at, &a.message_id).cmp(&(b.created_at, &b.message_id)));
        records
    }

    /// The distribution's budget as stored, expired reservations included.
    pub fn budget(&self, distribution: &DistributionId) -> BudgetState {
        self.budgets.lock().unwrap().get(distribution).cloned().unwrap_or_default()
    }

    /// Unexpired batch records, newest first.
    fn live_records(&self) -> impl Iterator<Item = BatchRecord> {
        let now = SystemTime::now();
        self.records().into_iter().rev().filter(move |r| r.expires_at > now)
    }
}

impl Ledger for MemoryLedger {
    async fn record_intent(&self, record: &BatchRecord) -> Result<(), LedgerError> {
        self.faults.call("record_intent").await?;
        self.store_intent(record, None);
        Ok(())
    }

    async fn record_intent_capped(&self, record: &BatchRecord, cap: &MonthCap) -> Result<Intent, LedgerError> {
        self.faults.call("record_intent").await?;
        Ok(self.store_intent(record, Some(cap)))
    }

    async fn record_outcome(&self, record: &BatchRecord) -> Result<(), LedgerError> {
        self.faults.call("record_outcome").await?;
        self.store_outcome(record)
    }

    async fn list(
        &self,
        distribution: &DistributionId,
        since: SystemTime,
        limit: usize,
    ) -> Result<Vec<BatchRecord>, LedgerError> {
        self.faults.call("list").await?;
        // Filter before cloning and sorting: a redelivery's lookup should not copy every record of the table.
        let now = SystemTime::now();
        let mut found: Vec<(usize, BatchRecord)> = self
            .records
            .lock()
            .unwrap()
            .values()
            .filter(|(_, r)| &r.distribution_id == distribution && r.created_at >= since && r.expires_at > now)
            .cloned()
            .collect();
        // Newest first, in the order of `records()` reversed.
        found.sort_by_key(|(inserted, record)| std::cmp::Reverse((record.created_at, *inserted)));
        found.truncate(limit);
        Ok(found.into_iter().map(|(_, record)| record).collect())
    }

    async fn take_over(
        &self,
        caller_reference: &CallerReference,
        owner: &str,
        now: SystemTime,
        lease_until: SystemTime,
    ) -> Result<bool, LedgerError> {
        self.faults.call("take_over").await?;
        let mut records = self.records.lock().unwrap();
        let mut leases = self.leases.lock().unwrap();
        let lease_over = leases.get(caller_reference).is_none_or(|(_, until)| *until < now);
        match records.get_mut(caller_reference).map(|(_, record)| record) {
            Some(record) if record.status == BatchStatus::Pending && lease_over => {
                record.owner = owner.to_owned();
                record.lease_until = lease_until;
                leases.insert(caller_reference.clone(), (owner.to_owned(), lease_until));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn renew_lease(
        &self,
        caller_reference: &CallerReference,
        owner: &str,
        lease_until: SystemTime,
    ) -> Result<bool, LedgerError> {
        self.faults.call("renew_lease").await?;
        match self.leases.lock().unwrap().get_mut(caller_reference) {
            Some((holder, until)) if holder == owner => {
                *until = lease_until;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn claim_key(&self, key: &KeyUse, now: SystemTime, expires_at: SystemTime) -> Result<KeyClaim, LedgerError> {
        self.faults.call("claim_key").await?;
        let mut keys = self.keys.lock().unwrap();
        let scoped = (key.distribution_id.clone(), key.key.clone());
        match keys.get(&scoped) {
            Some((claim, content)) if claim.message_id != key.message_id && claim.expires_at > now => {
                let first_message_id = claim.message_id.clone();
                Ok(if *content == key.content {
                    KeyClaim::Duplicate { first_message_id }
                } else {
                    KeyClaim::Conflict { first_message_id }
                })
            }
            _ => {
                let claim = KeyRecord {
                    key: key.key.clone(),
                    message_id: key.message_id.clone(),
                    distribution_id: key.distribution_id.clone(),
                    created_at: now,
                    expires_at,
                };
                keys.insert(scoped, (claim, key.content.clone()));
                Ok(KeyClaim::First)
            }
        }
    }

    async fn record_completion(&self, completion: &Completion) -> Result<bool, LedgerError> {
        self.faults.call("record_completion").await?;
        self.store_completion(completion)
    }

    async fn mark_published(
        &self,
        caller_reference: &CallerReference,
        kind: EventKind,
        settled: bool,
    ) -> Result<(), LedgerError> {
        self.faults.call("mark_published").await?;
        let mut records = self.records.lock().unwrap();
        let (_, stored) =
            records.get_mut(caller_reference).ok_or_else(|| LedgerError::Conflict(caller_reference.to_string()))?;
        if !stored.published.contains(&kind) {
            stored.published.push(kind);
        }
        if settled {
            self.settled.lock().unwrap().insert(caller_reference.clone());
        }
        Ok(())
    }

    async fn batch(&self, caller_reference: &CallerReference) -> Result<Option<BatchRecord>, LedgerError> {
        Ok(self.live_records().find(|r| &r.caller_reference == caller_reference))
    }

    async fn month_billing(&self, month: &str) -> Result<MonthBilling, LedgerError> {
        Ok(self.billing.lock().unwrap().month(month))
    }

    async fn month_totals(&self, month: &str) -> Result<MonthBilling, LedgerError> {
        let billing = self.billing.lock().unwrap().month(month);
        Ok(MonthBilling { distributions: Vec::new(), requesters: Vec::new(), days: Vec::new(), ..billing })
    }

    async fn dead_letter(&self, message: &MessageId) -> Result<Option<DeadLetterRecord>, LedgerError> {
        let now = SystemTime::now();
        Ok(self.dead_letters.lock().unwrap().get(message).filter(|d| d.expires_at > now).cloned())
    }

    async fn mark_dead_letter_published(&self, message: &MessageId) -> Result<(), LedgerError> {
        self.faults.call("mark_published").await?;
        match self.dead_letters.lock().unwrap().get_mut(message) {
            Some(record) => {
                record.outbox = false;
                Ok(())
            }
            None => Err(LedgerError::Conflict(message.to_string())),
        }
    }

    async fn in_progress(
        &self,
        created_before: SystemTime,
        after: Option<&InProgressCursor>,
        limit: usize,
    ) -> Result<InProgress, LedgerError> {
        self.faults.call("in_progress").await?;
        let records = self.records.lock().unwrap();
        let settled = self.settled.lock().unwrap();
        let owed = |r: &BatchRecord| match r.status {
            BatchStatus::Accepted => r.submitted().map(Owed::Batch),
            BatchStatus::Completed if !settled.contains(&r.caller_reference) => r.submitted().map(Owed::Batch),
            BatchStatus::Failed if r.outbox && !settled.contains(&r.caller_reference) => Some(r.failure_owed()),
            _ => None,
        };
        // As the index sorts them: by creation time, then by key.
        let sorted = |at: SystemTime, key: String| (humantime::format_rfc3339_millis(at).to_string(), key);
        let mut found: Vec<((String, String), Owed)> = records
            .values()
            .filter(|(_, r)| r.tracking_abandoned.is_none())
            .filter_map(|(_, r)| owed(r).map(|o| (sorted(r.created_at, format!("batch#{}", r.caller_reference)), o)))
            .collect();
        let dead_letters = self.dead_letters.lock().unwrap();
        found.extend(dead_letters.values().filter(|d| d.outbox).map(|d| {
            let owed = Owed::DeadLetter { message_id: d.message_id.clone(), created_at: d.created_at };
            (sorted(d.created_at, format!("dlq#{}", d.message_id)), owed)
        }));
        let before = humantime::format_rfc3339_millis(created_before).to_string();
        let start = after.map(|c| (c.created_at.clone(), c.key.clone()));
        found.retain(|(at, _)| at.0 <= before && start.as_ref().is_none_or(|start| at > start));
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.truncate(limit);
        let next = (found.len() == limit && limit > 0)
            .then(|| {
                found
                    .last()
                    .map(|((created_at, key), _)| InProgressCursor { created_at: created_at.clone(), key: key.clone() })
            })
            .flatten();
        Ok(InProgress { owed: found.into_iter().map(|(_, owed)| owed).collect(), next })
    }

    async fn give_up_tracking(&self, owed: &Owed, reason: &str) -> Result<(), LedgerError> {
        self.faults.call("give_up_tracking").await?;
        let reference = match owed {
            Owed::Batch(submitted) => &submitted.caller_reference,
            Owed::Failure { caller_reference, .. } => caller_reference,
            Owed::DeadLetter { message_id, .. } => {
                let mut dead_letters = self.dead_letters.lock().unwrap();
                let record = dead_letters.get_mut(message_id).ok_or_else(|| LedgerError::Conflict(owed.subject()))?;
                record.outbox = false;
                return Ok(());
            }
        };
        let mut records = self.records.lock().unwrap();
        let (_, record) = records.get_mut(reference).ok_or_else(|| LedgerError::Conflict(owed.subject()))?;
        record.tracking_abandoned = Some(reason.to_owned());
        self.settled.lock().unwrap().insert(reference.clone());
        Ok(())
    }

    async fn record_dead_letter(&self, record: &DeadLetterRecord) -> Result<(), LedgerError> {
        self.faults.call("record_dead_letter").await?;
        self.dead_letters.lock().unwrap().insert(record.message_id.clone(), record.clone());
        Ok(())
    }
}

impl AuditLog for MemoryLedger {
    async fn batch_by_invalidation(&self, id: &str) -> Result<Option<BatchRecord>, LedgerError> {
        Ok(self.live_records().find(|r| r.invalidation_id.as_deref() == Some(id)))
    }

    async fn batches_with_message(
        &self,
        message: &MessageId,
        distribution: Option<&DistributionId>,
        since: SystemTime,
    ) -> Result<Vec<BatchRecord>, LedgerError> {
        Ok(self
            .live_records()
            .filter(|r| distribution.is_none_or(|d| &r.distribution_id == d))
            .filter(|r| r.created_at >= since && r.message_ids.contains(message))
            .collect())
    }

    async fn latest_covering(
        &self,
        distribution: &DistributionId,
        path: &str,
        since: SystemTime,
    ) -> Result<Option<BatchRecord>, LedgerError> {
        Ok(self.live_records().find(|r| {
            &r.distribution_id == distribution
                && r.created_at >= since
                && r.status.is_accepted()
                && is_covered_by(path, &r.paths)
        }))
    }

    async fn key_claim(&self, distribution: &DistributionId, key: &str) -> Result<Option<KeyRecord>, LedgerError> {
        let now = SystemTime::now();
        let keys = self.keys.lock().unwrap();
        Ok(keys.get(&(distribution.clone(), key.to_owned())).map(|(k, _)| k).filter(|k| k.expires_at > now).cloned())
    }

    async fn failures(&self, since: SystemTime, limit: usize) -> Result<Vec<FailureRecord>, LedgerError> {
        let now = SystemTime::now();
        let batches = self
            .live_records()
            .filter(|r| (r.status == BatchStatus::Failed || r.tracking_abandoned.is_some()) && r.created_at >= since)
            .map(|record| FailureRecord::Batch(Box::new(record)));
        let dead_letters = self
            .dead_letters()
            .into_iter()
            .filter(|d| d.created_at >= since && d.expires_at > now)
            .map(FailureRecord::DeadLetter);
        let mut failures: Vec<FailureRecord> = batches.chain(dead_letters).collect();
        failures.sort_by_key(|f| std::cmp::Reverse(f.created_at()));
        failures.truncate(limit);
        Ok(failures)
    }

    async fn budgets(&self) -> Result<Vec<(DistributionId, BudgetState)>, LedgerError> {
        self.faults.call("budgets").await?;
        let budgets = self.budgets.lock().unwrap();
        Ok(budgets.iter().map(|(distribution, budget)| (distribution.clone(), budget.clone())).collect())
    }

    async fn pending_batches(&self, limit: usize) -> Result<Vec<BatchSummary>, LedgerError> {
        self.faults.call("pending_batches").await?;
        let mut pending: Vec<BatchSummary> =
            self.live_records().filter(|r| r.status == BatchStatus::Pending).map(|r| (&r).into()).collect();
        pending.reverse();
        pending.truncate(limit);
        Ok(pending)
    }

    async fn recent_batches(&self, limit: usize) -> Result<Vec<BatchSummary>, LedgerError> {
        self.faults.call("recent_batches").await?;
        let done = self.live_records().filter(|r| r.status != BatchStatus::Pending);
        Ok(done.take(limit).map(|r| (&r).into()).collect())
    }
}

impl MemoryLedger {
    /// `record_intent`, or under `cap` `record_intent_capped`, without faults.
    fn store_intent(&self, record: &BatchRecord, cap: Option<&MonthCap>) -> Intent {
        let mut records = self.records.lock().unwrap();
        if records.contains_key(&record.caller_reference) {
            return Intent::Recorded;
        }
        if let Some(cap) = cap {
            let counters = &mut *self.billing.lock().unwrap();
            let spent = counters.month(&cap.month).spent();
            if spent + record.paths.len() as u64 > cap.limit {
                return Intent::OverCap { spent };
            }
            *counters.committed.entry(cap.month.clone()).or_default() += record.paths.len() as u64;
        }
        let inserted = records.len();
        records.insert(record.caller_reference.clone(), (inserted, record.clone()));
        let lease = (record.owner.clone(), record.lease_until);
        self.leases.lock().unwrap().insert(record.caller_reference.clone(), lease);
        Intent::Recorded
    }

    /// `record_outcome` without faults.
    fn store_outcome(&self, record: &BatchRecord) -> Result<(), LedgerError> {
        let mut records = self.records.lock().unwrap();
        let (_, stored) = records
            .get_mut(&record.caller_reference)
            .ok_or_else(|| LedgerError::Conflict(record.caller_reference.to_string()))?;
        stored.status = record.status;
        stored.invalidation_id.clone_from(&record.invalidation_id);
        stored.cloudfront_status.clone_from(&record.cloudfront_status);
        stored.submitted_at = record.submitted_at;
        stored.failure.clone_from(&record.failure);
        stored.outbox = record.outbox;
        if let (BatchStatus::Accepted, Some(submitted_at)) = (record.status, record.submitted_at) {
            let counters = &mut *self.billing.lock().unwrap();
            if counters.counted.insert(record.caller_reference.clone()) {
                let key = (billing_month(submitted_at), record.distribution_id.clone());
                counters.by_month.entry(key).or_default().add(Billing::of(record));
                counters.by_day.entry(billing_day(submitted_at)).or_default().add(Billing::of(record));
                for (requester, share) in Billing::shares_of(record) {
                    counters.by_requester.entry((billing_month(submitted_at), requester)).or_default().add(share);
                }
            }
        }
        Ok(())
    }

    /// `record_completion` without faults.
    fn store_completion(&self, completion: &Completion) -> Result<bool, LedgerError> {
        let mut records = self.records.lock().unwrap();
        let (_, stored) = records
            .get_mut(&completion.caller_reference)
            .ok_or_else(|| LedgerError::Conflict(completion.caller_reference.to_string()))?;
        if stored.status == BatchStatus::Completed {
            return Ok(false);
        }
        stored.complete(completion);
        if !completion.keep_tracking {
            self.settled.lock().unwrap().insert(completion.caller_reference.clone());
        }
        Ok(true)
    }

    /// `renew_reservation` without faults.
    fn store_renewal(
        &self,
        distribution: &DistributionId,
        id: &CallerReference,
        until: SystemTime,
        invalidation_id: Option<&str>,
    ) -> bool {
        let mut budgets = self.budgets.lock().unwrap();
        let found = budgets.get_mut(distribution).and_then(|b| b.reservations.iter_mut().find(|r| &r.id == id));
        found
            .map(|reservation| {
                reservation.until = until;
                if let Some(invalidation_id) = invalidation_id {
                    reservation.invalidation_id = Some(invalidation_id.to_owned());
                }
            })
            .is_some()
    }

    fn store_release(&self, distribution: &DistributionId, id: &CallerReference) {
        if let Some(budget) = self.budgets.lock().unwrap().get_mut(distribution) {
            budget.reservations.retain(|r| &r.id != id);
        }
    }
}

/// Stores `reservation` in `budget`, replacing one with its id, and deletes the `expired` ones.
fn reserve(budget: &mut BudgetState, reservation: &Reservation, expired: &[CallerReference]) {
    let expired = &expired[..expired.len().min(crate::ports::budget::MAX_DELETED_AT_ONCE)];
    budget.reservations.retain(|r| r.id != reservation.id && !expired.contains(&r.id));
    budget.reservations.push(reservation.clone());
    budget.version += 1;
}

impl BudgetStore for MemoryLedger {
    async fn read_budget(&self, distribution: &DistributionId) -> Result<BudgetState, LedgerError> {
        self.faults.call("read_budget").await?;
        Ok(self.budget(distribution))
    }

    async fn write_reservation(
        &self,
        distribution: &DistributionId,
        version: u64,
        reservation: &Reservation,
        expired: &[CallerReference],
    ) -> Result<bool, LedgerError> {
        self.faults.call("write_reservation").await?;
        let mut budgets = self.budgets.lock().unwrap();
        let budget = budgets.entry(distribution.clone()).or_default();
        if budget.version != version {
            return Ok(false);
        }
        reserve(budget, reservation, expired);
        Ok(true)
    }

    async fn renew_reservation(
        &self,
        distribution: &DistributionId,
        id: &CallerReference,
        until: SystemTime,
        invalidation_id: Option<&str>,
    ) -> Result<bool, LedgerError> {
        self.faults.call("renew_reservation").await?;
        Ok(self.store_renewal(distribution, id, until, invalidation_id))
    }

    async fn release_reservation(
        &self,
        distribution: &DistributionId,
        id: &CallerReference,
    ) -> Result<(), LedgerError> {
        self.faults.call("release_reservation").await?;
        self.store_release(distribution, id);
        Ok(())
    }

    // The joint writes fail when either of their parts is made to fail.
    async fn reserve_recording(
        &self,
        distribution: &DistributionId,
        version: u64,
        reservation: &Reservation,
        expired: &[CallerReference],
        intent: &BatchRecord,
        cap: Option<&MonthCap>,
    ) -> Result<ReservationWrite, LedgerError> {
        self.faults.call("write_reservation").await?;
        self.faults.call("record_intent").await?;
        let mut budgets = self.budgets.lock().unwrap();
        let budget = budgets.entry(distribution.clone()).or_default();
        if budget.version != version {
            return Ok(ReservationWrite::VersionMoved);
        }
        if let Intent::OverCap { spent } = self.store_intent(intent, cap) {
            return Ok(ReservationWrite::OverCap { spent });
        }
        reserve(budget, reservation, expired);
        self.faults.answer("reserve_recording")?;
        Ok(ReservationWrite::Written)
    }

    async fn record_acceptance(&self, record: &BatchRecord, until: SystemTime) -> Result<(), LedgerError> {
        self.faults.call("record_outcome").await?;
        self.store_outcome(record)?;
        self.store_renewal(&record.distribution_id, &record.caller_reference, until, record.invalidation_id.as_deref());
        Ok(())
    }

    async fn release_completed(
        &self,
        distribution: &DistributionId,
        completions: &[Completion],
    ) -> Result<Vec<Recorded>, LedgerError> {
        self.faults.call("record_completion").await?;
        self.faults.call("release_reservation").await?;
        let recorded = completions.iter().map(|completion| self.store_completion(completion)).collect();
        for completion in completions {
            self.store_release(distribution, &completion.caller_reference);
        }
        Ok(recorded)
    }

    async fn check_in(&self, worker: &str, now: SystemTime, until: SystemTime) -> Result<Vec<String>, LedgerError> {
        self.faults.call("check_in").await?;
        let mut roster = self.roster.lock().unwrap();
        roster.insert(worker.to_owned(), until);
        let mut live: Vec<String> = roster.iter().filter(|(_, until)| **until > now).map(|(w, _)| w.clone()).collect();
        live.sort_unstable();
        Ok(live)
    }

    async fn check_out(&self, worker: &str) -> Result<(), LedgerError> {
        self.roster.lock().unwrap().remove(worker);
        Ok(())
    }
}
