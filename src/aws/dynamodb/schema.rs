//! The ledger table's schema: created by `cf-invalidator setup`, and brought up to date on an existing table, so
//! that running `setup` again after an upgrade adds the indexes a newer version reads.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification,
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
        included: &["caller_reference", "distribution_id", "invalidation_id", "submitted_at", "status", PUBLISHED],
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
        let described = ledger
            .client
            .describe_table()
            .table_name(&ledger.table)
            .send()
            .await
            .map_err(|e| ledger.error(classify(&e)))?;
        let table = described.table();
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
