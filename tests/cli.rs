//! The real binary, as an operator runs it, against the emulator.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use cf_invalidator::aws::sqs::CreatedQueues;

fn succeed(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn setup(queue_name: &str, table: &str) -> CreatedQueues {
    let stdout = succeed(common::binary().args(["setup", "--queue-name", queue_name, "--table", table]));
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} in {stdout}"))
            .to_owned()
    };
    assert_eq!(value("table"), table);
    CreatedQueues { queue_url: value("queue_url"), dead_letter_url: value("dlq_url") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_window_submits_the_open_batch_then_exits_zero() {
    let Some(config) = common::emulator().await else { return };
    let sqs = aws_sdk_sqs::Client::new(&config);
    let cloudfront = common::cloudfront(&config);
    let distribution = common::create_distribution(&cloudfront).await;
    let (queue_name, table) = (common::unique("cli"), common::unique("cli-ledger"));
    let queues = setup(&queue_name, &table);
    // Setup is idempotent: running it again changes nothing and succeeds.
    assert_eq!(setup(&queue_name, &table), queues);

    let send = |paths: &[&str]| {
        succeed(
            common::binary()
                .args([
                    "send",
                    "--queue-url",
                    &queues.queue_url,
                    "--distribution",
                    distribution.as_str(),
                    "--requester",
                    "cli-test",
                ])
                .args(paths),
        )
    };
    send(&["/index.html", "/docs/a b.html"]);
    send(&["/index.html", "/img/*", "/img/logo.png"]);

    let worker = common::binary()
        .args([
            "run",
            "--queue-url",
            &queues.queue_url,
            "--table",
            &table,
            "--window",
            "1h",
            "--shutdown-timeout",
            "20s",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let received = common::wait_until(Duration::from_secs(30), || async {
        common::queue_depth(&sqs, &queues.queue_url).await == (0, 2)
    })
    .await;
    assert!(received, "the worker did not receive both messages");

    let terminated_at = std::time::Instant::now();
    assert!(Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap().success());
    let output = tokio::task::spawn_blocking(move || worker.wait_with_output()).await.unwrap().unwrap();
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit status {:?}: {logs}", output.status);
    assert!(terminated_at.elapsed() < Duration::from_secs(20), "took {:?}", terminated_at.elapsed());

    let invalidations = common::invalidations(&cloudfront, &distribution).await;
    assert_eq!(invalidations.len(), 1, "{logs}");
    assert_eq!(invalidations[0].paths, ["/docs/a%20b.html", "/img/*", "/index.html"]);
    assert_eq!(common::queue_depth(&sqs, &queues.queue_url).await, (0, 0), "messages deleted");

    let audit =
        succeed(common::binary().args(["audit", "--table", &table, "--distribution", distribution.as_str(), "--json"]));
    let rows: Vec<serde_json::Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 1, "{audit}");
    assert_eq!(rows[0]["invalidation_id"], invalidations[0].id.as_str());
    assert_eq!(rows[0]["caller_reference"], invalidations[0].caller_reference.as_str());
    assert_eq!(rows[0]["status"], "accepted");
    assert_eq!(rows[0]["seal_reason"], "shutdown");
    assert_eq!(rows[0]["requesters"], serde_json::json!(["cli-test"]));
    assert_eq!(rows[0]["message_ids"].as_array().unwrap().len(), 2);

    let table_view =
        succeed(common::binary().args(["audit", "--table", &table, "--distribution", distribution.as_str()]));
    assert!(table_view.contains(&invalidations[0].id) && table_view.contains("1 batch(es)"), "{table_view}");
}

fn fails_with(output: Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "should have failed: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains(expected),
        "expected {expected:?} in the last line of: {stderr}"
    );
}

#[tokio::test]
async fn operator_errors_are_one_clear_line() {
    let Some(config) = common::emulator().await else { return };
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let queues = common::create_queues(&config).await;

    let missing_queue = format!("{endpoint}/123456789012/no-such-queue");
    let output = common::binary().args(["run", "--queue-url", &missing_queue, "--table", "t"]).output().unwrap();
    fails_with(output, "does not exist: check --queue-url");

    let output =
        common::binary().args(["run", "--queue-url", &queues.queue_url, "--table", "no-such-table"]).output().unwrap();
    fails_with(output, "ledger table no-such-table does not exist");

    let output = common::binary()
        .args(["send", "--queue-url", &queues.queue_url, "--distribution", "lower", "/a"])
        .output()
        .unwrap();
    fails_with(output, "distribution id \"lower\" is not valid");

    let output = common::binary()
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .args(["audit", "--table", "t", "--distribution", "E1"])
        .output()
        .unwrap();
    fails_with(output, "no AWS region configured");
}
