//! A worker stopped by SIGTERM hands back at once what it cannot finish: the answer of a receive under way when the
//! signal came, and, with CloudFront down, every message it holds. Both become visible again right after the
//! worker exits, not a visibility timeout (here two minutes) later.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const VISIBILITY: &str = "120s";

/// A proxy in front of the emulator's SQS that holds back every ReceiveMessage answer carrying messages until
/// released: a receive under way for as long as the test wants. Everything else passes.
struct HoldingProxy {
    url: String,
    held: Arc<AtomicUsize>,
    release: watch::Sender<bool>,
    accepting: tokio::task::JoinHandle<()>,
}

impl HoldingProxy {
    async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let held = Arc::new(AtomicUsize::new(0));
        let (release, released) = watch::channel(false);
        let counted = Arc::clone(&held);
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, counted, released) = (upstream.clone(), Arc::clone(&counted), released.clone());
                tokio::spawn(async move {
                    let _ = pass(client, &upstream, &counted, released).await;
                });
            }
        });
        Self { url, held, release, accepting }
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// One request (the emulator closes every connection after its answer).
async fn pass(
    mut client: tokio::net::TcpStream,
    upstream: &str,
    held: &AtomicUsize,
    mut released: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let request = common::read_request(&mut client).await?;
    let receive = String::from_utf8_lossy(&request).to_ascii_lowercase().contains("amazonsqs.receivemessage");
    let mut server = tokio::net::TcpStream::connect(upstream).await?;
    server.write_all(&request).await?;
    let mut response = Vec::new();
    server.read_to_end(&mut response).await?;
    if receive && String::from_utf8_lossy(&response).contains("\"Messages\"") {
        held.fetch_add(1, Ordering::SeqCst);
        let _ = released.wait_for(|released| *released).await;
    }
    client.write_all(&response).await?;
    client.shutdown().await
}

/// The worker's standard error, line by line, on a thread: (every line so far, whether `marker` was seen).
fn watch_stderr(worker: &mut Child, marker: &'static str) -> (Arc<std::sync::Mutex<String>>, watch::Receiver<bool>) {
    let stderr = BufReader::new(worker.stderr.take().unwrap());
    let (seen, seeing) = watch::channel(false);
    let lines = Arc::new(std::sync::Mutex::new(String::new()));
    let kept = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains(marker) {
                let _ = seen.send(true);
            }
            kept.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    (lines, seeing)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_receive_under_way_brings_is_handed_back_at_once() {
    let Some(config) = common::emulator().await else { return };
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;
    let bodies: Vec<String> = (0..3)
        .map(|n| serde_json::json!({"distribution_id": "EAAA", "paths": [format!("/{n}")]}).to_string())
        .collect();
    common::send_all(&sqs, &queues.queue_url, &bodies).await;
    let proxy = HoldingProxy::start(&std::env::var("AWS_ENDPOINT_URL").unwrap()).await;
    let mut worker = common::binary()
        .env("AWS_ENDPOINT_URL_SQS", &proxy.url)
        .args(["run", "--queue-url", &queues.queue_url, "--table", &table, "--window", "1h"])
        .args(["--visibility-timeout", VISIBILITY, "--pollers", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (logs, mut shutting_down) = watch_stderr(&mut worker, "shutting down");

    let under_way = common::wait_until(Duration::from_secs(60), || async {
        proxy.held.load(Ordering::SeqCst) > 0 && common::queue_depth(&sqs, &queues.queue_url).await.1 > 0
    })
    .await;
    assert!(under_way, "a receive took messages and waits for its answer: {}", logs.lock().unwrap());
    let taken = common::queue_depth(&sqs, &queues.queue_url).await.1;
    common::terminate(&worker);
    let signalled = tokio::time::timeout(Duration::from_secs(30), shutting_down.wait_for(|seen| *seen)).await;
    assert!(signalled.is_ok(), "{}", logs.lock().unwrap());
    let _ = proxy.release.send(true);
    let status = common::exited_within(&mut worker, Duration::from_secs(60)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {}", logs.lock().unwrap());

    let depth = common::queue_depth(&sqs, &queues.queue_url).await;
    assert_eq!(depth, (3, 0), "the {taken} messages taken are visible again: {}", logs.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cloudfront_down_the_worker_exits_in_time_and_hands_back_what_it_holds() {
    let Some(config) = common::emulator().await else { return };
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;
    let bodies: Vec<String> = (0..40)
        .map(|n| serde_json::json!({"distribution_id": "EAAA", "paths": [format!("/held/{n}")]}).to_string())
        .collect();
    common::send_all(&sqs, &queues.queue_url, &bodies).await;
    let nobody = format!("http://127.0.0.1:{}", common::free_port());
    let mut worker = common::binary()
        .env("AWS_ENDPOINT_URL_CLOUDFRONT", &nobody)
        .args(["run", "--queue-url", &queues.queue_url, "--table", &table, "--window", "1s"])
        // Long enough for the receives under way at the signal to answer (10 s long polls) within the drain: a
        // receive dropped unanswered could take handed-back messages again on the emulator.
        .args(["--visibility-timeout", VISIBILITY, "--shutdown-timeout", "15s"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (logs, _) = watch_stderr(&mut worker, "shutting down");
    let holding = common::wait_until(Duration::from_secs(60), || async {
        common::queue_depth(&sqs, &queues.queue_url).await == (0, 40)
    })
    .await;
    assert!(holding, "the worker holds every message: {}", logs.lock().unwrap());

    common::terminate(&worker);
    let status = common::exited_within(&mut worker, Duration::from_secs(60)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {}", logs.lock().unwrap());
    let depth = common::queue_depth(&sqs, &queues.queue_url).await;
    assert_eq!(depth, (40, 0), "every held message is visible again: {}", logs.lock().unwrap());
}
