//! Proof at the edge end to end (issue #28), as a CI step would see it: the real binary, SQS and DynamoDB on the
//! emulator, CloudFront and its edge served by the simulator, a worker run with `--verify-edge --edge-url`, and
//! `send --wait --verify` exiting 0 when the edge serves the new objects and 3 when a POP keeps its old copies
//! through the second invalidation.

mod common;

use std::process::{Child, Output, Stdio};

use cf_invalidator::aws::cloudfront::CloudFront;
use cf_invalidator::edge::http::{HttpEdge, Resolver};
use cf_invalidator::edge::settings::FetchLimits;
use cf_invalidator::edge::url::{EdgeBase, edge_url};
use cf_invalidator::model::DistributionId;
use cf_invalidator::ports::cdn::CdnError;
use cf_invalidator::ports::edge::{Edge, EdgeMethod, EdgeRequest};

const DISTRIBUTION: &str = "EPROOF";
const PATHS: [&str; 2] = ["/index.html", "/app.js"];

/// The simulator with its edge, stopped when dropped: its CloudFront URL and its edge's.
struct Simulator {
    process: Child,
    cloudfront: String,
    edge: String,
}

impl Simulator {
    fn start(args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut process = std::process::Command::new(env!("CARGO_BIN_EXE_cloudfront-sim"))
            .args(["--port", "0", "--edge-port", "0", "--distribution", DISTRIBUTION, "--completion", "2s"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(process.stdout.take().unwrap()).lines();
        let mut line = || lines.next().unwrap().unwrap();
        let (cloudfront, edge) = (line(), line());
        Self { process, cloudfront, edge }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

struct Stack {
    queue_url: String,
    table: String,
    simulator: Simulator,
    worker: Child,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.worker.kill();
        let _ = self.worker.wait();
    }
}

/// Version 1 of the objects cached at both POPs, version 2 at the origin, and a worker verifying at the edge.
async fn stack(simulator_args: &[&str]) -> Option<Stack> {
    let config = common::emulator().await?;
    let queues = common::create_queues(&config).await;
    let table = common::create_table(&config).await;
    let simulator = Simulator::start(simulator_args);
    let client = HttpEdge::new(FetchLimits::default(), Resolver::System).unwrap();
    let edge = EdgeBase::parse(&format!("{}/{DISTRIBUTION}", simulator.edge)).unwrap();
    for path in PATHS {
        let object = format!("/_edge/objects/{DISTRIBUTION}{path}");
        let (status, body) = common::simulator_request(&simulator.edge, "PUT", &object, "v1").await;
        assert_eq!(status, 201, "{body}");
        for _pop in 0..2 {
            // The POPs answer in turn: each caches version 1, as browsers ask for it (CloudFront caches each
            // encoding apart, and verification asks as browsers do).
            let cached = client.fetch(&browser_get(&edge, path)).await.unwrap();
            assert_eq!(cached.status, 200, "{cached:?}");
        }
        common::simulator_request(&simulator.edge, "PUT", &object, "v2").await;
    }
    let edge_url = format!("{DISTRIBUTION}={}/{DISTRIBUTION}", simulator.edge);
    let worker = common::binary()
        .env("AWS_ENDPOINT_URL_CLOUDFRONT", &simulator.cloudfront)
        .args(["run", "--queue-url", &queues.queue_url, "--dlq-url", &queues.dead_letter_url, "--table", &table])
        .args(["--window", "1s", "--completion-poll", "1s"])
        .args(["--verify-edge", "--verify-grace", "2s", "--edge-url", &edge_url])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Some(Stack { queue_url: queues.queue_url, table, simulator, worker })
}

fn browser_get(edge: &EdgeBase, path: &str) -> EdgeRequest {
    let url = edge_url(edge, path).unwrap();
    EdgeRequest { method: EdgeMethod::Get, url, via: None, accept_encoding: Some("br, gzip".into()) }
}

fn send_wait_verify(stack: &Stack) -> Output {
    common::binary()
        .args(["send", "--queue-url", &stack.queue_url, "--table", &stack.table, "--distribution", DISTRIBUTION])
        .args(["--wait", "--verify", "--json", "--wait-timeout", "2m"])
        .args(PATHS)
        .output()
        .unwrap()
}

fn result(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_wait_verify_exits_0_once_the_edge_serves_the_new_objects() {
    let Some(stack) = stack(&[]).await else { return };
    let output = send_wait_verify(&stack);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let done = result(&output);
    assert_eq!(done["status"], "completed", "{done}");
    let edge = &done["invalidations"][0]["edge"];
    assert_eq!((edge["outcome"].as_str(), edge["checked"].as_u64()), (Some("fresh"), Some(2)), "{done}");
    let simulated = common::simulator_report(&stack.simulator.cloudfront).await;
    assert_eq!(simulated.worker.created, 1, "no second invalidation: {simulated:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_wait_verify_exits_3_when_a_pop_stays_stale_through_the_second_invalidation() {
    // One POP, so every check meets it.
    let Some(stack) = stack(&["--edge-pop", "FRA56-P2", "--edge-stale-pop", "FRA56-P2"]).await else { return };
    let output = send_wait_verify(&stack);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.lines().last().unwrap_or_default().contains("ended stale"), "{stderr}");
    assert_eq!(result(&output)["status"], "stale");
    let simulated = common::simulator_report(&stack.simulator.cloudfront).await;
    assert_eq!(simulated.worker.created, 2, "one second invalidation of the stale paths, no third: {simulated:#?}");

    let audit = common::binary()
        .args(["audit", "--table", &stack.table, "--distribution", DISTRIBUTION, "--json"])
        .output()
        .unwrap();
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&audit.stdout).lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let outcomes: Vec<&str> = rows.iter().filter_map(|row| row["verification"]["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["stale", "stale"], "the heal batch and the first, both recorded: {rows:#?}");
    let heal = rows.iter().find(|row| row["requesters"][0].as_str().is_some_and(|r| r.starts_with("heal-of:")));
    assert!(heal.is_some(), "the second invalidation is linked to the first: {rows:#?}");
}

#[tokio::test]
async fn the_cloudfront_adapter_reads_a_distributions_own_domain_for_the_edge() {
    let Some(config) = common::emulator().await else { return };
    let client = common::cloudfront(&config);
    let distribution = common::create_distribution(&client).await;
    let domain = client.get_distribution().id(distribution.as_str()).send().await.unwrap();
    let expected = domain.distribution().unwrap().domain_name().to_owned();

    let lookup = CloudFront::new(client).domain_lookup();
    assert_eq!(lookup.domain(&distribution).await.unwrap(), expected);
    assert!(expected.ends_with(".cloudfront.net"), "{expected}");
    let unknown = DistributionId::parse("ENOSUCHDIST1").unwrap();
    let refused = lookup.domain(&unknown).await.unwrap_err();
    assert!(matches!(refused, CdnError::NoSuchDistribution(_)), "{refused:?}");
}
