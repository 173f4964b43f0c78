//! The ledger table's schema: created by `cf-invalidator setup`, and brought up to date on an existing table, so
//! that running `setup` again after an upgrade adds the indexes a newer version reads; checked by the worker at
//! start, so that a table it cannot use stops it at once instead of dead-lettering every message.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TableDescription, TableStatus, TimeToLiveSpecification,
};

use super::{
    BOARD, BOARD_INDEX, DISTRIBUTION_INDEX, DynamoLedger, INVALIDATION_INDEX, KEY, LIST, LIST_INDEX, OUTCOME_INDEX,
    PUBLISHED, RANK, TRACKING, TRACKING_INDEX, TTL_ATTRIBUTE,
};
use crate::aws::error::classify;
use crate::ports::ledger::LedgerError;

/// One global secondary index; every key attribute is a string.
struct IndexSpec {
    name: &'static str,
    hash: &'static str,
    range: Option<&'static str>,
    projection: ProjectionType,
    /// With `ProjectionType::Include`: the attributes besides the keys.
    included: &'static [&'static str],
}

const INDEXES: [IndexSpec; 6] = [
    IndexSpec {
        name: DISTRIBUTION_INDEX,
        hash: "distribution_id",
        range: Some("created_at"),
        projection: ProjectionType::All,
        included: &[],
    },
    // Keys only: one small index write per accepted batch, and the audit reads the item by its key afterwards.
    // With ALL, every later update of the batch (completion) would write the whole item to this index again.
    IndexSpec {
        name: INVALIDATION_INDEX,
        hash: "invalidation_id",
        range: None,
        projection: ProjectionType::KeysOnly,
        included: &[],
    },
    // Failures are rare: the audit gets them whole from the index.
    IndexSpec {
        name: OUTCOME_INDEX,
        hash: "outcome",
        range: Some("created_at"),
        projection: ProjectionType::All,
        included: &[],
    },
    // Accepted batches until their completion is recorded, with just what completion tracking needs: any worker
    // finishes a stopped worker's tracking from here.
    IndexSpec {
        name: TRACKING_INDEX,
        hash: TRACKING,
        range: Some("created_at"),
        projection: ProjectionType::Include,
        included: &[
            "caller_reference",
            "distribution_id",
            "tenant_id",
            "invalidation_id",
            "submitted_at",
            "status",
            PUBLISHED,
        ],
    },
    // The status page's pending batches, the newest outcomes and the workers, whatever the number of
    // distributions. Without the path and message lists, so a big batch costs the index a small write. Budget
    // items were listed here with their reservations until they moved to `by_list`; the projection still names
    // them, since changing it would rebuild the index on every deployed table.
    IndexSpec {
        name: BOARD_INDEX,
        hash: BOARD,
        range: Some("created_at"),
        projection: ProjectionType::Include,
        included: &[
            "caller_reference",
            "distribution_id",
            "status",
            "path_count",
            "requesters",
            "invalidation_id",
            "submitted_at",
            "time_to_complete_ms",
            "owner",
            "lease_until",
            "reservations",
            "version",
            TTL_ATTRIBUTE,
        ],
    },
    // Ranked lists: a month's distributions and requesters by paths billed, with their counters, so a report reads
    // the biggest few however many there were; and the budget items, by key only, so that a reservation's write
    // copies nothing into the index.
    IndexSpec {
        name: LIST_INDEX,
        hash: LIST,
        range: Some(RANK),
        projection: ProjectionType::Include,
        included: &[
            "batches",
            "messages",
            "paths_billed",
            "paths_requested",
            "paths_distinct",
            "wildcards",
            "requester",
            TTL_ATTRIBUTE,
        ],
    },
];

/// Table creation is quick; building an index over an existing table reads all of it.
const TABLE_WAIT: Duration = Duration::from_secs(60);
const INDEX_WAIT: Duration = Duration::from_secs(30 * 60);

fn build_error(e: BuildError) -> LedgerError {
    LedgerError::Other(e.to_string())
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, LedgerError> {
    KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(build_error)
}

/// The key attribute and every index's key attributes, each once: `rank` is a number, the rest strings.
fn attribute_definitions() -> Result<Vec<AttributeDefinition>, LedgerError> {
    let mut names = vec![KEY];
    for name in INDEXES.iter().flat_map(|index| [Some(index.hash), index.range]).flatten() {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
        .into_iter()
        .map(|name| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(if name == RANK { ScalarAttributeType::N } else { ScalarAttributeType::S })
                .build()
                .map_err(build_error)
        })
        .collect()
}

impl IndexSpec {
    fn key_schema(&self) -> Result<Vec<KeySchemaElement>, LedgerError> {
        let mut schema = vec![key(self.hash, KeyType::Hash)?];
        if let Some(range) = self.range {
            schema.push(key(range, KeyType::Range)?);
        }
        Ok(schema)
    }

    fn projection(&self) -> Projection {
        let included = self.included.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>();
        let builder = Projection::builder().projection_type(self.projection.clone());
        if included.is_empty() { builder.build() } else { builder.set_non_key_attributes(Some(included)).build() }
    }

    fn for_new_table(&self) -> Result<GlobalSecondaryIndex, LedgerError> {
        GlobalSecondaryIndex::builder()
            .index_name(self.name)
            .set_key_schema(Some(self.key_schema()?))
            .projection(self.projection())
            .build()
            .map_err(build_error)
    }

    fn for_existing_table(&self) -> Result<GlobalSecondaryIndexUpdate, LedgerError> {
        let create = CreateGlobalSecondaryIndexAction::builder()
            .index_name(self.name)
            .set_key_schema(Some(self.key_schema()?))
            .projection(self.projection())
            .build()
            .map_err(build_error)?;
        Ok(GlobalSecondaryIndexUpdate::builder().create(create).build())
    }
}

/// Creates the ledger table and its indexes, on-demand billed, and enables TTL. On an existing table it adds the
/// indexes it lacks, one at a time (DynamoDB builds one per request). Returns once the table and every index are
/// ACTIVE.
pub async fn create_table(client: &Client, table: &str) -> Result<(), LedgerError> {
    let ledger = DynamoLedger::new(client.clone(), table);
    let indexes = INDEXES.iter().map(IndexSpec::for_new_table).collect::<Result<Vec<_>, _>>()?;
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(attribute_definitions()?))
        .key_schema(key(KEY, KeyType::Hash)?)
        .set_global_secondary_indexes(Some(indexes))
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(ledger.error(classify(&e))),
    }
    let present = wait_until_active(&ledger, TABLE_WAIT).await?;
    for index in INDEXES.iter().filter(|index| !present.iter().any(|name| name == index.name)) {
        client
            .update_table()
            .table_name(table)
            .set_attribute_definitions(Some(attribute_definitions()?))
            .global_secondary_index_updates(index.for_existing_table()?)
            .send()
            .await
            .map_err(|e| ledger.error(classify(&e)))?;
        wait_until_active(&ledger, INDEX_WAIT).await?;
    }
    enable_ttl(client, &ledger).await
}

/// Waits until the table and all its indexes are ACTIVE, and returns the indexes' names. The SDK's waiter polls
/// no faster than every 20 s; tables on the emulator are ready at once, so short waits poll often.
async fn wait_until_active(ledger: &DynamoLedger, limit: Duration) -> Result<Vec<String>, LedgerError> {
    let give_up = tokio::time::Instant::now() + limit;
    let poll = (limit / 120).clamp(Duration::from_millis(500), Duration::from_secs(15));
    loop {
        let described = describe(ledger).await?;
        let table = described.as_ref();
        let indexes = table.map(|t| t.global_secondary_indexes()).unwrap_or_default();
        let active = table.and_then(|t| t.table_status()) == Some(&TableStatus::Active)
            && indexes.iter().all(|index| index.index_status() == Some(&IndexStatus::Active));
        if active {
            return Ok(indexes.iter().filter_map(|index| index.index_name().map(str::to_owned)).collect());
        }
        if tokio::time::Instant::now() >= give_up {
            return Err(LedgerError::Other(format!(
                "table {} and its indexes did not become ACTIVE within {}; run setup again to keep waiting",
                ledger.table,
                humantime::format_duration(limit)
            )));
        }
        tokio::time::sleep(poll).await;
    }
}

/// Lets DynamoDB delete expired records; already enabled is fine.
async fn enable_ttl(client: &Client, ledger: &DynamoLedger) -> Result<(), LedgerError> {
    let specification =
        TimeToLiveSpecification::builder().attribute_name(TTL_ATTRIBUTE).enabled(true).build().map_err(build_error)?;
    let outcome =
        client.update_time_to_live().table_name(&ledger.table).time_to_live_specification(specification).send().await;
    match outcome {
        Ok(_) => Ok(()),
        Err(e) if e.message().is_some_and(|m| m.contains("already enabled")) => Ok(()),
        Err(e) => Err(ledger.error(classify(&e))),
    }
}

/// Why a table cannot be this version's ledger: none of it heals by waiting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "table {table} is keyed by {found}, not by {KEY} (a string) alone: it is not a cf-invalidator ledger; point --table at a table `cf-invalidator setup` created"
    )]
    KeySchema { table: String, found: String },
    #[error(
        "table {table} lacks the index {index} this version reads: run `cf-invalidator setup --queue-name QUEUE --table {table}` once to add it"
    )]
    MissingIndex { table: String, index: &'static str },
    #[error(
        "index {index} of table {table} is keyed by {found}, not {expected}: it was not made by `cf-invalidator setup`; delete it and run setup to create it"
    )]
    IndexKeys { table: String, index: &'static str, found: String, expected: String },
}

/// Whether the ledger table can be used now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableCheck {
    Ready,
    /// Not yet: the table or an index is being built. Says which.
    Building(String),
}

/// Reads the table's description (DescribeTable) and compares it with what `setup` creates: the key, and every
/// index with its keys.
pub async fn check_table(ledger: &DynamoLedger) -> Result<Result<TableCheck, SchemaError>, LedgerError> {
    let table = describe(ledger).await?.ok_or_else(|| LedgerError::NotFound(ledger.table.clone()))?;
    Ok(compare(&ledger.table, &table))
}

/// DescribeTable.
async fn describe(ledger: &DynamoLedger) -> Result<Option<TableDescription>, LedgerError> {
    let described = ledger
        .client
        .describe_table()
        .table_name(&ledger.table)
        .send()
        .await
        .map_err(|e| ledger.error(classify(&e)))?;
    Ok(described.table)
}

/// What the description says against what the worker reads. No I/O.
fn compare(name: &str, table: &TableDescription) -> Result<TableCheck, SchemaError> {
    let string_key = table
        .attribute_definitions()
        .iter()
        .any(|a| a.attribute_name() == KEY && a.attribute_type() == &ScalarAttributeType::S);
    let keys = shown(table.key_schema());
    if !string_key || keys != format!("{KEY} (hash)") {
        return Err(SchemaError::KeySchema { table: name.to_owned(), found: keys });
    }
    if table.table_status() == Some(&TableStatus::Creating) {
        return Ok(TableCheck::Building(format!("table {name} is being created")));
    }
    for spec in &INDEXES {
        let Some(index) = table.global_secondary_indexes().iter().find(|i| i.index_name() == Some(spec.name)) else {
            return Err(SchemaError::MissingIndex { table: name.to_owned(), index: spec.name });
        };
        let expected = spec.key_schema().map(|schema| shown(&schema)).unwrap_or_default();
        let found = shown(index.key_schema());
        if found != expected {
            return Err(SchemaError::IndexKeys { table: name.to_owned(), index: spec.name, found, expected });
        }
        if let Some(status) = index.index_status().filter(|status| **status != IndexStatus::Active) {
            return Ok(TableCheck::Building(format!("index {} of table {name} is {}", spec.name, status.as_str())));
        }
    }
    Ok(TableCheck::Ready)
}

/// `pk (hash)`, `distribution_id (hash), created_at (range)`.
fn shown(schema: &[KeySchemaElement]) -> String {
    let parts: Vec<String> = schema
        .iter()
        .map(|k| format!("{} ({})", k.attribute_name(), k.key_type().as_str().to_ascii_lowercase()))
        .collect();
    if parts.is_empty() { "nothing".into() } else { parts.join(", ") }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::GlobalSecondaryIndexDescription;

    use super::*;

    fn table(key: &str, indexes: &[&IndexSpec], status: IndexStatus) -> TableDescription {
        let definition =
            AttributeDefinition::builder().attribute_name(key).attribute_type(ScalarAttributeType::S).build().unwrap();
        let described = indexes.iter().map(|spec| {
            GlobalSecondaryIndexDescription::builder()
                .index_name(spec.name)
                .set_key_schema(Some(spec.key_schema().unwrap()))
                .index_status(status.clone())
                .build()
        });
        TableDescription::builder()
            .attribute_definitions(definition)
            .key_schema(super::key(key, KeyType::Hash).unwrap())
            .table_status(TableStatus::Active)
            .set_global_secondary_indexes(Some(described.collect()))
            .build()
    }

    #[test]
    fn a_table_setup_made_is_ready_once_its_indexes_are_built() {
        let all: Vec<&IndexSpec> = INDEXES.iter().collect();
        assert_eq!(compare("t", &table(KEY, &all, IndexStatus::Active)), Ok(TableCheck::Ready));
        let building = compare("t", &table(KEY, &all, IndexStatus::Creating));
        assert!(matches!(building, Ok(TableCheck::Building(why)) if why.contains("CREATING")));
    }

    #[test]
    fn another_key_or_a_missing_index_is_refused() {
        let all: Vec<&IndexSpec> = INDEXES.iter().collect();
        let other = compare("t", &table("id", &all, IndexStatus::Active)).unwrap_err();
        assert!(other.to_string().contains("keyed by id (hash), not by pk"), "{other}");
        let missing = compare("t", &table(KEY, &all[..4], IndexStatus::Active)).unwrap_err();
        assert_eq!(missing, SchemaError::MissingIndex { table: "t".into(), index: BOARD_INDEX });
    }
}
