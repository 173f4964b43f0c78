//! The worker in-process with the SDK adapters against the emulator's SQS, DynamoDB and CloudFront.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use cf_invalidator::aws::dynamodb::DynamoLedger;
use cf_invalidator::model::DistributionId;
use cf_invalidator::model::path::is_covered_by;
use cf_invalidator::ports::Batches;
use cf_invalidator::worker::{self, Exit, Settings};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_messages_become_one_invalidation_per_distribution() {
    let Some(config) = common::emulator().await else { return };
    let sqs = aws_sdk_sqs::Client::new(&config);
    let cloudfront = common::cloudfront(&config);
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;
    let mut distributions = Vec::new();
    for _ in 0..3 {
        distributions.push(common::create_distribution(&cloudfront).await);
    }

    // 300 requests: each repeats /index.html (duplicates), and every fifth also asks for /assets/* which covers
    // the per-message asset paths of its distribution.
    let mut requested: Vec<(DistributionId, String)> = Vec::new();
    let mut bodies = Vec::new();
    for n in 0..300 {
        let distribution = &distributions[n % 3];
        let mut paths = vec!["/index.html".to_owned(), format!("/articles/{}.html", n / 3), format!("/assets/{n}.css")];
        if n % 5 == 0 {
            paths.push("/assets/*".into());
        }
        requested.extend(paths.iter().map(|p| (distribution.clone(), p.clone())));
        bodies.push(
            json!({"distribution_id": distribution.as_str(), "paths": paths, "requester": "emulator-test"}).to_string(),
        );
    }
    bodies.push(r#"{"distribution_id": "E1", "paths": ["relative/path"]}"#.to_owned());
    common::send_all(&sqs, &queues.queue_url, &bodies).await;

    let services = common::sdk_services(&config, &queues, &table);
    let mut settings = Settings::default();
    // Long enough for moto to hand over all 301 messages even on a loaded machine: one window each.
    settings.batching.window = Duration::from_secs(30);
    settings.intake.receive_wait = Duration::from_secs(1);
    settings.submission.create_rate = 10.0;
    let queue_url = queues.queue_url.clone();
    let sqs_for_wait = sqs.clone();
    let all_done = async move {
        common::wait_until(Duration::from_secs(90), || async {
            common::queue_depth(&sqs_for_wait, &queue_url).await == (0, 0)
        })
        .await;
    };
    assert_eq!(worker::run(services, settings, all_done).await, Exit::Drained);

    // What CloudFront received: one invalidation per distribution, covering every requested path.
    let mut created = HashMap::new();
    for distribution in &distributions {
        let invalidations = common::invalidations(&cloudfront, distribution).await;
        assert_eq!(invalidations.len(), 1, "one window, one CreateInvalidation for {distribution}: {invalidations:?}");
        assert!(
            !invalidations[0].paths.iter().any(|p| p.starts_with("/assets/") && p != "/assets/*"),
            "covered paths were sent"
        );
        created.insert(distribution.clone(), invalidations.into_iter().next().unwrap());
    }
    for (distribution, path) in &requested {
        assert!(is_covered_by(path, &created[distribution].paths), "{distribution} {path} was not invalidated");
    }

    // What the ledger holds: each invalidation with its CallerReference, id and messages.
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&config), &table);
    let mut recorded_messages = 0;
    for distribution in &distributions {
        let records = ledger.list(distribution, std::time::UNIX_EPOCH, 10).await.unwrap();
        assert_eq!(records.len(), 1);
        let record = &records[0];
        assert!(record.status.is_accepted(), "{record:?}");
        assert_eq!(record.caller_reference.as_str(), created[distribution].caller_reference);
        assert_eq!(record.invalidation_id.as_deref(), Some(created[distribution].id.as_str()));
        assert_eq!(record.requesters, ["emulator-test"]);
        assert_eq!(record.seal_reason, "window_elapsed");
        assert_eq!(record.message_ids.len(), 100);
        recorded_messages += record.message_ids.len();
    }
    assert_eq!(recorded_messages, 300);

    // What is left: nothing on the queue, the malformed message on the DLQ with its reason.
    assert_eq!(common::queue_depth(&sqs, &queues.queue_url).await, (0, 0));
    let dead = common::drain(&sqs, &queues.dead_letter_url).await;
    assert_eq!(dead.len(), 1);
    assert!(dead[0].0.contains("relative/path"));
    assert!(dead[0].1.as_deref().unwrap_or_default().contains("must start with '/'"), "{dead:?}");
}
