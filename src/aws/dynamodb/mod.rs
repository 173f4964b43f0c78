//! The ledger's ports (`crate::ports::ledger`, `crate::ports::budget`) and `AuditLog` on Amazon DynamoDB, one file
//! per port; this one holds what they share: the table's layout, error mapping, transactions and paged reads.
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
//! - sparse index `by_board`: `board` (S, `pending`, `done` or `workers`) + `created_at`; batches and `worker#<id>`
//!   items (the roster) carry `board`, for the status page;
//! - sparse index `by_list`: `list` (S) + `rank` (N): the month's per-distribution and per-requester counters,
//!   ranked by paths billed, and the budget items.

mod attribute;
mod audit;
mod batches;
mod beliefs;
mod billing;
pub(crate) mod budget;
pub(crate) mod dead_letters;
pub(crate) mod item;
mod keys;
mod outbox;
mod roster;
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
use aws_sdk_dynamodb::types::builders::UpdateBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, KeysAndAttributes, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use metrics::counter;
use tracing::warn;

use self::attribute::{epoch_millis, epoch_seconds, number, string, timestamp, unexpired};
use self::dead_letters::{dead_letter_from, dead_letter_key};
use self::item::{
    account_month_key, billing_from, cap_key, day_key, distributions_list, intent_item, key_item_key, key_of,
    key_record_from, lease_item, lease_key, month_key, number_of, owed_from, record_from, requester_from,
    requester_month_key, requesters_list, tenant_from, tenant_month_key, tenants_list, verification_item,
};
pub use self::schema::{SchemaError, TableCheck, check_table, create_table};
use super::error::{Failure, classify};
use crate::clock::WallClock;
use crate::model::text::capped;
use crate::model::{CallerReference, DistributionId, MessageId, Target, TenantId};
use crate::ports::budget::Roster;
use crate::ports::events::EventKind;
use crate::ports::ledger::{
    BatchRecord, BatchStatus, Batches, Billing, Bills, Completion, DeadLetterRecord, DeadLetters, InProgress,
    InProgressCursor, Intent, KeyClaim, KeyRecord, KeyUse, Keys, LISTED_DISTRIBUTIONS, LISTED_REQUESTERS,
    LISTED_TENANTS, LedgerError, MonthBilling, MonthCap, Outbox, Owed, VerificationRecord, billing_day, spent,
};
use crate::telemetry::log_allowed;

pub const KEY: &str = "pk";
pub const DISTRIBUTION_INDEX: &str = "by_distribution";
pub const INVALIDATION_INDEX: &str = "by_invalidation";
pub const OUTCOME_INDEX: &str = "by_outcome";
pub const TRACKING_INDEX: &str = "by_tracking";
pub const BOARD_INDEX: &str = "by_board";
/// Ranked lists: the month's distributions and requesters by paths billed (so a month's report reads the biggest
/// few, however many there were), and the distributions' budget items.
pub const LIST_INDEX: &str = "by_list";
/// The `by_list` partition key: which list an item is in.
pub const LIST: &str = "list";
/// The `by_list` sort key (a number): paths billed, for the month's lists.
pub const RANK: &str = "rank";
/// The list of budget items.
pub(crate) const LIST_BUDGETS: &str = "budgets";
/// The `by_board` key: which of the status page's lists an item is in.
pub const BOARD: &str = "board";
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
/// An accepted batch whose completion tracking was given up.
pub const OUTCOME_ABANDONED: &str = "tracking_abandoned";
/// Why tracking was given up: on batches and dead letters taken out of `by_tracking` for good.
pub const TRACKING_ABANDONED: &str = "tracking_abandoned";

/// Dead-letter and key items name their distribution in this attribute, not in `distribution_id`, so that they
/// stay out of `by_distribution`: that index holds batches only, and the worker reads it on redelivery.
const FOR_DISTRIBUTION: &str = "for_distribution";
/// On a key claim: the digest of what the claiming message asked for.
const CONTENT: &str = "content";

/// A lease item outlives its lease by this much, then TTL removes it: long past any take-over.
const LEASE_ITEM_RETENTION: std::time::Duration = std::time::Duration::from_secs(24 * 3_600);

/// Bounds a dead-letter item's reason: the whole reason, which the DLQ attribute may show only the start of, far
/// below DynamoDB's 400 KB item limit.
const MAX_REASON_BYTES: usize = 8_192;

/// DynamoDB items are limited to 400 KB; these bound the two lists that grow with the batch, leaving room for the
/// rest. A record whose lists were cut says so in `paths_truncated`/`message_ids_truncated`. With every list and
/// text of a record at its cap (the texts at MAX_REASON_BYTES each) an item stays under about 380 KB: docs/design.md
/// ("Bounds") adds it up, and a test writes it on the strict engine.
const MAX_PATH_BYTES: usize = 200_000;
const MAX_MESSAGE_ID_BYTES: usize = 100_000;
/// Requesters are free text from producers, at most 256 characters once parsed; records from before that bound
/// are cut to this many bytes, and all of a record's together to REQUESTERS_BYTES, so that no producer can push a
/// batch record over the item limit.
const MAX_REQUESTER_BYTES: usize = 256;
const REQUESTERS_BYTES: usize = 20_000;

#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
    /// What "now" is for expiry, TTL and check-ins: the system's, or a simulation's.
    clock: WallClock,
}

type Item = HashMap<String, AttributeValue>;

/// Items per page of a query: DynamoDB wants 1 to 2^31 - 1.
fn page_size(items: usize) -> i32 {
    i32::try_from(items.max(1)).unwrap_or(i32::MAX)
}

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), clock: WallClock::System }
    }

    /// The same ledger on `clock`: simulations run on tokio's paused clock.
    pub fn with_clock(self, clock: WallClock) -> Self {
        Self { clock, ..self }
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
            .expression_attribute_values(":now", epoch_seconds(self.clock.now()))
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
                for item in items.filter(|item| unexpired(item, self.clock.now())) {
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
            .expression_attribute_values(":now", epoch_seconds(self.clock.now()))
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

/// An item a query returned, or `None` when it cannot be read (written by hand, or by a newer or broken version):
/// skipped and counted, so that one bad item never stops a read of many.
fn readable<T>(read: Result<T, LedgerError>, index: &'static str) -> Option<T> {
    match read {
        Ok(read) => Some(read),
        Err(e) => {
            counter!("cfi_ledger_items_skipped_total", "index" => index).increment(1);
            if let Some(suppressed) = log_allowed("ledger_item_skipped") {
                warn!(index, error = %e, suppressed, "skipped a ledger item that cannot be read");
            }
            None
        }
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
