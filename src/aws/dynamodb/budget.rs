//! `BudgetStore` on the ledger table: one item per distribution, `budget#<DistributionId>`, holding a map of
//! reservations keyed by CallerReference and a version for optimistic concurrency (docs/design.md, "Shared
//! in-progress budget").

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;

use super::{
    BOARD, BOARD_BUDGET, BOARD_INDEX, BOARD_WORKERS, DynamoLedger, Item, KEY, TTL_ATTRIBUTE, epoch_millis,
    epoch_seconds, number, string, timestamp,
};
use crate::aws::error::classify;
use crate::model::{CallerReference, DistributionId};
use crate::ports::budget::{Allowance, BudgetState, BudgetStore, Reservation};
use crate::ports::ledger::LedgerError;

const RESERVATIONS: &str = "reservations";
/// A budget item outlives its last write by this much: long after any reservation in it has expired, so an idle
/// distribution's item is cleaned up by TTL without ever being deleted under a live reservation.
const IDLE_ITEM_RETENTION: Duration = Duration::from_secs(7 * 24 * 3_600);

fn budget_key(distribution: &DistributionId) -> AttributeValue {
    AttributeValue::S(format!("budget#{distribution}"))
}

fn reservation_value(reservation: &Reservation) -> AttributeValue {
    let mut fields = HashMap::from([
        ("owner".to_owned(), AttributeValue::S(reservation.owner.clone())),
        ("paths".to_owned(), AttributeValue::N(reservation.need.paths.to_string())),
        ("wildcards".to_owned(), AttributeValue::N(reservation.need.wildcards.to_string())),
        ("until".to_owned(), epoch_millis(reservation.until)),
    ]);
    if let Some(id) = &reservation.invalidation_id {
        fields.insert("invalidation_id".to_owned(), AttributeValue::S(id.clone()));
    }
    AttributeValue::M(fields)
}

fn reservation_from(id: &str, value: &AttributeValue) -> Option<Reservation> {
    let fields: &Item = value.as_m().ok()?;
    Some(Reservation {
        id: CallerReference::from_recorded(id.to_owned()),
        owner: string(fields, "owner").unwrap_or_default(),
        need: Allowance { paths: number(fields, "paths")? as u32, wildcards: number(fields, "wildcards")? as u32 },
        until: UNIX_EPOCH + Duration::from_millis(number(fields, "until")?),
        invalidation_id: string(fields, "invalidation_id"),
    })
}

/// A budget item's distribution and reservations; `None` for an item that is not a budget.
pub(super) fn budget_from(item: &Item) -> Option<(DistributionId, BudgetState)> {
    let distribution = string(item, KEY)?.strip_prefix("budget#").and_then(|d| DistributionId::parse(d).ok())?;
    Some((distribution, state_from(item)))
}

fn state_from(item: &Item) -> BudgetState {
    let reservations = item
        .get(RESERVATIONS)
        .and_then(|m| m.as_m().ok())
        .map(|m| m.iter().filter_map(|(id, value)| reservation_from(id, value)).collect())
        .unwrap_or_default();
    BudgetState { reservations, version: number(item, "version").unwrap_or(0) }
}

impl BudgetStore for DynamoLedger {
    async fn read_budget(&self, distribution: &DistributionId) -> Result<BudgetState, LedgerError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, budget_key(distribution))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error(classify(&e)))?;
        Ok(output.item().map(state_from).unwrap_or_default())
    }

    async fn write_reservation(
        &self,
        distribution: &DistributionId,
        version: u64,
        reservation: &Reservation,
        expired: &[CallerReference],
    ) -> Result<bool, LedgerError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, budget_key(distribution))
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#reservations", RESERVATIONS)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_names("#board", BOARD)
            .expression_attribute_values(":next", AttributeValue::N((version + 1).to_string()))
            .expression_attribute_values(":ttl", epoch_seconds(SystemTime::now() + IDLE_ITEM_RETENTION))
            // On the status page's list of budgets (`by_board`), which needs a `created_at` to sort by.
            .expression_attribute_values(":budget", AttributeValue::S(BOARD_BUDGET.into()))
            .expression_attribute_values(":now", timestamp(SystemTime::now()));
        let listed = "#board = :budget, created_at = if_not_exists(created_at, :now)";
        let mut expression;
        if version == 0 {
            // The first reservation creates the map, which a nested SET cannot do.
            let first = HashMap::from([(reservation.id.to_string(), reservation_value(reservation))]);
            expression = format!("SET #reservations = :first, #version = :next, #ttl = :ttl, {listed}");
            update = update
                .condition_expression("attribute_not_exists(#version)")
                .expression_attribute_values(":first", AttributeValue::M(first));
        } else {
            expression = format!("SET #reservations.#id = :reservation, #version = :next, #ttl = :ttl, {listed}");
            update = update
                .condition_expression("#version = :version")
                .expression_attribute_names("#id", reservation.id.as_str())
                .expression_attribute_values(":reservation", reservation_value(reservation))
                .expression_attribute_values(":version", AttributeValue::N(version.to_string()));
            let mut removals = Vec::new();
            for (n, id) in expired.iter().filter(|id| **id != reservation.id).enumerate() {
                update = update.expression_attribute_names(format!("#x{n}"), id.as_str());
                removals.push(format!("#reservations.#x{n}"));
            }
            if !removals.is_empty() {
                expression = format!("{expression} REMOVE {}", removals.join(", "));
            }
        }
        self.conditional(update.update_expression(expression).send().await)
    }

    async fn renew_reservation(
        &self,
        distribution: &DistributionId,
        id: &CallerReference,
        until: SystemTime,
        invalidation_id: Option<&str>,
    ) -> Result<bool, LedgerError> {
        let mut expression = "SET #reservations.#id.#until = :until".to_owned();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, budget_key(distribution))
            .condition_expression("attribute_exists(#reservations.#id)")
            .expression_attribute_names("#reservations", RESERVATIONS)
            .expression_attribute_names("#id", id.as_str())
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":until", epoch_millis(until));
        if let Some(invalidation_id) = invalidation_id {
            expression.push_str(", #reservations.#id.invalidation_id = :invalidation");
            update = update.expression_attribute_values(":invalidation", AttributeValue::S(invalidation_id.to_owned()));
        }
        self.conditional(update.update_expression(expression).send().await)
    }

    async fn release_reservation(
        &self,
        distribution: &DistributionId,
        id: &CallerReference,
    ) -> Result<(), LedgerError> {
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, budget_key(distribution))
            .update_expression("REMOVE #reservations.#id")
            // Without it, releasing from a budget that does not exist would create an empty item.
            .condition_expression("attribute_exists(#reservations)")
            .expression_attribute_names("#reservations", RESERVATIONS)
            .expression_attribute_names("#id", id.as_str())
            .send()
            .await;
        // Not made when there was nothing to release.
        self.conditional(outcome).map(|_| ())
    }

    async fn check_in(&self, worker: &str, now: SystemTime, until: SystemTime) -> Result<Vec<String>, LedgerError> {
        // On `by_board` as the list `workers`, sorted by the last check-in: the status page's workers too.
        self.client
            .put_item()
            .table_name(&self.table)
            .item(KEY, worker_key(worker))
            .item(BOARD, AttributeValue::S(BOARD_WORKERS.into()))
            .item("created_at", timestamp(now))
            .item(TTL_ATTRIBUTE, epoch_seconds(until))
            .send()
            .await
            .map_err(|e| self.error(classify(&e)))?;
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BOARD_INDEX)
            .key_condition_expression("#board = :workers")
            .filter_expression("#ttl > :now")
            .expression_attribute_names("#board", BOARD)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":workers", AttributeValue::S(BOARD_WORKERS.into()))
            .expression_attribute_values(":now", epoch_seconds(now));
        let mut live = vec![worker.to_owned()];
        self.each_item(query, |item| {
            let id = string(item, KEY).and_then(|key| key.strip_prefix(WORKER_PREFIX).map(str::to_owned));
            live.extend(id);
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .await?;
        // The index is eventually consistent: this worker's own check-in may not show yet.
        live.sort_unstable();
        live.dedup();
        Ok(live)
    }

    async fn check_out(&self, worker: &str) -> Result<(), LedgerError> {
        // Expired rather than deleted: the worker's role needs no dynamodb:DeleteItem, and TTL removes it. An hour
        // back, so that no other worker's clock, a little behind, still counts it.
        let expired = SystemTime::now() - Duration::from_secs(3_600);
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY, worker_key(worker))
            .update_expression("SET #ttl = :expired")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":expired", epoch_seconds(expired))
            .send()
            .await
            .map_err(|e| self.error(classify(&e)))?;
        Ok(())
    }
}

const WORKER_PREFIX: &str = "worker#";

/// `worker#<worker id>`: a worker sharing the account's CreateInvalidation rate, until its check-in runs out.
fn worker_key(worker: &str) -> AttributeValue {
    AttributeValue::S(format!("{WORKER_PREFIX}{worker}"))
}
