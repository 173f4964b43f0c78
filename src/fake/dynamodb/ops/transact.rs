//! TransactWriteItems: up to 100 actions on distinct items, all or none. What the request alone shows to be wrong
//! is refused up front (ValidationException); then every action is decided against the stored items, and if any
//! is refused the transaction is cancelled with one reason per action, in order. Only the touched items are
//! copied: each decided outcome is kept aside until all are known, then committed.

use std::collections::BTreeSet;

use serde_json::{Value as Json, json};

use super::State;
use super::write::{Action, Outcome, commit};
use crate::fake::dynamodb::error::{Reason, Refusal};
use crate::fake::dynamodb::size::item_size;

const MAX_ACTIONS: usize = 100;
/// DynamoDB's limit on the items a transaction writes, together.
const MAX_TRANSACTION: usize = 4 * 1024 * 1024;

pub fn write(state: &mut State, request: &Json) -> Result<Json, Refusal> {
    let items = request.get("TransactItems").and_then(Json::as_array).cloned().unwrap_or_default();
    if items.is_empty() {
        return Err(Refusal::validation(
            "1 validation error detected: Value '[]' at 'transactItems' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    if items.len() > MAX_ACTIONS {
        return Err(Refusal::validation(
            "1 validation error detected at 'transactItems' failed to satisfy constraint: Member must have length less than or equal to 100",
        ));
    }
    let mut actions = Vec::with_capacity(items.len());
    for item in &items {
        let Some((kind, action)) = item.as_object().and_then(|o| (o.len() == 1).then(|| o.iter().next()).flatten())
        else {
            return Err(Refusal::validation("TransactItems can only contain one of Check, Put, Update or Delete"));
        };
        let write = match kind.as_str() {
            "Put" | "Update" | "Delete" => kind.as_str(),
            "ConditionCheck" => "Check",
            _ => return Err(Refusal::validation("TransactItems can only contain one of Check, Put, Update or Delete")),
        };
        actions.push(Action::read(state, action, write)?);
    }
    let mut touched = BTreeSet::new();
    if !actions.iter().all(|action| touched.insert((&action.table, &action.key))) {
        return Err(Refusal::validation("Transaction request cannot include multiple operations on one item"));
    }
    let decided: Vec<Result<Outcome, Refusal>> =
        actions.iter().map(|action| action.decide(state.table(&action.table)?)).collect();
    if decided.iter().any(Result::is_err) {
        let reasons = decided.iter().map(|d| d.as_ref().err().map_or(Reason::NONE, Refusal::as_reason)).collect();
        return Err(Refusal::cancelled(reasons));
    }
    let outcomes: Vec<Outcome> = decided.into_iter().map(|d| d.expect("every action was decided")).collect();
    let written: usize = outcomes.iter().map(|o| if let Outcome::Store(item) = o { item_size(item) } else { 0 }).sum();
    if written > MAX_TRANSACTION {
        return Err(Refusal::validation("Transaction size has exceeded the maximum allowed size of 4 MB"));
    }
    for (action, outcome) in actions.iter().zip(outcomes) {
        commit(state, &action.table, &action.key, outcome);
    }
    Ok(json!({}))
}
