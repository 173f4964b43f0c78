//! Three worker processes share one in-progress budget: the real binary, with SQS and DynamoDB on the emulator and
//! CloudFront served over HTTP by the simulator (`cloudfront-sim`), whose quotas are set to exactly what the
//! workers may use together. One worker is killed with SIGKILL while it holds reservations. Any overcommitment
//! would be refused by the simulator, so: no quota error, nothing lost, and the dead worker's reservations are
//! given back after its lease.

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use cf_invalidator::model::DistributionId;
use cf_invalidator::model::path::is_covered_by;
use cf_invalidator::ports::Allowance;

const DISTRIBUTIONS: [&str; 3] = ["EWORKERSA", "EWORKERSB", "EWORKERSC"];
/// What the simulator allows in progress per distribution; the workers leave CloudFront's quotas minus these
/// as reserve, so their budget is exactly this.
const PATHS: u32 = 100;
const WILDCARDS: u32 = 3;
const MESSAGES: usize = 600;

fn worker(id: &str, queue_url: &str, table: &str, cloudfront_url: &str) -> Child {
    common::binary()
        .env("AWS_ENDPOINT_URL_CLOUDFRONT", cloudfront_url)
        .args(["run", "--queue-url", queue_url, "--table", table, "--worker-id", id])
        .args(["--window", "1s", "--visibility-timeout", "10s", "--completion-poll", "1s", "--resync-interval", "5s"])
        .args(["--create-rate", "4", "--create-burst", "4", "--max-batch-paths", "40"])
        .args(["--reserve-paths", &(3_000 - PATHS).to_string(), "--reserve-wildcards", &(15 - WILDCARDS).to_string()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The reservation ids in the distributions' budget items, by owner.
async fn reservations(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for distribution in DISTRIBUTIONS {
        let item = dynamodb
            .get_item()
            .table_name(table)
            .key("pk", AttributeValue::S(format!("budget#{distribution}")))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        let Some(AttributeValue::M(reservations)) = item.item().and_then(|i| i.get("reservations")) else { continue };
        for (id, value) in reservations {
            let owner = value.as_m().ok().and_then(|m| m.get("owner")).and_then(|o| o.as_s().ok()).cloned();
            found.push((id.clone(), owner.unwrap_or_default()));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_the_budget_and_a_killed_workers_reservations_come_back() {
    let Some(config) = common::emulator().await else { return };
    let sqs = aws_sdk_sqs::Client::new(&config);
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;
    let mut args = vec!["--completion", "3s", "--completion-max", "6s", "--rate", "20", "--burst", "20"];
    let (paths, wildcards) = (PATHS.to_string(), WILDCARDS.to_string());
    args.extend(["--max-paths", &paths, "--max-wildcards", &wildcards]);
    for distribution in DISTRIBUTIONS {
        args.extend(["--distribution", distribution]);
    }
    let simulator = common::SimulatorProcess::start(&args);

    let mut requested = Vec::new();
    let bodies: Vec<String> = (0..MESSAGES)
        .map(|n| {
            let distribution = DISTRIBUTIONS[n % DISTRIBUTIONS.len()];
            let mut paths = vec![format!("/news/{n}.html"), format!("/news/{n}/photo.jpg")];
            if n % 50 == 0 {
                paths.push(format!("/archive/{n}/*"));
            }
            requested.extend(paths.iter().map(|p| (distribution, p.clone())));
            serde_json::json!({"distribution_id": distribution, "paths": paths}).to_string()
        })
        .collect();
    common::send_all(&sqs, &queues.queue_url, &bodies).await;

    let mut workers: Vec<Child> =
        (0..3).map(|n| worker(&format!("worker-{n}"), &queues.queue_url, &table, &simulator.url)).collect();
    // Kill worker-0 at a moment it holds reservations.
    let give_up = std::time::Instant::now() + Duration::from_secs(120);
    let held: Vec<(String, String)> = loop {
        let held: Vec<_> =
            reservations(&dynamodb, &table).await.into_iter().filter(|(_, owner)| owner == "worker-0").collect();
        if !held.is_empty() || std::time::Instant::now() > give_up {
            break held;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!held.is_empty(), "worker-0 never held a reservation");
    workers[0].kill().unwrap();
    workers[0].wait().unwrap();
    let killed: HashSet<String> = held.into_iter().map(|(id, _)| id).collect();

    let drained = common::wait_until(Duration::from_secs(600), || async {
        common::queue_depth(&sqs, &queues.queue_url).await == (0, 0)
    })
    .await;
    // Its reservations expire after the lease (2 × 10 s) and are deleted one resync interval later by the next
    // reservation written: give the survivors work that needs one on each distribution.
    let late: Vec<String> = DISTRIBUTIONS
        .iter()
        .map(|d| serde_json::json!({"distribution_id": d, "paths": ["/late.html"]}).to_string())
        .collect();
    tokio::time::sleep(Duration::from_secs(26)).await;
    common::send_all(&sqs, &queues.queue_url, &late).await;
    requested.extend(DISTRIBUTIONS.iter().map(|d| (*d, "/late.html".to_owned())));
    let drained_again = common::wait_until(Duration::from_secs(120), || async {
        common::queue_depth(&sqs, &queues.queue_url).await == (0, 0)
    })
    .await;
    let remaining = reservations(&dynamodb, &table).await;
    for worker in &mut workers[1..] {
        Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
        assert!(worker.wait().unwrap().success());
    }

    assert!(drained && drained_again, "messages left: {:?}", common::queue_depth(&sqs, &queues.queue_url).await);
    assert!(common::drain(&sqs, &queues.dead_letter_url).await.is_empty(), "nothing valid may be dead-lettered");
    let report = common::simulator_report(&simulator.url).await;
    assert!(report.all.rejections.is_empty(), "the simulator refused nothing: {report:#?}");
    let budget = Allowance { paths: PATHS, wildcards: WILDCARDS };
    for distribution in DISTRIBUTIONS {
        let peak = report.distributions[distribution].peak;
        assert!(peak.fits_in(budget), "{distribution}: peak {peak:?} over the budget {budget:?}");
    }
    let cloudfront = cf_invalidator::fake::cloudfront_http::sdk_client(&simulator.url);
    let mut invalidations = Vec::new();
    for distribution in DISTRIBUTIONS {
        let id = DistributionId::parse(distribution).unwrap();
        invalidations.extend(common::invalidations(&cloudfront, &id).await.into_iter().map(|i| (distribution, i)));
    }
    for (distribution, path) in &requested {
        let covered = invalidations.iter().any(|(d, i)| d == distribution && is_covered_by(path, &i.paths));
        assert!(covered, "{distribution} {path} was never invalidated");
    }
    let returned: Vec<&(String, String)> = remaining.iter().filter(|(id, _)| killed.contains(id)).collect();
    assert!(returned.is_empty(), "the killed worker's reservations are still held: {returned:?}");
}

/// Distributions enough that CloudFront's in-progress quotas never hold a batch back: only the rate does.
const RATE_DISTRIBUTIONS: [&str; 6] = ["ERATEA", "ERATEB", "ERATEC", "ERATED", "ERATEE", "ERATEF"];
/// The account's CreateInvalidation rate in the simulator, and what the workers are told to share.
const ACCOUNT_RATE: f64 = 2.0;
const MEASURED: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_the_account_rate_use_it_and_are_never_throttled() {
    let Some(config) = common::emulator().await else { return };
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;
    // Invalidations complete within a second: the quotas never bind. The burst of 6 is what users report of
    // CloudFront; three workers each calling at once stay within it, the rate is the limit.
    let rate = ACCOUNT_RATE.to_string();
    let mut args = vec!["--completion", "1s", "--rate", &rate, "--burst", "6"];
    for distribution in RATE_DISTRIBUTIONS {
        args.extend(["--distribution", distribution]);
    }
    let simulator = common::SimulatorProcess::start(&args);
    let mut workers: Vec<Child> = (0..3)
        .map(|n| {
            common::binary()
                .env("AWS_ENDPOINT_URL_CLOUDFRONT", &simulator.url)
                .args(["run", "--queue-url", &queues.queue_url, "--table", &table, "--worker-id", &format!("rate-{n}")])
                .args(["--window", "1s", "--visibility-timeout", "30s", "--completion-poll", "1s"])
                // A short drain: what they still hold goes back to the queue, which the test no longer reads.
                .args(["--shutdown-timeout", "2s"])
                .args(["--account-create-rate", &rate, "--create-burst", "3", "--max-batch-paths", "4"])
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // Two check-ins: every worker has seen the other two before it takes a share.
    tokio::time::sleep(2 * cf_invalidator::limit::share::CHECK_IN_EVERY + Duration::from_secs(2)).await;
    // Far more batches than the rate can submit while it is measured.
    let bodies: Vec<String> = (0..1_200)
        .map(|n| {
            let distribution = RATE_DISTRIBUTIONS[n % RATE_DISTRIBUTIONS.len()];
            serde_json::json!({"distribution_id": distribution, "paths": [format!("/p/{n}")]}).to_string()
        })
        .collect();
    common::send_all(&sqs, &queues.queue_url, &bodies).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = common::simulator_report(&simulator.url).await.all.created;
    tokio::time::sleep(MEASURED).await;
    let report = common::simulator_report(&simulator.url).await;
    for worker in &workers {
        Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
    }
    for worker in &mut workers {
        assert!(worker.wait().unwrap().success());
    }

    let used = (report.all.created - before) as f64 / MEASURED.as_secs_f64() / ACCOUNT_RATE;
    println!(
        "{} invalidations in {MEASURED:?}: {:.0} % of the account's rate",
        report.all.created - before,
        used * 100.0
    );
    assert!(report.all.rejections.is_empty(), "CloudFront refused calls: {:?}", report.all.rejections);
    assert!(used >= 0.9, "the workers used {:.0} % of the account's rate", used * 100.0);
    let (visible, _) = common::queue_depth(&sqs, &queues.queue_url).await;
    assert!(visible > 0, "the rate, not the work, was the limit");
}
