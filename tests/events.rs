//! Batch events on the emulator, from a worker process: an SQS queue subscribed to a real SNS topic receives an
//! accepted and a completed event for every batch, naming its messages; a worker killed before it could publish
//! leaves its events to the next worker; an EventBridge rule routes them to its target. (That an event published
//! but not recorded is published again is shown in-process, in tests/pipeline.rs, `events`.)

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

const DISTRIBUTIONS: [&str; 2] = ["EEVENTSA", "EEVENTSB"];

/// A new SNS topic and an SQS queue subscribed to it with raw message delivery: (topic ARN, queue URL).
async fn topic_with_subscriber(sns: &aws_sdk_sns::Client, sqs: &aws_sdk_sqs::Client) -> (String, String) {
    let topic_arn = sns.create_topic().name(common::unique("events")).send().await.unwrap().topic_arn.unwrap();
    let subscriber =
        sqs.create_queue().queue_name(common::unique("subscriber")).send().await.unwrap().queue_url.unwrap();
    let subscriber_arn = queue_arn(sqs, &subscriber).await;
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(&subscriber_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();
    (topic_arn, subscriber)
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    use aws_sdk_sqs::types::QueueAttributeName::QueueArn;
    let attributes = sqs.get_queue_attributes().queue_url(url).attribute_names(QueueArn).send().await.unwrap();
    attributes.attributes.unwrap()[&QueueArn].clone()
}

/// Every event the subscriber queue has received by now, as JSON.
async fn received(sqs: &aws_sdk_sqs::Client, subscriber: &str) -> Vec<serde_json::Value> {
    common::drain(sqs, subscriber).await.into_iter().map(|(body, _)| serde_json::from_str(&body).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sns_subscriber_receives_the_accepted_and_completed_events_of_every_batch() {
    let Some(config) = common::emulator().await else { return };
    let sqs = aws_sdk_sqs::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;
    let (topic_arn, subscriber) = topic_with_subscriber(&sns, &sqs).await;
    let mut args = vec!["--completion", "3s"];
    for distribution in DISTRIBUTIONS {
        args.extend(["--distribution", distribution]);
    }
    let simulator = common::SimulatorProcess::start(&args);
    let mut worker = common::binary()
        .env("AWS_ENDPOINT_URL_CLOUDFRONT", &simulator.url)
        .args(["run", "--queue-url", &queues.queue_url, "--table", &table, "--events-topic-arn", &topic_arn])
        .args(["--window", "1s", "--completion-poll", "1s"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let bodies: Vec<String> = (0..6)
        .map(|n| {
            let distribution = DISTRIBUTIONS[n % 2];
            serde_json::json!({"distribution_id": distribution, "paths": [format!("/page/{n}.html")], "requester": "events-test"})
                .to_string()
        })
        .collect();
    let sent = common::send_all(&sqs, &queues.queue_url, &bodies).await;

    // Every sent message appears in an accepted and in a completed event.
    let mut events: Vec<serde_json::Value> = Vec::new();
    let named = |events: &[serde_json::Value], kind: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["kind"] == kind)
            .flat_map(|e| e["message_ids"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()))
            .collect()
    };
    let give_up = std::time::Instant::now() + Duration::from_secs(90);
    let complete = loop {
        events.extend(received(&sqs, &subscriber).await);
        let (accepted, completed) = (named(&events, "accepted"), named(&events, "completed"));
        if sent.iter().all(|id| accepted.contains(id) && completed.contains(id)) {
            break true;
        }
        if std::time::Instant::now() > give_up {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = worker.kill();
    let _ = worker.wait();
    assert!(complete, "events so far: {events:#?}");

    // One accepted and one completed event per batch the ledger recorded, and they agree with it.
    let mut per_batch: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for event in &events {
        assert_eq!(event["version"], 1);
        assert!(DISTRIBUTIONS.contains(&event["distribution_id"].as_str().unwrap()), "{event}");
        assert_eq!(event["requesters"], serde_json::json!(["events-test"]));
        let reference = event["caller_reference"].as_str().unwrap().to_owned();
        per_batch.entry(reference).or_default().push(event["kind"].as_str().unwrap().to_owned());
    }
    for (reference, kinds) in &per_batch {
        let item = dynamodb
            .get_item()
            .table_name(&table)
            .key("pk", AttributeValue::S(format!("batch#{reference}")))
            .send()
            .await
            .unwrap()
            .item
            .unwrap_or_else(|| panic!("no ledger record for {reference}"));
        assert_eq!(item["status"].as_s().unwrap(), "completed");
        assert!(!item.contains_key("tracking"), "settled once its events were published");
        let mut kinds = kinds.clone();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds, ["accepted", "completed"], "{reference}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_before_publishing_leaves_its_events_to_the_next_one() {
    let Some(config) = common::emulator().await else { return };
    let sqs = aws_sdk_sqs::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;
    let (topic_arn, subscriber) = topic_with_subscriber(&sns, &sqs).await;
    let simulator = common::SimulatorProcess::start(&["--completion", "2s", "--distribution", DISTRIBUTIONS[0]]);
    let worker = |sns_endpoint: &str| {
        common::binary()
            .env("AWS_ENDPOINT_URL_CLOUDFRONT", &simulator.url)
            .env("AWS_ENDPOINT_URL_SNS", sns_endpoint)
            .args(["run", "--queue-url", &queues.queue_url, "--table", &table, "--events-topic-arn", &topic_arn])
            .args(["--window", "1s", "--completion-poll", "1s"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // Worker A cannot reach SNS: every publish fails, so nothing is recorded published. (A topic that does not
    // exist would stop it at start.)
    let mut worker_a = worker(&format!("http://127.0.0.1:{}", common::free_port()));
    let body = serde_json::json!({"distribution_id": DISTRIBUTIONS[0], "paths": ["/killed.html"]}).to_string();
    let sent = common::send_all(&sqs, &queues.queue_url, &[body]).await;
    let completed_unpublished = common::wait_until(Duration::from_secs(60), || async {
        let items = dynamodb.scan().table_name(&table).send().await.unwrap().items.unwrap_or_default();
        items.iter().any(|item| {
            item.get("status").and_then(|s| s.as_s().ok()).map(String::as_str) == Some("completed")
                && item.contains_key("tracking")
        })
    })
    .await;
    worker_a.kill().unwrap();
    worker_a.wait().unwrap();
    assert!(completed_unpublished, "worker A recorded the completion and still owed its events");
    assert!(received(&sqs, &subscriber).await.is_empty());

    // Worker B adopts the batch (accepted over a minute ago, tracked by nobody) and publishes both events.
    let mut worker_b = worker(&std::env::var("AWS_ENDPOINT_URL").unwrap());
    let mut events = Vec::new();
    let give_up = std::time::Instant::now() + Duration::from_secs(150);
    while events.len() < 2 && std::time::Instant::now() < give_up {
        events.extend(received(&sqs, &subscriber).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = worker_b.kill();
    let _ = worker_b.wait();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["accepted", "completed"], "{events:#?}");
    assert!(events.iter().all(|e| e["message_ids"] == serde_json::json!(sent)), "{events:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eventbridge_rule_routes_the_events_to_its_target() {
    let Some(config) = common::emulator().await else { return };
    let sqs = aws_sdk_sqs::Client::new(&config);
    let eventbridge = aws_sdk_eventbridge::Client::new(&config);
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;
    let bus = common::unique("bus");
    eventbridge.create_event_bus().name(&bus).send().await.unwrap();
    let target = sqs.create_queue().queue_name(common::unique("rule-target")).send().await.unwrap().queue_url.unwrap();
    let target_arn = queue_arn(&sqs, &target).await;
    let pattern = serde_json::json!({"source": ["cf-invalidator"], "detail-type": ["Invalidation Completed"]});
    eventbridge
        .put_rule()
        .name("completed")
        .event_bus_name(&bus)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .unwrap();
    let sqs_target = aws_sdk_eventbridge::types::Target::builder().id("queue").arn(&target_arn).build().unwrap();
    eventbridge.put_targets().rule("completed").event_bus_name(&bus).targets(sqs_target).send().await.unwrap();

    let simulator = common::SimulatorProcess::start(&["--completion", "2s", "--distribution", DISTRIBUTIONS[1]]);
    let mut worker = common::binary()
        .env("AWS_ENDPOINT_URL_CLOUDFRONT", &simulator.url)
        .args(["run", "--queue-url", &queues.queue_url, "--table", &table, "--events-bus", &bus])
        .args(["--window", "1s", "--completion-poll", "1s"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let body = serde_json::json!({"distribution_id": DISTRIBUTIONS[1], "paths": ["/bridged.html"]}).to_string();
    let sent = common::send_all(&sqs, &queues.queue_url, &[body]).await;
    let mut delivered = Vec::new();
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    while delivered.is_empty() && std::time::Instant::now() < give_up {
        delivered.extend(received(&sqs, &target).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(delivered.len(), 1, "only the completed event matches the rule: {delivered:#?}");
    let event = &delivered[0];
    assert_eq!(
        (event["source"].as_str(), event["detail-type"].as_str()),
        (Some("cf-invalidator"), Some("Invalidation Completed"))
    );
    assert_eq!(event["detail"]["message_ids"], serde_json::json!(sent));
    assert_eq!(event["detail"]["kind"], "completed");
}
