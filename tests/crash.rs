//! The real binary, killed with SIGKILL at random moments while it works through thousands of messages, then
//! restarted: nothing may be lost, and CloudFront may only see a batch again under the CallerReference it was
//! first sent with (the emulator turns such a resubmission into a second invalidation; CloudFront would not).
//! The kill moments come from a seed printed at the start; CRASH_SEED reruns one, and CRASH_LOG_DIR keeps each
//! worker's log there (worker-0.log … ) instead of discarding it.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use cf_invalidator::batch::merge::is_covered_by;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MESSAGES: usize = 2_000;
const KILLS: usize = 4;

fn worker(queue_url: &str, table: &str, n: usize) -> Child {
    let log = match std::env::var_os("CRASH_LOG_DIR") {
        Some(dir) => std::fs::File::create(std::path::Path::new(&dir).join(format!("worker-{n}.log"))).unwrap().into(),
        None => Stdio::null(),
    };
    common::binary()
        .args(["run", "--queue-url", queue_url, "--table", table, "--window", "1s", "--visibility-timeout", "10s"])
        .args(["--create-rate", "20", "--create-burst", "20", "--max-batch-paths", "200"])
        .stderr(log)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_never_rebatches_under_a_new_reference() {
    let seed = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    println!("CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let config = common::emulator().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let cloudfront = common::cloudfront(&config);
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;
    let distributions =
        [common::create_distribution(&cloudfront).await, common::create_distribution(&cloudfront).await];

    let started = std::time::Instant::now();
    let mut requested = Vec::new();
    let bodies: Vec<String> = (0..MESSAGES)
        .map(|n| {
            let distribution = &distributions[n % 2];
            let paths = vec![format!("/page/{}.html", n % 700), format!("/assets/{}.js", n % 50)];
            requested.extend(paths.iter().map(|p| (distribution.clone(), p.clone())));
            serde_json::json!({"distribution_id": distribution.as_str(), "paths": paths}).to_string()
        })
        .collect();
    common::send_all(&sqs, &queues.queue_url, &bodies).await;

    println!("sent at {:?}", started.elapsed());
    for n in 0..KILLS {
        let mut running = worker(&queues.queue_url, &table, n);
        tokio::time::sleep(Duration::from_millis(rng.random_range(1_000..5_000))).await;
        running.kill().unwrap();
        running.wait().unwrap();
    }
    println!("kills done at {:?}", started.elapsed());
    let mut last = worker(&queues.queue_url, &table, KILLS);
    // moto slows down as 2,000 messages pile up: the drain took 240 s on an idle machine, 410 s beside a release
    // build. This bounds the wait; it is not a performance assertion.
    let drained = common::wait_until(Duration::from_secs(600), || async {
        common::queue_depth(&sqs, &queues.queue_url).await == (0, 0)
    })
    .await;
    println!("drained at {:?}", started.elapsed());
    Command::new("kill").args(["-TERM", &last.id().to_string()]).status().unwrap();
    assert!(last.wait().unwrap().success());
    assert!(
        drained,
        "messages left on the queue: {:?} (seed {seed})",
        common::queue_depth(&sqs, &queues.queue_url).await
    );
    let dead_lettered = common::drain(&sqs, &queues.dead_letter_url).await;
    assert!(dead_lettered.is_empty(), "nothing valid may be dead-lettered (seed {seed}): {dead_lettered:?}");

    let recorded = recorded_batches(&config, &table).await;
    let mut invalidations = Vec::new();
    for distribution in &distributions {
        invalidations.extend(
            common::invalidations(&cloudfront, distribution).await.into_iter().map(|i| (distribution.clone(), i)),
        );
    }
    for (distribution, path) in &requested {
        let covered = invalidations.iter().any(|(d, i)| d == distribution && is_covered_by(path, &i.paths));
        assert!(covered, "{distribution} {path} was never invalidated (seed {seed})");
    }
    let mut per_reference: HashMap<&str, usize> = HashMap::new();
    for (_, invalidation) in &invalidations {
        let paths = recorded.get(&invalidation.caller_reference);
        assert!(
            paths.is_some(),
            "{} reached CloudFront without a ledger record (seed {seed})",
            invalidation.caller_reference
        );
        assert_eq!(
            paths.unwrap(),
            &invalidation.paths.iter().cloned().collect::<HashSet<_>>(),
            "sent with other paths than recorded"
        );
        *per_reference.entry(&invalidation.caller_reference).or_default() += 1;
    }
    let resubmissions: usize = per_reference.values().map(|n| n - 1).sum();
    println!(
        "{} invalidations for {} batches; {resubmissions} resubmissions under a recorded reference (free on CloudFront)",
        invalidations.len(),
        per_reference.len()
    );
    // Each kill can leave at most the batches being submitted at that moment (16 at once) to be resumed.
    assert!(resubmissions <= KILLS * 16, "{resubmissions} resubmissions after {KILLS} kills (seed {seed})");
}

/// CallerReference → paths of every batch record in the ledger.
async fn recorded_batches(config: &aws_config::SdkConfig, table: &str) -> HashMap<String, HashSet<String>> {
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    let mut found = HashMap::new();
    let mut start = None;
    loop {
        let page = dynamodb.scan().table_name(table).set_exclusive_start_key(start).send().await.unwrap();
        for item in page.items() {
            let (Some(AttributeValue::S(reference)), Some(AttributeValue::L(paths))) =
                (item.get("caller_reference"), item.get("paths"))
            else {
                continue;
            };
            found.insert(reference.clone(), paths.iter().filter_map(|p| p.as_s().ok().cloned()).collect());
        }
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            return found;
        }
    }
}
