//! `Ledger` and `AuditLog` on Amazon DynamoDB.
//!
//! Table layout (created by `cf-invalidator setup`, documented in docs/design.md and docs/audit.md):
//! - key `pk` (S): `batch#<CallerReference>` per batch, `key#<DistributionId>#<idempotency_key>` per producer key,
//!   `dlq#<message_id>` per dead-lettered message, `budget#<DistributionId>` per distribution's shared
//!   in-progress budget;
//! - global secondary index `by_distribution`: `distribution_id` (S) + `created_at` (S, RFC 3339 UTC, sorts by
//!   time); only batch items carry `distribution_id`;
//! - sparse index `by_invalidation`: `invalidation_id` (S), keys only; only accepted batches carry it;
//! - sparse index `by_outcome`: `outcome` (S, `failed` or `dead_lettered`) + `created_at`; only failed batches
//!   and dead-letter items carry `outcome`;
//! - sparse index `by_board`: `board` (S, `budget`, `pending`, `done` or `workers`) + `created_at`; budget items,
//!   batches and `worker#<id>` items (the roster sharing the account's rate) carry `board`, for the status page.

mod audit;
mod budget;
mod item;
mod schema;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::time::SystemTime;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder as Query;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder as UpdateItem;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, KeysAndAttributes, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};

use self::item::{
    billing_from, day_key, dead_letter_from, dead_letter_item, dead_letter_key, epoch_millis, epoch_seconds,
    intent_item, key_item_key, key_of, key_record_from, month_key, number, number_of, owed_from, record_from,
    requester_month_key, string, strings, timestamp, unexpired,
};
pub use self::schema::{SchemaError, TableCheck, check_table, create_table};
use super::error::{Failure, classify};
use crate::model::text::capped;
use crate::model::{CallerReference, DistributionId, MessageId};
use crate::ports::events::EventKind;
use crate::ports::ledger::{
    BatchRecord, BatchStatus, Completion, DeadLetterRecord, Intent, KeyClaim, KeyRecord, KeyUse, Ledger, LedgerError,
    MonthCap, Owed,
};
use crate::ports::ledger::{Billing, MonthBilling, billing_day};

pub const KEY: &str = "pk";
pub const DISTRIBUTION_INDEX: &str = "by_distribution";
pub const INVALIDATION_INDEX: &str = "by_invalidation";
pub const OUTCOME_INDEX: &str = "by_outcome";
pub const TRACKING_INDEX: &str = "by_tracking";
pub const BOARD_INDEX: &str = "by_board";
/// The `by_board` key: which of the status page's lists an item is in.
pub const BOARD: &str = "board";
pub(crate) const BOARD_BUDGET: &str = "budget";
pub(crate) const BOARD_PENDING: &str = "pending";
/// A batch with an outcome: accepted, completed or failed.
pub(crate) const BOARD_DONE: &str = "done";
/// Workers sharing the account's CreateInvalidation rate, by their last check-in.
pub(crate) const BOARD_WORKERS: &str = "workers";
/// Set on an accepted batch (to `TRACKING_IN_PROGRESS`), removed with its completion: the `by_tracking` key.
pub const TRACKING: &str = "tracking";
pub(crate) const TRACKING_IN_PROGRESS: &str = "in_progress";
/// The events published for a batch (a string set of `EventKind`s).
pub const PUBLISHED: &str = "published";
/// On an accepted batch: the month (`YYYY-MM`) whose counters it was added to, once.
const BILLED_MONTH: &str = "billed_month";
/// Epoch seconds after which DynamoDB may delete the item (the table's TTL attribute).
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// Values of `outcome`, the `by_outcome` partition key.
pub const OUTCOME_FAILED: &str = "failed";
pub const OUTCOME_DEAD_LETTERED: &str = "dead_lettered";

/// Dead-letter and key items name their distribution in this attribute, not in `distribution_id`, so that they
/// stay out of `by_distribution`: that index holds batches only, and the worker reads it on redelivery.
const FOR_DISTRIBUTION: &str = "for_distribution";
/// On a key claim: the digest of what the claiming message asked for.
const CONTENT: &str = "content";

/// Bounds a dead-letter item's reason: the whole reason, which the DLQ attribute may show only the start of, far
/// below DynamoDB's 400 KB item limit.
const MAX_REASON_BYTES: usize = 8_192;

/// DynamoDB items are limited to 400 KB; these bound the two lists that grow with the batch, leaving room for the
/// rest. A record whose lists were cut says so in `paths_truncated`/`message_ids_truncated`.
const MAX_PATH_BYTES: usize = 250_000;
const MAX_MESSAGE_ID_BYTES: usize = 100_000;
/// Requesters are free text from producers: each is cut to this many bytes, and all of them together to
/// REQUESTERS_BYTES, so a producer's essay cannot push a batch record over the item limit.
const MAX_REQUESTER_BYTES: usize = 256;
const REQUESTERS_BYTES: usize = 20_000;

#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

/// Items per page of a query: DynamoDB wants 1 to 2^31 - 1.
fn page_size(items: usize) -> i32 {
    i32::try_from(items.max(1)).unwrap_or(i32::MAX)
}

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn error(&self, failure: Failure) -> LedgerError {
        let text = failure.describe();
        match failure {
            Failure::Credentials(_) => LedgerError::Credentials(text),
            _ if failure.is_throttling_or_server_fault() => LedgerError::Unavailable(text),
            // A table created by an older `setup`: a query names an index it does not have yet. DynamoDB answers
            // ValidationException "…does not have the specified index…", the emulator ResourceNotFoundException
            // "Invalid index…".
            Failure::Service { ref code, ref message, .. }
                if matches!(code.as_str(), "ValidationException" | "ResourceNotFoundException")
                    && (message.contains("specified index") || message.contains("Invalid index")) =>
            {
                LedgerError::MissingIndex { table: self.table.clone(), message: text }
            }
            Failure::Service { ref code, .. } if code == "ResourceNotFoundException" => {
                LedgerError::NotFound(self.table.clone())
            }
            Failure::Service { ref code, .. } if code.contains("AccessDenied") => {
                LedgerError::AccessDenied { table: self.table.clone(), message: text }
            }
            Failure::Service { ref code, .. } if code == "ValidationException" => LedgerError::Invalid(text),
            _ => LedgerError::Other(text),
        }
    }

    /// An UpdateItem of a batch's lease: the names and values both take-over and renewal use.
    fn lease_update(&self, caller_reference: &CallerReference, owner: &str, lease_until: SystemTime) -> UpdateItem {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key_of(caller_reference))
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":lease_until", epoch_millis(lease_until))
            .expression_attribute_values(":pending", AttributeValue::S(BatchStatus::Pending.as_str().into()))
    }

    /// Whether a conditional write was made: false when its condition did not hold.
    fn conditional<T, E>(&self, outcome: Result<T, SdkError<E, HttpResponse>>) -> Result<bool, LedgerError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match outcome {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException") => {
                Ok(false)
            }
            Err(e) => Err(self.error(classify(&e))),
        }
    }

    /// The one-item request for an update built for a transaction: each write is built once, alone or joint.
    fn update_item_of(&self, update: Update) -> UpdateItem {
        self.client
            .update_item()
            .table_name(update.table_name)
            .set_key(Some(update.key))
            .update_expression(update.update_expression)
            .set_condition_expression(update.condition_expression)
            .set_expression_attribute_names(update.expression_attribute_names)
            .set_expression_attribute_values(update.expression_attribute_values)
            .set_return_values_on_condition_check_failure(update.return_values_on_condition_check_failure)
    }

    /// Writes `items` in one transaction; a cancelled one answers which items refused, by position.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Result<(), Cancelled>, LedgerError> {
        let Err(e) = self.client.transact_write_items().set_transact_items(Some(items)).send().await else {
            return Ok(Ok(()));
        };
        match e.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(canceled)) => {
                Ok(Err(Cancelled(canceled.cancellation_reasons().to_vec())))
            }
            _ => Err(self.error(classify(&e))),
        }
    }

    /// A distribution's unexpired batches created at or after `since`, newest first; `filter` narrows them down
    /// further, with placeholders the caller binds.
    fn distribution_query(&self, distribution: &DistributionId, since: SystemTime, filter: Option<&str>) -> Query {
        let unexpired = "#ttl > :now";
        let filter = filter.map_or_else(|| unexpired.to_owned(), |extra| format!("{unexpired} AND ({extra})"));
        self.client
            .query()
            .table_name(&self.table)
            .index_name(DISTRIBUTION_INDEX)
            .key_condition_expression("distribution_id = :d AND created_at >= :since")
            .filter_expression(filter)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":d", AttributeValue::S(distribution.to_string()))
            .expression_attribute_values(":since", timestamp(since))
            .expression_attribute_values(":now", epoch_seconds(SystemTime::now()))
            .scan_index_forward(false)
    }

    /// Hands every item of every page of `query` to `visit`, until it breaks or the pages run out.
    async fn each_item(
        &self,
        query: Query,
        mut visit: impl FnMut(&Item) -> Result<ControlFlow<()>, LedgerError>,
    ) -> Result<(), LedgerError> {
        let mut start_key = None;
        loop {
            let page =
                query.clone().set_exclusive_start_key(start_key).send().await.map_err(|e| self.error(classify(&e)))?;
            for item in page.items() {
                if visit(item)?.is_break() {
                    return Ok(());
                }
            }
            start_key = page.last_evaluated_key().cloned();
            if start_key.is_none() {
                return Ok(());
            }
        }
    }

    /// The unexpired items with these keys, by their `pk`: BatchGetItem, 100 keys a request (its limit), so a month with a
    /// thousand distributions costs eleven requests, not a thousand.
    async fn get_many(&self, keys: Vec<AttributeValue>) -> Result<HashMap<String, Item>, LedgerError> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(100) {
            let wanted = chunk.iter().map(|key| HashMap::from([(KEY.to_owned(), key.clone())])).collect();
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(wanted))
                    .build()
                    .map_err(|e| LedgerError::Other(e.to_string()))?,
            );
            // DynamoDB may leave keys unprocessed when it is busy: ask again for those.
            while let Some(keys) = request.take() {
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, keys)
                    .send()
                    .await
                    .map_err(|e| self.error(classify(&e)))?;
                let items = output.responses().and_then(|r| r.get(&self.table)).into_iter().flatten();
                for item in items.filter(|item| unexpired(item)) {
                    if let Some(key) = string(item, KEY) {
                        found.insert(key, item.clone());
                    }
                }
                request = output
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .filter(|k| !k.keys().is_empty())
                    .cloned();
            }
        }
        Ok(found)
    }

    /// A query of an index for its unexpired items (`:now` is bound; the caller adds the key condition).
    fn unexpired_in(&self, index: &str) -> Query {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .filter_expression("#ttl > :now")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", epoch_seconds(SystemTime::now()))
    }

    /// What `read` makes of the items of `query`, page after page, until it made `limit` things.
    async fn first_items<T>(
        &self,
        query: Query,
        limit: usize,
        read: impl Fn(&Item) -> Result<Option<T>, LedgerError>,
    ) -> Result<Vec<T>, LedgerError> {
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        self.each_item(query.limit(page_size(limit)), |item| {
            found.extend(read(item)?);
            Ok(if found.len() >= limit { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
        })
        .await?;
        Ok(found)
    }

    /// Fails with a clear error when the table is missing or unreadable: run before the worker starts.
    pub async fn check_access(&self) -> Result<(), LedgerError> {
        self.client.describe_table().table_name(&self.table).send().await.map_err(|e| self.error(classify(&e)))?;
        Ok(())
    }
}

/// Why DynamoDB cancelled a transaction: one reason per item, in order.
#[derive(Debug)]
struct Cancelled(Vec<CancellationReason>);

impl Cancelled {
    /// The item's condition did not hold.
    fn refused(&self, item: usize) -> bool {
        self.code(item) == Some("ConditionalCheckFailed")
    }

    /// A concurrent write to the item got in the way: trying again may succeed.
    fn conflicted(&self, item: usize) -> bool {
        self.code(item) == Some("TransactionConflict")
    }

    fn code(&self, item: usize) -> Option<&str> {
        self.0.get(item).and_then(|r| r.code())
    }

    fn item(&self, item: usize) -> Option<&Item> {
        self.0.get(item).and_then(|r| r.item())
    }

    /// For a cancellation the caller has no answer for: worth trying again when only concurrent writes to the
    /// same items (the month's counters are shared by every worker) or throttling stood in the way.
    fn unexpected(&self) -> LedgerError {
        let codes: Vec<&str> = self.0.iter().filter_map(|r| r.code()).filter(|code| *code != "None").collect();
        let text = format!("DynamoDB cancelled the transaction: {}", codes.join(", "));
        let passing = |code: &&str| matches!(*code, "TransactionConflict" | "ThrottlingError");
        if codes.iter().all(passing) { LedgerError::Unavailable(text) } else { LedgerError::Other(text) }
    }
}

/// Whether an acceptance's billing was counted by this write or an earlier one.
enum Billed {
    Now,
    Before,
}

impl DynamoLedger {
    /// The acceptance's fields and `billed_month`, and the counters of its month (in total, for the distribution
    /// and for each requester) and of its day, in one transaction conditioned on the batch not being billed yet: counters move
    /// once per CallerReference.
    async fn record_billed_acceptance(
        &self,
        record: &BatchRecord,
        assignments: &[&str],
        values: &HashMap<String, AttributeValue>,
        day: &str,
        note: Option<Update>,
    ) -> Result<Billed, LedgerError> {
        let month = &day[..7];
        let mut batch_values = values.clone();
        batch_values.insert(":month".into(), AttributeValue::S(month.to_owned()));
        let batch = Update::builder()
            .table_name(&self.table)
            .key(KEY, key_of(&record.caller_reference))
            .update_expression(format!("SET {}, {BILLED_MONTH} = :month", assignments.join(", ")))
            .condition_expression(format!("attribute_exists(#pk) AND attribute_not_exists({BILLED_MONTH})"))
            .expression_attribute_names("#pk", KEY)
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(batch_values))
            .build()
            .map_err(|e| LedgerError::Other(e.to_string()))?;
        // Kept as long as the month's last batch is: `--retention` after it. `names` adds to a string set of the
        // month's item: the distributions and requesters whose items to read.
        let counter = |key: AttributeValue, billing: Billing, names: &[(&str, Vec<String>)]| {
            let mut expression = "ADD batches :batches, messages :messages, paths_billed :billed, \
                                  paths_requested :requested, paths_distinct :distinct, wildcards :wildcards"
                .to_owned();
            let mut update = Update::builder()
                .table_name(&self.table)
                .key(KEY, key)
                .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                .expression_attribute_values(":ttl", epoch_seconds(record.expires_at))
                .expression_attribute_values(":batches", number_of(billing.batches))
                .expression_attribute_values(":messages", number_of(billing.messages))
                .expression_attribute_values(":billed", number_of(billing.paths_billed))
                .expression_attribute_values(":requested", number_of(billing.paths_requested))
                .expression_attribute_values(":distinct", number_of(billing.paths_distinct))
                .expression_attribute_values(":wildcards", number_of(billing.wildcards));
            for (attribute, values) in names.iter().filter(|(_, values)| !values.is_empty()) {
                expression.push_str(&format!(", {attribute} :{attribute}"));
                update =
                    update.expression_attribute_values(format!(":{attribute}"), AttributeValue::Ss(values.clone()));
            }
            update
                .update_expression(format!("{expression} SET #ttl = :ttl"))
                .build()
                .map_err(|e| LedgerError::Other(e.to_string()))
        };
        let billing = Billing::of(record);
        let shares = Billing::shares_of(record);
        let requesters: Vec<String> =
            shares.iter().map(|(requester, _)| capped(requester, MAX_REQUESTER_BYTES)).collect();
        let names = [("distributions", vec![record.distribution_id.to_string()]), ("requesters", requesters)];
        let mut updates = vec![
            batch,
            counter(month_key(month, None), billing, &names)?,
            counter(month_key(month, Some(&record.distribution_id)), billing, &[])?,
            counter(day_key(day), billing, &[])?,
        ];
        for (requester, share) in &shares {
            updates.push(counter(requester_month_key(month, requester), *share, &[])?);
        }
        let mut noted = note.is_some();
        updates.extend(note);
        let mut items: Vec<TransactWriteItem> =
            updates.into_iter().map(|update| TransactWriteItem::builder().update(update).build()).collect();
        loop {
            let cancelled = match self.transact(items.clone()).await? {
                Ok(()) => return Ok(Billed::Now),
                Err(cancelled) => cancelled,
            };
            // Billed before, or no such record: the plain update tells which.
            if cancelled.refused(0) {
                return Ok(Billed::Before);
            }
            let last = items.len() - 1;
            if noted && (cancelled.refused(last) || cancelled.conflicted(last)) {
                // The reservation is gone (expired and deleted), or being written: the outcome matters, the note
                // only saves a resync a question.
                items.pop();
                noted = false;
                continue;
            }
            return Err(cancelled.unexpected());
        }
    }
}

impl DynamoLedger {
    /// `MonthBilling::spent` of the month, from its item as a refused condition returned it, or read now (not
    /// every DynamoDB-compatible store returns it).
    async fn month_spent(&self, month: &str, item: Option<&Item>) -> Result<u64, LedgerError> {
        let item = match item {
            Some(item) => item.clone(),
            None => self.get(month_key(month, None)).await?.unwrap_or_default(),
        };
        Ok(number(&item, "committed").unwrap_or_default().max(billing_from(&item).paths_billed))
    }

    /// `record_outcome`, and with `note` (an accepted record's) that update of its reservation in the same write.
    async fn outcome(&self, record: &BatchRecord, note: Option<Update>) -> Result<(), LedgerError> {
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
            ("failure = :failure", ":failure", record.failure.clone().map(AttributeValue::S)),
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
    fn completion_update(&self, completion: &Completion) -> Result<Update, LedgerError> {
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

    /// A transaction's writes of an intent: the record, if none is stored under its CallerReference, and under
    /// `cap` the month's `committed`, if it stays within the cap. `None` when the batch alone is over the cap.
    fn intent_writes(
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
        let mut writes = vec![TransactWriteItem::builder().put(intent).build()];
        let Some(cap) = cap else { return Ok(Some(writes)) };
        let paths = record.paths.len() as u64;
        let Some(most_before) = cap.limit.checked_sub(paths) else { return Ok(None) };
        let commit = Update::builder()
            .table_name(&self.table)
            .key(KEY, month_key(&cap.month, None))
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
}

impl Ledger for DynamoLedger {
    async fn record_intent(&self, record: &BatchRecord) -> Result<(), LedgerError> {
        let outcome = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(intent_item(record)))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", KEY)
            .send()
            .await;
        // Not written because an earlier attempt whose answer was lost did: the intent is recorded either way.
        self.conditional(outcome).map(|_| ())
    }

    async fn record_intent_capped(&self, record: &BatchRecord, cap: &MonthCap) -> Result<Intent, LedgerError> {
        let Some(items) = self.intent_writes(record, Some(cap))? else {
            return Ok(Intent::OverCap { spent: self.month_spent(&cap.month, None).await? });
        };
        match self.transact(items).await? {
            // Recorded now, or recorded and counted by an earlier attempt whose answer was lost.
            Ok(()) => Ok(Intent::Recorded),
            Err(cancelled) if cancelled.refused(0) => Ok(Intent::Recorded),
            Err(cancelled) if cancelled.refused(1) => {
                Ok(Intent::OverCap { spent: self.month_spent(&cap.month, cancelled.item(1)).await? })
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
        let outcome = self
            .lease_update(caller_reference, owner, lease_until)
            .update_expression("SET #owner = :owner, lease_until = :lease_until")
            .condition_expression("#status = :pending AND lease_until < :now")
            .expression_attribute_values(":now", epoch_millis(now))
            .send()
            .await;
        self.conditional(outcome)
    }

    async fn renew_lease(
        &self,
        caller_reference: &CallerReference,
        owner: &str,
        lease_until: SystemTime,
    ) -> Result<bool, LedgerError> {
        let outcome = self
            .lease_update(caller_reference, owner, lease_until)
            .update_expression("SET lease_until = :lease_until")
            .condition_expression("#status = :pending AND #owner = :owner")
            .send()
            .await;
        self.conditional(outcome)
    }

    async fn claim_key(&self, key: &KeyUse, now: SystemTime, expires_at: SystemTime) -> Result<KeyClaim, LedgerError> {
        let message_id = &key.message_id;
        let outcome = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, key_item_key(&key.distribution_id, &key.key))
            .item("message_id", AttributeValue::S(message_id.0.clone()))
            .item(CONTENT, AttributeValue::S(key.content.clone()))
            // So that the audit finds the key's batches with a query of one distribution instead of a scan.
            .item(FOR_DISTRIBUTION, AttributeValue::S(key.distribution_id.to_string()))
            .item("created_at", timestamp(now))
            .item(TTL_ATTRIBUTE, epoch_seconds(expires_at))
            .condition_expression("attribute_not_exists(#pk) OR #ttl <= :now OR message_id = :message_id")
            .expression_attribute_names("#pk", KEY)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", epoch_seconds(now))
            .expression_attribute_values(":message_id", AttributeValue::S(message_id.0.clone()))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        match outcome {
            Ok(_) => Ok(KeyClaim::First),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(failed)) => {
                    let first = failed.item().and_then(|item| string(item, "message_id")).unwrap_or_default();
                    let first_message_id = MessageId(first);
                    let same = failed.item().and_then(|item| string(item, CONTENT)).as_ref() == Some(&key.content);
                    Ok(if same {
                        KeyClaim::Duplicate { first_message_id }
                    } else {
                        KeyClaim::Conflict { first_message_id }
                    })
                }
                _ => Err(self.error(classify(&e))),
            },
        }
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

    async fn batch(&self, caller_reference: &CallerReference) -> Result<Option<BatchRecord>, LedgerError> {
        self.get(key_of(caller_reference)).await?.map(|item| record_from(&item)).transpose()
    }

    async fn month_billing(&self, month: &str) -> Result<MonthBilling, LedgerError> {
        let Some(total) = self.get(month_key(month, None)).await? else {
            return Ok(MonthBilling::new(month, Billing::default(), Vec::new(), Vec::new()));
        };
        let distributions: Vec<DistributionId> =
            strings(&total, "distributions").iter().filter_map(|d| DistributionId::parse(d).ok()).collect();
        let requester_names = strings(&total, "requesters");
        let day_names: Vec<String> = (1..=31).map(|d| format!("{month}-{d:02}")).collect();
        let keys = distributions
            .iter()
            .map(|d| month_key(month, Some(d)))
            .chain(requester_names.iter().map(|r| requester_month_key(month, r)))
            .chain(day_names.iter().map(|d| day_key(d)));
        let found = self.get_many(keys.collect()).await?;
        let counters = |key: AttributeValue| key.as_s().ok().and_then(|key| found.get(key)).map(billing_from);
        let distributions = distributions
            .iter()
            .map(|d| (d.clone(), counters(month_key(month, Some(d))).unwrap_or_default()))
            .collect();
        let requesters = requester_names
            .into_iter()
            .map(|r| {
                let billing = counters(requester_month_key(month, &r)).unwrap_or_default();
                (r, billing)
            })
            .collect();
        let days = day_names.into_iter().filter_map(|day| counters(day_key(&day)).map(|b| (day, b))).collect();
        let mut billing =
            MonthBilling::new(month, billing_from(&total), distributions, days).with_requesters(requesters);
        billing.committed = number(&total, "committed").unwrap_or_default();
        Ok(billing)
    }

    async fn dead_letter(&self, message: &MessageId) -> Result<Option<DeadLetterRecord>, LedgerError> {
        self.get(dead_letter_key(message)).await?.map(|item| dead_letter_from(&item)).transpose()
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

    async fn in_progress(&self, limit: usize) -> Result<Vec<Owed>, LedgerError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(TRACKING_INDEX)
            .key_condition_expression("#tracking = :in_progress")
            .expression_attribute_names("#tracking", TRACKING)
            .expression_attribute_values(":in_progress", AttributeValue::S(TRACKING_IN_PROGRESS.into()));
        self.first_items(query, limit, |item| owed_from(item).map(Some)).await
    }

    async fn record_dead_letter(&self, record: &DeadLetterRecord) -> Result<(), LedgerError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(dead_letter_item(record)))
            .send()
            .await
            .map_err(|e| self.error(classify(&e)))?;
        Ok(())
    }
}
