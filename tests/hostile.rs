//! Hostile input: every malformed message ends in the dead-letter queue with a specific reason, and the worker
//! keeps running. The corpus lives in tests/hostile/corpus.jsonl (one `{"note", "body", "reason"}` per line); a
//! few cases too big to keep in a file are generated here.

use std::sync::Arc;
use std::time::Duration;

use cf_invalidator::ack::{REASON_ATTRIBUTE, SOURCE_MESSAGE_ATTRIBUTE};
use cf_invalidator::clock::WallClock;
use cf_invalidator::fake::{FakeCdn, MemoryLedger, MemoryQueue};
use cf_invalidator::ports::Queue;
use cf_invalidator::worker::{self, Exit, Services, Settings};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Case {
    note: String,
    body: String,
    reason: String,
}

fn corpus() -> Vec<Case> {
    let mut cases: Vec<Case> = include_str!("hostile/corpus.jsonl")
        .lines()
        .map(|line| serde_json::from_str(line).expect("corpus line is JSON"))
        .collect();
    let generated = [
        (
            "3,001 paths",
            json!({"distribution_id": "EHOSTILE", "paths": (0..3_001).map(|i| format!("/p{i}")).collect::<Vec<_>>()}),
            "3001 paths and tags in one message",
        ),
        (
            "4,001-character path",
            json!({"distribution_id": "EHOSTILE", "paths": [format!("/{}", "a".repeat(4_000))]}),
            "CloudFront accepts at most 4000",
        ),
        (
            "path too long once encoded",
            json!({"distribution_id": "EHOSTILE", "paths": [format!("/{}", " ".repeat(1_500))]}),
            "once encoded",
        ),
        ("1 MiB body", json!({"distribution_id": "EHOSTILE", "paths": ["/a"], "requester": "x".repeat(1 << 20)}), ""),
    ];
    for (note, body, reason) in generated {
        cases.push(Case { note: note.into(), body: body.to_string(), reason: reason.into() });
    }
    // A huge body is not malformed as such: its requester is free text. It must not break anything either.
    cases.retain(|c| !c.reason.is_empty() || c.note == "1 MiB body");
    cases
}

#[tokio::test(start_paused = true)]
async fn every_hostile_message_is_dead_lettered_with_its_reason_and_the_worker_keeps_going() {
    let clock = WallClock::following_tokio();
    let queue = Arc::new(MemoryQueue::with_clock(clock));
    let dead_letter = Arc::new(MemoryQueue::with_clock(clock));
    let cdn = Arc::new(FakeCdn::with_distributions(["EHOSTILE"]));
    let cases = corpus();
    assert!(cases.iter().filter(|c| !c.reason.is_empty()).count() >= 50, "the corpus holds at least 50 cases");
    for case in &cases {
        queue.send(&case.body, &[]).await.unwrap();
    }
    queue.send(&json!({"distribution_id": "EHOSTILE", "paths": ["/still-working"]}).to_string(), &[]).await.unwrap();

    let services = Services {
        queue: Arc::clone(&queue),
        dead_letter: Some(Arc::clone(&dead_letter)),
        cdn: Arc::clone(&cdn),
        ledger: Arc::new(MemoryLedger::default()),
    };
    let mut settings = Settings { clock, ..Settings::default() };
    settings.intake.receive_wait = Duration::from_secs(1);
    settings.submission.create_rate = 100.0;
    let exit = worker::run(services, settings, tokio::time::sleep(Duration::from_secs(60))).await;
    assert_eq!(exit, Exit::Drained);

    assert!(queue.is_empty(), "left on the queue: {}", queue.len());
    let dead = dead_letter.messages();
    let attribute = |m: &cf_invalidator::fake::StoredMessage, name: &str| {
        m.attributes.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
    };
    for case in cases.iter().filter(|c| !c.reason.is_empty()) {
        let found = dead.iter().find(|m| m.body == case.body);
        let message = found.unwrap_or_else(|| panic!("{}: not in the dead-letter queue", case.note));
        let reason = attribute(message, REASON_ATTRIBUTE);
        assert!(reason.contains(&case.reason), "{}: reason {reason:?} lacks {:?}", case.note, case.reason);
        assert!(!attribute(message, SOURCE_MESSAGE_ATTRIBUTE).is_empty(), "{}: no source message id", case.note);
    }
    assert_eq!(dead.len(), cases.iter().filter(|c| !c.reason.is_empty()).count(), "nothing else dead-lettered");

    let submitted: Vec<String> = cdn.invalidations().into_iter().flat_map(|(_, paths)| paths).collect();
    assert_eq!(submitted, ["/a", "/still-working"], "valid work still flows");
}
