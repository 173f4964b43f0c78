//! `Ledger` on Amazon DynamoDB.
//!
//! Table layout (created by `cf-invalidator setup`, documented in docs/design.md):
//! - key `pk` (S) = `batch#<CallerReference>`, one item per batch;
//! - global secondary index `by_distribution`: `distribution_id` (S) + `created_at` (S, RFC 3339 UTC, sorts by time).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::error::{Failure, classify};
use crate::model::{CallerReference, DistributionId, MessageId};
use crate::ports::ledger::{BatchRecord, BatchStatus, KeyClaim, Ledger, LedgerError};

pub const KEY: &str = "pk";
pub const DISTRIBUTION_INDEX: &str = "by_distribution";
/// Epoch seconds after which DynamoDB may delete the item (the table's TTL attribute).
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// DynamoDB items are limited to 400 KB; these bound the two lists that grow with the batch, leaving room for the
/// rest. A record whose lists were cut says so in `paths_truncated`/`message_ids_truncated`.
const MAX_PATH_BYTES: usize = 250_000;
const MAX_MESSAGE_ID_BYTES: usize = 100_000;

#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn error(&self, failure: Failure) -> LedgerError {
        let text = failure.describe();
        match failure {
            Failure::Credentials(_) => LedgerError::Credentials(text),
            _ if failure.is_throttling_or_server_fault() => LedgerError::Unavailable(text),
            Failure::Service { ref code, .. } if code == "ResourceNotFoundException" => {
                LedgerError::NotFound(self.table.clone())
            }
            Failure::Service { ref code, .. } if code.contains("AccessDenied") => {
                LedgerError::AccessDenied { table: self.table.clone(), message: text }
            }
            _ => LedgerError::Other(text),
        }
    }

    /// Fails with a clear error when the table is missing or unreadable: run before the worker starts.
    pub async fn check_access(&self) -> Result<(), LedgerError> {
        self.client.describe_table().table_name(&self.table).send().await.map_err(|e| self.error(classify(&e)))?;
        Ok(())
    }
}

fn key_of(caller_reference: &CallerReference) -> AttributeValue {
    AttributeValue::S(format!("batch#{caller_reference}"))
}

fn since_epoch(time: SystemTime) -> Duration {
    time.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Epoch seconds: the format DynamoDB's TTL requires.
fn epoch_seconds(time: SystemTime) -> AttributeValue {
    AttributeValue::N(since_epoch(time).as_secs().to_string())
}

fn epoch_millis(time: SystemTime) -> AttributeValue {
    AttributeValue::N(since_epoch(time).as_millis().to_string())
}

fn number(item: &Item, name: &str) -> Option<u64> {
    item.get(name).and_then(|v| v.as_n().ok()?.parse().ok())
}

fn timestamp(time: SystemTime) -> AttributeValue {
    AttributeValue::S(humantime::format_rfc3339_millis(time).to_string())
}

/// Keeps the leading values that fit in `budget` bytes; says whether any were cut.
fn bounded_list<'a>(values: impl Iterator<Item = &'a str>, budget: usize) -> (AttributeValue, bool) {
    let mut used = 0;
    let mut kept = Vec::new();
    let mut truncated = false;
    for value in values {
        used += value.len();
        if used > budget {
            truncated = true;
            break;
        }
        kept.push(AttributeValue::S(value.to_owned()));
    }
    (AttributeValue::L(kept), truncated)
}

fn intent_item(record: &BatchRecord) -> Item {
    let (paths, paths_truncated) = bounded_list(record.paths.iter().map(String::as_str), MAX_PATH_BYTES);
    let (message_ids, ids_truncated) =
        bounded_list(record.message_ids.iter().map(|m| m.0.as_str()), MAX_MESSAGE_ID_BYTES);
    let mut item = Item::from([
        (KEY.into(), key_of(&record.caller_reference)),
        ("caller_reference".into(), AttributeValue::S(record.caller_reference.to_string())),
        ("distribution_id".into(), AttributeValue::S(record.distribution_id.to_string())),
        ("created_at".into(), timestamp(record.created_at)),
        ("status".into(), AttributeValue::S(record.status.as_str().into())),
        ("paths".into(), paths),
        ("path_count".into(), AttributeValue::N(record.paths.len().to_string())),
        ("requested_paths".into(), AttributeValue::N(record.requested_paths.to_string())),
        ("message_ids".into(), message_ids),
        ("message_count".into(), AttributeValue::N(record.message_ids.len().to_string())),
        ("seal_reason".into(), AttributeValue::S(record.seal_reason.clone())),
        ("owner".into(), AttributeValue::S(record.owner.clone())),
        ("lease_until".into(), epoch_millis(record.lease_until)),
        (TTL_ATTRIBUTE.into(), epoch_seconds(record.expires_at)),
    ]);
    if !record.requesters.is_empty() {
        item.insert("requesters".into(), AttributeValue::Ss(record.requesters.clone()));
    }
    if paths_truncated {
        item.insert("paths_truncated".into(), AttributeValue::Bool(true));
    }
    if ids_truncated {
        item.insert("message_ids_truncated".into(), AttributeValue::Bool(true));
    }
    item
}

fn string(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn time(item: &Item, name: &str) -> Option<SystemTime> {
    string(item, name).and_then(|raw| humantime::parse_rfc3339(&raw).ok())
}

fn strings(item: &Item, name: &str) -> Vec<String> {
    match item.get(name) {
        Some(AttributeValue::L(values)) => values.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
        Some(AttributeValue::Ss(values)) => values.clone(),
        _ => Vec::new(),
    }
}

fn record_from(item: &Item) -> Result<BatchRecord, LedgerError> {
    let malformed = || LedgerError::Other(format!("ledger item is not a batch record: {item:?}"));
    let distribution_id = string(item, "distribution_id").and_then(|d| DistributionId::parse(&d).ok());
    Ok(BatchRecord {
        caller_reference: CallerReference::from_recorded(string(item, "caller_reference").ok_or_else(malformed)?),
        distribution_id: distribution_id.ok_or_else(malformed)?,
        paths: strings(item, "paths"),
        message_ids: strings(item, "message_ids").into_iter().map(MessageId).collect(),
        requesters: strings(item, "requesters"),
        requested_paths: item.get("requested_paths").and_then(|v| v.as_n().ok()?.parse().ok()).unwrap_or_default(),
        seal_reason: string(item, "seal_reason").unwrap_or_default(),
        created_at: time(item, "created_at").ok_or_else(malformed)?,
        status: string(item, "status").and_then(|s| BatchStatus::parse(&s)).ok_or_else(malformed)?,
        invalidation_id: string(item, "invalidation_id"),
        cloudfront_status: string(item, "cloudfront_status"),
        submitted_at: time(item, "submitted_at"),
        failure: string(item, "failure"),
        owner: string(item, "owner").unwrap_or_default(),
        lease_until: UNIX_EPOCH + Duration::from_millis(number(item, "lease_until").unwrap_or_default()),
        expires_at: UNIX_EPOCH + Duration::from_secs(number(item, TTL_ATTRIBUTE).unwrap_or_default()),
    })
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
        match outcome {
            Ok(_) => Ok(()),
            // Already written by an earlier attempt whose answer was lost: the intent is recorded.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(self.error(classify(&e))),
        }
    }

    async fn record_outcome(&self, record: &BatchRecord) -> Result<(), LedgerError> {
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
        ];
        for (assignment, name, value) in optional {
            if let Some(value) = value {
                assignments.push(assignment);
                values.push((name, value));
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
            .set_expression_attribute_values(Some(values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
            .return_values(ReturnValue::None)
            .send()
            .await;
        match outcome {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                Err(LedgerError::Conflict(record.caller_reference.to_string()))
            }
            Err(e) => Err(self.error(classify(&e))),
        }
    }

    async fn list(
        &self,
        distribution: &DistributionId,
        since: SystemTime,
        limit: usize,
    ) -> Result<Vec<BatchRecord>, LedgerError> {
        let mut records = Vec::new();
        let mut start_key = None;
        while records.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(DISTRIBUTION_INDEX)
                .key_condition_expression("distribution_id = :d AND created_at >= :since")
                // TTL deletes lazily (up to days later): expired records are filtered here, not trusted away.
                .filter_expression("#ttl > :now")
                .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                .expression_attribute_values(":d", AttributeValue::S(distribution.to_string()))
                .expression_attribute_values(":since", timestamp(since))
                .expression_attribute_values(":now", epoch_seconds(SystemTime::now()))
                .scan_index_forward(false)
                .limit(i32::try_from(limit - records.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(|e| self.error(classify(&e)))?;
            for item in page.items() {
                records.push(record_from(item)?);
            }
            start_key = page.last_evaluated_key().cloned();
            if start_key.is_none() {
                break;
            }
        }
        records.truncate(limit);
        Ok(records)
    }

    async fn take_over(
        &self,
        caller_reference: &CallerReference,
        owner: &str,
        now: SystemTime,
        lease_until: SystemTime,
    ) -> Result<bool, LedgerError> {
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key_of(caller_reference))
            .update_expression("SET #owner = :owner, lease_until = :lease_until")
            .condition_expression("#status = :pending AND lease_until < :now")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":lease_until", epoch_millis(lease_until))
            .expression_attribute_values(":pending", AttributeValue::S(BatchStatus::Pending.as_str().into()))
            .expression_attribute_values(":now", epoch_millis(now))
            .send()
            .await;
        match outcome {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(self.error(classify(&e))),
        }
    }

    async fn claim_key(
        &self,
        key: &str,
        message_id: &MessageId,
        now: SystemTime,
        expires_at: SystemTime,
    ) -> Result<KeyClaim, LedgerError> {
        let outcome = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, AttributeValue::S(format!("key#{key}")))
            .item("message_id", AttributeValue::S(message_id.0.clone()))
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
                    Ok(KeyClaim::Duplicate { first_message_id: MessageId(first) })
                }
                _ => Err(self.error(classify(&e))),
            },
        }
    }
}

/// Creates the ledger table and its index, on-demand billed; an existing table is left as it is.
/// Returns once the table is ACTIVE.
pub async fn create_table(client: &Client, table: &str) -> Result<(), LedgerError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
        ScalarAttributeType, TableStatus,
    };
    let ledger = DynamoLedger::new(client.clone(), table);
    let build = |e: aws_sdk_dynamodb::error::BuildError| LedgerError::Other(e.to_string());
    let string_attribute =
        |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build();
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    let by_distribution = GlobalSecondaryIndex::builder()
        .index_name(DISTRIBUTION_INDEX)
        .key_schema(key("distribution_id", KeyType::Hash).map_err(build)?)
        .key_schema(key("created_at", KeyType::Range).map_err(build)?)
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .map_err(build)?;
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attribute(KEY).map_err(build)?)
        .attribute_definitions(string_attribute("distribution_id").map_err(build)?)
        .attribute_definitions(string_attribute("created_at").map_err(build)?)
        .key_schema(key(KEY, KeyType::Hash).map_err(build)?)
        .global_secondary_indexes(by_distribution)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(ledger.error(classify(&e))),
    }
    // The SDK's waiter polls no faster than every 20 s; tables on the emulator are ready at once.
    for _ in 0..120 {
        let described =
            client.describe_table().table_name(table).send().await.map_err(|e| ledger.error(classify(&e)))?;
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return enable_ttl(client, &ledger).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Err(LedgerError::Other(format!("table {table} did not become ACTIVE within a minute")))
}

/// Lets DynamoDB delete expired records; already enabled is fine.
async fn enable_ttl(client: &Client, ledger: &DynamoLedger) -> Result<(), LedgerError> {
    use aws_sdk_dynamodb::types::TimeToLiveSpecification;
    let specification = TimeToLiveSpecification::builder()
        .attribute_name(TTL_ATTRIBUTE)
        .enabled(true)
        .build()
        .map_err(|e| LedgerError::Other(e.to_string()))?;
    let outcome =
        client.update_time_to_live().table_name(&ledger.table).time_to_live_specification(specification).send().await;
    match outcome {
        Ok(_) => Ok(()),
        Err(e) if e.message().is_some_and(|m| m.contains("already enabled")) => Ok(()),
        Err(e) => Err(ledger.error(classify(&e))),
    }
}
