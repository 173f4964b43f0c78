//! The worker's start-up, as an orchestrator sees it: a dependency that does not answer is waited out, not ready
//! and saying why; what cannot heal is refused at once, with one line and the configuration exit code.

mod common;

use std::process::Stdio;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use common::OutageProxy;

const EXIT_CONFIG: i32 = 78;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_during_a_dynamodb_outage_waits_not_ready_then_starts() {
    let Some(config) = common::emulator().await else { return };
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;
    let dynamodb = OutageProxy::start(&std::env::var("AWS_ENDPOINT_URL").unwrap()).await;
    dynamodb.down_for(Duration::from_secs(3_600));
    let metrics = format!("http://127.0.0.1:{}", common::free_port());
    let mut worker = common::binary()
        .env("AWS_ENDPOINT_URL_DYNAMODB", &dynamodb.url)
        .args(["run", "--queue-url", &queues.queue_url, "--table", &table])
        .args(["--metrics-addr", metrics.trim_start_matches("http://")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let says_why = common::wait_until(Duration::from_secs(60), || async {
        common::readiness(&metrics).await.is_some_and(|(status, body)| {
            status == 503 && body.contains("starting: DynamoDB is unavailable") && body.contains("ServiceUnavailable")
        })
    })
    .await;
    assert!(says_why, "/readyz says what start-up waits for: {:?}", common::readiness(&metrics).await);
    assert!(worker.try_wait().unwrap().is_none(), "the worker waits instead of exiting");

    dynamodb.down_for(Duration::ZERO);
    let ready = common::wait_until(Duration::from_secs(60), || async {
        common::readiness(&metrics).await.is_some_and(|(status, _)| status == 200)
    })
    .await;
    assert!(ready, "ready once DynamoDB answers: {:?}", common::readiness(&metrics).await);
    common::terminate(&worker);
    let status = common::exited_within(&mut worker, Duration::from_secs(60)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

/// Runs the worker on `table`; answers its exit code and its standard error, or `None` if it did not stop.
async fn refused(queue_url: &str, table: &str, extra: &[&str]) -> Option<(Option<i32>, String)> {
    let mut worker = common::binary()
        .args(["run", "--queue-url", queue_url, "--table", table])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = worker.stderr.take().unwrap();
    let reading = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = common::exited_within(&mut worker, Duration::from_secs(60)).await;
    let stderr = reading.join().unwrap();
    Some((status?.code(), stderr))
}

fn assert_refused(outcome: Option<(Option<i32>, String)>, expected: &str) {
    let (code, stderr) = outcome.unwrap_or_else(|| panic!("the worker started instead of refusing ({expected})"));
    assert_eq!(code, Some(EXIT_CONFIG), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: ") && last.contains(expected), "{expected:?} in the last line of: {stderr}");
}

async fn create_bare_table(dynamodb: &aws_sdk_dynamodb::Client, key: &str) -> String {
    let table = common::unique("cfi-bare");
    let definition =
        AttributeDefinition::builder().attribute_name(key).attribute_type(ScalarAttributeType::S).build().unwrap();
    dynamodb
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(definition)
        .key_schema(KeySchemaElement::builder().attribute_name(key).key_type(KeyType::Hash).build().unwrap())
        .send()
        .await
        .unwrap();
    table
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_heal_is_refused_at_start_with_one_line() {
    let Some(config) = common::emulator().await else { return };
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;

    let other_key = create_bare_table(&dynamodb, "id").await;
    assert_refused(refused(&queues.queue_url, &other_key, &[]).await, "is keyed by id (hash), not by pk");
    let no_indexes = create_bare_table(&dynamodb, "pk").await;
    assert_refused(refused(&queues.queue_url, &no_indexes, &[]).await, "lacks the index by_distribution");

    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let no_dlq = format!("{endpoint}/123456789012/no-such-dlq");
    let outcome = refused(&queues.queue_url, &table, &["--dlq-url", &no_dlq]).await;
    assert_refused(outcome, "dead-letter queue no-such-dlq does not exist (--dlq-url names it)");

    sqs.delete_queue().queue_url(&queues.dead_letter_url).send().await.unwrap();
    let dlq_name = queues.dead_letter_url.rsplit('/').next().unwrap();
    let outcome = refused(&queues.queue_url, &table, &[]).await;
    assert_refused(outcome, &format!("dead-letter queue {dlq_name} does not exist (the RedrivePolicy of"));
}
