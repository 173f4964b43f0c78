//! Adoption: the accepted batches a stopped worker left, and giving up on what will never be recorded.

use super::*;

impl<C: Cdn, L: Outbox + DeadLetters + JointWrites> Tracker<C, L> {
    /// Adopts accepted batches whose own worker stopped tracking them, and announces what else the outbox owes,
    /// reading one page of the ledger's in-progress list per round: the next round goes on where this one stopped,
    /// so every item is reached however many there are. A batch whose reservation is still live is left alone:
    /// its worker is alive and renews it while it tracks the invalidation.
    pub(super) async fn adopt(&self, tracked: &mut Vec<Tracked>, cursor: &mut Option<InProgressCursor>) {
        let Some(before) = self.settings.clock.now().checked_sub(self.settings.adopt_after) else { return };
        let page = match self.ledger.in_progress(before, cursor.as_ref(), ADOPT_PAGE).await {
            Ok(page) => page,
            Err(e) => {
                if let Some(suppressed) = log_allowed("adopt_failed") {
                    warn!(error = %e, suppressed, "could not read the accepted batches to adopt; will try again");
                }
                return;
            }
        };
        *cursor = page.next;
        let mut budgets: HashMap<BudgetKey, Option<BudgetState>> = HashMap::new();
        for owed in page.owed {
            let submitted = match owed {
                Owed::Batch(submitted) => submitted,
                Owed::Failure { .. } | Owed::DeadLetter { .. } => {
                    self.announce(&owed).await;
                    continue;
                }
            };
            let known = tracked.iter().any(|t| t.submitted.caller_reference == submitted.caller_reference);
            if known || submitted.submitted_at > before {
                continue;
            }
            let key = self.budget.key(&submitted.target());
            if !budgets.contains_key(&key) {
                budgets.insert(key.clone(), self.ledger.read_budget(&key).await.ok());
            }
            let now = self.settings.clock.now();
            let owner_tracks = |budget: &BudgetState| {
                budget.reservations.iter().any(|r| r.id == submitted.caller_reference && r.until > now)
            };
            // Unreadable budget: look again next round rather than take a live worker's invalidation.
            if budgets[&key].as_ref().is_none_or(owner_tracks) {
                continue;
            }
            info!(invalidation_id = %submitted.invalidation_id, caller_reference = %submitted.caller_reference, status = submitted.status.as_str(), "adopted a batch nobody tracks");
            counter!("cfi_completion_tracking_adopted_total").increment(1);
            let mut entry = self.entry(submitted, false, Duration::ZERO);
            if !self.publish_owed(&mut entry.submitted).await {
                tracked.push(entry);
            }
        }
    }

    /// Takes an invalidation out of tracking for good, recording why, so that no worker reads it again.
    pub(super) async fn give_up(&self, owed: &Owed, reason: &str) {
        counter!("cfi_completion_tracking_abandoned_total").increment(1);
        warn!(about = %owed.subject(), reason, "gave up tracking; the ledger records why (audit --failures)");
        if let Err(e) = self.ledger.give_up_tracking(owed, reason).await {
            warn!(about = %owed.subject(), error = %e, "could not record that tracking was given up; another worker will try");
        }
    }
}
