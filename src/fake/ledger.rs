use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use super::faults::Faults;
use crate::model::{CallerReference, DistributionId, MessageId};
use crate::ports::ledger::{BatchRecord, BatchStatus, KeyClaim, Ledger, LedgerError};

#[derive(Debug, Default)]
pub struct MemoryLedger {
    pub faults: Faults<LedgerError>,
    /// With the order of insertion, so records created in the same instant list in a reproducible order.
    records: Mutex<HashMap<CallerReference, (usize, BatchRecord)>>,
    keys: Mutex<HashMap<String, (MessageId, SystemTime)>>,
}

impl MemoryLedger {
    pub fn records(&self) -> Vec<BatchRecord> {
        let mut records: Vec<(usize, BatchRecord)> = self.records.lock().unwrap().values().cloned().collect();
        records.sort_by_key(|(inserted, record)| (record.created_at, *inserted));
        records.into_iter().map(|(_, record)| record).collect()
    }
}

impl Ledger for MemoryLedger {
    async fn record_intent(&self, record: &BatchRecord) -> Result<(), LedgerError> {
        self.faults.take("record_intent")?;
        let mut records = self.records.lock().unwrap();
        let inserted = records.len();
        records.entry(record.caller_reference.clone()).or_insert_with(|| (inserted, record.clone()));
        Ok(())
    }

    async fn record_outcome(&self, record: &BatchRecord) -> Result<(), LedgerError> {
        self.faults.take("record_outcome")?;
        let mut records = self.records.lock().unwrap();
        let (_, stored) = records
            .get_mut(&record.caller_reference)
            .ok_or_else(|| LedgerError::Conflict(record.caller_reference.to_string()))?;
        stored.status = record.status;
        stored.invalidation_id.clone_from(&record.invalidation_id);
        stored.cloudfront_status.clone_from(&record.cloudfront_status);
        stored.submitted_at = record.submitted_at;
        stored.failure.clone_from(&record.failure);
        Ok(())
    }

    async fn list(
        &self,
        distribution: &DistributionId,
        since: SystemTime,
        limit: usize,
    ) -> Result<Vec<BatchRecord>, LedgerError> {
        self.faults.take("list")?;
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
        self.faults.take("take_over")?;
        let mut records = self.records.lock().unwrap();
        match records.get_mut(caller_reference).map(|(_, record)| record) {
            Some(record) if record.status == BatchStatus::Pending && record.lease_until < now => {
                record.owner = owner.to_owned();
                record.lease_until = lease_until;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn claim_key(
        &self,
        key: &str,
        message_id: &MessageId,
        now: SystemTime,
        expires_at: SystemTime,
    ) -> Result<KeyClaim, LedgerError> {
        self.faults.take("claim_key")?;
        let mut keys = self.keys.lock().unwrap();
        match keys.get(key) {
            Some((first, until)) if first != message_id && *until > now => {
                Ok(KeyClaim::Duplicate { first_message_id: first.clone() })
            }
            _ => {
                keys.insert(key.to_owned(), (message_id.clone(), expires_at));
                Ok(KeyClaim::First)
            }
        }
    }
}
