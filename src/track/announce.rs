//! Events, with the ledger as the outbox: what a batch is owed, published and recorded once published.

use super::*;

impl<C: Cdn, L: Outbox + DeadLetters + JointWrites> Tracker<C, L> {
    /// Publishes the events the batch is owed and not yet recorded as published, recording each once published
    /// (the completed event settles the record); says whether nothing is left to do for a completed batch.
    /// A failed publish is tried again at the next look, so an event may repeat, never go missing.
    pub(super) async fn publish_owed(&self, submitted: &mut Submitted) -> bool {
        let Some(events) = &self.events else { return submitted.status == BatchStatus::Completed };
        let owed: Vec<EventKind> =
            EventKind::owed_by(submitted.status).iter().copied().filter(|k| !submitted.published.contains(k)).collect();
        if owed.is_empty() {
            return submitted.status == BatchStatus::Completed;
        }
        let record = match self.ledger.batch(&submitted.caller_reference).await {
            Ok(Some(record)) => record,
            // Expired meanwhile: nothing to tell anyone any more.
            Ok(None) => return true,
            Err(e) => return self.not_published(&Owed::Batch(submitted.clone()), submitted.submitted_at, &e).await,
        };
        for kind in owed {
            if let Err(e) = events.0.publish(&Event::of(kind, &record)).await {
                return self.not_published(&Owed::Batch(submitted.clone()), submitted.submitted_at, &e).await;
            }
            counter!("cfi_events_published_total", "kind" => kind.as_str()).increment(1);
            let settled = kind == EventKind::Completed;
            if let Err(e) = self.ledger.mark_published(&submitted.caller_reference, kind, settled).await {
                return self.not_published(&Owed::Batch(submitted.clone()), submitted.submitted_at, &e).await;
            }
            submitted.published.push(kind);
        }
        submitted.status == BatchStatus::Completed
    }

    /// An event not published is tried again later, and given up once it has been owed for `EVENTS_GIVE_UP`, so
    /// that the outbox never keeps an event no bus will take: says whether it was given up.
    pub(super) async fn not_published(
        &self,
        owed: &Owed,
        owed_since: SystemTime,
        error: &(dyn std::fmt::Display + Sync),
    ) -> bool {
        counter!("cfi_events_failed_total").increment(1);
        let owed_for = self.settings.clock.now().duration_since(owed_since).unwrap_or_default();
        if owed_for < EVENTS_GIVE_UP {
            if let Some(suppressed) = log_allowed("event_not_published") {
                warn!(about = %owed.subject(), %error, suppressed, "could not publish an event; will try again");
            }
            return false;
        }
        let reason = format!("its events could not be published for {}: {error}", humantime::format_duration(owed_for));
        self.give_up(owed, &reason).await;
        true
    }

    /// Publishes a failed batch's or a dead letter's event and records it published; what fails stays in the
    /// ledger's outbox for the next adoption round.
    pub(super) async fn announce(&self, owed: &Owed) {
        let Some(events) = &self.events else { return };
        let (event, created_at) = match owed {
            Owed::Batch(_) => return,
            Owed::Failure { caller_reference, created_at } => (
                self.ledger.batch(caller_reference).await.map(|r| r.map(|r| Event::of(EventKind::Failed, &r))),
                created_at,
            ),
            Owed::DeadLetter { message_id, created_at } => {
                (self.ledger.dead_letter(message_id).await.map(|r| r.map(|r| Event::of_dead_letter(&r))), created_at)
            }
        };
        let event = match event {
            Ok(Some(event)) => event,
            // Expired meanwhile: nothing to tell anyone any more.
            Ok(None) => return,
            Err(e) => {
                self.not_published(owed, *created_at, &e).await;
                return;
            }
        };
        if let Err(e) = events.0.publish(&event).await {
            self.not_published(owed, *created_at, &e).await;
            return;
        }
        let (kind, recorded) = match owed {
            Owed::Failure { caller_reference, .. } => {
                (EventKind::Failed, self.ledger.mark_published(caller_reference, EventKind::Failed, true).await)
            }
            Owed::DeadLetter { message_id, .. } => {
                (EventKind::DeadLettered, self.ledger.mark_dead_letter_published(message_id).await)
            }
            Owed::Batch(_) => return,
        };
        counter!("cfi_events_published_total", "kind" => kind.as_str()).increment(1);
        if let Err(e) = recorded {
            warn!(error = %e, "published an event but could not record it; it will be published again");
        }
    }
}
