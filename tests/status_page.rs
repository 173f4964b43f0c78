//! The status page as an operator sees it: the `status` binary on the emulator's ledger and queue, after a worker
//! submitted to the CloudFront simulator (which keeps invalidations in progress) and dead-lettered a bad message,
//! opened in headless Chromium. Checks the figures it seeded and saves a screenshot.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cf_invalidator::aws::dynamodb::DynamoLedger;
use cf_invalidator::ports::{AuditLog, FailureRecord};

const DISTRIBUTION: &str = "ESTATUS";
const CHROMIUM: &str = "chromium";

struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Chromium, or `None` (skipped) without it; in CI (CFI_REQUIRE_EMULATOR) a missing browser fails the test.
fn chromium() -> Option<()> {
    let found = Command::new(CHROMIUM).arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CFI_REQUIRE_EMULATOR").is_none(),
            "CFI_REQUIRE_EMULATOR is set but chromium is missing: apt-get install chromium (scripts/test does)"
        );
        eprintln!("skipped: this test needs chromium (apt-get install chromium)");
    }
    found.then_some(())
}

/// Headless Chromium with a fresh profile; without the background-networking flags it tries to reach Google
/// and its connections are refused on a closed network.
fn headless(profile: &Path, args: &[&str]) -> std::process::Output {
    Command::new(CHROMIUM)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stderr(Stdio::null())
        .output()
        .unwrap()
}

fn output_folder() -> PathBuf {
    let folder = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("test-output/status_page");
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

/// Text with the markup taken out (and the few entities the page uses put back), as a reader sees it.
fn text_of(dom: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_headroom_backlog_the_newest_invalidation_and_a_dead_letter() {
    let Some(config) = common::emulator().await else { return };
    let Some(()) = chromium() else { return };
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;
    let simulator = common::SimulatorProcess::start(&["--completion", "600s", "--distribution", DISTRIBUTION]);
    let worker = common::binary()
        .env("AWS_ENDPOINT_URL_CLOUDFRONT", &simulator.url)
        .args(["run", "--queue-url", &queues.queue_url, "--table", &table])
        .args(["--window", "1s", "--completion-poll", "1s"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let worker = Stopped(worker);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let request =
        format!(r#"{{"distribution_id":"{DISTRIBUTION}","paths":["/a","/b","/c"],"requester":"deploy <b>42</b>"}}"#);
    let refused = format!(r#"{{"distribution_id":"{DISTRIBUTION}","paths":["no-slash-<script>"]}}"#);
    common::send_all(&sqs, &queues.queue_url, &[request, refused]).await;

    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&config), &table);
    let ledger = &ledger;
    let seeded = || async move {
        let recent = ledger.recent_batches(1).await.unwrap();
        let invalidation_id = recent.first().and_then(|b| b.invalidation_id.clone())?;
        let failures = ledger.failures(std::time::SystemTime::UNIX_EPOCH, 1).await.unwrap();
        let reason = failures.into_iter().find_map(|f| match f {
            FailureRecord::DeadLetter(letter) => Some(letter.reason),
            FailureRecord::Batch(_) => None,
        })?;
        Some((invalidation_id, reason))
    };
    let found = common::wait_until(Duration::from_secs(60), || async { seeded().await.is_some() }).await;
    assert!(found, "the worker recorded no accepted invalidation and dead letter within a minute");
    let (invalidation_id, reason) = seeded().await.unwrap();
    // Stopped, so that the messages sent next stay on the queue; its reservation lives on for its lease.
    drop(worker);
    let waiting = (0..3).map(|n| format!(r#"{{"distribution_id":"{DISTRIBUTION}","paths":["/later/{n}"]}}"#));
    common::send_all(&sqs, &queues.queue_url, &waiting.collect::<Vec<_>>()).await;

    let mut status = common::binary()
        .args(["status", "--queue-url", &queues.queue_url, "--table", &table, "--listen", "127.0.0.1:0"])
        .args(["--monthly-path-budget", "5000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    std::io::BufReader::new(status.stdout.take().unwrap()).read_line(&mut first_line).unwrap();
    let _status = Stopped(status);
    let url = first_line.trim().strip_prefix("status page on ").expect("the address line").to_owned();

    let profile = tempdir();
    let dom = headless(&profile, &["--dump-dom", &url]);
    let html = String::from_utf8_lossy(&dom.stdout);
    let text = text_of(&html);
    std::fs::write(output_folder().join("status.html"), html.as_bytes()).unwrap();
    // 3,000 paths less the 100 left to people and the 3 in progress; 15 wildcards less 2 and none.
    assert!(text.contains(&format!("{DISTRIBUTION} 3 0 2,897 13 1 0 unknown")), "headroom row missing: {text}");
    // Visible, or in flight if the stopped worker's last long poll was still open when they arrived.
    let counts: Vec<u64> =
        text.split("requests ").nth(1).unwrap().split(' ').take(3).map(|n| n.parse().unwrap()).collect();
    assert_eq!(counts[0] + counts[1], 3, "queue depth: {text}");
    assert!(text.contains("dead letters 1 0 0"), "dead-letter queue depth missing: {text}");
    assert!(html.contains(&format!(r#"href="/invalidation/{invalidation_id}""#)), "no link to {invalidation_id}");
    let newest = text.split("Recent invalidations").nth(1).unwrap();
    assert!(newest.contains(&invalidation_id), "newest invalidation {invalidation_id} missing: {newest}");
    assert!(newest.contains("deploy <b>42</b>"), "the requester is shown as text: {newest}");
    let shown_reason: String = reason.chars().take(60).collect();
    assert!(text.contains(&shown_reason), "dead letter's reason {shown_reason:?} missing: {text}");
    assert!(!html.contains("<script>"), "producer text became markup");
    assert!(text.contains("3 paths billed in 1 invalidations"), "cost missing: {text}");
    assert!(text.contains("Monthly budget: 5,000 paths, 0% used"), "budget missing: {text}");

    let detail = text_of(&String::from_utf8_lossy(
        &headless(&profile, &["--dump-dom", &format!("{url}invalidation/{invalidation_id}")]).stdout,
    ));
    assert!(detail.contains("/a /b /c") || detail.contains("/a") && detail.contains("/c"), "detail: {detail}");

    let screenshot = output_folder().join("status.png");
    let _ = std::fs::remove_file(&screenshot);
    let shot =
        headless(&profile, &[&format!("--screenshot={}", screenshot.display()), "--window-size=1280,1000", &url]);
    assert!(shot.status.success() && screenshot.exists(), "no screenshot at {}", screenshot.display());
    let _ = std::fs::remove_dir_all(profile);
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(common::unique("cfi-chromium"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
