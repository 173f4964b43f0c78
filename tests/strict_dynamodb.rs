//! The strict DynamoDB (`fake::dynamodb`) refuses what DynamoDB refuses, through the real SDK client: each
//! refusal with its error code and message, and nothing written. Where an emulator refuses the same request, the
//! test runs there too (with AWS_ENDPOINT_URL set). `strict_dynamodb/findings.rs` sends the worker's own ledger
//! requests.

mod common;
#[path = "strict_dynamodb/expressions.rs"]
mod expressions;
#[path = "strict_dynamodb/findings.rs"]
mod findings;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    KeysAndAttributes, Projection, ProjectionType, PutRequest, ScalarAttributeType, TransactWriteItem, Update,
    WriteRequest,
};
use cf_invalidator::fake::dynamodb::StrictDynamo;

pub const TABLE: &str = "strict";
pub const INDEX: &str = "by_group";

/// A table keyed by `pk`, with a sparse index on (`group`, `rank`) projecting everything.
pub async fn create(client: &Client, table: &str) {
    let definition = |name: &str| {
        AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build().unwrap()
    };
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build().unwrap();
    let index = GlobalSecondaryIndex::builder()
        .index_name(INDEX)
        .key_schema(key("group", KeyType::Hash))
        .key_schema(key("rank", KeyType::Range))
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .unwrap();
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(definition("pk"))
        .attribute_definitions(definition("group"))
        .attribute_definitions(definition("rank"))
        .key_schema(key("pk", KeyType::Hash))
        .global_secondary_indexes(index)
        .send()
        .await
        .unwrap();
}

pub async fn engine() -> (Arc<StrictDynamo>, Client) {
    let engine = Arc::new(StrictDynamo::default());
    let client = engine.client();
    create(&client, TABLE).await;
    (engine, client)
}

pub fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

pub fn ss(members: &[&str]) -> AttributeValue {
    AttributeValue::Ss(members.iter().map(|m| (*m).to_owned()).collect())
}

pub async fn get(client: &Client, table: &str, pk: &str) -> Option<HashMap<String, AttributeValue>> {
    let got = client.get_item().table_name(table).key("pk", s(pk)).consistent_read(true).send().await.unwrap();
    got.item().cloned()
}

pub async fn put(client: &Client, table: &str, item: HashMap<String, AttributeValue>) {
    client.put_item().table_name(table).set_item(Some(item)).send().await.unwrap();
}

/// The error code and message of a refused call.
pub fn refusal<T: Debug, E: ProvideErrorMetadata + Debug, R: Debug>(
    outcome: Result<T, SdkError<E, R>>,
) -> (String, String) {
    let error = outcome.expect_err("DynamoDB refuses this request");
    let service = error.as_service_error().unwrap_or_else(|| panic!("not a service error: {error:?}"));
    (service.code().unwrap_or_default().to_owned(), service.message().unwrap_or_default().to_owned())
}

pub fn assert_refused(refused: (String, String), code: &str, message: &str) {
    assert_eq!(refused.0, code, "{refused:?}");
    assert!(refused.1.contains(message), "{refused:?} does not say {message:?}");
}

fn text_of(bytes: usize) -> String {
    "x".repeat(bytes)
}

#[tokio::test]
async fn an_item_over_400_kb_is_refused_on_put_and_nothing_is_written() {
    let (_, client) = engine().await;
    // pk (2 + 3) and body (4 + n): exactly 409,600 bytes is stored, one more is refused.
    let item = |n| HashMap::from([("pk".to_owned(), s("big")), ("body".to_owned(), s(&text_of(n)))]);
    let refused = refusal(client.put_item().table_name(TABLE).set_item(Some(item(409_600 - 8))).send().await);
    assert_refused(refused, "ValidationException", "Item size has exceeded the maximum allowed size");
    assert_eq!(get(&client, TABLE, "big").await, None);
    put(&client, TABLE, item(409_600 - 9)).await;
    assert!(get(&client, TABLE, "big").await.is_some(), "exactly 400 KB is stored");
}

#[tokio::test]
async fn an_update_that_grows_an_item_past_400_kb_is_refused_and_the_item_is_unchanged() {
    let (_, client) = engine().await;
    put(&client, TABLE, HashMap::from([("pk".to_owned(), s("grows")), ("members".to_owned(), ss(&["first"]))])).await;
    // The month item: a string set that ADD grows by one member a batch.
    let add = |n: usize| {
        client
            .update_item()
            .table_name(TABLE)
            .key("pk", s("grows"))
            .update_expression("ADD members :n")
            .expression_attribute_values(":n", ss(&[&format!("{n:04}{}", text_of(10_000))]))
            .send()
    };
    for n in 0..40 {
        add(n).await.unwrap();
    }
    assert_refused(
        refusal(add(40).await),
        "ValidationException",
        "Item size to update has exceeded the maximum allowed size",
    );
    let Some(AttributeValue::Ss(names)) = get(&client, TABLE, "grows").await.unwrap().remove("members") else {
        panic!("the set is still there")
    };
    assert_eq!(names.len(), 41, "the refused member was not added");
}

#[tokio::test]
async fn a_transaction_whose_update_passes_400_kb_is_cancelled_with_a_validation_error() {
    let (_, client) = engine().await;
    put(&client, TABLE, HashMap::from([("pk".to_owned(), s("month")), ("body".to_owned(), s(&text_of(400_000)))]))
        .await;
    let grow = Update::builder()
        .table_name(TABLE)
        .key("pk", s("month"))
        .update_expression("SET more = :more")
        .expression_attribute_values(":more", s(&text_of(10_000)))
        .build()
        .unwrap();
    let other = Update::builder()
        .table_name(TABLE)
        .key("pk", s("other"))
        .update_expression("SET n = :n")
        .expression_attribute_values(":n", AttributeValue::N("1".into()))
        .build()
        .unwrap();
    let outcome = client
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().update(other).build())
        .transact_items(TransactWriteItem::builder().update(grow).build())
        .send()
        .await;
    let error = outcome.expect_err("cancelled");
    let Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(
        cancelled,
    )) = error.as_service_error()
    else {
        panic!("{error:?}")
    };
    let codes: Vec<_> = cancelled.cancellation_reasons().iter().map(|r| r.code().unwrap_or_default()).collect();
    assert_eq!(codes, ["None", "ValidationError"]);
    assert_eq!(get(&client, TABLE, "other").await, None, "all or nothing");
    assert!(!get(&client, TABLE, "month").await.unwrap().contains_key("more"));
}

#[tokio::test]
async fn an_expression_over_4_kb_is_refused() {
    let (_, client) = engine().await;
    put(&client, TABLE, HashMap::from([("pk".to_owned(), s("wide")), ("a0".to_owned(), s("kept"))])).await;
    // The budget item: one REMOVE of every expired reservation.
    let remove = |count: usize| {
        let targets: Vec<String> = (0..count).map(|n| format!("#r{n}")).collect();
        let mut update = client.update_item().table_name(TABLE).key("pk", s("wide"));
        for n in 0..count {
            update = update.expression_attribute_names(format!("#r{n}"), format!("a{n}"));
        }
        update.update_expression(format!("REMOVE {}", targets.join(", ")))
    };
    let refused = refusal(remove(700).send().await);
    assert_refused(
        refused,
        "ValidationException",
        "Invalid UpdateExpression: Expression size has exceeded the maximum allowed size",
    );
    assert!(get(&client, TABLE, "wide").await.unwrap().contains_key("a0"), "nothing removed");
    remove(600).send().await.expect("600 removals fit in 4 KB");
    assert!(!get(&client, TABLE, "wide").await.unwrap().contains_key("a0"));
}

/// Two actions on one item: moto refuses this too, so it runs on the emulator as well.
async fn two_actions_on_one_item(client: &Client, table: &str) {
    let set = |value: &str| {
        let update = Update::builder()
            .table_name(table)
            .key("pk", s("twice"))
            .update_expression("SET v = :v")
            .expression_attribute_values(":v", s(value))
            .build()
            .unwrap();
        TransactWriteItem::builder().update(update).build()
    };
    let refused = refusal(client.transact_write_items().transact_items(set("a")).transact_items(set("b")).send().await);
    assert_refused(
        refused,
        "ValidationException",
        "Transaction request cannot include multiple operations on one item",
    );
    assert_eq!(get(client, table, "twice").await, None);
}

#[tokio::test]
async fn a_transaction_with_two_actions_on_one_item_is_refused() {
    let (_, client) = engine().await;
    two_actions_on_one_item(&client, TABLE).await;
}

#[tokio::test]
async fn the_emulator_refuses_two_actions_on_one_item_too() {
    let Some(config) = common::emulator().await else { return };
    let client = Client::new(&config);
    let table = common::unique("strict");
    create(&client, &table).await;
    two_actions_on_one_item(&client, &table).await;
}

#[tokio::test]
async fn a_transaction_of_more_than_100_actions_is_refused() {
    let (_, client) = engine().await;
    let put_item = |n: usize| {
        let item = HashMap::from([("pk".to_owned(), s(&format!("t{n}")))]);
        TransactWriteItem::builder()
            .put(aws_sdk_dynamodb::types::Put::builder().table_name(TABLE).set_item(Some(item)).build().unwrap())
            .build()
    };
    let refused =
        refusal(client.transact_write_items().set_transact_items(Some((0..101).map(put_item).collect())).send().await);
    assert_refused(refused, "ValidationException", "Member must have length less than or equal to 100");
    assert_eq!(get(&client, TABLE, "t0").await, None);
    client.transact_write_items().set_transact_items(Some((0..100).map(put_item).collect())).send().await.unwrap();
    assert!(get(&client, TABLE, "t99").await.is_some());
}

#[tokio::test]
async fn a_repeated_or_empty_set_is_refused() {
    let (_, client) = engine().await;
    let item = HashMap::from([("pk".to_owned(), s("set")), ("members".to_owned(), ss(&["a", "b", "a"]))]);
    let refused = refusal(client.put_item().table_name(TABLE).set_item(Some(item)).send().await);
    assert_refused(refused, "ValidationException", "Input collection [a, b, a] contains duplicates");
    let added = client
        .update_item()
        .table_name(TABLE)
        .key("pk", s("set"))
        .update_expression("ADD members :n")
        .expression_attribute_values(":n", ss(&["x", "x"]))
        .send()
        .await;
    assert_refused(refusal(added), "ValidationException", "ExpressionAttributeValues contains invalid value");
    let empty = HashMap::from([("pk".to_owned(), s("set")), ("members".to_owned(), AttributeValue::Ss(Vec::new()))]);
    let refused = refusal(client.put_item().table_name(TABLE).set_item(Some(empty)).send().await);
    assert_refused(refused, "ValidationException", "may not be empty");
    assert_eq!(get(&client, TABLE, "set").await, None);
}

#[tokio::test]
async fn empty_and_over_long_keys_are_refused_in_the_table_and_its_index() {
    let (_, client) = engine().await;
    let attempt = |pk: String, group: Option<String>| {
        let mut item = HashMap::from([("pk".to_owned(), s(&pk))]);
        if let Some(group) = group {
            item.extend([("group".to_owned(), s(&group)), ("rank".to_owned(), s(&text_of(1_025)))]);
        }
        client.put_item().table_name(TABLE).set_item(Some(item)).send()
    };
    assert_refused(
        refusal(attempt(String::new(), None).await),
        "ValidationException",
        "cannot contain an empty string value",
    );
    assert_refused(
        refusal(attempt(text_of(2_049), None).await),
        "ValidationException",
        "maximum size limit of2048 bytes",
    );
    assert_refused(
        refusal(attempt("k".into(), Some(String::new())).await),
        "ValidationException",
        "IndexName: by_group",
    );
    assert_refused(
        refusal(attempt("k".into(), Some("g".into())).await),
        "ValidationException",
        "size limit of 1024 bytes",
    );
    assert_eq!(get(&client, TABLE, "k").await, None);
    attempt(text_of(2_048), None).await.expect("a 2 KB partition key, and no index key: not in the index");
}

#[tokio::test]
async fn batches_over_25_writes_or_100_keys_are_refused() {
    let (_, client) = engine().await;
    let write = |n: usize| {
        let item = HashMap::from([("pk".to_owned(), s(&format!("b{n}")))]);
        WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(item)).build().unwrap()).build()
    };
    let refused = refusal(client.batch_write_item().request_items(TABLE, (0..26).map(write).collect()).send().await);
    assert_refused(refused, "ValidationException", "Too many items requested for the BatchWriteItem call");
    assert_eq!(get(&client, TABLE, "b0").await, None);
    client.batch_write_item().request_items(TABLE, (0..25).map(write).collect()).send().await.unwrap();
    let keys = |count: usize| {
        let keys = (0..count).map(|n| HashMap::from([("pk".to_owned(), s(&format!("b{n}")))])).collect();
        KeysAndAttributes::builder().set_keys(Some(keys)).build().unwrap()
    };
    let refused = refusal(client.batch_get_item().request_items(TABLE, keys(101)).send().await);
    assert_refused(refused, "ValidationException", "Too many items requested for the BatchGetItem call");
    let got = client.batch_get_item().request_items(TABLE, keys(100)).send().await.unwrap();
    assert_eq!(got.responses().unwrap()[TABLE].len(), 25);
}

#[tokio::test]
async fn queries_stop_at_1_mb_and_their_pages_return_every_item_once() {
    let (engine, client) = engine().await;
    for n in 0..30 {
        let item = HashMap::from([
            ("pk".to_owned(), s(&format!("p{n:02}"))),
            ("group".to_owned(), s("g")),
            ("rank".to_owned(), s(&format!("{:02}", n % 7))),
            ("body".to_owned(), s(&text_of(100_000))),
        ]);
        put(&client, TABLE, item).await;
    }
    let mut seen = Vec::new();
    let mut start = None;
    let mut pages = 0;
    loop {
        let page = client
            .query()
            .table_name(TABLE)
            .index_name(INDEX)
            .key_condition_expression("#g = :g")
            .expression_attribute_names("#g", "group")
            .expression_attribute_values(":g", s("g"))
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        pages += 1;
        assert!(page.items().len() <= 11, "a page holds at most 1 MB: {}", page.items().len());
        seen.extend(page.items().iter().map(|item| item["pk"].as_s().unwrap().clone()));
        start = page.last_evaluated_key().cloned();
        if let Some(key) = &start {
            assert_eq!(key.len(), 3, "the table key and the index key: {key:?}");
        } else {
            break;
        }
    }
    assert!(pages >= 3, "{pages} pages");
    seen.sort();
    assert_eq!(seen, (0..30).map(|n| format!("p{n:02}")).collect::<Vec<_>>());
    assert_eq!(engine.stats().observed.most_read_by_a_page, 11);
}

/// The `dynamodb-sim` binary: what a worker process reaches with `AWS_ENDPOINT_URL_DYNAMODB`.
#[tokio::test]
async fn the_binary_serves_the_ledger_table_setup_creates() {
    use std::io::BufRead;
    let mut process = std::process::Command::new(env!("CARGO_BIN_EXE_dynamodb-sim"))
        .args(["--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut url = String::new();
    std::io::BufReader::new(process.stdout.take().unwrap()).read_line(&mut url).unwrap();
    let client = cf_invalidator::fake::dynamodb::wire::sdk_client(url.trim());
    let created = cf_invalidator::aws::dynamodb::create_table(&client, "ledger").await;
    let described = client.describe_table().table_name("ledger").send().await;
    let _ = process.kill();
    let _ = process.wait();
    created.unwrap();
    let indexes = described.unwrap().table().unwrap().global_secondary_indexes().len();
    assert_eq!(indexes, 6, "the ledger's six indexes");
}
