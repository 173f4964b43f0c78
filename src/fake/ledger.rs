use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use super::faults::Faults;
use crate::model::{CallerReference, DistributionId};
use crate::ports::ledger::{BatchRecord, Ledger, LedgerError};

#[derive(Debug, Default)]
pub struct MemoryLedger {
    pub faults: Faults<LedgerError>,
    records: Mutex<HashMap<CallerReference, BatchRecord>>,
}

impl MemoryLedger {
    pub fn records(&self) -> Vec<BatchRecord> {
        let mut records: Vec<_> = self.records.lock().unwrap().values().cloned().collect();
        records.sort_by(|a, b| (a.created_at, &a.caller_reference).cmp(&(b.created_at, &b.caller_reference)));
        records
    }
}

impl Ledger for MemoryLedger {
    async fn record_intent(&self, record: &BatchRecord) -> Result<(), LedgerError> {
        self.faults.take("record_intent")?;
        self.records.lock().unwrap().entry(record.caller_reference.clone()).or_insert_with(|| record.clone());
        Ok(())
    }

    async fn record_outcome(&self, record: &BatchRecord) -> Result<(), LedgerError> {
        self.faults.take("record_outcome")?;
        let mut records = self.records.lock().unwrap();
        let stored = records
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
        let mut found: Vec<BatchRecord> = self
            .records()
            .into_iter()
            .filter(|r| &r.distribution_id == distribution && r.created_at >= since)
            .collect();
        found.reverse();
        found.truncate(limit);
        Ok(found)
    }
}
