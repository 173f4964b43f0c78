//! Requests per second through the strict DynamoDB (`fake::dynamodb`) and the in-process SDK client: the cost the
//! engine adds to every ledger call when tests and simulations run on it.
//!
//! ```sh
//! cargo bench --bench strict_dynamodb
//! ```
//!
//! Sequential UpdateItem calls (a conditional `SET … ADD …` on one of 100,000 stored items) and TransactWriteItems
//! of three conditional updates, on a current-thread runtime, after the table holds 100,000 items indexed by a GSI.
//! Under `cargo test --all-targets` (no `--bench` argument) it makes a few calls and times nothing.

use std::sync::Arc;
use std::time::Instant;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use cf_invalidator::fake::dynamodb::StrictDynamo;

const STORED: usize = 100_000;

fn n(value: usize) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn update(table: &str, key: usize) -> Update {
    Update::builder()
        .table_name(table)
        .key("pk", AttributeValue::S(format!("batch#{key}")))
        .update_expression("SET lease_until = :until ADD renewals :one")
        .condition_expression("attribute_exists(pk) AND #status = :pending")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":until", n(key))
        .expression_attribute_values(":one", n(1))
        .expression_attribute_values(":pending", AttributeValue::S("pending".into()))
        .build()
        .expect("a complete update")
}

async fn fill(client: &Client, table: &str, items: usize) {
    for key in 0..items {
        client
            .put_item()
            .table_name(table)
            .item("pk", AttributeValue::S(format!("batch#{key}")))
            .item("status", AttributeValue::S("pending".into()))
            .item("distribution_id", AttributeValue::S(format!("E{}", key % 1_000)))
            .item("created_at", AttributeValue::S(format!("2026-01-01T00:00:{key:08}Z")))
            .send()
            .await
            .expect("stored");
    }
}

async fn updates(client: &Client, table: &str, calls: usize, stored: usize) {
    for call in 0..calls {
        let u = update(table, call * 7_919 % stored);
        let request = client
            .update_item()
            .table_name(table)
            .set_key(Some(u.key))
            .update_expression(u.update_expression)
            .set_condition_expression(u.condition_expression)
            .set_expression_attribute_names(u.expression_attribute_names)
            .set_expression_attribute_values(u.expression_attribute_values);
        request.send().await.expect("updated");
    }
}

async fn transactions(client: &Client, table: &str, calls: usize, stored: usize) {
    for call in 0..calls {
        let items = (0..3)
            .map(|k| TransactWriteItem::builder().update(update(table, (call * 3 + k) * 104_729 % stored)).build());
        client.transact_write_items().set_transact_items(Some(items.collect())).send().await.expect("written");
    }
}

fn per_second(calls: usize, start: Instant) -> f64 {
    calls as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let timing = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let client = Arc::new(StrictDynamo::default()).client();
        cf_invalidator::aws::dynamodb::create_table(&client, "ledger").await.expect("created");
        let stored = if timing { STORED } else { 10 };
        let start = Instant::now();
        fill(&client, "ledger", stored).await;
        let puts = per_second(stored, start);
        if !timing {
            updates(&client, "ledger", 3, stored).await;
            transactions(&client, "ledger", 1, stored).await;
            return;
        }
        let calls = 20_000;
        let start = Instant::now();
        updates(&client, "ledger", calls, stored).await;
        let update_rate = per_second(calls, start);
        let start = Instant::now();
        transactions(&client, "ledger", calls / 2, stored).await;
        let transaction_rate = per_second(calls / 2, start);
        println!("strict_dynamodb: {stored} items in the ledger table (its five indexes)");
        println!("  PutItem            {puts:>9.0}/s");
        println!("  UpdateItem         {update_rate:>9.0}/s");
        println!("  TransactWriteItems {transaction_rate:>9.0}/s (three updates each)");
    });
}
