//! The real binary through outages of minutes: DynamoDB answering 503 to every call (a proxy in front of the
//! emulator), then CloudFront doing the same (the CloudFront simulator's outage switch), with messages arriving
//! during each, on a queue that redrives after 3 receives and a visibility timeout of 10 s. A worker that handed
//! messages back to SQS while a dependency is down would redrive them within half a minute; this one must hold
//! them: every message received once, none dead-lettered, every path invalidated once the outages end, and
//! `/readyz` naming the dependency that is down meanwhile.

mod common;

use std::process::Command;
use std::time::Duration;

use cf_invalidator::aws::sqs::create_queue_with_dead_letter;
use cf_invalidator::model::DistributionId;
use cf_invalidator::model::path::is_covered_by;
use common::{OutageProxy, SimulatorProcess};

/// Long enough for the old behaviour (give up after 8 tries, about a minute, and hand the messages back) to show
/// several times over at a 10 s visibility timeout.
const OUTAGE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_of_dynamodb_and_cloudfront_hand_no_message_back() {
    let Some(config) = common::emulator().await else { return };
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queues = create_queue_with_dead_letter(&sqs, &common::unique("cfi-outage"), 3).await.unwrap();
    let table = common::create_table(&config).await;
    let distribution = DistributionId::parse("EOUTAGEAAAAAA").unwrap();
    let simulator = SimulatorProcess::start(&["--completion", "1s", "--rate", "0", "--distribution", "EOUTAGEAAAAAA"]);
    let dynamodb = OutageProxy::start(&std::env::var("AWS_ENDPOINT_URL").unwrap()).await;
    let metrics = format!("127.0.0.1:{}", common::free_port());
    let mut worker = common::binary()
        .env("AWS_ENDPOINT_URL_CLOUDFRONT", &simulator.url)
        .env("AWS_ENDPOINT_URL_DYNAMODB", &dynamodb.url)
        .args(["run", "--queue-url", &queues.queue_url, "--table", &table, "--window", "1s"])
        .args(["--visibility-timeout", "10s", "--create-rate", "5", "--metrics-addr", &metrics])
        .spawn()
        .unwrap();
    let metrics_url = format!("http://{metrics}");
    assert!(common::wait_until(Duration::from_secs(30), || ready(&metrics_url)).await, "the worker started");

    let send = |prefix: &'static str| {
        let bodies: Vec<String> = (0..10)
            .map(|n| serde_json::json!({"distribution_id": distribution.as_str(), "paths": [format!("/{prefix}/{n}")]}))
            .map(|body| body.to_string())
            .collect();
        let (sqs, url) = (sqs.clone(), queues.queue_url.clone());
        async move { common::send_all(&sqs, &url, &bodies).await }
    };
    let outage_ends = tokio::time::Instant::now() + OUTAGE;
    dynamodb.down_for(OUTAGE);
    send("during-dynamodb-outage").await;
    assert!(readiness_says(&metrics_url, "DynamoDB", OUTAGE).await, "/readyz names DynamoDB during its outage");
    tokio::time::sleep_until(outage_ends).await;

    let (status, _) =
        common::simulator_request(&simulator.url, "POST", &format!("/_sim/outage/{}", OUTAGE.as_secs()), "").await;
    assert_eq!(status, 200);
    send("during-cloudfront-outage").await;
    // The first batch retries at the outage pace (up to a minute apart), and the second waits its turn.
    let named = readiness_says(&metrics_url, "cloudfront has failed every call", OUTAGE).await;
    assert!(named, "/readyz names CloudFront during its outage");

    let drained = common::wait_until(OUTAGE + Duration::from_secs(90), || async {
        common::queue_depth(&sqs, &queues.queue_url).await == (0, 0)
    })
    .await;
    let (_, page) = common::simulator_request(&metrics_url, "GET", "/metrics", "").await;
    Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
    assert!(worker.wait().unwrap().success());

    assert!(drained, "messages left: {:?}", common::queue_depth(&sqs, &queues.queue_url).await);
    assert!(common::drain(&sqs, &queues.dead_letter_url).await.is_empty(), "nothing dead-lettered or redriven");
    assert_eq!(common::counter(&page, "cfi_messages_received_total"), 20.0, "each message received once:\n{page}");
    assert_eq!(common::counter(&page, "cfi_messages_released_total"), 0.0, "none handed back");
    let cloudfront = cf_invalidator::fake::cloudfront_http::sdk_client(&simulator.url);
    let invalidated: Vec<String> =
        common::invalidations(&cloudfront, &distribution).await.into_iter().flat_map(|i| i.paths).collect();
    for prefix in ["during-dynamodb-outage", "during-cloudfront-outage"] {
        for n in 0..10 {
            let path = format!("/{prefix}/{n}");
            assert!(is_covered_by(&path, &invalidated), "{path} was never invalidated");
        }
    }
}

/// Whether `/readyz` answers 503 with a reason containing `text` within `limit`.
async fn readiness_says(metrics_url: &str, text: &str, limit: Duration) -> bool {
    common::wait_until(limit, || async {
        let (status, why) = common::simulator_request(metrics_url, "GET", "/readyz", "").await;
        status == 503 && why.contains(text)
    })
    .await
}

async fn ready(metrics_url: &str) -> bool {
    let address = metrics_url.trim_start_matches("http://").to_owned();
    if tokio::net::TcpStream::connect(&address).await.is_err() {
        return false;
    }
    common::simulator_request(metrics_url, "GET", "/readyz", "").await.0 == 200
}
