//! `Batches` on the ledger table: `batch#<CallerReference>` records, and their leases in
//! `lease#<CallerReference>`.

use super::billing::Billed;
use super::*;

impl DynamoLedger {
    /// An update of a pending batch's lease item (`lease#<CallerReference>`) to `owner` until `lease_until`: the
    /// names and values both take-over and renewal use. The lease is an item of its own so that renewing it every
    /// few seconds writes a few bytes, not the batch's record (up to 400 KB, billed and copied into
    /// `by_distribution` by its whole size).
    pub(super) fn lease_update(
        &self,
        caller_reference: &CallerReference,
        owner: &str,
        lease_until: SystemTime,
    ) -> UpdateBuilder {
        Update::builder()
            .table_name(&self.table)
            .key(KEY, lease_key(caller_reference))
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":lease_until", epoch_millis(lease_until))
            .expression_attribute_values(":ttl", epoch_seconds(lease_until + LEASE_ITEM_RETENTION))
    }
    /// A transaction's writes of an intent: the record, if none is stored under its CallerReference, its lease, and
    /// under `cap` (last) the month's `committed`, if it stays within the cap. `None` when the batch alone is over
    /// the cap.
    pub(super) fn intent_writes(
        &self,
        record: &BatchRecord,
        cap: Option<&MonthCap>,
    ) -> Result<Option<Vec<TransactWriteItem>>, LedgerError> {
        let built = |e: aws_sdk_dynamodb::error::BuildError| LedgerError::Other(e.to_string());
        let intent = Put::builder()
            .table_name(&self.table)
            .set_item(Some(intent_item(record)))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", KEY)
            .build()
            .map_err(built)?;
        let lease = Put::builder().table_name(&self.table).set_item(Some(lease_item(record))).build().map_err(built)?;
        let mut writes =
            vec![TransactWriteItem::builder().put(intent).build(), TransactWriteItem::builder().put(lease).build()];
        let Some(cap) = cap else { return Ok(Some(writes)) };
        let paths = record.paths.len() as u64;
        let Some(most_before) = cap.limit.checked_sub(paths) else { return Ok(None) };
        let commit = Update::builder()
            .table_name(&self.table)
            .key(KEY, cap_key(cap))
            .update_expression("ADD committed :paths SET #ttl = :ttl")
            .condition_expression(
                "(attribute_not_exists(committed) OR committed <= :most_before) \
                 AND (attribute_not_exists(paths_billed) OR paths_billed <= :most_before)",
            )
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":paths", number_of(paths))
            .expression_attribute_values(":most_before", number_of(most_before))
            .expression_attribute_values(":ttl", epoch_seconds(record.expires_at))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(built)?;
        writes.push(TransactWriteItem::builder().update(commit).build());
        Ok(Some(writes))
    }
    /// `record_outcome`, and with `note` (an accepted record's) that update of its reservation in the same write.
    pub(super) async fn outcome(&self, record: &BatchRecord, note: Option<Update>) -> Result<(), LedgerError> {
        let mut assignments = vec!["#status = :status"];
        let mut values = vec![(":status", AttributeValue::S(record.status.as_str().into()))];
        let optional = [
            (
                "invalidation_id = :invalidation_id",
                ":invalidation_id",
                record.invalidation_id.clone().map(AttributeValue::S),
            ),
            ("cloudfront_status = :cf_status", ":cf_status", record.cloudfront_status.clone().map(AttributeValue::S)),
            ("submitted_at = :submitted_at", ":submitted_at", record.submitted_at.map(timestamp)),
            // CloudFront's or DynamoDB's error text: short in practice, bounded all the same.
            (
                "failure = :failure",
                ":failure",
                record.failure.as_deref().map(|f| AttributeValue::S(capped(f, MAX_REASON_BYTES))),
            ),
            // Puts failed batches into the sparse `by_outcome` index.
            (
                "outcome = :outcome",
                ":outcome",
                (record.status == BatchStatus::Failed).then(|| AttributeValue::S(OUTCOME_FAILED.into())),
            ),
            // From the status page's pending batches to its outcomes.
            ("board = :board", ":board", Some(AttributeValue::S(BOARD_DONE.into()))),
            // And accepted ones into `by_tracking`, until their completion (and events) are recorded; failed ones
            // too when their failure is to be announced.
            (
                "tracking = :tracking",
                ":tracking",
                (record.status == BatchStatus::Accepted || (record.status == BatchStatus::Failed && record.outbox))
                    .then(|| AttributeValue::S(TRACKING_IN_PROGRESS.into())),
            ),
        ];
        for (assignment, name, value) in optional {
            if let Some(value) = value {
                assignments.push(assignment);
                values.push((name, value));
            }
        }
        let values: HashMap<String, AttributeValue> = values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        if let (BatchStatus::Accepted, Some(submitted_at)) = (record.status, record.submitted_at) {
            match self.record_billed_acceptance(record, &assignments, &values, &billing_day(submitted_at), note).await?
            {
                Billed::Now => return Ok(()),
                // Billed by an earlier attempt (or another worker): the fields are written below, the counters not.
                Billed::Before => {}
            }
        }
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key_of(&record.caller_reference))
            .update_expression(format!("SET {}", assignments.join(", ")))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", KEY)
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::None)
            .send()
            .await;
        match self.conditional(outcome)? {
            true => Ok(()),
            false => Err(LedgerError::Conflict(record.caller_reference.to_string())),
        }
    }
    /// Makes a batch `Completed` unless it is already; a refusal returns the item, to tell that from a missing one.
    pub(super) fn completion_update(&self, completion: &Completion) -> Result<Update, LedgerError> {
        let time_to_complete = u64::try_from(completion.time_to_complete.as_millis()).unwrap_or(u64::MAX);
        let completed = AttributeValue::S(BatchStatus::Completed.as_str().into());
        Update::builder()
            .table_name(&self.table)
            .key(KEY, key_of(&completion.caller_reference))
            .update_expression(if completion.keep_tracking {
                "SET #status = :status, cloudfront_status = :cf_status, completed_at = :completed_at, \
                     time_to_complete_ms = :time_to_complete"
            } else {
                "SET #status = :status, cloudfront_status = :cf_status, completed_at = :completed_at, \
                     time_to_complete_ms = :time_to_complete REMOVE tracking"
            })
            .condition_expression("attribute_exists(#pk) AND #status <> :status")
            .expression_attribute_names("#pk", KEY)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", completed)
            .expression_attribute_values(":cf_status", AttributeValue::S(completion.cloudfront_status.clone()))
            .expression_attribute_values(":completed_at", timestamp(completion.completed_at))
            .expression_attribute_values(":time_to_complete", AttributeValue::N(time_to_complete.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| LedgerError::Other(e.to_string()))
    }
}

impl Batches for DynamoLedger {
    async fn record_intent(&self, record: &BatchRecord) -> Result<(), LedgerError> {
        let writes = self.intent_writes(record, None)?.unwrap_or_default();
        match self.transact(writes).await? {
            Ok(()) => Ok(()),
            // Not written because an earlier attempt whose answer was lost did: the intent is recorded either way.
            Err(cancelled) if cancelled.refused(0) => Ok(()),
            Err(cancelled) => Err(cancelled.unexpected()),
        }
    }
    async fn record_intent_capped(&self, record: &BatchRecord, cap: &MonthCap) -> Result<Intent, LedgerError> {
        let Some(items) = self.intent_writes(record, Some(cap))? else {
            return Ok(Intent::OverCap { spent: self.month_spent(cap, None).await? });
        };
        let month_at = items.len() - 1;
        match self.transact(items).await? {
            // Recorded now, or recorded and counted by an earlier attempt whose answer was lost.
            Ok(()) => Ok(Intent::Recorded),
            Err(cancelled) if cancelled.refused(0) => Ok(Intent::Recorded),
            Err(cancelled) if cancelled.refused(month_at) => {
                Ok(Intent::OverCap { spent: self.month_spent(cap, cancelled.item(month_at)).await? })
            }
            Err(cancelled) => Err(cancelled.unexpected()),
        }
    }
    async fn record_outcome(&self, record: &BatchRecord) -> Result<(), LedgerError> {
        self.outcome(record, None).await
    }
    async fn list(
        &self,
        distribution: &DistributionId,
        since: SystemTime,
        limit: usize,
    ) -> Result<Vec<BatchRecord>, LedgerError> {
        let query = self.distribution_query(distribution, since, None);
        self.first_items(query, limit, |item| record_from(item).map(Some)).await
    }
    async fn take_over(
        &self,
        caller_reference: &CallerReference,
        owner: &str,
        now: SystemTime,
        lease_until: SystemTime,
    ) -> Result<bool, LedgerError> {
        let built = |e: aws_sdk_dynamodb::error::BuildError| LedgerError::Other(e.to_string());
        // A batch recorded before leases had items of their own has none: its lease is over.
        let lease = self
            .lease_update(caller_reference, owner, lease_until)
            .update_expression("SET #owner = :owner, lease_until = :lease_until, #ttl = :ttl")
            .condition_expression("attribute_not_exists(lease_until) OR lease_until < :now")
            .expression_attribute_values(":now", epoch_millis(now))
            .build()
            .map_err(built)?;
        let batch = Update::builder()
            .table_name(&self.table)
            .key(KEY, key_of(caller_reference))
            .update_expression("SET #owner = :owner, lease_until = :lease_until")
            .condition_expression("#status = :pending")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":lease_until", epoch_millis(lease_until))
            .expression_attribute_values(":pending", AttributeValue::S(BatchStatus::Pending.as_str().into()))
            .build()
            .map_err(built)?;
        let writes = [lease, batch].map(|update| TransactWriteItem::builder().update(update).build());
        match self.transact(writes.to_vec()).await? {
            Ok(()) => Ok(true),
            Err(cancelled) if cancelled.refused(0) || cancelled.refused(1) => Ok(false),
            Err(cancelled) => Err(cancelled.unexpected()),
        }
    }
    async fn renew_lease(
        &self,
        caller_reference: &CallerReference,
        owner: &str,
        lease_until: SystemTime,
    ) -> Result<bool, LedgerError> {
        let update = self
            .lease_update(caller_reference, owner, lease_until)
            .update_expression("SET lease_until = :lease_until, #ttl = :ttl")
            .condition_expression("#owner = :owner")
            .build()
            .map_err(|e| LedgerError::Other(e.to_string()))?;
        self.conditional(self.update_item_of(update).send().await)
    }
    async fn record_completion(&self, completion: &Completion) -> Result<bool, LedgerError> {
        let outcome = self.update_item_of(self.completion_update(completion)?).send().await;
        match outcome {
            Ok(_) => Ok(true),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) if failed.item().is_some() => Ok(false),
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => {
                    Err(LedgerError::Conflict(completion.caller_reference.to_string()))
                }
                _ => Err(self.error(classify(&e))),
            },
        }
    }
    async fn batch(&self, caller_reference: &CallerReference) -> Result<Option<BatchRecord>, LedgerError> {
        self.get(key_of(caller_reference)).await?.map(|item| record_from(&item)).transpose()
    }
    async fn record_verification(
        &self,
        caller_reference: &CallerReference,
        verification: &VerificationRecord,
    ) -> Result<(), LedgerError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key_of(caller_reference))
            .update_expression("SET verification = :verification")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", KEY)
            .expression_attribute_values(":verification", verification_item(&verification.clone().bounded()));
        match self.conditional(request.send().await)? {
            true => Ok(()),
            false => Err(LedgerError::Conflict(caller_reference.to_string())),
        }
    }
}
