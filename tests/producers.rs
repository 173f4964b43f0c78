//! Producers' formats end to end: S3 event notifications (direct, through SNS, through EventBridge) routed by a
//! routes file, S3's test event, an unroutable object, a disallowed distribution and cache tags, through the real
//! binary against the emulator.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

fn s3_notification(bucket: &str, encoded_key: &str) -> serde_json::Value {
    json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": encoded_key, "size": 10}}}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_sns_and_eventbridge_events_become_the_right_paths() {
    let Some(config) = common::emulator().await else { return };
    let sqs = aws_sdk_sqs::Client::new(&config);
    let cloudfront = common::cloudfront(&config);
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;
    let (site, assets, stranger) = (
        common::create_distribution(&cloudfront).await,
        common::create_distribution(&cloudfront).await,
        common::create_distribution(&cloudfront).await,
    );
    let routes = std::env::temp_dir().join(format!("{}.toml", common::unique("routes")));
    std::fs::write(
        &routes,
        format!(
            r#"
            [[rule]]
            bucket = "www-site"
            prefix = "site/"
            distributions = ["{site}"]
            strip_prefix = "site"
            index_document = "index.html"

            [[rule]]
            bucket = "assets"
            distributions = ["{assets}"]
            add_prefix = "/static"
            "#
        ),
    )
    .unwrap();

    let sns = |inner: serde_json::Value| {
        json!({"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:123456789012:uploads",
               "Message": inner.to_string(), "Timestamp": "2026-11-27T00:00:00.000Z", "SignatureVersion": "1"})
    };
    let eventbridge = json!({"version": "0", "id": "e-1", "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "time": "2026-11-27T00:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:s3:::www-site"],
        "detail": {"version": "0", "bucket": {"name": "www-site"}, "object": {"key": "site/blog/index.html"},
                   "reason": "PutObject"}});
    let bodies = [
        // "site/docs/red flower+été.html", URL-encoded as S3 notifications do.
        s3_notification("www-site", "site/docs/red+flower%2B%C3%A9t%C3%A9.html"),
        sns(s3_notification("assets", "img/logo+v2.png")),
        eventbridge,
        json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-27T00:00:00Z", "Bucket": "www-site"}),
        s3_notification("www-site", "private/draft.html"),
        json!({"distribution_id": stranger.as_str(), "paths": ["/secret"]}),
        json!({"distribution_id": assets.as_str(), "tags": ["Product-42"], "requester": "catalog"}),
    ];
    for body in &bodies {
        sqs.send_message().queue_url(&queues.queue_url).message_body(body.to_string()).send().await.unwrap();
    }

    let mut worker = common::binary()
        .args(["run", "--queue-url", &queues.queue_url, "--table", &table, "--window", "1s"])
        .args(["--routes", routes.to_str().unwrap()])
        .args(["--allow-distribution", site.as_str(), "--allow-distribution", assets.as_str()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let drained = common::wait_until(Duration::from_secs(60), || async {
        common::queue_depth(&sqs, &queues.queue_url).await == (0, 0)
    })
    .await;
    Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
    assert!(worker.wait().unwrap().success());
    assert!(drained, "messages left on the queue");

    let paths_of = |invalidations: Vec<common::StoredInvalidation>| -> BTreeSet<String> {
        invalidations.into_iter().flat_map(|i| i.paths).collect()
    };
    assert_eq!(
        paths_of(common::invalidations(&cloudfront, &site).await),
        BTreeSet::from(["/docs/red%20flower+%C3%A9t%C3%A9.html".into(), "/blog/index.html".into(), "/blog/".into()])
    );
    assert_eq!(
        paths_of(common::invalidations(&cloudfront, &assets).await),
        BTreeSet::from(["/static/img/logo%20v2.png".into(), "#product-42".into()])
    );
    assert!(
        common::invalidations(&cloudfront, &stranger).await.is_empty(),
        "a disallowed distribution was invalidated"
    );

    let dead = common::drain(&sqs, &queues.dead_letter_url).await;
    let reasons: BTreeSet<String> = dead.iter().filter_map(|(_, reason)| reason.clone()).collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(reasons.contains("no routing rule matches s3://www-site/private/draft.html"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("is not in this worker's --allow-distribution list")), "{reasons:?}");
}
