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
    // The emulator completes invalidations at once: the worker's last look on its way out records it, instead of
    // leaving it `accepted` for another worker to adopt a minute later.
    assert_eq!(rows[0]["status"], "completed", "{audit}");
    assert!(rows[0]["time_to_complete_ms"].is_u64(), "{audit}");
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

/// A command's output when its reader has gone (`| head -1`): standard output is closed before it writes.
fn with_stdout_closed(command: &mut Command) -> Output {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn every_command_ends_quietly_when_its_reader_has_gone() {
    let Some(config) = common::emulator().await else { return };
    let (queue_name, table) = (common::unique("pipe"), common::unique("pipe-ledger"));
    let setup = with_stdout_closed(common::binary().args(["setup", "--queue-name", &queue_name, "--table", &table]));
    let queues = common::create_queues(&config).await;
    let ledger = cf_invalidator::aws::dynamodb::DynamoLedger::new(aws_sdk_dynamodb::Client::new(&config), &table);
    let now = std::time::SystemTime::now();
    for n in 0..3 {
        let mut record = cf_invalidator::fake::pending_record("EPIPE", &[&format!("/{n}")], &["m"], now);
        record.expires_at = now + Duration::from_secs(3_600);
        cf_invalidator::ports::Batches::record_intent(&ledger, &record).await.unwrap();
    }
    let outputs = [
        ("setup", setup),
        (
            "send",
            with_stdout_closed(common::binary().args(["send", "--queue-url", &queues.queue_url]).args([
                "--distribution",
                "EPIPE",
                "/a",
            ])),
        ),
        (
            "audit --json",
            with_stdout_closed(common::binary().args([
                "audit",
                "--table",
                &table,
                "--distribution",
                "EPIPE",
                "--json",
            ])),
        ),
        ("audit", with_stdout_closed(common::binary().args(["audit", "--table", &table, "--distribution", "EPIPE"]))),
        ("report", with_stdout_closed(common::binary().args(["report", "--table", &table]))),
        ("--help", with_stdout_closed(common::binary().arg("--help"))),
    ];
    for (command, output) in outputs {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success() && !stderr.contains("panicked"), "{command}: {:?} {stderr}", output.status);
    }
}

/// The exit code `send --wait` and every other command give a setup only a person can fix.
const EXIT_CONFIG: i32 = 78;

fn exits_with(output: &Output, code: i32, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: ") && last.contains(expected), "expected {expected:?} in the last line: {stderr}");
}

#[tokio::test]
async fn a_wrong_setup_fails_at_once_with_its_own_exit_code_before_anything_is_sent() {
    let Some(config) = common::emulator().await else { return };
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;

    let waiting_on_no_table = common::binary()
        .args(["send", "--queue-url", &queues.queue_url, "--distribution", "EAAA", "/a"])
        .args(["--wait", "--table", "no-such-table", "--wait-timeout", "10s"])
        .output()
        .unwrap();
    exits_with(&waiting_on_no_table, EXIT_CONFIG, "ledger table no-such-table does not exist");
    assert_eq!(common::queue_depth(&sqs, &queues.queue_url).await, (0, 0), "nothing was sent");

    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let no_queue = format!("{endpoint}/123456789012/no-such-queue");
    let output = common::binary().args(["send", "--queue-url", &no_queue, "--distribution", "EAAA", "/a"]).output();
    exits_with(&output.unwrap(), EXIT_CONFIG, "does not exist: check --queue-url");
    let output = common::binary().args(["run", "--queue-url", &queues.queue_url, "--table", "no-such-table"]).output();
    exits_with(&output.unwrap(), EXIT_CONFIG, "ledger table no-such-table does not exist");
    let output = common::binary().args(["audit", "--table", "no-such-table", "--distribution", "EAAA"]).output();
    exits_with(&output.unwrap(), EXIT_CONFIG, "ledger table no-such-table does not exist");

    let no_topic = "arn:aws:sns:us-east-1:123456789012:no-such-topic";
    let output = common::binary()
        .args(["run", "--queue-url", &queues.queue_url, "--table", &table, "--events-topic-arn", no_topic])
        .output()
        .unwrap();
    exits_with(&output, EXIT_CONFIG, "events topic arn:aws:sns:us-east-1:123456789012:no-such-topic does not exist");
}

/// An endpoint nobody listens on: what the binary says when AWS cannot be reached, or before it tries.
fn unreachable_binary() -> Command {
    let mut command = common::binary();
    command.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", common::free_port()));
    command
}

#[test]
fn a_malformed_or_conflicting_role_stops_the_worker_before_it_calls_aws() {
    let arn = "arn:aws:iam::111122223333:role/cf";
    let other = "arn:aws:iam::444455556666:role/cf";
    let cases = [
        (vec![format!("EAAA={arn},externalid=x1")], "is not DIST=ARN or DIST=ARN,external-id=ID"),
        (vec!["EAAA=arn:aws:iam::1:role/cf".to_owned()], "with a 12-digit account"),
        (vec![format!("EAAA={arn}"), format!("EAAA={other}")], "EAAA is given two roles"),
    ];
    for (roles, expected) in cases {
        let mut command = unreachable_binary();
        command.args(["run", "--queue-url", "http://127.0.0.1:9/1/q", "--table", "t"]);
        for role in &roles {
            command.args(["--role", role]);
        }
        exits_with(&command.output().unwrap(), EXIT_CONFIG, expected);
    }
}

#[test]
fn send_refuses_what_the_worker_would_dead_letter_with_the_workers_reason() {
    for (path, reason) in [("nolead.html", "must start with '/'"), ("/a*b", "may only be the last character")] {
        let output = unreachable_binary()
            .args(["send", "--queue-url", "http://127.0.0.1:9/1/q", "--distribution", "EAAA", "/fine", path])
            .output()
            .unwrap();
        exits_with(&output, 1, reason);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("refused, nothing sent: path #1"), "{stderr}");
    }
}

#[test]
fn missing_credentials_say_what_to_do_first_in_one_short_line() {
    let output = unreachable_binary()
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .args(["audit", "--table", "t", "--distribution", "EAAA"])
        .output()
        .unwrap();
    exits_with(&output, EXIT_CONFIG, "no AWS credentials found: set AWS_PROFILE");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.len() < 300, "{} bytes: {stderr}", stderr.len());
}

#[test]
fn a_ledger_that_does_not_answer_is_named_without_a_promise_to_retry() {
    let output = unreachable_binary().args(["audit", "--table", "t", "--distribution", "EAAA"]).output().unwrap();
    exits_with(&output, 1, "DynamoDB did not answer");
    assert!(!String::from_utf8_lossy(&output.stderr).contains("will retry"));
}

#[test]
fn help_and_flags_say_what_the_binary_does() {
    let help = |args: &[&str]| String::from_utf8(common::binary().args(args).output().unwrap().stdout).unwrap();
    let run = help(&["run", "--help"]);
    assert!(!run.contains("Boxed"), "a source comment in the help: {run}");
    for kind in ["Invalidation Accepted", "Invalidation Completed", "Invalidation Failed", "Message Dead-Lettered"] {
        assert!(run.contains(kind), "--events-bus names {kind}: {run}");
    }
    assert!(help(&["--help"]).contains("78 the configuration is wrong"));

    let png = unreachable_binary().args(["report", "--table", "t", "--plot", "report.png"]).output().unwrap();
    exits_with(&png, EXIT_CONFIG, "the chart is SVG, so the file must end in .svg");
    assert!(!std::path::Path::new("report.png").exists());

    let typo = common::binary().args(["send", "--wiat"]).output().unwrap();
    assert_eq!(typo.status.code(), Some(64), "not 2, which send --wait answers for a timeout");
}

#[tokio::test]
async fn progress_in_a_log_has_no_carriage_returns_and_long_requesters_keep_the_columns() {
    let Some(config) = common::emulator().await else { return };
    let queues = common::create_queues(&config).await;
    let paths: String = (0..11_000).map(|n| format!("/p/{n}\n")).collect();
    let file = std::env::temp_dir().join(common::unique("paths"));
    std::fs::write(&file, paths).unwrap();
    let output = common::binary()
        .args(["send", "--queue-url", &queues.queue_url, "--distribution", "EAAA", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains('\r') && stderr.lines().any(|l| l == "sent 11/11 messages"), "{stderr:?}");

    let table = common::create_table(&config).await;
    let ledger = cf_invalidator::aws::dynamodb::DynamoLedger::new(aws_sdk_dynamodb::Client::new(&config), &table);
    let now = std::time::SystemTime::now();
    let mut record = cf_invalidator::fake::pending_record("ECOLUMNS", &["/a"], &["m"], now);
    record.expires_at = now + Duration::from_secs(3_600);
    record.requesters = vec![format!("github:example/{}@0123456789abcdef", "x".repeat(60))];
    cf_invalidator::ports::Batches::record_intent(&ledger, &record).await.unwrap();
    let view = succeed(common::binary().args(["audit", "--table", &table, "--distribution", "ECOLUMNS"]));
    let lines: Vec<&str> = view.lines().collect();
    // In characters: the cut requester ends in a three-byte ellipsis.
    let column = |line: &str, text: &str| line.find(text).map(|at| line[..at].chars().count());
    let heading = column(lines[0], "CALLER REFERENCE");
    assert_eq!(
        column(lines[1], record.caller_reference.as_str()),
        heading,
        "the reference stays under its heading: {view}"
    );
    assert!(view.contains(&record.requesters[0]), "the whole requester is on a line of its own: {view}");
}
