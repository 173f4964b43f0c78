//! `Budgets` and `JointWrites` on the ledger table: one item per distribution, `budget#<DistributionId>`, holding a map of
//! reservations keyed by CallerReference and a version for optimistic concurrency (docs/design.md, "Shared
//! in-progress budget").

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::builders::UpdateBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

use super::{
    BOARD, DynamoLedger, Item, KEY, LIST, LIST_BUDGETS, RANK, TTL_ATTRIBUTE, epoch_millis, epoch_seconds, number,
    string,
};
use crate::aws::error::classify;
use crate::model::{CallerReference, DistributionId};
use crate::ports::budget::{
    Allowance, BudgetItem, BudgetState, Budgets, JointWrites, MAX_DELETED_AT_ONCE, Recorded, Reservation,
    ReservationWrite,
};
use crate::ports::ledger::{BatchRecord, Batches, Completion, LedgerError, MonthCap};

const RESERVATIONS: &str = "reservations";
/// A budget item outlives its last write by this much: long after any reservation in it has expired, so an idle
/// distribution's item is cleaned up by TTL without ever being deleted under a live reservation.
const IDLE_ITEM_RETENTION: Duration = Duration::from_secs(7 * 24 * 3_600);

fn budget_key(budget: &impl BudgetItem) -> AttributeValue {
    AttributeValue::S(format!("budget#{budget}"))
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
pub(crate) fn budget_from(item: &Item) -> Option<(DistributionId, BudgetState)> {
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

impl DynamoLedger {
    /// The update that moves reservation `id`'s end to `until` and notes its invalidation, if the reservation still
    /// exists: a renewal on its own, an acceptance in its outcome's transaction.
    fn reservation_note(
        &self,
        budget: &impl BudgetItem,
        id: &CallerReference,
        until: SystemTime,
        invalidation_id: Option<&str>,
    ) -> Result<Update, LedgerError> {
        let mut expression = "SET #reservations.#id.#until = :until".to_owned();
        let mut note = Update::builder()
            .table_name(&self.table)
            .key(KEY, budget_key(budget))
            .condition_expression("attribute_exists(#reservations.#id)")
            .expression_attribute_names("#reservations", RESERVATIONS)
            .expression_attribute_names("#id", id.as_str())
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":until", epoch_millis(until));
        if let Some(invalidation_id) = invalidation_id {
            expression.push_str(", #reservations.#id.invalidation_id = :invalidation");
            note = note.expression_attribute_values(":invalidation", AttributeValue::S(invalidation_id.to_owned()));
        }
        note.update_expression(expression).build().map_err(|e| LedgerError::Other(e.to_string()))
    }

    /// Stores `reservation` and deletes the `expired` ones if the budget's version is still `version`.
    fn reservation_update(
        &self,
        budget: &impl BudgetItem,
        version: u64,
        reservation: &Reservation,
        expired: &[CallerReference],
    ) -> Result<Update, LedgerError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .key(KEY, budget_key(budget))
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#reservations", RESERVATIONS)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_names("#list", LIST)
            .expression_attribute_names("#rank", RANK)
            .expression_attribute_names("#board", BOARD)
            .expression_attribute_values(":next", AttributeValue::N((version + 1).to_string()))
            .expression_attribute_values(":ttl", epoch_seconds(self.clock.now() + IDLE_ITEM_RETENTION))
            // On the status page's list of budgets (`by_list`), which projects only their keys: `by_board`
            // projected the reservations, so each write copied the whole map into the index.
            .expression_attribute_values(":budgets", AttributeValue::S(LIST_BUDGETS.into()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()));
        let listed = "#list = :budgets, #rank = :zero";
        // Off the board, where items written before the move are.
        let mut removals = vec!["#board".to_owned()];
        let expression;
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
            // At most this many in one expression (4 KB at most): the rest go with a later write.
            let expired: Vec<&CallerReference> =
                expired.iter().filter(|id| **id != reservation.id).take(MAX_DELETED_AT_ONCE).collect();
            if !expired.is_empty() {
                let expired_removals;
                (update, expired_removals) = remove_reservations(update, &expired);
                removals.push(expired_removals);
            }
        }
        let expression = format!("{expression} REMOVE {}", removals.join(", "));
        update.update_expression(expression).build().map_err(|e| LedgerError::Other(e.to_string()))
    }

    fn release_update(&self, budget: &impl BudgetItem, ids: &[&CallerReference]) -> Result<Update, LedgerError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key(KEY, budget_key(budget))
            // Without it, releasing from a budget that does not exist would create an empty item.
            .condition_expression("attribute_exists(#reservations)")
            .expression_attribute_names("#reservations", RESERVATIONS);
        let (update, removals) = remove_reservations(update, ids);
        update.update_expression(format!("REMOVE {removals}")).build().map_err(|e| LedgerError::Other(e.to_string()))
    }

    async fn release(&self, budget: &impl BudgetItem, ids: &[&CallerReference]) -> Result<(), LedgerError> {
        let update = self.release_update(budget, ids)?;
        // Not made when there was nothing to release.
        self.conditional(self.update_item_of(update).send().await).map(|_| ())
    }
}

/// Adds `REMOVE` targets for the reservations `ids` to `update`: the update and the targets, comma-separated.
fn remove_reservations(mut update: UpdateBuilder, ids: &[&CallerReference]) -> (UpdateBuilder, String) {
    let mut removals = Vec::with_capacity(ids.len());
    for (n, id) in ids.iter().enumerate() {
        update = update.expression_attribute_names(format!("#r{n}"), id.as_str());
        removals.push(format!("#reservations.#r{n}"));
    }
    (update, removals.join(", "))
}

impl DynamoLedger {
    async fn release_unique(
        &self,
        budget: &impl BudgetItem,
        completions: &[&Completion],
    ) -> Result<Vec<Recorded>, LedgerError> {
        let ids: Vec<&CallerReference> = completions.iter().map(|c| &c.caller_reference).collect();
        let mut writes = Vec::with_capacity(completions.len() + 1);
        for completion in completions {
            writes.push(TransactWriteItem::builder().update(self.completion_update(completion)?).build());
        }
        writes.push(TransactWriteItem::builder().update(self.release_update(budget, &ids)?).build());
        match self.transact(writes).await? {
            Ok(()) => Ok(vec![Ok(true); completions.len()]),
            Err(cancelled) if (0..=completions.len()).any(|item| cancelled.refused(item)) => {
                let mut answers = Vec::with_capacity(completions.len());
                for completion in completions {
                    answers.push(self.record_completion(completion).await);
                }
                self.release(budget, &ids).await?;
                Ok(answers)
            }
            Err(cancelled) => Err(cancelled.unexpected()),
        }
    }
}

impl Budgets for DynamoLedger {
    async fn read_budget(&self, budget: &impl BudgetItem) -> Result<BudgetState, LedgerError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, budget_key(budget))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error(classify(&e)))?;
        Ok(output.item().map(state_from).unwrap_or_default())
    }

    async fn write_reservation(
        &self,
        budget: &impl BudgetItem,
        version: u64,
        reservation: &Reservation,
        expired: &[CallerReference],
    ) -> Result<bool, LedgerError> {
        let update = self.reservation_update(budget, version, reservation, expired)?;
        self.conditional(self.update_item_of(update).send().await)
    }

    async fn renew_reservation(
        &self,
        budget: &impl BudgetItem,
        id: &CallerReference,
        until: SystemTime,
        invalidation_id: Option<&str>,
    ) -> Result<bool, LedgerError> {
        let note = self.reservation_note(budget, id, until, invalidation_id)?;
        self.conditional(self.update_item_of(note).send().await)
    }

    async fn release_reservation(&self, budget: &impl BudgetItem, id: &CallerReference) -> Result<(), LedgerError> {
        self.release(budget, &[id]).await
    }
}

impl JointWrites for DynamoLedger {
    async fn reserve_recording(
        &self,
        budget: &impl BudgetItem,
        version: u64,
        reservation: &Reservation,
        expired: &[CallerReference],
        intent: &BatchRecord,
        cap: Option<&MonthCap>,
    ) -> Result<ReservationWrite, LedgerError> {
        let intent_writes = match (self.intent_writes(intent, cap)?, cap) {
            (Some(writes), _) => writes,
            (None, Some(cap)) => return Ok(ReservationWrite::OverCap { spent: self.month_spent(cap, None).await? }),
            (None, None) => unreachable!("only a cap refuses an intent"),
        };
        let update = self.reservation_update(budget, version, reservation, expired)?;
        let mut writes = vec![TransactWriteItem::builder().update(update).build()];
        writes.extend(intent_writes);
        let month_at = writes.len() - 1;
        match self.transact(writes).await? {
            Ok(()) => Ok(ReservationWrite::Written),
            // Another worker reserved, or is reserving, in between: read again.
            Err(cancelled) if cancelled.refused(0) || cancelled.conflicted(0) => Ok(ReservationWrite::VersionMoved),
            // Recorded (and counted) by an earlier attempt whose answer was lost.
            Err(cancelled) if cancelled.refused(1) => {
                Ok(if self.write_reservation(budget, version, reservation, expired).await? {
                    ReservationWrite::Written
                } else {
                    ReservationWrite::VersionMoved
                })
            }
            Err(cancelled) if let Some(cap) = cap.filter(|_| cancelled.refused(month_at)) => {
                Ok(ReservationWrite::OverCap { spent: self.month_spent(cap, cancelled.item(month_at)).await? })
            }
            Err(cancelled) => Err(cancelled.unexpected()),
        }
    }
    async fn record_acceptance(
        &self,
        budget: &impl BudgetItem,
        record: &BatchRecord,
        until: SystemTime,
    ) -> Result<(), LedgerError> {
        let id = &record.caller_reference;
        let note = self.reservation_note(budget, id, until, record.invalidation_id.as_deref())?;
        self.outcome(record, Some(note)).await
    }
    /// Records `completions` and releases their reservations in one transaction; records them one by one if any
    /// was recorded before (or has no record: the plain write tells which), or the budget is gone. A batch listed
    /// twice is written once: DynamoDB refuses two actions on one item in a transaction, and two paths to one
    /// reservation in an update.
    async fn release_completed(
        &self,
        budget: &impl BudgetItem,
        completions: &[Completion],
    ) -> Result<Vec<Recorded>, LedgerError> {
        let mut seen = HashSet::new();
        let unique: Vec<&Completion> = completions.iter().filter(|c| seen.insert(&c.caller_reference)).collect();
        let answers = self.release_unique(budget, &unique).await?;
        let answer_of: HashMap<&CallerReference, Recorded> =
            unique.iter().map(|c| &c.caller_reference).zip(answers).collect();
        Ok(completions.iter().map(|c| answer_of[&c.caller_reference].clone()).collect())
    }
}
