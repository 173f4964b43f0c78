//! The ledger for tests and simulations: the worker's own DynamoDB adapter over the strict in-process DynamoDB
//! (`fake::dynamodb`), so every test sends the adapter's real requests and meets DynamoDB's limits; with faults a
//! test injects by the port method's name, before a call or after it (a lost answer).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value as Json, json};

use super::dynamodb::StrictDynamo;
use super::faults::Faults;
use crate::aws::dynamodb::budget::budget_from;
use crate::aws::dynamodb::dead_letters::dead_letter_from;
use crate::aws::dynamodb::item::record_from;
use crate::aws::dynamodb::{DynamoLedger, create_table};
use crate::clock::WallClock;
use crate::model::{CallerReference, DistributionId, MessageId};
use crate::ports::budget::BudgetState;
use crate::ports::ledger::{BatchRecord, BatchStatus, DeadLetterRecord, EdgeOutcome, LedgerError, VerificationRecord};

/// A pending batch record for tests, owned by `w1`, its lease ended and its expiry at `created_at`: override what
/// a test needs with struct update syntax.
pub fn pending_record(distribution: &str, paths: &[&str], messages: &[&str], created_at: SystemTime) -> BatchRecord {
    BatchRecord {
        caller_reference: CallerReference::mint(),
        distribution_id: DistributionId::parse(distribution).expect("valid distribution id"),
        tenant_id: None,
        account: None,
        paths: paths.iter().map(|p| p.to_string()).collect(),
        message_ids: messages.iter().map(|m| MessageId(m.to_string())).collect(),
        requesters: Vec::new(),
        shares: Vec::new(),
        idempotency_keys: Vec::new(),
        requested_paths: paths.len(),
        distinct_paths: paths.len(),
        seal_reason: "window_elapsed".into(),
        coalescing: None,
        created_at,
        status: BatchStatus::Pending,
        invalidation_id: None,
        cloudfront_status: None,
        submitted_at: None,
        completed_at: None,
        time_to_complete: None,
        failure: None,
        owner: "w1".into(),
        sealed_by: "w1".into(),
        awaited: false,
        lease_until: created_at,
        expires_at: created_at,
        published: Vec::new(),
        outbox: false,
        tracking_abandoned: None,
        verification: None,
    }
}

/// A check at the edge for tests: five paths, four fresh and `/a` stale at FRA56-P2, at `at`; override what a test
/// needs with struct update syntax.
pub fn verification(outcome: EdgeOutcome, at: SystemTime) -> VerificationRecord {
    VerificationRecord {
        outcome,
        at,
        checked: 5,
        fresh: 4,
        stale: 1,
        errors: 0,
        pops: vec!["FRA56-P2".into()],
        stale_paths: vec!["/a".into()],
        healed_by: None,
        warmed: None,
        warm_failed: None,
    }
}

/// The ledger table's name in the engine.
const TABLE: &str = "ledger";

#[derive(Debug)]
pub struct MemoryLedger {
    pub faults: Faults<LedgerError>,
    engine: Arc<StrictDynamo>,
    ledger: DynamoLedger,
}

impl Default for MemoryLedger {
    fn default() -> Self {
        Self::with_clock(WallClock::System)
    }
}

impl MemoryLedger {
    /// A ledger whose expiry and TTL follow `clock`: simulations run on tokio's paused clock.
    pub fn with_clock(clock: WallClock) -> Self {
        Self::on(StrictDynamo::new(clock), clock)
    }

    /// A ledger over `engine`, its expiry following `clock` (the engine's own).
    pub fn on(engine: StrictDynamo, clock: WallClock) -> Self {
        let engine = Arc::new(engine);
        let client = engine.client();
        // The table is created as `setup` creates it, through the SDK; on a thread of its own, since a test may
        // build its ledger inside a runtime, which cannot block on another.
        let setup = client.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(create_table(&setup, TABLE)).expect("the engine creates the ledger table")
        })
        .join()
        .expect("creating the ledger table");
        let ledger = DynamoLedger::new(client, TABLE).with_clock(clock);
        Self { faults: Faults::default(), engine, ledger }
    }

    /// The engine under the ledger: its figures (item sizes, expressions, index sizes) for benchmarks.
    pub fn engine(&self) -> &StrictDynamo {
        &self.engine
    }

    /// Every batch record, oldest first, expired ones included.
    pub fn records(&self) -> Vec<BatchRecord> {
        let mut records: Vec<BatchRecord> = self
            .items("batch#")
            .iter()
            .map(|item| record_from(item).expect("a batch record the adapter wrote"))
            .collect();
        records.sort_by(|a, b| (a.created_at, &a.caller_reference).cmp(&(b.created_at, &b.caller_reference)));
        records
    }

    /// Every dead-letter record, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetterRecord> {
        let mut records: Vec<DeadLetterRecord> = self
            .items("dlq#")
            .iter()
            .map(|item| dead_letter_from(item).expect("a dead letter the adapter wrote"))
            .collect();
        records.sort_by(|a, b| (a.created_at, &a.message_id).cmp(&(b.created_at, &b.message_id)));
        records
    }

    /// The distribution's budget as stored, expired reservations included.
    pub fn budget(&self, distribution: &DistributionId) -> BudgetState {
        let get = json!({"TableName": TABLE, "Key": {"pk": {"S": format!("budget#{distribution}")}}});
        let (status, found) = self.engine.handle("DynamoDB_20120810.GetItem", get.to_string().as_bytes());
        assert_eq!(status, 200, "the engine refused a read: {found}");
        found.get("Item").map(item).as_ref().and_then(budget_from).map(|(_, budget)| budget).unwrap_or_default()
    }

    /// The items whose key starts with `prefix`, read straight from the engine: a test looks without a request
    /// through the SDK, and without the faults it injected.
    fn items(&self, prefix: &str) -> Vec<HashMap<String, AttributeValue>> {
        let mut found = Vec::new();
        let mut start: Option<Json> = None;
        loop {
            let mut scan = json!({
                "TableName": TABLE,
                "FilterExpression": "begins_with(pk, :prefix)",
                "ExpressionAttributeValues": {":prefix": {"S": prefix}},
            });
            if let Some(start) = start.take() {
                scan["ExclusiveStartKey"] = start;
            }
            let (status, page) = self.engine.handle("DynamoDB_20120810.Scan", scan.to_string().as_bytes());
            assert_eq!(status, 200, "the engine refused a scan: {page}");
            let items = page["Items"].as_array().into_iter().flatten();
            found.extend(items.map(item));
            match page.get("LastEvaluatedKey") {
                Some(next) => start = Some(next.clone()),
                None => return found,
            }
        }
    }

    async fn before(&self, _method: &'static str, parts: &[&'static str]) -> Result<(), LedgerError> {
        for part in parts {
            self.faults.call(part).await?;
        }
        Ok(())
    }

    fn after(&self, method: &'static str) -> Result<(), LedgerError> {
        self.faults.answer(method)
    }
}

crate::hooked_ledger!(MemoryLedger, ledger, before, after);

/// An item in DynamoDB's JSON, as the SDK gives it.
fn item(json: &Json) -> HashMap<String, AttributeValue> {
    json.as_object().into_iter().flatten().map(|(name, value)| (name.clone(), attribute_value(value))).collect()
}

/// An attribute value in DynamoDB's JSON, of the types the ledger writes.
fn attribute_value(value: &Json) -> AttributeValue {
    let (kind, inner) = value.as_object().and_then(|v| v.iter().next()).expect("a typed attribute value");
    let text = || inner.as_str().unwrap_or_default().to_owned();
    match kind.as_str() {
        "S" => AttributeValue::S(text()),
        "N" => AttributeValue::N(text()),
        "BOOL" => AttributeValue::Bool(inner.as_bool().unwrap_or_default()),
        "SS" => AttributeValue::Ss(
            inner.as_array().into_iter().flatten().filter_map(Json::as_str).map(str::to_owned).collect(),
        ),
        "L" => AttributeValue::L(inner.as_array().into_iter().flatten().map(attribute_value).collect()),
        "M" => AttributeValue::M(item(inner)),
        other => panic!("an attribute type the ledger does not write: {other}"),
    }
}
