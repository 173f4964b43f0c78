//! The real binary, killed with SIGKILL at random moments while it works through thousands of messages, then
//! restarted: nothing may be lost, and nothing paid for twice. It runs twice: with the emulator's CloudFront, and
//! with the project's CloudFront simulator (CloudFront's CallerReference semantics and a tight quota: no duplicate
//! invalidation at all, no quota refusal). `scripts/test` runs it on ministack, whose SQS is fast enough that the
//! kills land in the middle of submission; on moto, which turns a batch resubmitted under its recorded
//! CallerReference into a second invalidation, resubmissions show and are bounded.
//!
//! The kill moments come from a seed printed at the start; CRASH_SEED reruns one, and CRASH_LOG_DIR keeps each
//! worker's log there (`<backend>-worker-0.log` …) instead of discarding it.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use cf_invalidator::model::DistributionId;
use cf_invalidator::model::path::is_covered_by;
use cf_invalidator::ports::budget::Allowance;
use common::{SimulatorProcess, StoredInvalidation};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MESSAGES: usize = 2_000;
const KILLS: usize = 4;
/// The simulator's in-progress quota, which the workers are told about through `--reserve-paths`.
const SIMULATED_QUOTA: Allowance = Allowance { paths: 600, wildcards: 15 };

/// The two runs share one emulator, whose SQS slows down with the queue's length: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Emulator,
    Simulator,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_the_emulators_cloudfront_loses_nothing_and_resubmits_only_under_recorded_references() {
    crash_and_recover(Backend::Emulator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_the_cloudfront_simulator_loses_nothing_and_creates_no_duplicate_invalidation() {
    crash_and_recover(Backend::Simulator).await;
}

/// Where the workers' CloudFront calls go, and its two distributions.
struct CloudFront {
    client: aws_sdk_cloudfront::Client,
    distributions: [DistributionId; 2],
    simulator: Option<SimulatorProcess>,
}

impl CloudFront {
    async fn start(backend: Backend, config: &aws_config::SdkConfig) -> Self {
        match backend {
            Backend::Emulator => {
                let client = common::cloudfront(config);
                let distributions =
                    [common::create_distribution(&client).await, common::create_distribution(&client).await];
                Self { client, distributions, simulator: None }
            }
            Backend::Simulator => {
                let distributions =
                    [DistributionId::parse("ECRASHAAAAAAA").unwrap(), DistributionId::parse("ECRASHBBBBBBB").unwrap()];
                let (paths, wildcards) = (SIMULATED_QUOTA.paths.to_string(), SIMULATED_QUOTA.wildcards.to_string());
                let mut args = vec!["--completion", "2s", "--completion-max", "8s", "--rate", "0"];
                args.extend(["--max-paths", &paths, "--max-wildcards", &wildcards]);
                args.extend(distributions.iter().flat_map(|d| ["--distribution", d.as_str()]));
                let simulator = SimulatorProcess::start(&args);
                let client = cf_invalidator::fake::cloudfront_http::sdk_client(&simulator.url);
                Self { client, distributions, simulator: Some(simulator) }
            }
        }
    }

    fn worker(&self, queue_url: &str, table: &str, log: Stdio) -> Child {
        let mut command = common::binary();
        command
            .args(["run", "--queue-url", queue_url, "--table", table, "--window", "1s", "--visibility-timeout", "10s"])
            // Small batches at a low rate: submission, not the emulator, is what takes time, so every kill finds
            // batches being recorded, submitted or acknowledged, and each worker holds only part of the queue, so the
            // next one finds messages to work on at once.
            .args(["--create-rate", "4", "--create-burst", "4", "--max-batch-paths", "50"])
            .args(["--max-held-messages", "200"])
            .stderr(log);
        if let Some(simulator) = &self.simulator {
            let reserve = cf_invalidator::ports::budget::QUOTA - SIMULATED_QUOTA;
            command
                .env("AWS_ENDPOINT_URL_CLOUDFRONT", &simulator.url)
                .args([
                    "--reserve-paths",
                    &reserve.paths.to_string(),
                    "--reserve-wildcards",
                    &reserve.wildcards.to_string(),
                ])
                .args(["--completion-poll", "2s", "--resync-interval", "10s"]);
        }
        command.spawn().unwrap()
    }

    async fn invalidations(&self) -> Vec<(DistributionId, StoredInvalidation)> {
        let mut found = Vec::new();
        for distribution in &self.distributions {
            let listed = common::invalidations(&self.client, distribution).await;
            found.extend(listed.into_iter().map(|i| (distribution.clone(), i)));
        }
        found
    }
}

fn log_file(backend: Backend, n: usize) -> Stdio {
    match std::env::var_os("CRASH_LOG_DIR") {
        Some(dir) => {
            let name = format!("{}-worker-{n}.log", format!("{backend:?}").to_lowercase());
            std::fs::File::create(std::path::Path::new(&dir).join(name)).unwrap().into()
        }
        None => Stdio::null(),
    }
}

async fn crash_and_recover(backend: Backend) {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let seed = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    println!("{backend:?}: CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let Some(config) = common::emulator().await else { return };
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;
    let cloudfront = CloudFront::start(backend, &config).await;

    let started = std::time::Instant::now();
    let mut requested = Vec::new();
    let mut paths_of_message = Vec::new();
    let bodies: Vec<String> = (0..MESSAGES)
        .map(|n| {
            let distribution = &cloudfront.distributions[n % 2];
            let paths = vec![format!("/page/{}.html", n % 700), format!("/assets/{}.js", n % 50)];
            requested.extend(paths.iter().map(|p| (distribution.clone(), p.clone())));
            paths_of_message.push(paths.iter().cloned().collect::<HashSet<String>>());
            serde_json::json!({"distribution_id": distribution.as_str(), "paths": paths}).to_string()
        })
        .collect();
    let message_ids = common::send_all(&sqs, &queues.queue_url, &bodies).await;
    let paths_of_message: HashMap<String, HashSet<String>> = message_ids.into_iter().zip(paths_of_message).collect();

    println!("sent at {:?}", started.elapsed());
    for n in 0..KILLS {
        let mut running = cloudfront.worker(&queues.queue_url, &table, log_file(backend, n));
        // From start-up to mid-submission: a worker's first batch is accepted within a second of its start.
        let after = rng.random_range(300..6_000);
        tokio::time::sleep(Duration::from_millis(after)).await;
        running.kill().unwrap();
        running.wait().unwrap();
        let batches = recorded_batches(&config, &table).await;
        let pending = batches.values().filter(|b| b.status == "pending").count();
        println!("kill {n} after {after} ms: the ledger holds {} batches, {pending} of them pending", batches.len());
    }
    let (visible, in_flight) = common::queue_depth(&sqs, &queues.queue_url).await;
    println!("kills done at {:?}: {visible} messages visible, {in_flight} in flight", started.elapsed());
    let mut last = cloudfront.worker(&queues.queue_url, &table, log_file(backend, KILLS));
    let restarted = std::time::Instant::now();
    // Time to install its signal handlers, so the SIGTERM below is a shutdown even if the queue is empty already.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Bounds the wait (moto's SQS, which slows down as 2,000 messages pile up, takes minutes); it is not a
    // performance assertion.
    let drained = common::wait_until(Duration::from_secs(600), || async {
        common::queue_depth(&sqs, &queues.queue_url).await == (0, 0)
    })
    .await;
    println!("drained at {:?}: {:?} after the last restart", started.elapsed(), restarted.elapsed());
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
    let invalidations = cloudfront.invalidations().await;
    for (distribution, path) in &requested {
        let covered = invalidations.iter().any(|(d, i)| d == distribution && is_covered_by(path, &i.paths));
        assert!(covered, "{distribution} {path} was never invalidated (seed {seed})");
    }
    let mut per_reference: HashMap<&str, usize> = HashMap::new();
    for (_, invalidation) in &invalidations {
        let reference = invalidation.caller_reference.as_str();
        let batch = recorded.get(reference);
        assert!(batch.is_some(), "{reference} reached CloudFront without a ledger record (seed {seed})");
        let paths: HashSet<String> = invalidation.paths.iter().cloned().collect();
        assert_eq!(batch.unwrap().paths, paths, "{reference} was sent with other paths than recorded (seed {seed})");
        *per_reference.entry(reference).or_default() += 1;
    }
    assert_no_message_paid_twice(&recorded, &per_reference, &paths_of_message, seed);
    // The audit table tells the truth: a batch it shows as accepted was accepted by CloudFront.
    for (reference, batch) in recorded.iter().filter(|(_, b)| b.status == "accepted" || b.status == "completed") {
        assert!(
            per_reference.contains_key(reference.as_str()),
            "{reference} is {} but CloudFront never had it",
            batch.status
        );
    }
    let resubmissions: usize = per_reference.values().map(|n| n - 1).sum();
    println!(
        "{} invalidations for {} batches; {resubmissions} resubmissions under a recorded reference",
        invalidations.len(),
        per_reference.len()
    );
    match &cloudfront.simulator {
        // moto creates a second invalidation for a repeated reference (CloudFront would not): each kill can leave
        // at most the batches being submitted at that moment (16 at once) to be resumed.
        None => assert!(resubmissions <= KILLS * 16, "{resubmissions} resubmissions after {KILLS} kills (seed {seed})"),
        Some(simulator) => {
            let report = common::simulator_report(&simulator.url).await;
            assert!(report.all.rejections.is_empty(), "CloudFront refused calls (seed {seed}): {report:#?}");
            for distribution in &cloudfront.distributions {
                let peak = report.distributions[distribution.as_str()].peak;
                println!("{distribution}: at most {} paths in progress at once", peak.paths);
                assert!(peak.fits_in(SIMULATED_QUOTA), "{distribution}: peak {peak:?} over the quota (seed {seed})");
            }
            assert_report_matches_the_bill(&table, &report, seed);
        }
    }
}

/// `report --json` shows, per distribution and in total, what CloudFront billed for the workers' invalidations:
/// batches resubmitted after a kill, or whose outcome was recorded by a resumed worker, counted once.
fn assert_report_matches_the_bill(table: &str, billed: &cf_invalidator::fake::Report, seed: u64) {
    let output = common::binary().args(["report", "--table", table, "--json"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows = report["distributions"].as_array().unwrap();
    for (distribution, simulated) in &billed.distributions {
        let row = rows.iter().find(|r| r["distribution_id"] == distribution.as_str());
        let counted = row.map_or(0, |r| r["paths_billed"].as_u64().unwrap());
        assert_eq!(counted, simulated.worker_paths_billed as u64, "{distribution}: report vs bill (seed {seed})");
    }
    assert_eq!(report["total"]["paths_billed"].as_u64(), Some(billed.worker.paths_billed as u64), "seed {seed}");
    assert_eq!(report["total"]["batches"].as_u64(), Some(billed.worker.created as u64), "seed {seed}");
    println!("report: {} paths billed, as the simulator billed", billed.worker.paths_billed);
}

/// A message's paths are paid for once: two batches that both hold a message (a batch resumed after a crash, the
/// rest of a message partly covered already, a message split over two batches) never both invalidate one of the
/// message's own paths. Other messages' paths may well be in both: a popular path comes back in the next window.
fn assert_no_message_paid_twice(
    recorded: &HashMap<String, Recorded>,
    sent: &HashMap<&str, usize>,
    paths_of_message: &HashMap<String, HashSet<String>>,
    seed: u64,
) {
    let mut batches_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for reference in sent.keys() {
        for message in &recorded[*reference].message_ids {
            batches_of.entry(message).or_default().push(reference);
        }
    }
    for (message, references) in batches_of.iter().filter(|(_, references)| references.len() > 1) {
        for (n, first) in references.iter().enumerate() {
            for second in &references[n + 1..] {
                let own = &paths_of_message[*message];
                let twice: Vec<&String> = recorded[*first]
                    .paths
                    .intersection(&recorded[*second].paths)
                    .filter(|p| own.contains(*p))
                    .collect();
                assert!(
                    twice.is_empty(),
                    "message {message} paid twice for {twice:?}, in batches {first} and {second} (seed {seed})"
                );
            }
        }
    }
}

/// What the ledger holds about one batch.
struct Recorded {
    paths: HashSet<String>,
    message_ids: Vec<String>,
    status: String,
}

/// CallerReference → paths, messages and status of every batch record in the ledger.
async fn recorded_batches(config: &aws_config::SdkConfig, table: &str) -> HashMap<String, Recorded> {
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    let strings = |list: &[AttributeValue]| list.iter().filter_map(|v| v.as_s().ok().cloned()).collect::<Vec<_>>();
    let mut found = HashMap::new();
    let mut start = None;
    loop {
        let page = dynamodb.scan().table_name(table).set_exclusive_start_key(start).send().await.unwrap();
        for item in page.items() {
            let (Some(AttributeValue::S(reference)), Some(AttributeValue::L(paths)), Some(AttributeValue::L(messages))) =
                (item.get("caller_reference"), item.get("paths"), item.get("message_ids"))
            else {
                continue;
            };
            let batch = Recorded {
                paths: strings(paths).into_iter().collect(),
                message_ids: strings(messages),
                status: item.get("status").and_then(|s| s.as_s().ok()).cloned().unwrap_or_default(),
            };
            found.insert(reference.clone(), batch);
        }
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            return found;
        }
    }
}
