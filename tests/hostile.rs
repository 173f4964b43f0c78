//! Hostile input: every malformed or forbidden message ends in the dead-letter queue with a specific reason, every
//! message that asks for nothing is acknowledged without an invalidation (a documented skip), and the worker keeps
//! going. The same corpus runs twice: through the in-memory queue, and through real SQS queues on the emulator.
//!
//! The corpus lives in tests/hostile/corpus.jsonl, one case a line:
//! `{"note": "...", "body": "...", "reason": "...", "expect": "dead-letter" | "skip"}`. `expect` defaults to
//! `dead-letter`, whose `reason` must be a substring of the dead-letter queue's `reason` attribute; a `skip` needs
//! no reason, but its note says why the skip is documented behaviour. A few cases too big to keep in a file are
//! generated here. To add a case, append a line (the body is a JSON string, so a JSON body is escaped once).
//!
//! The worker runs with the rules below: one route (`hostile-site` to `EHOSTILE`, unmatched objects dead-lettered),
//! `--allow-distribution EHOSTILE` and `--allow-topic` for one SNS topic.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use cf_invalidator::ack::{REASON_ATTRIBUTE, SOURCE_MESSAGE_ATTRIBUTE};
use cf_invalidator::clock::WallClock;
use cf_invalidator::fake::{FakeCdn, MemoryLedger, MemoryQueue};
use cf_invalidator::intake::parse::IntakeRules;
use cf_invalidator::intake::routes::Routing;
use cf_invalidator::model::DistributionId;
use cf_invalidator::ports::Queue;
use cf_invalidator::worker::{self, Exit, Services, Settings};
use serde::Deserialize;
use serde_json::json;

const DISTRIBUTION: &str = "EHOSTILE";
const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:hostile";
const ROUTES: &str = "[[rule]]\nbucket = \"hostile-site\"\ndistributions = [\"EHOSTILE\"]\n";
/// Sent after the corpus: it must still be invalidated.
const STILL_WORKING: &str = "/still-working";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Expect {
    /// Moved to the dead-letter queue with `reason` in its reason attribute.
    #[default]
    DeadLetter,
    /// Acknowledged (deleted) without an invalidation and without a dead letter.
    Skip,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    note: String,
    body: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    expect: Expect,
}

fn rules() -> IntakeRules {
    IntakeRules {
        routing: Routing::parse(ROUTES).expect("the hostile routes parse"),
        allowed_distributions: Some(BTreeSet::from([DistributionId::parse(DISTRIBUTION).unwrap()])),
        allowed_topics: Some(BTreeSet::from([TOPIC.to_owned()])),
        allowed_tenants: None,
    }
}

fn s3_record(key: &str) -> serde_json::Value {
    json!({"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "hostile-site"}, "object": {"key": key, "size": 5}}})
}

fn sns(inner: &serde_json::Value) -> serde_json::Value {
    json!({"Type": "Notification", "MessageId": "generated", "TopicArn": TOPIC, "Message": inner.to_string()})
}

fn corpus() -> Vec<Case> {
    let mut cases: Vec<Case> = include_str!("hostile/corpus.jsonl")
        .lines()
        .enumerate()
        .map(|(n, line)| serde_json::from_str(line).unwrap_or_else(|e| panic!("corpus.jsonl line {}: {e}", n + 1)))
        .collect();
    let paths_3001: Vec<String> = (0..3_001).map(|i| format!("/p{i}")).collect();
    let records_3001: Vec<serde_json::Value> = (0..3_001).map(|i| s3_record(&format!("o/{i}.html"))).collect();
    let generated = [
        (
            "3,001 paths",
            json!({"distribution_id": DISTRIBUTION, "paths": paths_3001}),
            "3001 paths and tags in one message",
        ),
        (
            "1,500 paths and 1,501 tags",
            json!({"distribution_id": DISTRIBUTION, "paths": &paths_3001[..1_500],
                "tags": (0..1_501).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
            "3001 paths and tags in one message",
        ),
        (
            "3,001 paths through SNS",
            sns(&json!({"distribution_id": DISTRIBUTION, "paths": paths_3001})),
            "3001 paths and tags in one message",
        ),
        (
            "S3 event with 3,001 records for the routed bucket: the cap applies after routing",
            json!({"Records": records_3001}),
            "3001 paths and tags in one message",
        ),
        (
            "S3 event with 3,001 records through SNS",
            sns(&json!({"Records": records_3001})),
            "3001 paths and tags in one message",
        ),
        (
            "4,001-character path",
            json!({"distribution_id": DISTRIBUTION, "paths": [format!("/{}", "a".repeat(4_000))]}),
            "CloudFront accepts at most 4000",
        ),
        (
            "path too long once encoded",
            json!({"distribution_id": DISTRIBUTION, "paths": [format!("/{}", " ".repeat(1_500))]}),
            "once encoded",
        ),
        (
            // Past SQS's 1 MiB: no producer can send it, and it stays out of the emulator run.
            "path of 1.1 million characters (in memory only)",
            json!({"distribution_id": DISTRIBUTION, "paths": [format!("/{}", "b".repeat(1_100_000))]}),
            "CloudFront accepts at most 4000",
        ),
    ];
    for (note, body, reason) in generated {
        cases.push(Case {
            note: note.into(),
            body: body.to_string(),
            reason: reason.into(),
            expect: Expect::DeadLetter,
        });
    }
    cases
}

/// Checks the corpus itself: enough cases, every dead-letter case names its reason, every skip says why, and no two
/// bodies are the same (outcomes are told apart by body in memory).
fn checked_corpus() -> Vec<Case> {
    let cases = corpus();
    assert!(cases.len() >= 100, "the corpus holds at least 100 cases, not {}", cases.len());
    let mut bodies = BTreeSet::new();
    for case in &cases {
        assert!(bodies.insert(case.body.as_str()), "{}: the same body as another case", case.note);
        match case.expect {
            Expect::DeadLetter => {
                assert!(!case.reason.is_empty(), "{}: a dead-letter case needs its reason", case.note)
            }
            Expect::Skip => assert!(
                case.reason.is_empty() && case.note.contains("documented skip"),
                "{}: a skip has no reason, and its note says why it is a documented skip",
                case.note
            ),
        }
    }
    cases
}

/// A message that reached the dead-letter queue.
#[derive(Debug)]
struct DeadLetter {
    body: String,
    reason: String,
    source_message_id: String,
}

/// Compares what happened with what each case expects; panics with every mismatch at once.
/// `sent` maps each case's message id (as the queue assigned it) to the case.
fn check_outcomes(cases: &[&Case], sent: &HashMap<String, usize>, dead: &[DeadLetter]) {
    let mut failures = Vec::new();
    let mut found: HashMap<usize, &DeadLetter> = HashMap::new();
    for letter in dead {
        match sent.get(&letter.source_message_id) {
            Some(&index) => {
                if found.insert(index, letter).is_some() {
                    failures.push(format!("{}: dead-lettered twice", cases[index].note));
                }
            }
            None => failures.push(format!(
                "dead letter from no corpus case (source {:?}, reason {:?}): {:.200}",
                letter.source_message_id, letter.reason, letter.body
            )),
        }
    }
    for (index, case) in cases.iter().enumerate() {
        match (case.expect, found.get(&index)) {
            (Expect::DeadLetter, None) => failures.push(format!("{}: not in the dead-letter queue", case.note)),
            (Expect::DeadLetter, Some(letter)) => {
                if !letter.reason.contains(&case.reason) {
                    failures.push(format!("{}: reason {:?} lacks {:?}", case.note, letter.reason, case.reason));
                }
                if letter.body != case.body {
                    failures.push(format!(
                        "{}: the dead letter's body is not the message's: {:.200}",
                        case.note, letter.body
                    ));
                }
            }
            (Expect::Skip, Some(letter)) => {
                failures.push(format!("{}: a documented skip was dead-lettered: {:?}", case.note, letter.reason))
            }
            (Expect::Skip, None) => {}
        }
    }
    assert!(failures.is_empty(), "{} of {} cases went wrong:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

fn attribute(message: &cf_invalidator::fake::StoredMessage, name: &str) -> String {
    message.attributes.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn every_hostile_message_is_dead_lettered_with_its_reason_or_skipped_and_the_worker_keeps_going() {
    let clock = WallClock::following_tokio();
    let queue = Arc::new(MemoryQueue::with_clock(clock));
    let dead_letter = Arc::new(MemoryQueue::with_clock(clock));
    let cdn = Arc::new(FakeCdn::with_distributions([DISTRIBUTION]));
    let cases = checked_corpus();
    for case in &cases {
        queue.send(&case.body, &[]).await.unwrap();
    }
    // A huge body: its requester is free text, bounded at 256 characters. It is dead-lettered with that reason,
    // and breaks nothing.
    let huge =
        json!({"distribution_id": DISTRIBUTION, "paths": ["/huge"], "requester": "x".repeat(1 << 20)}).to_string();
    queue.send(&huge, &[]).await.unwrap();
    queue.send(&json!({"distribution_id": DISTRIBUTION, "paths": [STILL_WORKING]}).to_string(), &[]).await.unwrap();
    let huge_id = queue.messages().into_iter().find(|m| m.body == huge).unwrap().message_id.0;
    let index_of: HashMap<&str, usize> = cases.iter().enumerate().map(|(i, c)| (c.body.as_str(), i)).collect();
    let sent: HashMap<String, usize> = queue
        .messages()
        .into_iter()
        .filter_map(|m| index_of.get(m.body.as_str()).map(|&i| (m.message_id.0, i)))
        .collect();
    assert_eq!(sent.len(), cases.len());

    let services = Services {
        queue: Arc::clone(&queue),
        dead_letter: Some(Arc::clone(&dead_letter)),
        cdn: Arc::clone(&cdn),
        ledger: Arc::new(MemoryLedger::default()),
    };
    let mut settings = Settings { clock, ..Settings::default() };
    settings.intake.receive_wait = Duration::from_secs(1);
    settings.intake.rules = Arc::new(rules());
    settings.submission.create_rate = 100.0;
    let exit = worker::run(services, settings, tokio::time::sleep(Duration::from_secs(60))).await;
    assert_eq!(exit, Exit::Drained);

    assert!(queue.is_empty(), "left on the queue: {}", queue.len());
    let dead: Vec<DeadLetter> = dead_letter
        .messages()
        .iter()
        .map(|m| DeadLetter {
            body: m.body.clone(),
            reason: attribute(m, REASON_ATTRIBUTE),
            source_message_id: attribute(m, SOURCE_MESSAGE_ATTRIBUTE),
        })
        .collect();
    let (huge_dead, dead): (Vec<DeadLetter>, Vec<DeadLetter>) =
        dead.into_iter().partition(|d| d.source_message_id == huge_id);
    assert_eq!(huge_dead.len(), 1, "the huge body is dead-lettered once");
    assert!(
        huge_dead[0].reason.contains("requester") && huge_dead[0].reason.contains("256"),
        "{}",
        huge_dead[0].reason
    );
    check_outcomes(&cases.iter().collect::<Vec<_>>(), &sent, &dead);

    let submitted: Vec<String> = cdn.invalidations().into_iter().flat_map(|(_, paths)| paths).collect();
    assert_eq!(submitted, [STILL_WORKING], "valid work still flows, and no skip invalidated anything");
}

/// Largest body SQS (and the emulator) takes: 1 MiB. Queues created before August 2025 take 256 KiB by default.
const SQS_MAX_BODY: usize = 1 << 20;

/// Whether SQS would take `body` at all: at most `SQS_MAX_BODY` bytes of the characters SQS allows (tab, line
/// feed, carriage return, U+0020 to U+FFFD without the surrogates, and beyond U+FFFF). Cases it would refuse (a raw
/// NUL, a 1.1 MB path) can never reach a worker through a queue; they run in memory only.
fn sqs_accepts(body: &str) -> bool {
    let allowed = |c: char| matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && !matches!(c, '\u{FFFE}' | '\u{FFFF}'));
    body.len() <= SQS_MAX_BODY && body.chars().all(allowed)
}

/// Every message on `url`, with its reason and source-message attributes.
async fn drain_dead_letters(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<DeadLetter> {
    let drained = common::drain_with_attributes(sqs, url).await;
    drained
        .into_iter()
        .map(|(body, mut attributes)| DeadLetter {
            body,
            reason: attributes.remove(REASON_ATTRIBUTE).unwrap_or_default(),
            source_message_id: attributes.remove(SOURCE_MESSAGE_ATTRIBUTE).unwrap_or_default(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_real_queues_every_hostile_message_is_dead_lettered_with_its_reason_or_skipped() {
    let Some(config) = common::emulator().await else { return };
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let all = checked_corpus();
    let cases: Vec<&Case> = all.iter().filter(|c| sqs_accepts(&c.body)).collect();
    let in_memory_only: Vec<&str> = all.iter().filter(|c| !sqs_accepts(&c.body)).map(|c| c.note.as_str()).collect();
    assert!(cases.len() >= 100, "at least 100 cases go through the real queue, not {}", cases.len());
    eprintln!("{} cases through SQS; in memory only (SQS refuses the body): {in_memory_only:?}", cases.len());

    // One SendMessage each: a batch may hold at most 1 MiB in all, and some cases are hundreds of KB.
    let mut sent = HashMap::new();
    for (index, case) in cases.iter().enumerate() {
        let output = sqs.send_message().queue_url(&queues.queue_url).message_body(&case.body).send().await;
        let output = output.unwrap_or_else(|e| panic!("{}: SQS refused the body: {e:?}", case.note));
        sent.insert(output.message_id().unwrap().to_owned(), index);
    }
    let still_working = json!({"distribution_id": DISTRIBUTION, "paths": [STILL_WORKING]}).to_string();
    sqs.send_message().queue_url(&queues.queue_url).message_body(still_working).send().await.unwrap();

    let sdk = common::sdk_services(&config, &queues, &table);
    let cdn = Arc::new(FakeCdn::with_distributions([DISTRIBUTION]));
    let services =
        Services { queue: sdk.queue, dead_letter: sdk.dead_letter, cdn: Arc::clone(&cdn), ledger: sdk.ledger };
    let mut settings = Settings::default();
    settings.intake.receive_wait = Duration::from_secs(1);
    settings.intake.rules = Arc::new(rules());
    settings.batching.window = Duration::from_secs(1);
    settings.submission.create_rate = 100.0;
    let (queue_url, sqs_for_wait) = (queues.queue_url.clone(), sqs.clone());
    let all_handled = async move {
        common::wait_until(Duration::from_secs(180), || async {
            common::queue_depth(&sqs_for_wait, &queue_url).await == (0, 0)
        })
        .await;
    };
    assert_eq!(worker::run(services, settings, all_handled).await, Exit::Drained);

    assert_eq!(common::queue_depth(&sqs, &queues.queue_url).await, (0, 0), "the main queue is empty");
    let dead = drain_dead_letters(&sqs, &queues.dead_letter_url).await;
    check_outcomes(&cases, &sent, &dead);
    let invalidated: Vec<(String, Vec<String>)> =
        cdn.invalidations().into_iter().map(|(d, paths)| (d.to_string(), paths)).collect();
    assert_eq!(
        invalidated,
        [(DISTRIBUTION.to_owned(), vec![STILL_WORKING.to_owned()])],
        "the valid message was invalidated, and no skip invalidated anything"
    );
}
