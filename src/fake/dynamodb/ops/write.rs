//! PutItem, UpdateItem and DeleteItem, built as `Action`s: read and checked from the request first (what DynamoDB
//! refuses before looking at the table), then decided against the stored item, then committed. Transactions use
//! the same actions.

use serde_json::{Value as Json, json};

use super::{Expressions, State, choice, table_name};
use crate::fake::dynamodb::error::{Refusal, text};
use crate::fake::dynamodb::expr::{self, Condition, Kind, Update};
use crate::fake::dynamodb::size::{MAX_ITEM, item_size};
use crate::fake::dynamodb::table::{PrimaryKey, Table};
use crate::fake::dynamodb::value::{Item, KeyValue, item_from_json, item_to_json};

#[derive(Debug)]
pub enum Write {
    Put(Item),
    Update(Update),
    Delete,
    Check,
}

/// One write of one item, read and checked from its request.
#[derive(Debug)]
pub struct Action {
    pub table: String,
    pub key: PrimaryKey,
    pub write: Write,
    condition: Option<Condition>,
    old_on_failure: bool,
}

/// What an action does to its item.
#[derive(Debug)]
pub enum Outcome {
    Store(Item),
    Remove,
    Keep,
}

fn old_on_failure(request: &Json) -> Result<bool, Refusal> {
    Ok(choice(request, "ReturnValuesOnConditionCheckFailure", &["NONE", "ALL_OLD"])? == "ALL_OLD")
}

impl Action {
    pub fn read(state: &mut State, request: &Json, write: &str) -> Result<Self, Refusal> {
        let name = table_name(request)?.to_owned();
        let mut expressions = Expressions::new(request, &mut state.observed)?;
        let table = state.tables.get(&name).ok_or_else(Refusal::no_table)?;
        let (key, write) = match write {
            "Put" => {
                let item = item_from_json(request.get("Item").unwrap_or(&Json::Null))?;
                (checked_put(table, &item)?, Write::Put(item))
            }
            _ => {
                let key = table.key_of_request(&item_from_json(request.get("Key").unwrap_or(&Json::Null))?)?;
                let write = match write {
                    "Update" => Write::Update(expressions.update()?.ok_or_else(|| {
                        Refusal::validation(
                            "The UpdateExpression parameter is required: AttributeUpdates is not supported here",
                        )
                    })?),
                    "Delete" => Write::Delete,
                    _ => Write::Check,
                };
                (key, write)
            }
        };
        let condition = expressions.condition("ConditionExpression", Kind::Condition)?;
        if matches!(write, Write::Check) && condition.is_none() {
            return Err(Refusal::validation("The ConditionExpression parameter is required for a ConditionCheck"));
        }
        expressions.finish()?;
        Ok(Self { table: name, key, write, condition, old_on_failure: old_on_failure(request)? })
    }

    /// What the action would do to its item as it is stored now: refused if its condition fails, or if the
    /// update cannot be applied or leaves the item too large.
    pub fn decide(&self, table: &Table) -> Result<Outcome, Refusal> {
        let stored = table.get(&self.key);
        if let Some(condition) = &self.condition {
            let empty = Item::new();
            if !expr::test(condition, stored.unwrap_or(&empty), Kind::Condition)? {
                return Err(Refusal::condition_failed(stored.filter(|_| self.old_on_failure).cloned()));
            }
        }
        Ok(match &self.write {
            Write::Put(item) => Outcome::Store(item.clone()),
            Write::Delete => Outcome::Remove,
            Write::Check => Outcome::Keep,
            Write::Update(update) => {
                let base = stored.cloned().unwrap_or_else(|| key_item(table, &self.key));
                let keys: Vec<&str> = table.key.names().collect();
                let updated = expr::apply(update, &base, &keys)?;
                table.check_index_keys(&updated)?;
                if item_size(&updated) > MAX_ITEM {
                    return Err(Refusal::validation(text::UPDATED_ITEM_TOO_LARGE));
                }
                Outcome::Store(updated)
            }
        })
    }
}

/// The key of an item to put, once DynamoDB's checks of the request alone pass: its keys, index keys and size.
pub fn checked_put(table: &Table, item: &Item) -> Result<PrimaryKey, Refusal> {
    let key = table.key_of_item(item)?;
    table.check_index_keys(item)?;
    if item_size(item) > MAX_ITEM {
        return Err(Refusal::validation(text::ITEM_TOO_LARGE));
    }
    Ok(key)
}

/// An item holding only `key`'s attributes: what an update of a missing item starts from.
fn key_item(table: &Table, key: &PrimaryKey) -> Item {
    let (hash, range) = key;
    let mut item = Item::from([(table.key.hash.clone(), hash.value())]);
    if let (Some(name), Some(range)) = (&table.key.range, range) {
        item.insert(name.clone(), range.value());
    }
    item
}

pub(super) fn show(key: &PrimaryKey) -> String {
    let part = |k: &KeyValue| match k {
        KeyValue::S(s) => s.clone(),
        other => format!("{:?}", other.value().to_json()),
    };
    match &key.1 {
        Some(range) => format!("{} / {}", part(&key.0), part(range)),
        None => part(&key.0),
    }
}

/// Applies a decided outcome; returns the item that was there.
pub fn commit(state: &mut State, table: &str, key: &PrimaryKey, outcome: Outcome) -> Option<Item> {
    let table = state.tables.get_mut(table)?;
    match outcome {
        Outcome::Store(item) => {
            state.observed.item_written(item_size(&item), &table.name, || show(key));
            if let Some(first) = &mut state.first_stored {
                first.entry(show(key)).or_insert(state.now);
            }
            table.put(key.clone(), item)
        }
        Outcome::Remove => table.delete(key),
        Outcome::Keep => None,
    }
}

fn answer(attributes: Option<Item>) -> Json {
    match attributes {
        Some(item) if !item.is_empty() => json!({ "Attributes": item_to_json(&item) }),
        _ => json!({}),
    }
}

pub fn put(state: &mut State, request: &Json) -> Result<Json, Refusal> {
    put_or_delete(state, request, "Put")
}

pub fn delete(state: &mut State, request: &Json) -> Result<Json, Refusal> {
    put_or_delete(state, request, "Delete")
}

/// PutItem and DeleteItem: ReturnValues may only ask for the old item.
fn put_or_delete(state: &mut State, request: &Json, write: &str) -> Result<Json, Refusal> {
    let returns = choice(request, "ReturnValues", &["NONE", "ALL_OLD"])?;
    let action = Action::read(state, request, write)?;
    let outcome = action.decide(state.table(&action.table)?)?;
    let old = commit(state, &action.table, &action.key, outcome);
    Ok(answer(old.filter(|_| returns == "ALL_OLD")))
}

pub fn update(state: &mut State, request: &Json) -> Result<Json, Refusal> {
    let returns = choice(request, "ReturnValues", &["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"])?;
    let action = Action::read(state, request, "Update")?;
    let Write::Update(update) = &action.write else { unreachable!("read as an update") };
    let touched: Vec<String> = update.targets().map(|path| path.top().to_owned()).collect();
    let outcome = action.decide(state.table(&action.table)?)?;
    let new = match &outcome {
        Outcome::Store(item) => Some(item.clone()).filter(|_| returns.ends_with("NEW")),
        _ => None,
    };
    let old = commit(state, &action.table, &action.key, outcome);
    let only_touched = |item: Item| -> Item { item.into_iter().filter(|(name, _)| touched.contains(name)).collect() };
    Ok(answer(match returns {
        "ALL_OLD" => old,
        "UPDATED_OLD" => old.map(only_touched),
        "ALL_NEW" => new,
        "UPDATED_NEW" => new.map(only_touched),
        _ => None,
    }))
}
