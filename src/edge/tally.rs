//! What this worker's checks at the edge came to, for the status page it serves.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::model::CallerReference;
use crate::ports::ledger::VerificationRecord;

/// What this worker's checks at the edge came to, for the status page it serves: final outcomes counted, and the
/// last one. `cf-invalidator status` cannot know (the ledger's board index does not hold verifications).
#[derive(Debug, Default)]
pub struct EdgeTally(Mutex<(BTreeMap<&'static str, u64>, Option<String>)>);

impl EdgeTally {
    pub fn add(&self, caller_reference: &CallerReference, verified: &VerificationRecord) {
        if !verified.outcome.is_final() {
            return;
        }
        let mut tally = self.0.lock().expect("never poisoned");
        *tally.0.entry(verified.outcome.as_str()).or_default() += 1;
        tally.1 = Some(format!("{caller_reference} {}", verified.summary()));
    }

    /// One line: the counts by outcome, and the last check; `None` before any.
    pub fn line(&self) -> Option<String> {
        let tally = self.0.lock().expect("never poisoned");
        let last = tally.1.as_ref()?;
        let counts: Vec<String> = tally.0.iter().map(|(outcome, n)| format!("{n} {outcome}")).collect();
        Some(format!("{}; last: {last}", counts.join(", ")))
    }
}
