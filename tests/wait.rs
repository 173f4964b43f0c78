//! `send --wait` as a CI step would run it: the real binary, SQS and DynamoDB on the emulator, CloudFront served by
//! the simulator with an 8-second completion, and a worker process between them.

mod common;

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the simulator keeps every invalidation in progress.
const COMPLETION: Duration = Duration::from_secs(8);
const DISTRIBUTION: &str = "EWAITING";

struct Stack {
    queue_url: String,
    table: String,
    simulator: common::SimulatorProcess,
    worker: Child,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.worker.kill();
        let _ = self.worker.wait();
    }
}

async fn stack() -> Option<Stack> {
    let config = common::emulator().await?;
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;
    let completion = format!("{}s", COMPLETION.as_secs());
    let simulator = common::SimulatorProcess::start(&["--completion", &completion, "--distribution", DISTRIBUTION]);
    let worker = common::binary()
        .env("AWS_ENDPOINT_URL_CLOUDFRONT", &simulator.url)
        .args(["run", "--queue-url", &queues.queue_url, "--dlq-url", &queues.dead_letter_url, "--table", &table])
        .args(["--window", "1s", "--completion-poll", "1s"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Some(Stack { queue_url: queues.queue_url, table, simulator, worker })
}

fn send_and_wait(stack: &Stack, extra: &[&str]) -> (Output, Duration) {
    send_and_wait_on(stack, DISTRIBUTION, extra)
}

fn send_and_wait_on(stack: &Stack, distribution: &str, extra: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let output = common::binary()
        .args(["send", "--queue-url", &stack.queue_url, "--table", &stack.table, "--distribution", distribution])
        .args(["--wait", "--json"])
        .args(extra)
        .output()
        .unwrap();
    (output, started.elapsed())
}

fn result(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_wait_returns_once_cloudfront_completed_and_names_what_went_wrong_otherwise() {
    let Some(stack) = stack().await else { return };

    let (done, took) = send_and_wait(&stack, &["/index.html", "/img/*", "--tag", "product-42"]);
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{stderr}");
    let done = result(&done);
    assert_eq!(done["status"], "completed", "{done}");
    let invalidations = done["invalidations"].as_array().unwrap();
    assert_eq!(invalidations.len(), 1, "{done}");
    assert_eq!(invalidations[0]["status"], "completed");
    let time_to_complete = Duration::from_millis(invalidations[0]["time_to_complete_ms"].as_u64().unwrap());
    assert!(time_to_complete >= COMPLETION, "recorded {time_to_complete:?} after a {COMPLETION:?} completion");
    assert!(took >= COMPLETION, "returned after {took:?}, before CloudFront completed");
    // One tracker look (1 s) and one ledger read (2 s) late at most, after a 1 s window and the call.
    assert!(took <= COMPLETION + Duration::from_secs(8), "returned {took:?} after sending");
    let id = invalidations[0]["invalidation_id"].as_str().unwrap();
    assert!(stderr.contains(id) && stderr.contains("accepted 1/1"), "progress names the invalidation: {stderr}");
    let simulated = common::simulator_report(&stack.simulator.url).await;
    assert_eq!(simulated.worker.created, 1, "{simulated:#?}");

    // What the worker would dead-letter, send refuses itself, with the worker's reason, and sends nothing.
    let (refused, _) = send_and_wait(&stack, &["no-leading-slash"]);
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stderr));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.lines().last().unwrap_or_default().contains("must start with '/'"), "{stderr}");
    assert!(refused.stdout.is_empty(), "nothing sent, nothing to report");

    // What only CloudFront can refuse ends the wait with exit 3 and the reason, said once.
    let (dead, _) = send_and_wait_on(&stack, "ENOSUCHDISTRIBUTION", &["/a"]);
    assert_eq!(dead.status.code(), Some(3), "{}", String::from_utf8_lossy(&dead.stderr));
    let stderr = String::from_utf8_lossy(&dead.stderr);
    let last_line = stderr.lines().last().unwrap_or_default();
    assert!(last_line.contains("dead-lettered") && last_line.contains("does not exist"), "{stderr}");
    assert_eq!(stderr.matches("dead-lettered").count(), 1, "{stderr}");
    assert!(!stderr.contains("not yet created"), "{stderr}");
    assert_eq!(result(&dead)["status"], "dead_lettered");

    let (late, took) = send_and_wait(&stack, &["/slow.html", "--wait-timeout", "3s"]);
    assert_eq!(late.status.code(), Some(2), "{}", String::from_utf8_lossy(&late.stderr));
    let stderr = String::from_utf8_lossy(&late.stderr);
    assert!(stderr.lines().last().unwrap_or_default().contains("not completed within 3s"), "{stderr}");
    assert!(took < COMPLETION, "gave up at its timeout: {took:?}");
    assert_eq!(result(&late)["status"], "timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_with_the_same_idempotency_key_completes_with_the_first_runs_invalidation() {
    let Some(stack) = stack().await else { return };
    let rerun = ["/rerun.html", "--idempotency-key", "deploy-7"];

    let (first, _) = send_and_wait(&stack, &rerun);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    // The CI job runs again: the worker deletes its message as a duplicate of the key, without a batch of its own.
    let (again, _) = send_and_wait(&stack, &rerun);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let (first, again) = (result(&first), result(&again));
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(again["invalidations"], first["invalidations"], "answered for by the first run's invalidation");
    let simulated = common::simulator_report(&stack.simulator.url).await;
    assert_eq!(simulated.worker.created, 1, "one invalidation for both runs: {simulated:#?}");
}
