//! Three worker processes share one in-progress budget: the real binary, with SQS and DynamoDB on the emulator and
//! CloudFront served over HTTP by the simulator (`cloudfront-sim`), whose quotas are set to exactly what the
//! workers may use together. One worker is killed with SIGKILL while it holds reservations. Any overcommitment
//! would be refused by the simulator, so: no quota error, nothing lost, and the dead worker's reservations are
//! given back after its lease.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use cf_invalidator::batch::merge::is_covered_by;
use cf_invalidator::model::DistributionId;

const DISTRIBUTIONS: [&str; 3] = ["EWORKERSA", "EWORKERSB", "EWORKERSC"];
/// What the simulator allows in progress per distribution; the workers leave CloudFront's quotas minus these
/// as reserve, so their budget is exactly this.
const PATHS: u32 = 100;
const WILDCARDS: u32 = 3;
const MESSAGES: usize = 600;

struct Simulator {
    process: Child,
    url: String,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn simulator() -> Simulator {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloudfront-sim"));
    command.args(["--port", "0", "--completion", "3s", "--completion-max", "6s"]);
    command.args(["--max-paths", &PATHS.to_string(), "--max-wildcards", &WILDCARDS.to_string()]);
    command.args(["--rate", "20", "--burst", "20"]);
    for distribution in DISTRIBUTIONS {
        command.args(["--distribution", distribution]);
    }
    let mut process = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut first_line = String::new();
    BufReader::new(process.stdout.take().unwrap()).read_line(&mut first_line).unwrap();
    Simulator { process, url: first_line.trim().to_owned() }
}

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
    let config = common::emulator().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;
    let simulator = simulator();

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
    let report: serde_json::Value = sim_report(&simulator.url).await;
    assert_eq!(report["all"]["rejections"], serde_json::json!({}), "the simulator refused nothing: {report:#}");
    for distribution in DISTRIBUTIONS {
        let peak = &report["distributions"][distribution]["peak"];
        assert!(peak["paths"].as_u64().unwrap() <= u64::from(PATHS), "{distribution}: {peak}");
        assert!(peak["wildcards"].as_u64().unwrap() <= u64::from(WILDCARDS), "{distribution}: {peak}");
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

/// The simulator's report (`GET /_sim/report`).
async fn sim_report(url: &str) -> serde_json::Value {
    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET /_sim/report HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response).await.unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("report is not JSON ({e}): {response}"))
}
