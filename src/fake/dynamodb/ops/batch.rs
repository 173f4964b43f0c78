//! BatchGetItem (at most 100 keys, no key twice, 16 MB of items an answer, the rest unprocessed) and
//! BatchWriteItem (at most 25 puts and deletes, no item twice, each checked as a PutItem is).

use std::collections::BTreeSet;

use serde_json::{Map, Value as Json, json};

use super::read::project;
use super::write::{Outcome, checked_put, commit};
use super::{Expressions, State};
use crate::fake::dynamodb::error::{Refusal, text};
use crate::fake::dynamodb::table::PrimaryKey;
use crate::fake::dynamodb::value::{item_from_json, item_to_json};

const MAX_GET_KEYS: usize = 100;
const MAX_WRITES: usize = 25;
const MAX_GET_ANSWER: usize = 16 * 1024 * 1024;

fn request_items(request: &Json) -> Result<&Map<String, Json>, Refusal> {
    match request.get("RequestItems").and_then(Json::as_object) {
        Some(items) if !items.is_empty() => Ok(items),
        _ => Err(Refusal::validation(
            "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Member must have length greater than or equal to 1",
        )),
    }
}

pub fn get(state: &mut State, request: &Json) -> Result<Json, Refusal> {
    let tables = request_items(request)?;
    let total: usize = tables.values().map(|t| t.get("Keys").and_then(Json::as_array).map_or(0, Vec::len)).sum();
    if total > MAX_GET_KEYS {
        return Err(Refusal::validation("Too many items requested for the BatchGetItem call"));
    }
    let mut responses = Map::new();
    let mut unprocessed = Map::new();
    let mut answered = 0;
    for (name, wanted) in tables {
        let mut expressions = Expressions::new(wanted, &mut state.observed)?;
        let projection = expressions.projection()?;
        expressions.finish()?;
        let table = state.table(name)?;
        let keys = wanted.get("Keys").and_then(Json::as_array).cloned().unwrap_or_default();
        let mut seen = BTreeSet::new();
        let mut found = Vec::new();
        let mut left = Vec::new();
        for key in keys {
            let primary = table.key_of_request(&item_from_json(&key)?)?;
            if !seen.insert(primary.clone()) {
                return Err(Refusal::validation(text::DUPLICATE_KEYS));
            }
            let Some(stored) = table.items.get(&primary) else { continue };
            if answered + stored.size > MAX_GET_ANSWER {
                left.push(key);
                continue;
            }
            answered += stored.size;
            found.push(item_to_json(&project(&stored.item, projection.as_deref())));
        }
        responses.insert(name.clone(), Json::Array(found));
        if !left.is_empty() {
            let mut rest = wanted.clone();
            rest["Keys"] = Json::Array(left);
            unprocessed.insert(name.clone(), rest);
        }
    }
    Ok(json!({ "Responses": responses, "UnprocessedKeys": unprocessed }))
}

pub fn write(state: &mut State, request: &Json) -> Result<Json, Refusal> {
    let tables = request_items(request)?;
    let total: usize = tables.values().map(|t| t.as_array().map_or(0, Vec::len)).sum();
    if total > MAX_WRITES {
        return Err(Refusal::validation("Too many items requested for the BatchWriteItem call"));
    }
    // Everything is checked before anything is written: a refused request writes nothing.
    let mut writes: Vec<(String, PrimaryKey, Outcome)> = Vec::new();
    let mut seen = BTreeSet::new();
    for (name, requests) in tables {
        let table = state.table(name)?;
        for write in requests.as_array().into_iter().flatten() {
            let (key, outcome) = if let Some(put) = write.get("PutRequest") {
                let item = item_from_json(put.get("Item").unwrap_or(&Json::Null))?;
                (checked_put(table, &item)?, Outcome::Store(item))
            } else if let Some(delete) = write.get("DeleteRequest") {
                (table.key_of_request(&item_from_json(delete.get("Key").unwrap_or(&Json::Null))?)?, Outcome::Remove)
            } else {
                return Err(Refusal::validation(
                    "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes",
                ));
            };
            if !seen.insert((name.clone(), key.clone())) {
                return Err(Refusal::validation(text::DUPLICATE_KEYS));
            }
            writes.push((name.clone(), key, outcome));
        }
    }
    for (table, key, outcome) in writes {
        commit(state, &table, &key, outcome);
    }
    Ok(json!({ "UnprocessedItems": {} }))
}
