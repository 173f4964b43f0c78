//! The metrics and health endpoints of the real binary, against a private emulator that the test stops.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A moto server of this test's own, so stopping it does not disturb other tests.
struct PrivateEmulator {
    endpoint: String,
    pid: String,
}

impl PrivateEmulator {
    fn start() -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/emulator");
        let output = Command::new(script).arg("start").output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let exports = String::from_utf8(output.stdout).unwrap();
        let value =
            |name: &str| exports.lines().find_map(|l| l.strip_prefix(&format!("export {name}="))).unwrap().to_owned();
        Self { endpoint: value("AWS_ENDPOINT_URL"), pid: value("CFI_EMULATOR_PID") }
    }

    fn stop(&self) {
        Command::new("kill").arg(&self.pid).status().unwrap();
    }
}

impl Drop for PrivateEmulator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn binary(endpoint: &str) -> Command {
    let mut command = common::binary();
    command.env("AWS_ENDPOINT_URL", endpoint);
    command
}

/// (status, body) of a plain HTTP GET on loopback.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    common::wait_until(limit, || std::future::ready(condition())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_during_a_run_and_readiness_fails_when_aws_is_gone() {
    let emulator = PrivateEmulator::start();
    let setup = binary(&emulator.endpoint)
        .args(["setup", "--queue-name", "telemetry", "--table", "telemetry-ledger"])
        .output()
        .unwrap();
    assert!(setup.status.success(), "{}", String::from_utf8_lossy(&setup.stderr));
    let stdout = String::from_utf8(setup.stdout).unwrap();
    let queue_url = stdout.lines().find_map(|l| l.strip_prefix("queue_url=")).unwrap().to_owned();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "tests"))
        .endpoint_url(&emulator.endpoint)
        .load()
        .await;
    let distribution = common::create_distribution(&common::cloudfront(&config)).await;

    let port = common::free_port();
    let mut worker: Child = binary(&emulator.endpoint)
        .args(["run", "--queue-url", &queue_url, "--table", "telemetry-ledger", "--window", "1s"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    assert!(eventually(Duration::from_secs(20), || get(port, "/readyz").is_some_and(|(s, _)| s == 200)).await);
    assert_eq!(get(port, "/healthz").map(|(s, _)| s), Some(200));
    let before = get(port, "/metrics").unwrap().1;
    assert_eq!(common::counter(&before, "cfi_messages_deleted_total"), 0.0);

    for paths in [["/a", "/b"], ["/b", "/c"], ["/d", "/a"]] {
        let sent = binary(&emulator.endpoint)
            .args(["send", "--queue-url", &queue_url, "--distribution", distribution.as_str()])
            .args(paths)
            .output()
            .unwrap();
        assert!(sent.status.success());
    }
    let moved = eventually(Duration::from_secs(30), || {
        get(port, "/metrics").is_some_and(|(_, page)| common::counter(&page, "cfi_messages_deleted_total") >= 3.0)
    })
    .await;
    let page = get(port, "/metrics").unwrap().1;
    assert!(moved, "{page}");
    assert_eq!(common::counter(&page, "cfi_messages_received_total"), 3.0);
    assert_eq!(common::counter(&page, "cfi_paths_requested_total"), 6.0);
    assert_eq!(common::counter(&page, "cfi_paths_submitted_total"), 4.0, "the savings show: 6 requested, 4 submitted");
    assert!(page.contains("cfi_cloudfront_responses_total{code=\"Created\"}"), "{page}");
    assert!(page.contains("cfi_enqueue_to_accepted_seconds_bucket"), "{page}");
    // The month's billed paths, as the ledger counts them for the account's free paths: 4 of 1,000 used.
    assert_eq!(common::counter(&page, "cfi_month_paths_billed"), 4.0, "{page}");
    assert_eq!(common::counter(&page, "cfi_month_free_paths_left"), 996.0);
    // The same listener serves the status page, with what only the worker knows: its batches waiting for room.
    let (status, html) = get(port, "/").unwrap();
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("4 paths billed in") && html.contains("waiting for room"), "{html}");
    assert!(!html.contains("known only to the worker"), "the worker knows its waiting batches: {html}");

    emulator.stop();
    let unready = eventually(Duration::from_secs(30), || get(port, "/readyz").is_some_and(|(s, _)| s == 503)).await;
    assert!(unready, "/readyz still says ready with SQS and DynamoDB gone");
    assert_eq!(get(port, "/healthz").map(|(s, _)| s), Some(200), "alive all the same");

    Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
    let exited = eventually(Duration::from_secs(40), || worker.try_wait().unwrap().is_some()).await;
    assert!(exited, "the worker did not stop");
}
