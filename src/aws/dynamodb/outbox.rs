//! `Outbox` on the ledger table: what carries `tracking` is in `by_tracking` until it is settled or given up.

use super::*;

impl Outbox for DynamoLedger {
    async fn in_progress(
        &self,
        created_before: SystemTime,
        after: Option<&InProgressCursor>,
        limit: usize,
    ) -> Result<InProgress, LedgerError> {
        // Oldest first, only what is old enough, and a page at a time from where the last read stopped: each read
        // stays small however much is in progress, and an item given up leaves the index.
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(TRACKING_INDEX)
            .key_condition_expression("#tracking = :in_progress AND created_at <= :before")
            .expression_attribute_names("#tracking", TRACKING)
            .expression_attribute_values(":in_progress", AttributeValue::S(TRACKING_IN_PROGRESS.into()))
            .expression_attribute_values(":before", timestamp(created_before))
            .limit(page_size(limit))
            .set_exclusive_start_key(after.map(|cursor| {
                HashMap::from([
                    (KEY.to_owned(), AttributeValue::S(cursor.key.clone())),
                    (TRACKING.to_owned(), AttributeValue::S(TRACKING_IN_PROGRESS.into())),
                    ("created_at".to_owned(), AttributeValue::S(cursor.created_at.clone())),
                ])
            }));
        if limit == 0 {
            return Ok(InProgress { owed: Vec::new(), next: None });
        }
        // One page: DynamoDB says where it stopped.
        let page = query.send().await.map_err(|e| self.error(classify(&e)))?;
        let owed = page.items().iter().filter_map(|item| readable(owed_from(item), TRACKING_INDEX)).collect();
        let next = page
            .last_evaluated_key()
            .and_then(|key| Some(InProgressCursor { created_at: string(key, "created_at")?, key: string(key, KEY)? }));
        Ok(InProgress { owed, next })
    }
    async fn give_up_tracking(&self, owed: &Owed, reason: &str) -> Result<(), LedgerError> {
        let (key, batch) = match owed {
            Owed::Batch(submitted) => (key_of(&submitted.caller_reference), true),
            Owed::Failure { caller_reference, .. } => (key_of(caller_reference), false),
            Owed::DeadLetter { message_id, .. } => (dead_letter_key(message_id), false),
        };
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key)
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", KEY)
            .expression_attribute_values(":reason", AttributeValue::S(capped(reason, MAX_REASON_BYTES)));
        // An accepted batch given up joins the failures (`by_outcome`), where operators look.
        update = if batch {
            update
                .update_expression(format!(
                    "REMOVE {TRACKING} SET {TRACKING_ABANDONED} = :reason, outcome = :abandoned"
                ))
                .expression_attribute_values(":abandoned", AttributeValue::S(OUTCOME_ABANDONED.into()))
        } else {
            update.update_expression(format!("REMOVE {TRACKING} SET {TRACKING_ABANDONED} = :reason"))
        };
        match self.conditional(update.send().await)? {
            true => Ok(()),
            false => Err(LedgerError::Conflict(owed.subject())),
        }
    }
    async fn mark_published(
        &self,
        caller_reference: &CallerReference,
        kind: EventKind,
        settled: bool,
    ) -> Result<(), LedgerError> {
        let update = if settled { "ADD #published :kind REMOVE tracking" } else { "ADD #published :kind" };
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key_of(caller_reference))
            .update_expression(update)
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", KEY)
            .expression_attribute_names("#published", PUBLISHED)
            .expression_attribute_values(":kind", AttributeValue::Ss(vec![kind.as_str().to_owned()]))
            .send()
            .await;
        match self.conditional(outcome)? {
            true => Ok(()),
            false => Err(LedgerError::Conflict(caller_reference.to_string())),
        }
    }
    async fn mark_dead_letter_published(&self, message: &MessageId) -> Result<(), LedgerError> {
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, dead_letter_key(message))
            .update_expression("REMOVE tracking")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", KEY)
            .send()
            .await;
        match self.conditional(outcome)? {
            true => Ok(()),
            false => Err(LedgerError::Conflict(message.to_string())),
        }
    }
}
