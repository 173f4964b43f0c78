//! A pending batch's lease, kept alive while its submission runs.

use std::sync::Arc;

use tokio_util::task::AbortOnDropHandle;
use tracing::warn;

use super::{Ownership, Submitter};
use crate::ports::ledger::{BatchRecord, Batches};
use crate::telemetry::log_allowed;

impl<C, L: Batches> Submitter<C, L> {
    /// Renews the pending batch's lease every third of it while the returned guard lives: a live worker's batch is
    /// never taken over however long it waits, and a dead worker's is taken over within one lease.
    pub(super) fn keep_leased(&self, record: &BatchRecord) -> AbortOnDropHandle<()> {
        let ledger = Arc::clone(&self.ledger);
        let reference = record.caller_reference.clone();
        let Ownership { worker_id, lease, clock, .. } = self.ownership.clone();
        AbortOnDropHandle::new(tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                match ledger.renew_lease(&reference, &worker_id, clock.now() + lease).await {
                    Ok(true) => {}
                    // Accepted, failed or taken over meanwhile: nothing left to keep.
                    Ok(false) => return,
                    Err(e) => {
                        if let Some(suppressed) = log_allowed("lease_renewal_failed") {
                            warn!(caller_reference = %reference, error = %e, suppressed, "could not renew the batch's lease; trying again");
                        }
                    }
                }
            }
        }))
    }
}
