//! DynamoDB's operations over the engine's tables: one function per operation, taking the request's JSON and
//! answering the response's JSON or a refusal.

mod batch;
mod condition;
mod read;
mod tables;
mod transact;
mod write;

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value as Json, json};

use super::error::Refusal;
use super::expr::{self, Condition, Kind, Path, Placeholders, Update};
use super::stats::Observed;
use super::table::Table;
use super::value::Value;

/// The engine's state: every table, and what it observed.
#[derive(Debug, Default)]
pub struct State {
    pub tables: BTreeMap<String, Table>,
    pub observed: Observed,
    /// When each item was first stored (epoch seconds), by its key as `show` writes it: kept only when asked for
    /// (`StrictDynamo::recording_first_stores`), since it grows with every item ever written.
    pub first_stored: Option<std::collections::HashMap<String, f64>>,
    /// The time of the request being answered, epoch seconds.
    pub now: f64,
}

impl State {
    pub fn table(&self, name: &str) -> Result<&Table, Refusal> {
        self.tables.get(name).ok_or_else(Refusal::no_table)
    }
}

/// Runs `operation` (the `X-Amz-Target` after `DynamoDB_20120810.`); `now` is epoch seconds.
pub fn dispatch(state: &mut State, operation: &str, request: &Json, now: f64) -> Result<Json, Refusal> {
    state.now = now;
    *state.observed.requests.entry(operation.to_owned()).or_default() += 1;
    match operation {
        "CreateTable" => tables::create(state, request, now),
        "DescribeTable" => tables::describe(state, request),
        "UpdateTable" => tables::update(state, request),
        "UpdateTimeToLive" => tables::update_ttl(state, request),
        "DescribeTimeToLive" => tables::describe_ttl(state, request),
        "ListTables" => Ok(json!({ "TableNames": state.tables.keys().collect::<Vec<_>>() })),
        "GetItem" => read::get(state, request),
        "Query" => read::query(state, request),
        "Scan" => read::scan(state, request),
        "PutItem" => write::put(state, request),
        "UpdateItem" => write::update(state, request),
        "DeleteItem" => write::delete(state, request),
        "BatchGetItem" => batch::get(state, request),
        "BatchWriteItem" => batch::write(state, request),
        "TransactWriteItems" => transact::write(state, request),
        other => Err(Refusal::new("UnknownOperationException", format!("Unknown operation {other}"))),
    }
}

/// One request's expressions, read with its placeholders, each expression's size noted.
pub struct Expressions<'a> {
    request: &'a Json,
    placeholders: Placeholders,
    observed: &'a mut Observed,
}

impl<'a> Expressions<'a> {
    pub fn new(request: &'a Json, observed: &'a mut Observed) -> Result<Self, Refusal> {
        let names = match request.get("ExpressionAttributeNames") {
            None | Some(Json::Null) => HashMap::new(),
            Some(Json::Object(names)) if names.is_empty() => {
                return Err(Refusal::validation("ExpressionAttributeNames must not be empty"));
            }
            Some(Json::Object(names)) => {
                names.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect()
            }
            Some(_) => return Err(Refusal::new("SerializationException", "Unexpected ExpressionAttributeNames")),
        };
        let values = match request.get("ExpressionAttributeValues") {
            None | Some(Json::Null) => HashMap::new(),
            Some(Json::Object(values)) if values.is_empty() => {
                return Err(Refusal::validation("ExpressionAttributeValues must not be empty"));
            }
            Some(Json::Object(values)) => values
                .iter()
                .map(|(k, v)| Ok((k.clone(), Value::from_json(v).map_err(|e| e.for_value_key(k))?)))
                .collect::<Result<_, Refusal>>()?,
            Some(_) => return Err(Refusal::new("SerializationException", "Unexpected ExpressionAttributeValues")),
        };
        Ok(Self { request, placeholders: Placeholders::new(names, values), observed })
    }

    fn text(&mut self, field: &str, kind: Kind) -> Option<&'a str> {
        let text = self.request.get(field).and_then(Json::as_str)?;
        self.observed.expression(text, kind);
        Some(text)
    }

    pub fn condition(&mut self, field: &str, kind: Kind) -> Result<Option<Condition>, Refusal> {
        let Some(text) = self.text(field, kind) else { return Ok(None) };
        expr::parse_condition(text, kind, &mut self.placeholders).map(Some)
    }

    pub fn update(&mut self) -> Result<Option<Update>, Refusal> {
        let Some(text) = self.text("UpdateExpression", Kind::Update) else { return Ok(None) };
        expr::parse_update(text, &mut self.placeholders).map(Some)
    }

    pub fn projection(&mut self) -> Result<Option<Vec<Path>>, Refusal> {
        let Some(text) = self.text("ProjectionExpression", Kind::Projection) else { return Ok(None) };
        expr::parse_projection(text, &mut self.placeholders).map(Some)
    }

    /// Every placeholder was used: call once the request's expressions are read.
    pub fn finish(self) -> Result<(), Refusal> {
        self.placeholders.check_all_used()
    }
}

pub fn table_name(request: &Json) -> Result<&str, Refusal> {
    request.get("TableName").and_then(Json::as_str).ok_or_else(|| {
        Refusal::validation(
            "1 validation error detected: Value null at 'tableName' failed to satisfy constraint: Member must not be null",
        )
    })
}

/// An enumerated field's value, refused unless it is one of `allowed` (absent is the first).
pub fn choice(request: &Json, field: &str, allowed: &[&'static str]) -> Result<&'static str, Refusal> {
    let Some(given) = request.get(field).and_then(Json::as_str) else { return Ok(allowed[0]) };
    allowed.iter().copied().find(|a| *a == given).ok_or_else(|| {
        Refusal::validation(format!(
            "1 validation error detected: Value '{given}' at '{}' failed to satisfy constraint: Member must satisfy \
             enum value set: [{}]",
            lower_first(field),
            allowed.join(", ")
        ))
    })
}

fn lower_first(field: &str) -> String {
    let mut chars = field.chars();
    chars.next().map(|c| c.to_ascii_lowercase().to_string() + chars.as_str()).unwrap_or_default()
}
