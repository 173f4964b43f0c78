//! Helpers shared by the test binaries: the emulator connection and small AWS fixtures.
#![allow(dead_code)] // each test binary uses a different subset

pub mod memory;

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cloudfront::types::{
    DefaultCacheBehavior, DistributionConfig, Origin, Origins, S3OriginConfig, ViewerProtocolPolicy,
};
use aws_sdk_sqs::types::QueueAttributeName;
use cf_invalidator::aws::sqs::{CreatedQueues, create_queue_with_dead_letter};
use cf_invalidator::model::DistributionId;

/// The emulator's SDK configuration, or `None` (the test is skipped, and says so) when no emulator is configured.
/// `scripts/test` starts one, exports AWS_ENDPOINT_URL and sets CFI_REQUIRE_EMULATOR, which turns a missing
/// emulator into a failure there. Any endpoint off this machine is refused, so these tests never touch a real account.
pub async fn emulator() -> Option<SdkConfig> {
    let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") else {
        assert!(
            std::env::var_os("CFI_REQUIRE_EMULATOR").is_none(),
            "CFI_REQUIRE_EMULATOR is set but AWS_ENDPOINT_URL is not: start the emulator first"
        );
        eprintln!(
            "skipped: this test needs a local emulator; run scripts/test, or eval \"$(scripts/emulator start)\" first"
        );
        return None;
    };
    assert!(
        endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:"),
        "refusing to run emulator tests against {endpoint}: not a loopback address"
    );
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "tests"))
        .endpoint_url(endpoint)
        .load()
        .await;
    Some(config)
}

/// Whether the emulator models CloudFront's CallerReference idempotency (ministack does, moto does not).
pub fn emulator_models_caller_reference() -> bool {
    std::env::var("CFI_EMULATOR").is_ok_and(|name| name == "ministack")
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

pub fn cloudfront(config: &SdkConfig) -> aws_sdk_cloudfront::Client {
    aws_sdk_cloudfront::Client::new(config)
}

pub async fn create_distribution(cloudfront: &aws_sdk_cloudfront::Client) -> DistributionId {
    let origin = Origin::builder()
        .id("origin")
        .domain_name("example-bucket.s3.amazonaws.com")
        .s3_origin_config(S3OriginConfig::builder().origin_access_identity("").build())
        .build()
        .unwrap();
    let behavior = DefaultCacheBehavior::builder()
        .target_origin_id("origin")
        .viewer_protocol_policy(ViewerProtocolPolicy::AllowAll)
        // AWS's managed CachingOptimized policy.
        .cache_policy_id("658327ea-f89d-4fab-a63d-7e88639e58f6")
        .build()
        .unwrap();
    let config = DistributionConfig::builder()
        .caller_reference(unique("dist"))
        .comment("cf-invalidator test")
        .enabled(true)
        .origins(Origins::builder().quantity(1).items(origin).build().unwrap())
        .default_cache_behavior(behavior)
        .build()
        .unwrap();
    let created = cloudfront.create_distribution().distribution_config(config).send().await.unwrap();
    DistributionId::parse(created.distribution().unwrap().id()).unwrap()
}

/// An invalidation as the emulator stored it.
#[derive(Debug, Clone)]
pub struct StoredInvalidation {
    pub id: String,
    pub caller_reference: String,
    pub paths: Vec<String>,
}

pub async fn invalidations(
    cloudfront: &aws_sdk_cloudfront::Client,
    distribution: &DistributionId,
) -> Vec<StoredInvalidation> {
    let listed =
        cloudfront.list_invalidations().distribution_id(distribution.as_str()).max_items(1000).send().await.unwrap();
    let mut found = Vec::new();
    for summary in listed.invalidation_list().map(|l| l.items()).unwrap_or_default() {
        let got =
            cloudfront.get_invalidation().distribution_id(distribution.as_str()).id(summary.id()).send().await.unwrap();
        let batch = got.invalidation().unwrap().invalidation_batch().unwrap();
        found.push(StoredInvalidation {
            id: summary.id().to_owned(),
            caller_reference: batch.caller_reference().to_owned(),
            paths: batch.paths().unwrap().items().to_vec(),
        });
    }
    found
}

pub async fn create_queues(config: &SdkConfig) -> CreatedQueues {
    create_queue_with_dead_letter(&aws_sdk_sqs::Client::new(config), &unique("cfi-test"), 5).await.unwrap()
}

pub async fn create_table(config: &SdkConfig) -> String {
    let table = unique("cfi-ledger");
    cf_invalidator::aws::dynamodb::create_table(&aws_sdk_dynamodb::Client::new(config), &table).await.unwrap();
    table
}

/// (visible, in flight) message counts.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> (u64, u64) {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let read = |name| attributes.attributes().and_then(|a| a.get(&name)).and_then(|v| v.parse().ok()).unwrap_or(0);
    (
        read(QueueAttributeName::ApproximateNumberOfMessages),
        read(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// Every message on the queue, with its `reason` attribute.
pub async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<(String, Option<String>)> {
    let drained = drain_with_attributes(sqs, url).await;
    drained
        .into_iter()
        .map(|(body, mut attributes)| (body, attributes.remove(cf_invalidator::ack::REASON_ATTRIBUTE)))
        .collect()
}

/// Every message on the queue, with its string attributes; each stays invisible long enough for the whole drain.
pub async fn drain_with_attributes(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
) -> Vec<(String, std::collections::HashMap<String, String>)> {
    let mut drained = Vec::new();
    loop {
        let received = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(120)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        if received.messages().is_empty() {
            return drained;
        }
        for message in received.messages() {
            let attributes = message.message_attributes().into_iter().flatten();
            let strings = attributes.filter_map(|(name, v)| Some((name.clone(), v.string_value()?.to_owned())));
            drained.push((message.body().unwrap_or_default().to_owned(), strings.collect()));
        }
    }
}

/// Polls `condition` every 100 ms until it holds or `limit` passes.
pub async fn wait_until<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let give_up = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < give_up {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The binary with test credentials. It never looks for instance metadata: tests talk to loopback only. The
/// endpoint comes from AWS_ENDPOINT_URL, inherited from the test's environment unless the caller sets another.
pub fn binary() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_cf-invalidator"));
    command
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    command
}

/// Sends `bodies` in batches of ten; returns their message ids, in the order of `bodies`.
pub async fn send_all(sqs: &aws_sdk_sqs::Client, queue_url: &str, bodies: &[String]) -> Vec<String> {
    let mut ids = Vec::with_capacity(bodies.len());
    for chunk in bodies.chunks(10) {
        let entries = chunk.iter().enumerate().map(|(i, body)| {
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body)
                .build()
                .unwrap()
        });
        let sent =
            sqs.send_message_batch().queue_url(queue_url).set_entries(Some(entries.collect())).send().await.unwrap();
        assert!(sent.failed().is_empty(), "{:?}", sent.failed());
        let mut chunk_ids = vec![String::new(); chunk.len()];
        for entry in sent.successful() {
            chunk_ids[entry.id().parse::<usize>().unwrap()] = entry.message_id().to_owned();
        }
        ids.extend(chunk_ids);
    }
    ids
}

/// The worker's services on the emulator: the queue and its DLQ, CloudFront, and the ledger table.
pub fn sdk_services(
    config: &SdkConfig,
    queues: &CreatedQueues,
    table: &str,
) -> cf_invalidator::worker::Services<
    cf_invalidator::aws::sqs::SqsQueue,
    cf_invalidator::aws::cloudfront::CloudFront,
    cf_invalidator::aws::dynamodb::DynamoLedger,
> {
    use cf_invalidator::aws::{cloudfront::CloudFront, dynamodb::DynamoLedger, sqs::SqsQueue};
    use std::sync::Arc;
    let sqs = aws_sdk_sqs::Client::new(config);
    cf_invalidator::worker::Services {
        queue: Arc::new(SqsQueue::new(sqs.clone(), &queues.queue_url)),
        dead_letter: Some(Arc::new(SqsQueue::new(sqs, &queues.dead_letter_url))),
        cdn: Arc::new(CloudFront::new(cloudfront(config))),
        ledger: Arc::new(DynamoLedger::new(aws_sdk_dynamodb::Client::new(config), table)),
    }
}

/// The `cloudfront-sim` binary on a free loopback port, stopped when dropped.
pub struct SimulatorProcess {
    process: std::process::Child,
    /// Where it listens, as it printed on its first line.
    pub url: String,
}

impl SimulatorProcess {
    pub fn start(args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut process = std::process::Command::new(env!("CARGO_BIN_EXE_cloudfront-sim"))
            .args(["--port", "0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut first_line = String::new();
        std::io::BufReader::new(process.stdout.take().unwrap()).read_line(&mut first_line).unwrap();
        Self { process, url: first_line.trim().to_owned() }
    }
}

impl Drop for SimulatorProcess {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// One request to the simulator's HTTP endpoint: (status, body).
pub async fn simulator_request(url: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.split(' ').nth(1).unwrap().parse().unwrap(), body.to_owned())
}

/// What the simulator saw (`GET /_sim/report`).
pub async fn simulator_report(url: &str) -> cf_invalidator::fake::Report {
    let (status, body) = simulator_request(url, "GET", "/_sim/report", "").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A TCP proxy in front of the emulator that answers `503 ServiceUnavailable` to every request while an outage
/// lasts, and forwards everything else: DynamoDB being down, for a worker whose `AWS_ENDPOINT_URL_DYNAMODB` points
/// here. It decides once per connection, which is once per request with moto (it answers `Connection: close`).
pub struct OutageProxy {
    pub url: String,
    down_until: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl OutageProxy {
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let down_until = std::sync::Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
        let down = std::sync::Arc::clone(&down_until);
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let is_down = down.lock().unwrap().is_some_and(|until| std::time::Instant::now() < until);
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let _ = if is_down { refuse(client).await } else { forward(client, &upstream).await };
                });
            }
        });
        Self { url, down_until, accepting }
    }

    pub fn down_for(&self, length: Duration) {
        *self.down_until.lock().unwrap() = Some(std::time::Instant::now() + length);
    }
}

impl Drop for OutageProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn forward(mut client: tokio::net::TcpStream, upstream: &str) -> std::io::Result<()> {
    let mut server = tokio::net::TcpStream::connect(upstream).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await.map(|_| ())
}

/// Reads one HTTP request, headers and `Content-Length` body; empty when the client closed first.
pub async fn read_request(client: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut request = Vec::new();
    let mut buffer = [0u8; 8192];
    let body_start = loop {
        let read = client.read(&mut buffer).await?;
        if read == 0 {
            return Ok(Vec::new());
        }
        request.extend_from_slice(&buffer[..read]);
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let headers = String::from_utf8_lossy(&request[..body_start]).to_ascii_lowercase();
    let length: usize = headers
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < body_start + length {
        let read = client.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..read]);
    }
    Ok(request)
}

/// Reads the request, then answers as DynamoDB does when it is unavailable.
async fn refuse(mut client: tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    if read_request(&mut client).await?.is_empty() {
        return Ok(());
    }
    let body =
        r#"{"__type":"com.amazonaws.dynamodb.v20120810#ServiceUnavailableException","message":"simulated outage"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/x-amz-json-1.0\r\n\
         x-amzn-ErrorType: ServiceUnavailableException\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await
}

/// The sum of a counter's samples over all label sets.
pub fn counter(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits for `child` to exit, at most `limit`; kills it if it has not. `None`: it had to be killed.
pub async fn exited_within(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let give_up = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < give_up {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Sends SIGTERM to a child process, as an orchestrator stopping a task does.
pub fn terminate(child: &std::process::Child) {
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// `/readyz`'s answer: (status, body).
pub async fn readiness(metrics_url: &str) -> Option<(u16, String)> {
    let address = metrics_url.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(address).await.ok()?;
    drop(stream);
    Some(simulator_request(metrics_url, "GET", "/readyz", "").await)
}
