//! CreateTable, DescribeTable, UpdateTable (adding a global secondary index), UpdateTimeToLive and
//! DescribeTimeToLive. Tables and indexes are ACTIVE at once: there is nothing to build.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use super::{State, table_name};
use crate::fake::dynamodb::error::Refusal;
use crate::fake::dynamodb::table::{Index, KeySchema, Projection, Table};

fn key_schema(elements: Option<&Json>) -> Result<KeySchema, Refusal> {
    let invalid = || {
        Refusal::validation(
            "1 validation error detected: Value null at 'keySchema' failed to satisfy constraint: Member must not be null",
        )
    };
    let elements = elements.and_then(Json::as_array).ok_or_else(invalid)?;
    let named = |kind: &str| {
        elements
            .iter()
            .find(|e| e.get("KeyType").and_then(Json::as_str) == Some(kind))
            .and_then(|e| e.get("AttributeName").and_then(Json::as_str))
            .map(str::to_owned)
    };
    Ok(KeySchema { hash: named("HASH").ok_or_else(invalid)?, range: named("RANGE") })
}

fn key_schema_json(key: &KeySchema) -> Json {
    let mut elements = vec![json!({ "AttributeName": key.hash, "KeyType": "HASH" })];
    if let Some(range) = &key.range {
        elements.push(json!({ "AttributeName": range, "KeyType": "RANGE" }));
    }
    Json::Array(elements)
}

fn index_of(definition: &Json) -> Result<Index, Refusal> {
    let name = definition.get("IndexName").and_then(Json::as_str).unwrap_or_default().to_owned();
    let projection = definition.get("Projection").unwrap_or(&Json::Null);
    let projection = match projection.get("ProjectionType").and_then(Json::as_str) {
        Some("KEYS_ONLY") => Projection::KeysOnly,
        Some("INCLUDE") => Projection::Include(
            projection
                .get("NonKeyAttributes")
                .and_then(Json::as_array)
                .map(|names| names.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
        ),
        _ => Projection::All,
    };
    Ok(Index::new(name, key_schema(definition.get("KeySchema"))?, projection))
}

fn attribute_types(request: &Json) -> BTreeMap<String, String> {
    let definitions = request.get("AttributeDefinitions").and_then(Json::as_array).cloned().unwrap_or_default();
    definitions
        .iter()
        .filter_map(|d| {
            Some((d.get("AttributeName")?.as_str()?.to_owned(), d.get("AttributeType")?.as_str()?.to_owned()))
        })
        .collect()
}

/// DynamoDB refuses attribute definitions that no key uses, and keys without a definition.
fn check_definitions(types: &BTreeMap<String, String>, keys: &[&KeySchema]) -> Result<(), Refusal> {
    let used: Vec<&str> = keys.iter().flat_map(|k| k.names()).collect();
    if let Some(missing) = used.iter().find(|name| !types.contains_key(**name)) {
        return Err(Refusal::validation(format!(
            "One or more parameter values were invalid: Some index key attributes are not defined in AttributeDefinitions. Keys: [{missing}], AttributeDefinitions: [{}]",
            types.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    if types.keys().any(|name| !used.contains(&name.as_str())) {
        return Err(Refusal::validation(format!(
            "One or more parameter values were invalid: Some AttributeDefinitions are not used. AttributeDefinitions: [{}], keys used: [{}]",
            types.keys().cloned().collect::<Vec<_>>().join(", "),
            used.join(", ")
        )));
    }
    Ok(())
}

pub fn create(state: &mut State, request: &Json, now: f64) -> Result<Json, Refusal> {
    let name = table_name(request)?.to_owned();
    if state.tables.contains_key(&name) {
        return Err(Refusal::new("ResourceInUseException", format!("Table already exists: {name}")));
    }
    let types = attribute_types(request);
    let mut table = Table::new(name.clone(), key_schema(request.get("KeySchema"))?, types, now);
    let indexes = request.get("GlobalSecondaryIndexes").and_then(Json::as_array).cloned().unwrap_or_default();
    let indexes = indexes.iter().map(index_of).collect::<Result<Vec<_>, _>>()?;
    let keys: Vec<&KeySchema> = std::iter::once(&table.key).chain(indexes.iter().map(|i| &i.key)).collect();
    check_definitions(&table.types, &keys)?;
    for index in indexes {
        table.add_index(index);
    }
    let description = description(&table);
    state.tables.insert(name, table);
    Ok(json!({ "TableDescription": description }))
}

fn description(table: &Table) -> Json {
    let indexes: Vec<Json> = table
        .indexes
        .iter()
        .map(|index| {
            let mut projection = json!({ "ProjectionType": match &index.projection {
                Projection::KeysOnly => "KEYS_ONLY",
                Projection::Include(_) => "INCLUDE",
                Projection::All => "ALL",
            } });
            if let Projection::Include(names) = &index.projection {
                projection["NonKeyAttributes"] = json!(names);
            }
            json!({
                "IndexName": index.name,
                "KeySchema": key_schema_json(&index.key),
                "Projection": projection,
                "IndexStatus": "ACTIVE",
                "ItemCount": index.items,
                "IndexSizeBytes": index.bytes,
                "IndexArn": format!("arn:aws:dynamodb:us-east-1:000000000000:table/{}/index/{}", table.name, index.name),
            })
        })
        .collect();
    let definitions: Vec<Json> =
        table.types.iter().map(|(name, kind)| json!({ "AttributeName": name, "AttributeType": kind })).collect();
    let mut description = json!({
        "TableName": table.name,
        "TableStatus": "ACTIVE",
        "KeySchema": key_schema_json(&table.key),
        "AttributeDefinitions": definitions,
        "ItemCount": table.items.len(),
        "TableSizeBytes": table.bytes,
        "CreationDateTime": table.created,
        "BillingModeSummary": { "BillingMode": "PAY_PER_REQUEST" },
        "TableArn": format!("arn:aws:dynamodb:us-east-1:000000000000:table/{}", table.name),
    });
    if !indexes.is_empty() {
        description["GlobalSecondaryIndexes"] = Json::Array(indexes);
    }
    description
}

fn not_found(name: &str) -> Refusal {
    Refusal::new("ResourceNotFoundException", format!("Requested resource not found: Table: {name} not found"))
}

pub fn describe(state: &mut State, request: &Json) -> Result<Json, Refusal> {
    let name = table_name(request)?;
    let table = state.tables.get(name).ok_or_else(|| not_found(name))?;
    Ok(json!({ "Table": description(table) }))
}

pub fn update(state: &mut State, request: &Json) -> Result<Json, Refusal> {
    let name = table_name(request)?.to_owned();
    let table = state.tables.get_mut(&name).ok_or_else(|| not_found(&name))?;
    let updates = request.get("GlobalSecondaryIndexUpdates").and_then(Json::as_array).cloned().unwrap_or_default();
    if updates.len() > 1 {
        return Err(Refusal::validation(
            "Subscriber limit exceeded: Only 1 online index can be created or deleted simultaneously per table",
        ));
    }
    for update in &updates {
        let Some(create) = update.get("Create") else {
            return Err(Refusal::validation("Only creating a global secondary index is supported by this engine"));
        };
        let index = index_of(create)?;
        if table.indexes.iter().any(|existing| existing.name == index.name) {
            return Err(Refusal::validation(format!(
                "One or more parameter values were invalid: Index {} already exists",
                index.name
            )));
        }
        let mut types = table.types.clone();
        types.extend(attribute_types(request));
        let keys: Vec<&KeySchema> =
            std::iter::once(&table.key).chain(table.indexes.iter().map(|i| &i.key)).chain([&index.key]).collect();
        check_definitions(&types, &keys)?;
        table.types = types;
        table.add_index(index);
    }
    Ok(json!({ "TableDescription": description(table) }))
}

pub fn update_ttl(state: &mut State, request: &Json) -> Result<Json, Refusal> {
    let name = table_name(request)?.to_owned();
    let table = state.tables.get_mut(&name).ok_or_else(|| not_found(&name))?;
    let specification = request.get("TimeToLiveSpecification").cloned().unwrap_or(Json::Null);
    let attribute = specification.get("AttributeName").and_then(Json::as_str).unwrap_or_default().to_owned();
    let enabled = specification.get("Enabled").and_then(Json::as_bool).unwrap_or(false);
    match (enabled, &table.ttl) {
        (true, Some(_)) => return Err(Refusal::validation("TimeToLive is already enabled")),
        (false, None) => return Err(Refusal::validation("TimeToLive is already disabled")),
        (true, None) => table.enable_ttl(attribute),
        (false, Some(_)) => table.ttl = None,
    }
    Ok(json!({ "TimeToLiveSpecification": specification }))
}

pub fn describe_ttl(state: &mut State, request: &Json) -> Result<Json, Refusal> {
    let name = table_name(request)?;
    let table = state.tables.get(name).ok_or_else(|| not_found(name))?;
    Ok(json!({ "TimeToLiveDescription": match &table.ttl {
        Some(attribute) => json!({ "TimeToLiveStatus": "ENABLED", "AttributeName": attribute }),
        None => json!({ "TimeToLiveStatus": "DISABLED" }),
    } }))
}
