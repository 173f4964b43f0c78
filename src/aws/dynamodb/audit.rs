//! `AuditLog` on DynamoDB: the reads behind `cf-invalidator audit`. Costs per question are in docs/audit.md.

use std::ops::ControlFlow;
use std::time::SystemTime;

use aws_sdk_dynamodb::types::AttributeValue;
use tracing::warn;

use super::budget::budget_from;
use super::item::summary_from;
use super::{
    BOARD, BOARD_DONE, BOARD_INDEX, BOARD_PENDING, DynamoLedger, INVALIDATION_INDEX, Item, KEY, LIST, LIST_BUDGETS,
    LIST_INDEX, OUTCOME_ABANDONED, OUTCOME_DEAD_LETTERED, OUTCOME_FAILED, OUTCOME_INDEX, TTL_ATTRIBUTE,
    dead_letter_from, epoch_seconds, key_item_key, key_record_from, page_size, record_from, timestamp, unexpired,
};
use crate::aws::error::classify;
use crate::model::path::is_covered_by;
use crate::model::{DistributionId, MessageId, Target};
use crate::ports::audit::{AuditLog, BatchSummary, FailureRecord};
use crate::ports::budget::BudgetState;
use crate::ports::ledger::{BatchRecord, BatchStatus, KeyRecord, LedgerError};

/// Batches read per page while looking for the newest one covering a path: usually a recent one does, and
/// DynamoDB bills what it reads, not what the filter keeps.
const COVERING_PAGE: usize = 25;

impl DynamoLedger {
    /// The unexpired item with this key: one eventually consistent read.
    pub(super) async fn get(&self, key: AttributeValue) -> Result<Option<Item>, LedgerError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, key)
            .send()
            .await
            .map_err(|e| self.error(classify(&e)))?;
        Ok(output.item().filter(|item| unexpired(item, self.clock.now())).cloned())
    }

    /// Every unexpired batch holding `message` created at or after `since`, by reading the whole table.
    async fn scan_for_message(&self, message: &MessageId, since: SystemTime) -> Result<Vec<BatchRecord>, LedgerError> {
        warn!(table = %self.table, %message, "distribution unknown: scanning the whole table, every item is read and billed; give --distribution to query one distribution's batches instead");
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression(
                "begins_with(#pk, :batch) AND created_at >= :since AND #ttl > :now AND contains(message_ids, :m)",
            )
            .expression_attribute_names("#pk", KEY)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":batch", AttributeValue::S("batch#".into()))
            .expression_attribute_values(":since", timestamp(since))
            .expression_attribute_values(":now", epoch_seconds(self.clock.now()))
            .expression_attribute_values(":m", AttributeValue::S(message.0.clone()));
        let mut records = Vec::new();
        let mut start_key = None;
        loop {
            let page =
                scan.clone().set_exclusive_start_key(start_key).send().await.map_err(|e| self.error(classify(&e)))?;
            for item in page.items() {
                records.push(record_from(item)?);
            }
            start_key = page.last_evaluated_key().cloned();
            if start_key.is_none() {
                break;
            }
        }
        records.sort_by_key(|record| std::cmp::Reverse(record.created_at));
        Ok(records)
    }

    /// The newest unexpired items of one `by_outcome` partition created at or after `since`, at most `limit`.
    async fn outcomes(
        &self,
        outcome: &str,
        since: SystemTime,
        limit: usize,
    ) -> Result<Vec<FailureRecord>, LedgerError> {
        let query = self
            .unexpired_in(OUTCOME_INDEX)
            .key_condition_expression("outcome = :outcome AND created_at >= :since")
            .expression_attribute_values(":outcome", AttributeValue::S(outcome.to_owned()))
            .expression_attribute_values(":since", timestamp(since))
            .scan_index_forward(false);
        self.first_items(query, limit, |item| {
            Ok(Some(match outcome {
                OUTCOME_FAILED | OUTCOME_ABANDONED => FailureRecord::Batch(Box::new(record_from(item)?)),
                _ => FailureRecord::DeadLetter(dead_letter_from(item)?),
            }))
        })
        .await
    }

    /// Up to `limit` unexpired items of one `by_board` list, oldest or newest first, handed to `read`.
    async fn board<T>(
        &self,
        list: &str,
        newest_first: bool,
        limit: usize,
        read: impl Fn(&Item) -> Result<Option<T>, LedgerError>,
    ) -> Result<Vec<T>, LedgerError> {
        let query = self
            .unexpired_in(BOARD_INDEX)
            .key_condition_expression("#board = :list")
            .expression_attribute_names("#board", BOARD)
            .expression_attribute_values(":list", AttributeValue::S(list.to_owned()))
            .scan_index_forward(!newest_first);
        self.first_items(query, limit, read).await
    }
}

/// Most budgets the status page reads: five times the distributions an account has by default (200), in a few
/// pages of keys and BatchGetItems of a hundred.
const MAX_BUDGETS: usize = 1_000;

impl AuditLog for DynamoLedger {
    async fn batch_by_invalidation(&self, id: &str) -> Result<Option<BatchRecord>, LedgerError> {
        // The index holds keys only: find the key, then read the item.
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(INVALIDATION_INDEX)
            .key_condition_expression("invalidation_id = :id")
            .expression_attribute_values(":id", AttributeValue::S(id.to_owned()));
        let mut keys = Vec::new();
        self.each_item(query, |item| {
            keys.extend(item.get(KEY).cloned());
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        for key in keys {
            if let Some(item) = self.get(key).await? {
                return record_from(&item).map(Some);
            }
        }
        Ok(None)
    }

    async fn batches_with_message(
        &self,
        message: &MessageId,
        distribution: Option<&DistributionId>,
        since: SystemTime,
    ) -> Result<Vec<BatchRecord>, LedgerError> {
        let Some(distribution) = distribution else {
            return self.scan_for_message(message, since).await;
        };
        let query = self
            .distribution_query(distribution, since, Some("contains(message_ids, :m)"))
            .expression_attribute_values(":m", AttributeValue::S(message.0.clone()));
        let mut records = Vec::new();
        self.each_item(query, |item| {
            records.push(record_from(item)?);
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        Ok(records)
    }

    async fn latest_covering(
        &self,
        distribution: &DistributionId,
        path: &str,
        since: SystemTime,
    ) -> Result<Option<BatchRecord>, LedgerError> {
        let query = self
            .distribution_query(distribution, since, Some("#status IN (:accepted, :completed)"))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":accepted", AttributeValue::S(BatchStatus::Accepted.as_str().into()))
            .expression_attribute_values(":completed", AttributeValue::S(BatchStatus::Completed.as_str().into()))
            .limit(page_size(COVERING_PAGE));
        let mut found = None;
        self.each_item(query, |item| {
            let record = record_from(item)?;
            if !is_covered_by(path, &record.paths) {
                return Ok(ControlFlow::Continue(()));
            }
            found = Some(record);
            Ok(ControlFlow::Break(()))
        })
        .await?;
        Ok(found)
    }

    async fn key_claim(&self, target: &Target, key: &str) -> Result<Option<KeyRecord>, LedgerError> {
        let item = self.get(key_item_key(target, key)).await?;
        item.map(|item| key_record_from(target, key, &item)).transpose()
    }

    async fn failures(&self, since: SystemTime, limit: usize) -> Result<Vec<FailureRecord>, LedgerError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut failures = self.outcomes(OUTCOME_FAILED, since, limit).await?;
        failures.extend(self.outcomes(OUTCOME_DEAD_LETTERED, since, limit).await?);
        failures.extend(self.outcomes(OUTCOME_ABANDONED, since, limit).await?);
        failures.sort_by_key(|failure| std::cmp::Reverse(failure.created_at()));
        failures.truncate(limit);
        Ok(failures)
    }

    async fn budgets(&self) -> Result<Vec<(DistributionId, BudgetState)>, LedgerError> {
        // The index holds the budgets' keys only: read the items themselves, a hundred at a time.
        let query = self
            .unexpired_in(LIST_INDEX)
            .key_condition_expression("#list = :budgets")
            .expression_attribute_names("#list", LIST)
            .expression_attribute_values(":budgets", AttributeValue::S(LIST_BUDGETS.into()));
        let keys = self.first_items(query, MAX_BUDGETS, |item| Ok(item.get(KEY).cloned())).await?;
        let mut budgets: Vec<(DistributionId, BudgetState)> =
            self.get_many(keys).await?.values().filter_map(budget_from).collect();
        budgets.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(budgets)
    }

    async fn pending_batches(&self, limit: usize) -> Result<Vec<BatchSummary>, LedgerError> {
        self.board(BOARD_PENDING, false, limit, |item| summary_from(item).map(Some)).await
    }

    async fn recent_batches(&self, limit: usize) -> Result<Vec<BatchSummary>, LedgerError> {
        self.board(BOARD_DONE, true, limit, |item| summary_from(item).map(Some)).await
    }
}
