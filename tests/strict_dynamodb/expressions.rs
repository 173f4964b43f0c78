//! Expressions evaluated as DynamoDB evaluates them, and refused where DynamoDB refuses them.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use cf_invalidator::clock::WallClock;
use cf_invalidator::fake::dynamodb::StrictDynamo;

use super::{INDEX, TABLE, assert_refused, create, engine, get, put, refusal, s, ss};

fn n(number: &str) -> AttributeValue {
    AttributeValue::N(number.to_owned())
}

fn m(entries: &[(&str, AttributeValue)]) -> AttributeValue {
    AttributeValue::M(entries.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect())
}

#[tokio::test]
async fn conditions_decide_whether_a_write_happens() {
    let (_, client) = engine().await;
    put(
        &client,
        TABLE,
        HashMap::from([("pk".to_owned(), s("c")), ("v".to_owned(), n("5")), ("t".to_owned(), s("abc"))]),
    )
    .await;
    let conditional = |condition: &str| {
        client
            .update_item()
            .table_name(TABLE)
            .key("pk", s("c"))
            .update_expression("SET hits = if_not_exists(hits, :zero) + :one")
            .condition_expression(condition)
            .expression_attribute_values(":zero", n("0"))
            .expression_attribute_values(":one", n("1"))
            .return_values(ReturnValue::UpdatedNew)
            .send()
    };
    let written =
        conditional("attribute_exists(v) AND NOT (v < :one) AND (v IN (:zero, :one) OR v > :one)").await.unwrap();
    assert_eq!(written.attributes().unwrap()["hits"], n("1"));
    let failed = conditional("v < :one OR attribute_not_exists(pk)").await;
    assert_refused(refusal(failed), "ConditionalCheckFailedException", "The conditional request failed");
    assert_eq!(get(&client, TABLE, "c").await.unwrap()["hits"], n("1"), "a failed condition writes nothing");
}

#[tokio::test]
async fn nested_paths_are_set_and_removed_and_need_their_parent() {
    let (_, client) = engine().await;
    let doc = m(&[("a", m(&[("b", n("1"))])), ("l", AttributeValue::L(vec![s("x"), s("y"), s("z")]))]);
    put(&client, TABLE, HashMap::from([("pk".to_owned(), s("d")), ("doc".to_owned(), doc)])).await;
    client
        .update_item()
        .table_name(TABLE)
        .key("pk", s("d"))
        .update_expression("SET doc.a.#c = :v, doc.l[9] = :v REMOVE doc.l[0], doc.a.b")
        .expression_attribute_names("#c", "c")
        .expression_attribute_values(":v", s("new"))
        .send()
        .await
        .unwrap();
    let expected = m(&[("a", m(&[("c", s("new"))])), ("l", AttributeValue::L(vec![s("y"), s("z"), s("new")]))]);
    assert_eq!(get(&client, TABLE, "d").await.unwrap()["doc"], expected);
    let missing_parent = client
        .update_item()
        .table_name(TABLE)
        .key("pk", s("d"))
        .update_expression("SET nothing.here = :v")
        .expression_attribute_values(":v", s("x"))
        .send()
        .await;
    assert_refused(
        refusal(missing_parent),
        "ValidationException",
        "The document path provided in the update expression is invalid for update",
    );
}

#[tokio::test]
async fn add_and_delete_work_on_sets_and_numbers_of_their_own_type() {
    let (_, client) = engine().await;
    let update = |expression: &str, value: AttributeValue| {
        client
            .update_item()
            .table_name(TABLE)
            .key("pk", s("a"))
            .update_expression(expression)
            .expression_attribute_values(":v", value)
            .send()
    };
    update("ADD tags :v", ss(&["a", "b"])).await.unwrap();
    update("ADD tags :v", ss(&["b", "c"])).await.unwrap();
    update("DELETE tags :v", ss(&["a"])).await.unwrap();
    update("ADD tally :v", n("2.5")).await.unwrap();
    update("ADD tally :v", n("-0.5")).await.unwrap();
    let item = get(&client, TABLE, "a").await.unwrap();
    let AttributeValue::Ss(mut tags) = item["tags"].clone() else { panic!("{item:?}") };
    tags.sort();
    assert_eq!(tags, ["b", "c"]);
    assert_eq!(item["tally"], n("2"));
    assert_refused(
        refusal(update("ADD tally :v", ss(&["x"])).await),
        "ValidationException",
        "An operand in the update expression has an incorrect data type",
    );
    assert_refused(
        refusal(update("ADD tags :v", s("x")).await),
        "ValidationException",
        "Incorrect operand type for operator or function; operator: ADD",
    );
    update("DELETE tags :v", ss(&["b", "c"])).await.unwrap();
    assert!(!get(&client, TABLE, "a").await.unwrap().contains_key("tags"), "an emptied set is removed");
}

#[tokio::test]
async fn placeholders_and_paths_are_refused_as_dynamodb_refuses_them() {
    let (_, client) = engine().await;
    let update =
        |expression: &str| client.update_item().table_name(TABLE).key("pk", s("p")).update_expression(expression);
    let unused =
        update("SET a = :a").expression_attribute_values(":a", n("1")).expression_attribute_values(":b", n("2"));
    assert_refused(
        refusal(unused.send().await),
        "ValidationException",
        "Value provided in ExpressionAttributeValues unused in expressions: keys: {:b}",
    );
    let unused = update("SET a = :a").expression_attribute_values(":a", n("1")).expression_attribute_names("#x", "x");
    assert_refused(
        refusal(unused.send().await),
        "ValidationException",
        "Value provided in ExpressionAttributeNames unused in expressions: keys: {#x}",
    );
    let undefined = update("SET a = :missing").expression_attribute_values(":a", n("1"));
    assert_refused(
        refusal(undefined.send().await),
        "ValidationException",
        "An expression attribute value used in expression is not defined; attribute value: :missing",
    );
    let overlap = update("SET a = :a REMOVE a.b").expression_attribute_values(":a", n("1"));
    assert_refused(refusal(overlap.send().await), "ValidationException", "Two document paths overlap with each other");
    let reserved = update("SET status = :a").expression_attribute_values(":a", n("1"));
    assert_refused(
        refusal(reserved.send().await),
        "ValidationException",
        "Attribute name is a reserved keyword; reserved keyword: status",
    );
    let key = update("SET pk = :a").expression_attribute_values(":a", s("other"));
    assert_refused(
        refusal(key.send().await),
        "ValidationException",
        "Cannot update attribute pk. This attribute is part of the key",
    );
    let syntax = update("SET a = = :a").expression_attribute_values(":a", n("1"));
    assert_refused(refusal(syntax.send().await), "ValidationException", "Invalid UpdateExpression: Syntax error");
    assert_eq!(get(&client, TABLE, "p").await, None);
}

#[tokio::test]
async fn index_queries_are_sparse_ordered_and_never_consistent() {
    let (_, client) = engine().await;
    for (pk, rank) in [("q1", Some("b")), ("q2", Some("a")), ("q3", None), ("q4", Some("c"))] {
        let mut item = HashMap::from([("pk".to_owned(), s(pk)), ("group".to_owned(), s("g"))]);
        item.extend(rank.map(|r| ("rank".to_owned(), s(r))));
        put(&client, TABLE, item).await;
    }
    let query = || {
        client
            .query()
            .table_name(TABLE)
            .index_name(INDEX)
            .key_condition_expression("#g = :g AND #r >= :from")
            .expression_attribute_names("#g", "group")
            .expression_attribute_names("#r", "rank")
            .expression_attribute_values(":g", s("g"))
            .expression_attribute_values(":from", s("b"))
    };
    let newest = query().scan_index_forward(false).send().await.unwrap();
    let keys: Vec<_> = newest.items().iter().map(|i| i["pk"].as_s().unwrap().as_str()).collect();
    assert_eq!(keys, ["q4", "q1"], "q3 has no sort key and is not in the index");
    assert_refused(
        refusal(query().consistent_read(true).send().await),
        "ValidationException",
        "Consistent reads are not supported on global secondary indexes",
    );
    let filtered = query().filter_expression("#g = :g").send().await;
    assert_refused(
        refusal(filtered),
        "ValidationException",
        "Filter Expression can only contain non-primary key attributes",
    );
}

#[tokio::test(start_paused = true)]
async fn ttl_deletes_expired_items_only_after_its_delay() {
    let clock = WallClock::following_tokio();
    let engine = std::sync::Arc::new(StrictDynamo::new(clock).with_ttl_delay(Duration::from_secs(600)));
    let client = engine.client();
    create(&client, TABLE).await;
    client
        .update_time_to_live()
        .table_name(TABLE)
        .time_to_live_specification(
            aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let soon = clock.now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 60;
    put(&client, TABLE, HashMap::from([("pk".to_owned(), s("e")), ("expires_at".to_owned(), n(&soon.to_string()))]))
        .await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(get(&client, TABLE, "e").await.is_some(), "expired, but TTL has not deleted it yet");
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(engine.sweep_ttl(), 1);
    assert_eq!(get(&client, TABLE, "e").await, None);
    let described = client.describe_time_to_live().table_name(TABLE).send().await.unwrap();
    assert_eq!(described.time_to_live_description().unwrap().attribute_name(), Some("expires_at"));
}

#[tokio::test]
async fn the_engine_answers_over_http_too() {
    let engine = std::sync::Arc::new(StrictDynamo::default());
    let server = cf_invalidator::fake::dynamodb::wire::DynamoServer::start(engine.clone()).await.unwrap();
    let client = cf_invalidator::fake::dynamodb::wire::sdk_client(&server.url());
    create(&client, TABLE).await;
    put(&client, TABLE, HashMap::from([("pk".to_owned(), s("h")), ("tags".to_owned(), ss(&["a"]))])).await;
    assert_eq!(get(&client, TABLE, "h").await.unwrap()["tags"], ss(&["a"]));
    let missing = client.get_item().table_name("nope").key("pk", s("h")).send().await;
    assert_refused(refusal(missing), "ResourceNotFoundException", "Requested resource not found");
    let stats = engine.stats();
    assert_eq!((stats.tables[0].items, stats.tables[0].indexes[0].items), (1, 0));
    assert!(stats.observed.largest_item.what.contains("strict h"), "{:?}", stats.observed);
}
